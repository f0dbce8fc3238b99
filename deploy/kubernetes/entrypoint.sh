#!/bin/sh
# Entrypoint of a sinter-tc pod of the StatefulSet (deploy/kubernetes/): writes the node's INI
# from the pod's stable name and starts sinter-tc on it. kustomization.yaml puts this file into
# the ConfigMap (mounted at /etc/sinter/entrypoint.sh), so the image needs only the binary;
# tests/integration/deploy runs it with the real sinter-tc --check-config.
#
# Pod sinter-tc-K is node K+1 (raft ids are non-zero and never reused; a StatefulSet's ordinals
# are stable, so a rescheduled pod keeps its id and its volume). Every address is the pod's DNS
# name under the headless Service, POD.SERVICE.NAMESPACE.svc.DOMAIN: stable across reschedules,
# and what the other nodes hand to clients when they redirect them to this node.
#
# The written file is the ConfigMap's cluster.ini followed by [node], [peers] and the secret
# (from the Kubernetes Secret's file), in a memory-backed directory readable by this user only.
# Extra arguments go to sinter-tc (e.g. --check-config).
#
# Environment (set by statefulset.yaml): POD_NAME, POD_NAMESPACE, SINTER_SERVICE, SINTER_REPLICAS,
# CLUSTER_DOMAIN; optional: SINTER_CLIENT_PORT / SINTER_RAFT_PORT / SINTER_HTTP_PORT (8091 /
# 7091 / 8081), SINTER_BASE_INI (/etc/sinter/cluster.ini), SINTER_SECRET_FILE
# (/etc/sinter-secret/secret), SINTER_RUN_DIR (/run/sinter), SINTER_DATA_DIR
# (/var/lib/sinter/data), SINTER_TC (/usr/bin/sinter-tc), SINTER_DNS_WAIT_S (120).
set -eu

pod=${POD_NAME:-$(hostname)}
ns=${POD_NAMESPACE:-default}
svc=${SINTER_SERVICE:-sinter-tc}
replicas=${SINTER_REPLICAS:-3}
domain=${CLUSTER_DOMAIN:-cluster.local}
cport=${SINTER_CLIENT_PORT:-8091}
rport=${SINTER_RAFT_PORT:-7091}
hport=${SINTER_HTTP_PORT:-8081}
base=${SINTER_BASE_INI:-/etc/sinter/cluster.ini}
secret_file=${SINTER_SECRET_FILE:-/etc/sinter-secret/secret}
run=${SINTER_RUN_DIR:-/run/sinter}
data=${SINTER_DATA_DIR:-/var/lib/sinter/data}
tc=${SINTER_TC:-/usr/bin/sinter-tc}
dns_wait=${SINTER_DNS_WAIT_S:-120}

die() {
  echo "sinter-tc entrypoint: $*" >&2
  exit 2
}

ord=${pod##*-}
case $ord in
'' | *[!0-9]*) die "pod name '$pod' does not end in -ORDINAL (run it from a StatefulSet)" ;;
esac
case $replicas in
'' | *[!0-9]*) die "SINTER_REPLICAS='$replicas' is not a number" ;;
esac
[ "$ord" -lt "$replicas" ] ||
  die "pod ordinal $ord >= SINTER_REPLICAS $replicas: grow the cluster by a membership change, not kubectl scale"
set_name=${pod%-*}
id=$((ord + 1))

host() { echo "$set_name-$1.$svc.$ns.svc.$domain"; }
self=$(host "$ord")

[ -r "$secret_file" ] || die "secret file $secret_file is not readable (Secret sinter-tc-secret, key secret)"
secret=$(cat "$secret_file")
case $secret in
*'
'*) die "the secret in $secret_file spans several lines" ;;
'') die "the secret in $secret_file is empty" ;;
esac

# The listeners bind the pod's own name, so it must resolve first; the headless Service
# publishes not-ready addresses, so this takes seconds, not until the pod is ready.
i=0
while ! getent hosts "$self" >/dev/null 2>&1; do
  if [ "$i" -ge "$dns_wait" ]; then
    echo "sinter-tc entrypoint: $self does not resolve after ${dns_wait}s; starting anyway" >&2
    break
  fi
  i=$((i + 1))
  sleep 1
done

umask 077
mkdir -p "$run"
ini=$run/tc.ini
{
  cat "$base"
  printf '\n; written by the entrypoint for pod %s\n[node]\n' "$pod"
  printf 'id = %d\nclient_listen = tcp://%s:%s\nraft_listen = tcp://%s:%s\n' \
    "$id" "$self" "$cport" "$self" "$rport"
  printf 'http_listen = http://%s:%s\ndata_dir = %s\n[peers]\n' "$self" "$hport" "$data"
  k=0
  while [ "$k" -lt "$replicas" ]; do
    if [ "$k" -ne "$ord" ]; then
      h=$(host "$k")
      printf '%d = tcp://%s:%s,tcp://%s:%s,http://%s:%s\n' $((k + 1)) "$h" "$rport" "$h" "$cport" \
        "$h" "$hport"
    fi
    k=$((k + 1))
  done
  printf '[tc]\nsecret = %s\n' "$secret"
} >"$ini.tmp"
mv "$ini.tmp" "$ini"

exec "$tc" --config "$ini" "$@"
