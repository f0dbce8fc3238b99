#!/usr/bin/env bash
# tests/integration/deploy: checks the shipped deployment files with the real sinter-tc.
#
#   check-deploy.sh config|systemd|kubernetes SOURCE_DIR SINTER_TC
#
# Exit 0 when every check of the part passed, 1 on the first failure (with what failed), 77 when
# the part's tool is not installed (ctest reports a skip).
set -euo pipefail

part=$1
src=$2
tc=$(readlink -f "$3") # absolute: systemd-analyze verify wants an absolute ExecStart
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sinter-deploy-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
ok() { echo "ok: $*"; }

# Runs sinter-tc --check-config with ARGS; sets $rc, $out (stdout) and $errout (stderr).
check() {
  rc=0
  "$tc" --check-config "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  out=$(<"$tmp/out")
  errout=$(<"$tmp/err")
}

# A copy of FILE with sed EXPR applied must fail the check with exit 2 and name KEY.
expect_broken() {
  local file=$1 expr=$2 key=$3 name=$4
  sed -e "$expr" "$file" >"$tmp/$name.ini"
  cmp -s "$file" "$tmp/$name.ini" && fail "$name: the edit '$expr' changed nothing"
  check --config "$tmp/$name.ini"
  [[ $rc == 2 ]] || fail "$name: exit $rc, want 2 (stdout: $out; stderr: $errout)"
  [[ $errout == *"$key"* ]] || fail "$name: the error does not name $key: $errout"
  ok "$name: exit 2, names $key"
}

part_config() {
  local dir=$src/deploy/config n
  local files=("$dir"/node*.ini)
  ((${#files[@]} == 3)) || fail "want node1.ini..node3.ini in $dir, found ${#files[@]}"
  for n in 1 2 3; do
    check --config "$dir/node$n.ini"
    [[ $rc == 0 ]] || fail "node$n.ini: exit $rc: $errout"
    [[ $out == *"configuration OK: node $n, 3 member(s)"* ]] ||
      fail "node$n.ini: unexpected summary: $out"
    ok "node$n.ini passes --check-config: ${out%%$'\n'*}"
  done
  # The check must not create the data dir (nor anything else): point it at a fresh path.
  check --config "$dir/node1.ini" --data-dir "$tmp/data-never"
  [[ $rc == 0 ]] || fail "node1.ini with --data-dir: exit $rc: $errout"
  [[ ! -e $tmp/data-never ]] || fail "--check-config created the data dir"
  ok "--check-config leaves the data dir alone"

  # Every key of tc/config.c's table is shown in each example (set or commented out), so an
  # operator finds every setting in the file.
  local keys
  keys=$(grep -oE 'KEY\("[a-z]+", "[a-z_]+"' "$src/tc/config.c" | sed -E 's/KEY\("([a-z]+)", "([a-z_]+)"/\1.\2/')
  [[ $(wc -l <<<"$keys") -ge 25 ]] || fail "could not read the key table of tc/config.c"
  for f in "${files[@]}"; do
    local k
    for k in $keys; do
      grep -qE "^;?${k#*.} =" "$f" || fail "$(basename "$f"): key $k is not shown"
      # the section too
      grep -qE "^;?\[${k%%.*}\]" "$f" || fail "$(basename "$f"): section [${k%%.*}] missing"
    done
  done
  ok "every key of tc/config.c is shown in node1..3.ini"

  # The three files agree on everything but [node] and [peers]: the cluster-wide settings
  # (groups, timeouts, secret) must be identical on every member.
  # shellcheck disable=SC2016 # an awk program, not shell
  local strip=(awk '/^\[/{s=$0} s!="[node]" && s!="[peers]" && !/^;/')
  for n in 2 3; do
    diff <("${strip[@]}" "$dir/node1.ini") <("${strip[@]}" "$dir/node$n.ini") >/dev/null ||
      fail "node$n.ini differs from node1.ini outside [node] and [peers]"
  done
  ok "node1..3.ini agree outside [node] and [peers]"

  # Broken copies: exit 2 and the key named.
  expect_broken "$dir/node2.ini" 's/^groups = 1$/groups = 0/' raft.groups bad-groups
  expect_broken "$dir/node2.ini" 's/^retry_max_ms = .*/retry_max_ms = 500/' tc.retry_initial_ms \
    bad-retry
  expect_broken "$dir/node2.ini" 's/^secret = .*/secret =/' tc.secret no-secret
  expect_broken "$dir/node2.ini" 's/^max_client_connections = .*/max_client_connections = 0/' \
    tc.max_client_connections no-connections
  # The secret from its own file (the INI's comment): accepted; both at once, or a missing or
  # multi-line file, refused naming tc.secret_file.
  printf '%s\n' 0123456789abcdef0123456789abcdef >"$tmp/secret"
  sed -e 's/^secret = .*//' -e "s#^;secret_file = .*#secret_file = $tmp/secret#" \
    "$dir/node2.ini" >"$tmp/secret-file.ini"
  check --config "$tmp/secret-file.ini"
  [[ $rc == 0 ]] || fail "node2.ini with secret_file: exit $rc: $errout"
  expect_broken "$dir/node2.ini" "s#^;secret_file = .*#secret_file = $tmp/secret#" \
    tc.secret_file secret-and-file
  expect_broken "$dir/node2.ini" "s/^secret = .*//; s#^;secret_file = .*#secret_file = $tmp/none#" \
    tc.secret_file secret-file-missing
  printf 'one\ntwo\n' >"$tmp/secret2"
  expect_broken "$dir/node2.ini" "s/^secret = .*//; s#^;secret_file = .*#secret_file = $tmp/secret2#" \
    tc.secret_file secret-file-two-lines
  ok "tc.secret_file: read from its file; with secret, missing or multi-line refused"
  expect_broken "$dir/node2.ini" 's/^gc_interval_ms = /gc_intreval_ms = /' tc.gc_intreval_ms typo
  expect_broken "$dir/node2.ini" 's/^1 = tcp:\/\/10.0.0.1:7091/1 = tls+tcp:\/\/10.0.0.1:7091/' \
    peers.1 mixed-scheme
  # TLS switched on as the file's [tls] comment says (every URL tls+tcp://, [tls] uncommented)
  # but the certificate files absent: the check loads them as the listeners would and names
  # the key.
  local tls_on='s#= tcp://#= tls+tcp://#; s#,tcp://#,tls+tcp://#g; s/^;\[tls\]/[tls]/'
  tls_on+='; s/^;cert_key_file/cert_key_file/; s/^;ca_file/ca_file/'
  expect_broken "$dir/node2.ini" "$tls_on" tls.cert_key_file tls-missing-file
  # ... and with real files (a throwaway CA from the openssl command line) it passes.
  if command -v openssl >/dev/null; then
    (cd "$tmp" &&
      openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
        -subj /CN=sinter-test-ca &&
      openssl req -newkey rsa:2048 -nodes -keyout node.key -out node.csr -subj /CN=sinter-tc &&
      openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.crt \
        -days 2 && cat node.crt node.key >node2.pem) >/dev/null 2>&1 ||
      fail "openssl could not make the test certificates"
    sed -e "$tls_on" -e "s#/etc/sinter/tls/#$tmp/#" "$dir/node2.ini" >"$tmp/tls-ok.ini"
    check --config "$tmp/tls-ok.ini"
    [[ $rc == 0 ]] || fail "node2.ini with TLS enabled as documented: exit $rc: $errout"
    [[ $out == *"raft   tls+tcp://10.0.0.2:7091 (mutual TLS)"* ]] ||
      fail "TLS summary: $out"
    ok "node2.ini with [tls] enabled as its comment says passes --check-config"
  fi
}

part_systemd() {
  if ! command -v systemd-analyze >/dev/null; then
    echo "SKIP: systemd-analyze not installed"
    exit 77
  fi
  local unit=$src/deploy/systemd/sinter-tc@.service
  grep -q '^ExecStart=/usr/bin/sinter-tc --config /etc/sinter/%i.ini$' "$unit" ||
    fail "ExecStart does not run /usr/bin/sinter-tc on /etc/sinter/%i.ini"
  grep -q '^ExecStartPre=/usr/bin/sinter-tc --check-config --config /etc/sinter/%i.ini$' "$unit" ||
    fail "ExecStartPre does not check the configuration"
  # verify needs the executables to exist: the instance points at the built binary.
  mkdir -p "$tmp/units"
  sed "s|/usr/bin/sinter-tc|$tc|g" "$unit" >"$tmp/units/sinter-tc@node1.service"
  rc=0
  systemd-analyze verify "$tmp/units/sinter-tc@node1.service" >"$tmp/out" 2>"$tmp/err" || rc=$?
  # An unknown or misspelt directive is only a warning (exit 0): any output is a failure.
  [[ $rc == 0 && ! -s $tmp/err ]] || fail "systemd-analyze verify: exit $rc: $(cat "$tmp/err")"
  ok "systemd-analyze verify: clean"
  # The hardening stays: systemd's exposure score (0 best .. 10) at most 2.5.
  if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
    rc=0
    systemd-analyze security --offline=true --threshold=25 --no-pager \
      "$tmp/units/sinter-tc@node1.service" >"$tmp/out" 2>&1 || rc=$?
    [[ $rc == 0 ]] || fail "exposure above 2.5: $(grep -i 'overall' "$tmp/out")"
    ok "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$tmp/out")"
  fi
}

part_kubernetes() {
  local dir=$src/deploy/kubernetes
  # The entrypoint with the real sinter-tc: pod sinter-tc-1 becomes node 2 of 3 with the secret
  # from the Secret's file, and sinter-tc accepts what it wrote.
  printf '%s\n' 0123456789abcdef0123456789abcdef >"$tmp/secret"
  local env=(env POD_NAME=sinter-tc-1 POD_NAMESPACE=txn SINTER_SERVICE=sinter-tc SINTER_REPLICAS=3
             SINTER_BASE_INI="$dir/cluster.ini" SINTER_SECRET_FILE="$tmp/secret"
             SINTER_RUN_DIR="$tmp/run" SINTER_DATA_DIR="$tmp/data" SINTER_TC="$tc"
             SINTER_DNS_WAIT_S=0)
  rc=0
  "${env[@]}" sh "$dir/entrypoint.sh" --check-config >"$tmp/out" 2>"$tmp/err" || rc=$?
  out=$(<"$tmp/out")
  [[ $rc == 0 ]] || fail "entrypoint --check-config: exit $rc: $(cat "$tmp/err")"
  [[ $out == *"node 2, 3 member(s)"* ]] || fail "entrypoint: unexpected summary: $out"
  [[ $out == *"client tcp://sinter-tc-1.sinter-tc.txn.svc.cluster.local:8091"* ]] ||
    fail "entrypoint: client URL is not the pod's DNS name: $out"
  grep -qx '1 = tcp://sinter-tc-0.sinter-tc.txn.svc.cluster.local:7091,tcp://sinter-tc-0.sinter-tc.txn.svc.cluster.local:8091,http://sinter-tc-0.sinter-tc.txn.svc.cluster.local:8081' \
    "$tmp/run/tc.ini" || fail "entrypoint: peer 1 missing: $(cat "$tmp/run/tc.ini")"
  grep -qx 'secret = 0123456789abcdef0123456789abcdef' "$tmp/run/tc.ini" ||
    fail "entrypoint: the secret is not in the written INI"
  [[ $(stat -c %a "$tmp/run/tc.ini") == 600 ]] || fail "entrypoint: tc.ini is not mode 0600"
  [[ ! -e $tmp/data ]] || fail "entrypoint --check-config created the data dir"
  ok "entrypoint: pod sinter-tc-1 = node 2 of 3, INI accepted by sinter-tc, mode 0600"
  for bad in sinter-tc-3 sinter-tc; do
    rc=0
    "${env[@]}" POD_NAME=$bad sh "$dir/entrypoint.sh" --check-config >/dev/null 2>"$tmp/err" ||
      rc=$?
    [[ $rc == 2 ]] || fail "entrypoint with pod $bad: exit $rc, want 2"
  done
  ok "entrypoint refuses an ordinal beyond the replicas and a name without one"

  if ! command -v python3 >/dev/null || ! python3 -c 'import yaml' 2>/dev/null; then
    echo "SKIP: python3 with the yaml module not installed (manifests not parsed)"
    exit 77
  fi
  python3 - "$dir" <<'PY'
import glob, os, sys, yaml

d = sys.argv[1]
docs = {}
for f in sorted(glob.glob(os.path.join(d, "*.yaml"))):
    for doc in yaml.safe_load_all(open(f)):
        assert doc and "kind" in doc, f"{f}: a document without kind"
        docs[doc["kind"]] = doc
        print(f"ok: {os.path.basename(f)} parses: {doc['kind']}")
for kind in ("Service", "StatefulSet", "PodDisruptionBudget", "Kustomization"):
    assert kind in docs, f"no {kind}"

svc, sts, pdb, kus = (docs[k] for k in ("Service", "StatefulSet", "PodDisruptionBudget", "Kustomization"))
assert svc["spec"]["clusterIP"] == "None", "the Service is not headless"
assert svc["spec"]["publishNotReadyAddresses"] is True, "peers would not resolve before ready"
assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
assert sts["spec"]["podManagementPolicy"] == "Parallel"
assert pdb["spec"]["maxUnavailable"] == 1
labels = sts["spec"]["template"]["metadata"]["labels"]
for sel in (svc["spec"]["selector"], sts["spec"]["selector"]["matchLabels"],
            pdb["spec"]["selector"]["matchLabels"]):
    assert all(labels.get(k) == v for k, v in sel.items()), f"selector {sel} misses the pods"

pod = sts["spec"]["template"]["spec"]
c = pod["containers"][0]
env = {e["name"]: e.get("value") for e in c["env"]}
assert env["SINTER_REPLICAS"] == str(sts["spec"]["replicas"]), "SINTER_REPLICAS != replicas"
assert env["SINTER_SERVICE"] == svc["metadata"]["name"]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
assert ports == {"client": 8091, "raft": 7091, "http": 8081}, ports
assert {p["name"] for p in svc["spec"]["ports"]} == set(ports)
assert c["readinessProbe"]["httpGet"]["path"] == "/health"
assert c["readinessProbe"]["httpGet"]["port"] == "http"
assert c["livenessProbe"]["tcpSocket"]["port"] == "http"
assert c["command"][-1] == "/etc/sinter/entrypoint.sh"

mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
vols = {v["name"]: v for v in pod["volumes"]}
assert mounts["data"] == "/var/lib/sinter"
assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
assert mounts["config"] == "/etc/sinter" and mounts["secret"] == "/etc/sinter-secret"
gen = {g["name"]: g["files"] for g in kus["configMapGenerator"]}
assert vols["config"]["configMap"]["name"] in gen, "the config volume names no generated ConfigMap"
for f in gen[vols["config"]["configMap"]["name"]]:
    assert os.path.exists(os.path.join(d, f)), f"ConfigMap file {f} missing"
assert "entrypoint.sh" in gen[vols["config"]["configMap"]["name"]]
assert vols["run"]["emptyDir"]["medium"] == "Memory"
assert "secretName" in vols["secret"]["secret"]
for r in kus["resources"]:
    assert os.path.exists(os.path.join(d, r)), f"resource {r} missing"
print("ok: Service, StatefulSet, PodDisruptionBudget and kustomization agree")
PY

  # The Dockerfile installs the packages of the libraries sinter-tc links (as the build made
  # it: a sanitizer build also links its runtimes, which are not for the image).
  if command -v dpkg >/dev/null && command -v ldd >/dev/null; then
    local lib pkg
    for lib in $(ldd "$tc" | awk '/=> \//{print $3}'); do
      pkg=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | head -n 1 | cut -d: -f1) || true
      if [[ -z $pkg ]]; then
        pkg=$(dpkg -S "$lib" 2>/dev/null | head -n 1 | cut -d: -f1) || true
      fi
      case $pkg in
      '' | libc6 | libgcc-s1 | libstdc++6 | libasan* | libubsan* | libmbed*) continue ;;
      esac
      grep -qw -- "$pkg" "$dir/Dockerfile" || fail "Dockerfile does not install $pkg ($lib)"
    done
    ok "Dockerfile installs every runtime package sinter-tc links"
  fi
}

case $part in
config) part_config ;;
systemd) part_systemd ;;
kubernetes) part_kubernetes ;;
*) fail "unknown part $part" ;;
esac
echo "deploy_$part: passed"
