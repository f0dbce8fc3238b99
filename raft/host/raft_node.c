/*
 * raft-node — one process hosting G raft groups of a replicated key/value map, for the loopback
 * cluster tests and benchmarks.
 *
 * Usage:
 *   raft-node --id N --listen tcp://127.0.0.1:P --data DIR --client-listen tcp://127.0.0.1:Q
 *             [--peer ID=URL]... [--groups G] [--bootstrap] [--tick-ms MS] [--balance-leaders]
 *             [--snapshot-every N] [--snapshot-trailing N] [--segment-size BYTES]
 *             [--log-level 0..3] [--tls-cert FILE --tls-ca FILE [--tls-server-name NAME]]
 *   --bootstrap: a founding member; on a fresh data dir every group starts with this node and the
 *   --peer nodes as voters. A node joining later starts without it and is added with ADD.
 *   --balance-leaders: the host's balance_leaders option (sinter/raft_host.h): this node hands
 *   leadership of group g to the voter at position g mod n of the voters sorted by id when that
 *   voter is live and caught up, so with G >= n groups leaders spread over the nodes without
 *   TRANSFER requests. Every node should get it (a node without it keeps what it wins).
 *   --tls-cert (PEM with this node's certificate and key) and --tls-ca (the CA peers chain to)
 *   switch node-to-node TLS on; --listen and every --peer URL are then tls+tcp:// (the raft
 *   host refuses a mix). The control socket stays plain: it is for tests on loopback.
 *   A malformed or out-of-range value is refused with a message naming the flag.
 *
 * Control interface: an nng REP socket on --client-listen; one text request, one text reply.
 *   PUT g key value      replicate key=value in group g     -> OK <index>
 *   GET g key            linearizable read (read-index)      -> OK <value> | NOTFOUND
 *   LOCAL g key          this replica's applied state (stale) -> OK <value> | NOTFOUND
 *   KEYS g               number of keys in this replica       -> OK <n>
 *   STATUS               one line per group and per peer:
 *       node <id> ticks <rounds>
 *       group <g> role <r> leader <id> term <t> commit <c> applied <a> last <l> snap <s>
 *             taken <n> installed <n> sent <n> voters <a,b,..> learners <a,..> error <name>
 *       peer <id> connected <0|1> hb_frames <n> beats <n> tx_frames <n> rx_hb_frames <n>
 *   PEER id url          make a node addressable (before ADD) -> OK
 *   ADD g id learner|voter   membership change (voter also promotes a learner) -> OK <index>
 *   REMOVE g id          -> OK <index>
 *   TRANSFER g id        start leadership transfer          -> OK
 *   SNAPSHOT g           snapshot + compact now             -> OK <index>
 *   FAILSNAP g 0|1       1: this replica's state machine fails every snapshot save from now on
 *                        (tests the host's backoff); 0: back to normal -> OK
 * Errors: "NOTLEADER <leader id> <leader url or ->" or "ERR <SINTER_E...>".
 * Values and keys are single tokens (no spaces), up to 1024 bytes.
 *
 * Logs go to stderr, one line each with level, node and group. SIGTERM / SIGINT stop cleanly.
 * A group that cannot start (its store is corrupt or unreadable) makes the node exit with status 1
 * after an "ERROR ... group <g> did not start: <store's message>" line.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "sinter/raft_host.h"

#define MAX_PEERS    64
#define N_WORKERS    8
#define MAX_TOKEN    1024
#define REQ_WAIT_SEC 20

/* ---- the replicated KV ---------------------------------------------------------------------- */

struct kv_item {
    struct kv_item *next;
    char *key;
    char *val;
};

struct kv {
    pthread_mutex_t mu; /* the loop applies; control workers read LOCAL / KEYS */
    struct kv_item **b;
    size_t nb, n;
    uint64_t applied; /* index of the last entry applied or snapshot loaded (loop thread only) */
    bool fail_snap;   /* FAILSNAP: snapshot saves fail (atomic: set by workers, read by helpers) */
};

static struct kv *g_kv;
static uint32_t g_groups = 1;
static sinter_raft_id g_self;

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    }
    return h;
}

static void kv_clear(struct kv *kv)
{
    for (size_t i = 0; i < kv->nb; i++) {
        struct kv_item *it = kv->b[i];
        while (it != NULL) {
            struct kv_item *n = it->next;
            free(it->key);
            free(it->val);
            free(it);
            it = n;
        }
        kv->b[i] = NULL;
    }
    kv->n = 0;
}

static int kv_put(struct kv *kv, const char *key, size_t klen, const char *val, size_t vlen)
{
    if (kv->n >= kv->nb) {
        size_t nb = kv->nb ? kv->nb * 2 : 64;
        struct kv_item **b = calloc(nb, sizeof *b);
        if (b == NULL) {
            return SINTER_ENOMEM;
        }
        for (size_t i = 0; i < kv->nb; i++) {
            struct kv_item *it = kv->b[i];
            while (it != NULL) {
                struct kv_item *n = it->next;
                size_t j = fnv(it->key) % nb;
                it->next = b[j];
                b[j] = it;
                it = n;
            }
        }
        free(kv->b);
        kv->b = b;
        kv->nb = nb;
    }
    char *k = strndup(key, klen);
    char *v = strndup(val, vlen);
    if (k == NULL || v == NULL) {
        free(k);
        free(v);
        return SINTER_ENOMEM;
    }
    size_t j = fnv(k) % kv->nb;
    for (struct kv_item *it = kv->b[j]; it != NULL; it = it->next) {
        if (strcmp(it->key, k) == 0) {
            free(it->val);
            it->val = v;
            free(k);
            return SINTER_OK;
        }
    }
    struct kv_item *it = malloc(sizeof *it);
    if (it == NULL) {
        free(k);
        free(v);
        return SINTER_ENOMEM;
    }
    it->key = k;
    it->val = v;
    it->next = kv->b[j];
    kv->b[j] = it;
    kv->n++;
    return SINTER_OK;
}

/* Copies the value of key into out (NUL-terminated); false if absent. Caller holds kv->mu. */
static bool kv_get(struct kv *kv, const char *key, char *out, size_t cap)
{
    if (kv->nb == 0) {
        return false;
    }
    for (struct kv_item *it = kv->b[fnv(key) % kv->nb]; it != NULL; it = it->next) {
        if (strcmp(it->key, key) == 0) {
            snprintf(out, cap, "%s", it->val);
            return true;
        }
    }
    return false;
}

/* Entry: u16 key length (LE), key, value. The host passes every committed index, NOOP and CONFIG
 * entries with len 0 (sinter/raft_host.h); we note the index of each, so that sm_prepare can check
 * the host's contract: a snapshot "at index i" is asked for exactly when the state is at i. */
static int sm_apply(void *arg, uint32_t group, const struct sinter_raft_host_entry *e, size_t n)
{
    (void)arg;
    struct kv *kv = &g_kv[group];
    pthread_mutex_lock(&kv->mu);
    int rc = SINTER_OK;
    for (size_t i = 0; i < n && rc == SINTER_OK; i++) {
        kv->applied = e[i].index;
        if (e[i].len < 2) {
            continue; /* not a command (len 0), or not ours: ignore, identically on every replica */
        }
        size_t kl = (size_t)e[i].data[0] | (size_t)e[i].data[1] << 8;
        if (kl + 2 > e[i].len) {
            continue;
        }
        rc = kv_put(kv, (const char *)e[i].data + 2, kl, (const char *)e[i].data + 2 + kl,
                    e[i].len - 2 - kl);
    }
    pthread_mutex_unlock(&kv->mu);
    return rc;
}

struct snapbuf {
    uint8_t *p;
    size_t len, cap;
};

static int sb_put(struct snapbuf *s, const void *d, size_t n)
{
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n) {
            cap *= 2;
        }
        uint8_t *p = realloc(s->p, cap);
        if (p == NULL) {
            return SINTER_ENOMEM;
        }
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->len, d, n);
    s->len += n;
    return SINTER_OK;
}

static void le32(uint8_t *b, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        b[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t rd32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* The consistent copy is the serialised map itself: a memcpy-speed pass on the loop thread; the
 * slow part (writing and fsyncing) happens on the helper. Format: count u32, then per item
 * klen u32, vlen u32, key, value. */
static void *sm_prepare(void *arg, uint32_t group, uint64_t index)
{
    (void)arg;
    struct kv *kv = &g_kv[group];
    if (index != kv->applied) {
        /* A copy of state at kv->applied published as a snapshot for `index` would lose (or
         * double) entries on every node that loads it: refuse, as a real state machine must. */
        fprintf(stderr,
                "WARN raft-node[%" PRIu64 "] g%u: snapshot asked for index %" PRIu64
                ", state at %" PRIu64 ": refused\n",
                g_self, group, index, kv->applied);
        return NULL;
    }
    struct snapbuf *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    uint8_t b[8];
    pthread_mutex_lock(&kv->mu);
    le32(b, (uint32_t)kv->n);
    int rc = sb_put(s, b, 4);
    for (size_t i = 0; i < kv->nb && rc == SINTER_OK; i++) {
        for (struct kv_item *it = kv->b[i]; it != NULL && rc == SINTER_OK; it = it->next) {
            size_t kl = strlen(it->key), vl = strlen(it->val);
            le32(b, (uint32_t)kl);
            le32(b + 4, (uint32_t)vl);
            rc = sb_put(s, b, 8);
            if (rc == SINTER_OK) {
                rc = sb_put(s, it->key, kl);
            }
            if (rc == SINTER_OK) {
                rc = sb_put(s, it->val, vl);
            }
        }
    }
    pthread_mutex_unlock(&kv->mu);
    if (rc != SINTER_OK) {
        free(s->p);
        free(s);
        return NULL;
    }
    return s;
}

static int sm_save(void *arg, uint32_t group, void *copy, struct sinter_raft_host_snap_writer *w)
{
    (void)arg;
    struct snapbuf *s = copy;
    if (__atomic_load_n(&g_kv[group].fail_snap, __ATOMIC_ACQUIRE)) {
        return SINTER_EIO;
    }
    return sinter_raft_host_snap_write(w, s->p, s->len);
}

static void sm_release(void *arg, uint32_t group, void *copy)
{
    (void)arg;
    (void)group;
    struct snapbuf *s = copy;
    if (s != NULL) {
        free(s->p);
        free(s);
    }
}

static int sm_load(void *arg, uint32_t group, uint64_t index,
                   struct sinter_raft_host_snap_reader *r)
{
    (void)arg;
    struct snapbuf s = {0};
    uint8_t buf[65536];
    for (;;) {
        size_t n = 0;
        int rc = sinter_raft_host_snap_read(r, buf, sizeof buf, &n);
        if (rc != SINTER_OK) {
            free(s.p);
            return rc;
        }
        if (n == 0) {
            break;
        }
        if (sb_put(&s, buf, n) != SINTER_OK) {
            free(s.p);
            return SINTER_ENOMEM;
        }
    }
    struct kv *kv = &g_kv[group];
    pthread_mutex_lock(&kv->mu);
    kv_clear(kv);
    int rc = s.len >= 4 ? SINTER_OK : SINTER_ECORRUPT;
    size_t off = 4;
    uint32_t count = rc == SINTER_OK ? rd32(s.p) : 0;
    for (uint32_t i = 0; i < count && rc == SINTER_OK; i++) {
        if (off + 8 > s.len) {
            rc = SINTER_ECORRUPT;
            break;
        }
        size_t kl = rd32(s.p + off), vl = rd32(s.p + off + 4);
        off += 8;
        if (kl > s.len - off || vl > s.len - off - kl) {
            rc = SINTER_ECORRUPT;
            break;
        }
        rc = kv_put(kv, (const char *)s.p + off, kl, (const char *)s.p + off + kl, vl);
        off += kl + vl;
    }
    kv->applied = index;
    pthread_mutex_unlock(&kv->mu);
    free(s.p);
    return rc;
}

static void sm_fill(void *arg, uint32_t group, struct sinter_raft_host_sm *out)
{
    (void)group;
    memset(out, 0, sizeof *out);
    out->apply = sm_apply;
    out->snapshot_prepare = sm_prepare;
    out->snapshot_save = sm_save;
    out->snapshot_release = sm_release;
    out->snapshot_load = sm_load;
    out->arg = arg;
}

/* ---- control interface ---------------------------------------------------------------------- */

static struct sinter_raft_host *g_host;
static pthread_mutex_t g_peers_mu = PTHREAD_MUTEX_INITIALIZER;
static sinter_raft_id g_peer_ids[MAX_PEERS];
static size_t g_n_peers;

/* One outstanding host request. Two references: the worker and the host callback; the last one
 * frees it, so a worker that gives up waiting never leaves the callback a dangling pointer. */
struct req {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool done;
    int rc;
    uint64_t index;
    sinter_raft_id leader;
    char url[256];
    uint32_t group;
    char key[MAX_TOKEN + 1];
    bool found;
    char val[MAX_TOKEN + 1];
};

static void req_unref(struct req *r)
{
    pthread_mutex_lock(&r->mu);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (last) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        free(r);
    }
}

static void req_done(void *arg, int rc, uint64_t index, sinter_raft_id leader, const char *url)
{
    struct req *r = arg;
    if (rc == SINTER_OK && r->key[0] != '\0') {
        /* A read callback: the local state is now linearizable (raft_host.h). */
        struct kv *kv = &g_kv[r->group];
        pthread_mutex_lock(&kv->mu);
        r->found = kv_get(kv, r->key, r->val, sizeof r->val);
        pthread_mutex_unlock(&kv->mu);
    }
    pthread_mutex_lock(&r->mu);
    r->rc = rc;
    r->index = index;
    r->leader = leader;
    snprintf(r->url, sizeof r->url, "%s", url != NULL ? url : "-");
    r->done = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    req_unref(r);
}

static struct req *req_new(uint32_t group, const char *key)
{
    struct req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->refs = 2;
    r->group = group;
    if (key != NULL) {
        snprintf(r->key, sizeof r->key, "%s", key);
    }
    return r;
}

/* Waits for the callback (bounded) and formats the reply. Consumes the worker's reference. */
static void req_finish(struct req *r, int submit_rc, char *out, size_t cap, bool is_read)
{
    if (submit_rc != SINTER_OK) {
        r->refs = 1; /* the callback will never run */
        snprintf(out, cap, "ERR %s", sinter_errname(submit_rc));
        req_unref(r);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += REQ_WAIT_SEC;
    pthread_mutex_lock(&r->mu);
    while (!r->done) {
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    bool done = r->done;
    pthread_mutex_unlock(&r->mu);
    if (!done) {
        snprintf(out, cap, "ERR %s", sinter_errname(SINTER_ETIMEOUT));
    } else if (r->rc == SINTER_ENOTLEADER) {
        snprintf(out, cap, "NOTLEADER %" PRIu64 " %s", r->leader, r->url);
    } else if (r->rc != SINTER_OK) {
        snprintf(out, cap, "ERR %s", sinter_errname(r->rc));
    } else if (is_read) {
        if (r->found) {
            snprintf(out, cap, "OK %s", r->val);
        } else {
            snprintf(out, cap, "NOTFOUND");
        }
    } else {
        snprintf(out, cap, "OK %" PRIu64, r->index);
    }
    req_unref(r);
}

static size_t appendf(char *out, size_t cap, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static size_t appendf(char *out, size_t cap, size_t off, const char *fmt, ...)
{
    if (off >= cap) {
        return off;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + off, cap - off, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return off;
    }
    return off + (size_t)n < cap ? off + (size_t)n : cap - 1;
}

static void cmd_status(char *out, size_t cap)
{
    size_t off = appendf(out, cap, 0, "node %" PRIu64 " ticks %" PRIu64 "\n", g_self,
                         sinter_raft_host_ticks(g_host));
    for (uint32_t g = 0; g < g_groups; g++) {
        struct sinter_raft_host_status st;
        sinter_raft_host_status(g_host, g, &st);
        char voters[256] = "", learners[256] = "";
        size_t vo = 0, lo = 0;
        for (uint32_t i = 0; i < st.config.n; i++) {
            if (st.config.servers[i].suffrage == SINTER_RAFT_VOTER) {
                vo = appendf(voters, sizeof voters, vo, "%s%" PRIu64, vo ? "," : "",
                             st.config.servers[i].id);
            } else {
                lo = appendf(learners, sizeof learners, lo, "%s%" PRIu64, lo ? "," : "",
                             st.config.servers[i].id);
            }
        }
        off = appendf(out, cap, off,
                      "group %u role %s leader %" PRIu64 " term %" PRIu64 " commit %" PRIu64
                      " applied %" PRIu64 " last %" PRIu64 " snap %" PRIu64 " taken %" PRIu64
                      " installed %" PRIu64 " sent %" PRIu64 " voters %s learners %s error %s\n",
                      g, sinter_raft_role_name(st.role), st.leader, st.term, st.commit, st.applied,
                      st.last_index, st.snapshot_index, st.snapshots_taken, st.snapshots_installed,
                      st.snapshots_sent, vo ? voters : "-", lo ? learners : "-",
                      st.error ? sinter_errname(st.error) : "none");
    }
    pthread_mutex_lock(&g_peers_mu);
    for (size_t i = 0; i < g_n_peers; i++) {
        struct sinter_raft_transport_stats ts;
        if (sinter_raft_host_peer_stats(g_host, g_peer_ids[i], &ts) != SINTER_OK) {
            continue;
        }
        off = appendf(out, cap, off,
                      "peer %" PRIu64 " connected %d hb_frames %" PRIu64 " beats %" PRIu64
                      " tx_frames %" PRIu64 " rx_hb_frames %" PRIu64 "\n",
                      g_peer_ids[i], ts.connected ? 1 : 0, ts.tx_heartbeat_frames, ts.tx_beats,
                      ts.tx_frames, ts.rx_heartbeat_frames);
    }
    pthread_mutex_unlock(&g_peers_mu);
}

static bool parse_group(const char *s, uint32_t *g)
{
    char *end = NULL;
    unsigned long v = s != NULL ? strtoul(s, &end, 10) : 0;
    if (s == NULL || *s == '\0' || *end != '\0' || v >= g_groups) {
        return false;
    }
    *g = (uint32_t)v;
    return true;
}

static bool parse_id(const char *s, sinter_raft_id *id)
{
    char *end = NULL;
    unsigned long long v = s != NULL ? strtoull(s, &end, 10) : 0;
    if (s == NULL || *s == '\0' || *end != '\0' || v == 0) {
        return false;
    }
    *id = v;
    return true;
}

static void handle(char *in, char *out, size_t cap)
{
    char *save = NULL;
    char *cmd = strtok_r(in, " \r\n", &save);
    char *a1 = strtok_r(NULL, " \r\n", &save);
    char *a2 = strtok_r(NULL, " \r\n", &save);
    char *a3 = strtok_r(NULL, " \r\n", &save);
    uint32_t g = 0;
    sinter_raft_id id = 0;
    if (cmd == NULL) {
        snprintf(out, cap, "ERR SINTER_EINVAL");
    } else if (strcmp(cmd, "STATUS") == 0) {
        cmd_status(out, cap);
    } else if (strcmp(cmd, "PUT") == 0 && parse_group(a1, &g) && a2 != NULL && a3 != NULL &&
               strlen(a2) <= MAX_TOKEN && strlen(a3) <= MAX_TOKEN) {
        size_t kl = strlen(a2), vl = strlen(a3);
        uint8_t buf[2 + 2 * MAX_TOKEN];
        buf[0] = (uint8_t)kl;
        buf[1] = (uint8_t)(kl >> 8);
        memcpy(buf + 2, a2, kl);
        memcpy(buf + 2 + kl, a3, vl);
        struct req *r = req_new(g, NULL);
        if (r == NULL) {
            snprintf(out, cap, "ERR SINTER_ENOMEM");
            return;
        }
        int rc = sinter_raft_host_propose(g_host, g, buf, (uint32_t)(2 + kl + vl), req_done, r);
        req_finish(r, rc, out, cap, false);
    } else if (strcmp(cmd, "GET") == 0 && parse_group(a1, &g) && a2 != NULL &&
               strlen(a2) <= MAX_TOKEN) {
        struct req *r = req_new(g, a2);
        if (r == NULL) {
            snprintf(out, cap, "ERR SINTER_ENOMEM");
            return;
        }
        req_finish(r, sinter_raft_host_read(g_host, g, req_done, r), out, cap, true);
    } else if (strcmp(cmd, "LOCAL") == 0 && parse_group(a1, &g) && a2 != NULL) {
        char val[MAX_TOKEN + 1];
        pthread_mutex_lock(&g_kv[g].mu);
        bool found = kv_get(&g_kv[g], a2, val, sizeof val);
        pthread_mutex_unlock(&g_kv[g].mu);
        if (found) {
            snprintf(out, cap, "OK %s", val);
        } else {
            snprintf(out, cap, "NOTFOUND");
        }
    } else if (strcmp(cmd, "KEYS") == 0 && parse_group(a1, &g)) {
        pthread_mutex_lock(&g_kv[g].mu);
        size_t n = g_kv[g].n;
        pthread_mutex_unlock(&g_kv[g].mu);
        snprintf(out, cap, "OK %zu", n);
    } else if (strcmp(cmd, "PEER") == 0 && parse_id(a1, &id) && a2 != NULL) {
        int rc = id == g_self ? SINTER_OK : sinter_raft_host_add_peer(g_host, id, a2);
        if (rc == SINTER_OK && id != g_self) {
            pthread_mutex_lock(&g_peers_mu);
            if (g_n_peers < MAX_PEERS) {
                g_peer_ids[g_n_peers++] = id;
            }
            pthread_mutex_unlock(&g_peers_mu);
        }
        if (rc == SINTER_OK || rc == SINTER_EEXIST) {
            snprintf(out, cap, "OK");
        } else {
            snprintf(out, cap, "ERR %s", sinter_errname(rc));
        }
    } else if ((strcmp(cmd, "ADD") == 0 || strcmp(cmd, "REMOVE") == 0) && parse_group(a1, &g) &&
               parse_id(a2, &id)) {
        int change = SINTER_RAFT_REMOVE;
        if (strcmp(cmd, "ADD") == 0) {
            change = a3 != NULL && strcmp(a3, "voter") == 0 ? SINTER_RAFT_ADD_VOTER
                                                            : SINTER_RAFT_ADD_LEARNER;
        }
        struct req *r = req_new(g, NULL);
        if (r == NULL) {
            snprintf(out, cap, "ERR SINTER_ENOMEM");
            return;
        }
        req_finish(r, sinter_raft_host_change_member(g_host, g, id, change, req_done, r), out, cap,
                   false);
    } else if (strcmp(cmd, "TRANSFER") == 0 && parse_group(a1, &g) && parse_id(a2, &id)) {
        struct req *r = req_new(g, NULL);
        if (r == NULL) {
            snprintf(out, cap, "ERR SINTER_ENOMEM");
            return;
        }
        req_finish(r, sinter_raft_host_transfer(g_host, g, id, req_done, r), out, cap, false);
    } else if (strcmp(cmd, "SNAPSHOT") == 0 && parse_group(a1, &g)) {
        struct req *r = req_new(g, NULL);
        if (r == NULL) {
            snprintf(out, cap, "ERR SINTER_ENOMEM");
            return;
        }
        req_finish(r, sinter_raft_host_snapshot_now(g_host, g, req_done, r), out, cap, false);
    } else if (strcmp(cmd, "FAILSNAP") == 0 && parse_group(a1, &g) && a2 != NULL &&
               (strcmp(a2, "0") == 0 || strcmp(a2, "1") == 0)) {
        __atomic_store_n(&g_kv[g].fail_snap, a2[0] == '1', __ATOMIC_RELEASE);
        snprintf(out, cap, "OK");
    } else {
        snprintf(out, cap, "ERR SINTER_EINVAL");
    }
}

static nng_socket g_sock;
/* Held for reading by a worker from receiving a request to sending its reply, for writing by
 * main while it closes the socket: nng 1.5 panics on an nng_ctx_send racing nng_close. */
static pthread_rwlock_t g_stop_lock = PTHREAD_RWLOCK_INITIALIZER;
static bool g_stopping; /* under g_stop_lock */

/* Control workers are our own threads, so they may block waiting for the raft loop; nng's
 * threads never do. Each worker owns one REP context: N_WORKERS requests in flight. */
static void *worker_main(void *arg)
{
    (void)arg;
    nng_ctx ctx;
    nng_aio *aio = NULL;
    if (nng_ctx_open(&ctx, g_sock) != 0 || nng_aio_alloc(&aio, NULL, NULL) != 0) {
        return NULL;
    }
    size_t cap = 64 * 1024;
    char *out = malloc(cap);
    char in[4 * MAX_TOKEN];
    while (out != NULL) {
        nng_ctx_recv(ctx, aio);
        nng_aio_wait(aio);
        int e = nng_aio_result(aio);
        if (e == NNG_ECLOSED) {
            break;
        }
        if (e != 0) {
            continue;
        }
        nng_msg *m = nng_aio_get_msg(aio);
        pthread_rwlock_rdlock(&g_stop_lock);
        if (g_stopping) {
            pthread_rwlock_unlock(&g_stop_lock);
            nng_msg_free(m);
            break;
        }
        size_t len = nng_msg_len(m);
        if (len >= sizeof in) {
            len = sizeof in - 1;
        }
        memcpy(in, nng_msg_body(m), len);
        in[len] = '\0';
        out[0] = '\0';
        /* The host outlives every request: main stops it only after joining the workers, and
         * the host completes every request within its timeouts. */
        handle(in, out, cap);
        nng_msg_clear(m);
        if (nng_msg_append(m, out, strlen(out)) != 0) {
            nng_msg_free(m);
            pthread_rwlock_unlock(&g_stop_lock);
            continue;
        }
        nng_aio_set_msg(aio, m);
        nng_ctx_send(ctx, aio);
        nng_aio_wait(aio);
        if (nng_aio_result(aio) != 0) {
            nng_msg_free(nng_aio_get_msg(aio));
        }
        pthread_rwlock_unlock(&g_stop_lock);
    }
    free(out);
    nng_aio_free(aio);
    nng_ctx_close(ctx);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: raft-node --id N --listen URL --data DIR --client-listen URL "
                    "[--peer ID=URL]... [--groups G] [--bootstrap] [--tick-ms MS] "
                    "[--balance-leaders] "
                    "[--snapshot-every N] [--snapshot-trailing N] [--segment-size B] "
                    "[--log-level L] [--tls-cert FILE --tls-ca FILE [--tls-server-name NAME]]\n");
}

/* A decimal number in [lo, hi] for flag `name`, or a message and -1. */
static int num_arg(const char *name, const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (v[0] == '\0' || v[0] == '-' || *end != '\0' || errno != 0 || x < lo || x > hi) {
        fprintf(stderr, "raft-node: --%s: '%s' is not a number in %" PRIu64 "..%" PRIu64 "\n", name,
                v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

enum {
    O_ID = 1,
    O_LISTEN,
    O_DATA,
    O_CLIENT,
    O_PEER,
    O_GROUPS,
    O_BOOTSTRAP,
    O_TICK,
    O_SNAP_EVERY,
    O_SNAP_TRAILING,
    O_SEGMENT,
    O_LOG_LEVEL,
    O_TLS_CERT,
    O_TLS_CA,
    O_TLS_NAME,
    O_BALANCE,
};

/* Fills o, peers and *client_url from argv. Returns 0, or 2 after a message (usage error). */
static int parse_args(int argc, char **argv, struct sinter_raft_host_opts *o,
                      struct sinter_raft_host_peer *peers, size_t *n_peers, const char **client_url)
{
    static const struct option lo[] = {
        {"id", required_argument, NULL, O_ID},
        {"listen", required_argument, NULL, O_LISTEN},
        {"data", required_argument, NULL, O_DATA},
        {"client-listen", required_argument, NULL, O_CLIENT},
        {"peer", required_argument, NULL, O_PEER},
        {"groups", required_argument, NULL, O_GROUPS},
        {"bootstrap", no_argument, NULL, O_BOOTSTRAP},
        {"tick-ms", required_argument, NULL, O_TICK},
        {"snapshot-every", required_argument, NULL, O_SNAP_EVERY},
        {"snapshot-trailing", required_argument, NULL, O_SNAP_TRAILING},
        {"segment-size", required_argument, NULL, O_SEGMENT},
        {"log-level", required_argument, NULL, O_LOG_LEVEL},
        {"tls-cert", required_argument, NULL, O_TLS_CERT},
        {"tls-ca", required_argument, NULL, O_TLS_CA},
        {"tls-server-name", required_argument, NULL, O_TLS_NAME},
        {"balance-leaders", no_argument, NULL, O_BALANCE},
        {NULL, 0, NULL, 0},
    };
    opterr = 1; /* getopt names an unknown flag or a missing value itself */
    for (int ch; (ch = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        uint64_t x = 0;
        int bad = 0;
        switch (ch) {
        case O_ID:
            bad = num_arg("id", optarg, 1, UINT64_MAX, &o->id);
            break;
        case O_LISTEN:
            o->listen_url = optarg;
            break;
        case O_DATA:
            o->data_dir = optarg;
            break;
        case O_CLIENT:
            *client_url = optarg;
            break;
        case O_PEER: {
            const char *eq = strchr(optarg, '=');
            char idtext[24];
            size_t len = eq != NULL ? (size_t)(eq - optarg) : 0;
            if (eq == NULL || len == 0 || len >= sizeof idtext || eq[1] == '\0') {
                fprintf(stderr, "raft-node: --peer: '%s' is not ID=URL\n", optarg);
                return 2;
            }
            if (*n_peers == MAX_PEERS) {
                fprintf(stderr, "raft-node: more than %d --peer flags\n", MAX_PEERS);
                return 2;
            }
            memcpy(idtext, optarg, len);
            idtext[len] = '\0';
            bad = num_arg("peer", idtext, 1, UINT64_MAX, &x);
            peers[*n_peers].id = x;
            peers[*n_peers].url = eq + 1;
            *n_peers += bad == 0;
            break;
        }
        case O_GROUPS:
            bad = num_arg("groups", optarg, 1, SINTER_RAFT_HOST_MAX_GROUPS, &x);
            o->groups = (uint32_t)x;
            break;
        case O_BOOTSTRAP:
            o->bootstrap = true;
            break;
        case O_BALANCE:
            o->balance_leaders = true;
            break;
        case O_TICK:
            bad = num_arg("tick-ms", optarg, 1, 60000, &x);
            o->tick_ms = (uint32_t)x;
            break;
        case O_SNAP_EVERY:
            bad = num_arg("snapshot-every", optarg, 0, UINT64_MAX, &o->snapshot_every);
            break;
        case O_SNAP_TRAILING:
            bad = num_arg("snapshot-trailing", optarg, 0, UINT64_MAX, &o->snapshot_trailing);
            break;
        case O_SEGMENT:
            bad = num_arg("segment-size", optarg, 1, UINT32_MAX, &x);
            o->segment_size = (uint32_t)x;
            break;
        case O_LOG_LEVEL:
            bad = num_arg("log-level", optarg, 0, 3, &x);
            o->log_level = (int)x;
            break;
        case O_TLS_CERT:
            o->tls.cert_key_file = optarg;
            break;
        case O_TLS_CA:
            o->tls.ca_file = optarg;
            break;
        case O_TLS_NAME:
            o->tls.server_name = optarg;
            break;
        default:
            usage();
            return 2;
        }
        if (bad != 0) {
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "raft-node: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    const char *missing = o->id == 0              ? "--id"
                          : o->listen_url == NULL ? "--listen"
                          : o->data_dir == NULL   ? "--data"
                          : *client_url == NULL   ? "--client-listen"
                                                  : NULL;
    if (missing != NULL) {
        fprintf(stderr, "raft-node: %s is required\n", missing);
        usage();
        return 2;
    }
    if ((o->tls.cert_key_file == NULL) != (o->tls.ca_file == NULL) ||
        (o->tls.server_name != NULL && o->tls.cert_key_file == NULL)) {
        fprintf(stderr, "raft-node: TLS needs both --tls-cert and --tls-ca\n");
        return 2;
    }
    o->tls_enable = o->tls.cert_key_file != NULL;
    return 0;
}

int main(int argc, char **argv)
{
    struct sinter_raft_host_opts o;
    sinter_raft_host_opts_default(&o);
    struct sinter_raft_host_peer peers[MAX_PEERS];
    size_t n_peers = 0;
    const char *client_url = NULL;
    int prc = parse_args(argc, argv, &o, peers, &n_peers, &client_url);
    if (prc != 0) {
        return prc;
    }
    g_self = o.id;
    g_groups = o.groups;
    for (size_t i = 0; i < n_peers; i++) {
        g_peer_ids[g_n_peers++] = peers[i].id;
    }
    g_kv = calloc(o.groups, sizeof *g_kv);
    if (g_kv == NULL) {
        return 1;
    }
    for (uint32_t i = 0; i < o.groups; i++) {
        pthread_mutex_init(&g_kv[i].mu, NULL);
    }
    o.peers = peers;
    o.n_peers = n_peers;
    o.sm = sm_fill;
    o.sm_arg = NULL;

    /* Block the stop signals in every thread; main waits for them with sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = sinter_raft_host_start(&g_host, &o);
    if (rc != SINTER_OK) {
        fprintf(stderr, "ERROR raft-node[%" PRIu64 "]: cannot start: %s\n", o.id,
                sinter_strerror(rc));
        return 1;
    }
    /* The host keeps a group whose store did not open (ECORRUPT: durable entries damaged; EIO)
     * in the failed state and runs the others. A node is one replica of every group, so running
     * on with one of them dead would look healthy from outside while that group silently lacks a
     * member: stop here, naming the group and the store's message (file, offset), for an
     * operator to repair or replace the data. start publishes every group's status first. */
    int failed = 0;
    for (uint32_t g = 0; g < o.groups; g++) {
        struct sinter_raft_host_status st;
        if (sinter_raft_host_status(g_host, g, &st) == SINTER_OK && st.error != SINTER_OK) {
            fprintf(stderr, "ERROR raft-node[%" PRIu64 "]: group %u did not start: %s (%s)\n", o.id,
                    g, st.error_msg, sinter_errname(st.error));
            failed++;
        }
    }
    if (failed > 0) {
        sinter_raft_host_stop(g_host);
        return 1;
    }
    int e = nng_rep0_open(&g_sock);
    if (e == 0) {
        e = nng_listen(g_sock, client_url, NULL, 0);
    }
    if (e != 0) {
        fprintf(stderr, "ERROR raft-node[%" PRIu64 "]: control socket %s: %s\n", o.id, client_url,
                nng_strerror(e));
        sinter_raft_host_stop(g_host);
        return 1;
    }
    pthread_t workers[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++) {
        pthread_create(&workers[i], NULL, worker_main, NULL);
    }
    fprintf(stderr, "INFO raft-node[%" PRIu64 "]: ready, control on %s\n", o.id, client_url);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "INFO raft-node[%" PRIu64 "]: signal %d, stopping\n", o.id, sig);
    pthread_rwlock_wrlock(&g_stop_lock); /* waits for requests in progress to be answered */
    g_stopping = true;
    nng_close(g_sock);
    pthread_rwlock_unlock(&g_stop_lock);
    for (int i = 0; i < N_WORKERS; i++) {
        pthread_join(workers[i], NULL);
    }
    sinter_raft_host_stop(g_host);
    for (uint32_t i = 0; i < o.groups; i++) {
        kv_clear(&g_kv[i]);
        free(g_kv[i].b);
    }
    free(g_kv);
    return 0;
}
