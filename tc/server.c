/*
 * The sinter-tc server: raft groups of transaction state machines and the client RPC service
 * (see tc/server.h).
 *
 * Threads. nng callback threads run the RPC handler: it validates, encodes a command and calls
 * sinter_raft_host_propose() / _read(), which only enqueue, then returns; it never waits for raft
 * (DESIGN.md "Handlers never block nng's callback threads"). The raft host's loop thread applies
 * committed entries to the fsm and then runs the proposal completions, which send the replies.
 * The fsm is used by the loop thread only (tc/fsm.h: one thread at a time), except
 * sinter_tc_fsm_snapshot_to() on the host's snapshot helper thread, which the fsm allows.
 *
 * Results. The host applies a batch of committed entries and, in the same ready, resolves the
 * proposals among them (raft/host/host.c handle_ready: apply, then resolve_props, which already
 * checked index AND term of each proposal against the committed entry). So the per-entry results
 * of the last applied batch, kept per group and looked up by index, are exactly the answers of the
 * proposals completed right after it.
 *
 * Exactly once. The fsm writes last_applied_index in the same SQLite transaction as the batch and
 * skips entries at or below it, so when the host replays its log after a restart (from its
 * newest snapshot), nothing is applied twice. Client retries are deduplicated by the fsm's client
 * sessions: every command carries the request prefix's (client id, seq), through any leader.
 */
#include "tc/server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sinter/error.h"
#include "sinter/proto.h"
#include "sinter/raft_host.h"
#include "sinter/transport.h"
#include "sinter/types.h"
#include "tc/command.h"
#include "tc/fsm.h"
#include "tc/http.h"
#include "tc/log.h"
#include "tc/metrics.h"
#include "tc/server_int.h"
#include "tc/worker.h"

#define SERVER_VERSION   "sinter-tc/0.1"
#define SNAP_CHUNK_BYTES 65536u

/* ---------------------------------------------------------------------------------------------
 * Types (the server's own structures are in tc/server_int.h, shared with its other parts)
 */

/* One request waiting for the raft host. */
struct call {
    struct sinter_tc_server *s;
    struct sinter_transport_request *req;
    uint16_t code; /* request code */
    uint32_t group;
    struct sinter_xid xid; /* GlobalStatus: the xid to read; commit / rollback: the global */
    bool wait_phase2;      /* SINTER_PROTO_END_WAIT_PHASE2: park the reply until the global ends */
    uint32_t wait_ms;
    uint64_t t_start; /* sinter_tc_mono_ns() when the handler started on it (write_reply_ns) */
};

/* ---------------------------------------------------------------------------------------------
 * Helpers
 */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static struct sinter_tc_bytes tcb(struct sinter_proto_str x)
{
    return (struct sinter_tc_bytes){(const uint8_t *)x.ptr, x.len};
}

static struct sinter_tc_bytes tcb_bytes(struct sinter_proto_bytes x)
{
    return (struct sinter_tc_bytes){x.ptr, x.len};
}

static void reply_error(struct sinter_transport_request *req, int rc, const char *text)
{
    sinter_transport_reply_error(req, rc, text);
}

/* Raft paper section 8: a follower redirects the client to the leader it knows. The address is
 * the leader's CLIENT URL (the raft URL would be useless to a TM or RM). */
static void reply_not_leader(struct sinter_tc_server *s, struct sinter_transport_request *req,
                             uint32_t group, sinter_raft_id leader)
{
    struct tc_group *g = &s->groups[group];
    pthread_mutex_lock(&g->role_mu);
    uint64_t term = g->term;
    if (leader == 0) {
        leader = g->leader;
    }
    pthread_mutex_unlock(&g->role_mu);
    const char *url = sinter_tc_config_client_url(s->cfg, leader);
    char text[96];
    snprintf(text, sizeof text, "not the leader of group %u", group);
    struct sinter_proto_msg r;
    memset(&r, 0, sizeof r);
    r.code = SINTER_MSG_ERROR;
    r.rs.result = SINTER_ENOTLEADER;
    r.rs.message = sinter_proto_str_c(text);
    r.u.error.leader_id = url != NULL ? leader : 0;
    r.u.error.leader_addr = sinter_proto_str_c(url);
    r.u.error.group = group;
    r.u.error.term = term;
    sinter_transport_reply(req, &r);
}

/* ---------------------------------------------------------------------------------------------
 * State machine adapter (raft loop thread unless said otherwise)
 */

static int sm_apply(void *arg, uint32_t group, const struct sinter_raft_host_entry *e, size_t n)
{
    struct tc_group *g = &((struct sinter_tc_server *)arg)->groups[group];
    if (n == 0) {
        return SINTER_OK;
    }
    if (n > g->cap) {
        struct sinter_tc_entry *ne = realloc(g->ents, n * sizeof *ne);
        if (ne == NULL) {
            return SINTER_ENOMEM;
        }
        g->ents = ne;
        struct sinter_tc_result *nr = realloc(g->res, n * sizeof *nr);
        if (nr == NULL) {
            return SINTER_ENOMEM;
        }
        g->res = nr;
        g->cap = n;
    }
    /* NOOP and CONFIG entries come with len 0 (sinter/raft_host.h), which the fsm counts as
     * applied without a command: its last applied index is the host's, as a snapshot needs. */
    for (size_t i = 0; i < n; i++) {
        g->ents[i] = (struct sinter_tc_entry){e[i].index, e[i].term, e[i].data, e[i].len};
    }
    g->n_last = 0;
    /* One SQLite transaction for the whole batch: one fsync-free commit per ready, the fsm's
     * last_applied moving with the data (tc/fsm.h "exactly once"). */
    int rc = sinter_tc_fsm_apply_batch(g->fsm, g->ents, n, g->res);
    if (rc != SINTER_OK) {
        /* The host stops the group: replicas must stay identical, so an entry this replica
         * cannot apply (newer format, database error) is never skipped. */
        sinter_tc_log(SINTER_TC_LOG_ERROR, group, NULL,
                      "apply of entries %" PRIu64 "..%" PRIu64 " failed: %s", e[0].index,
                      e[n - 1].index, sinter_errname(rc));
        return rc;
    }
    g->n_last = n;
    /* Every replica: parked WAIT_PHASE2 replies; the leader: its phase-2 driver, so work reaches
     * a waiting poller in the same loop pass as the decision is applied. */
    sinter_tc_worker_applied(g, g->ents, g->res, n);
    if (sinter_tc_log_enabled(SINTER_TC_LOG_DEBUG)) {
        for (size_t i = 0; i < n; i++) {
            const struct sinter_tc_result *r = &g->res[i];
            if (e[i].len == 0 || r->skipped) {
                continue;
            }
            sinter_tc_log(SINTER_TC_LOG_DEBUG, group, r->xid.index != 0 ? &r->xid : NULL,
                          "applied entry %" PRIu64 ": rc=%s status=%s%s", e[i].index,
                          sinter_errname(r->rc), sinter_global_status_name(r->status),
                          r->duplicate ? " (duplicate request)" : "");
        }
    }
    return SINTER_OK;
}

const struct sinter_tc_result *sinter_tc_last_result(const struct tc_group *g, uint64_t index)
{
    size_t lo = 0, hi = g->n_last;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->ents[mid].index < index) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < g->n_last && g->ents[lo].index == index ? &g->res[lo] : NULL;
}

struct snap_job {
    uint64_t index;
};

static void *sm_snapshot_prepare(void *arg, uint32_t group, uint64_t index)
{
    (void)arg;
    (void)group;
    /* Nothing to copy on the loop: the fsm's snapshot_to reads a WAL snapshot through its own
     * connection on the helper thread. That copy may include entries applied after `index`; it
     * is still a correct snapshot for `index`, because those entries are committed and the fsm
     * skips every entry at or below its own last applied index when the log replays them. */
    struct snap_job *j = malloc(sizeof *j);
    if (j != NULL) {
        j->index = index;
    }
    return j;
}

static void snap_path(const struct tc_group *g, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", g->dir, name);
}

/* Helper thread. */
static int sm_snapshot_save(void *arg, uint32_t group, void *copy,
                            struct sinter_raft_host_snap_writer *w)
{
    struct tc_group *g = &((struct sinter_tc_server *)arg)->groups[group];
    struct snap_job *j = copy;
    char path[PATH_MAX + 32];
    snap_path(g, "tc-snapshot.sqlite", path, sizeof path);
    uint64_t idx = 0, term = 0;
    pthread_mutex_lock(&g->snap_mu);
    int rc = sinter_tc_fsm_snapshot_to(g->fsm, path, &idx, &term, NULL, NULL);
    pthread_mutex_unlock(&g->snap_mu);
    if (rc == SINTER_OK && idx < j->index) {
        rc = SINTER_EINTERNAL; /* the fsm lost applied entries: never publish that */
    }
    int fd = rc == SINTER_OK ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (rc == SINTER_OK && fd < 0) {
        rc = SINTER_EIO;
    }
    uint8_t *buf = rc == SINTER_OK ? malloc(SNAP_CHUNK_BYTES) : NULL;
    if (rc == SINTER_OK && buf == NULL) {
        rc = SINTER_ENOMEM;
    }
    while (rc == SINTER_OK) {
        ssize_t n = read(fd, buf, SNAP_CHUNK_BYTES);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = SINTER_EIO;
        } else if (n == 0) {
            break;
        } else {
            rc = sinter_raft_host_snap_write(w, buf, (size_t)n);
        }
    }
    free(buf);
    if (fd >= 0) {
        close(fd);
    }
    unlink(path);
    sinter_tc_log(rc == SINTER_OK ? SINTER_TC_LOG_INFO : SINTER_TC_LOG_WARN, group, NULL,
                  "snapshot for index %" PRIu64 " (state at %" PRIu64 "): %s", j->index, idx,
                  sinter_errname(rc));
    return rc;
}

static void sm_snapshot_release(void *arg, uint32_t group, void *copy)
{
    (void)arg;
    (void)group;
    free(copy);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return SINTER_EIO;
        }
        p += w;
        n -= (size_t)w;
    }
    return SINTER_OK;
}

static int sm_snapshot_load(void *arg, uint32_t group, uint64_t index,
                            struct sinter_raft_host_snap_reader *r)
{
    struct tc_group *g = &((struct sinter_tc_server *)arg)->groups[group];
    uint64_t have = sinter_tc_fsm_last_applied(g->fsm);
    if (have >= index) {
        /* On restart the host loads its newest snapshot first; our database survived the
         * restart and already holds every committed entry up to `have` >= index. Installing
         * the older copy would only roll the state back and re-apply the difference. */
        sinter_tc_log(SINTER_TC_LOG_INFO, group, NULL,
                      "snapshot %" PRIu64 " not loaded: state already at %" PRIu64, index, have);
        return SINTER_OK;
    }
    char path[PATH_MAX + 32];
    snap_path(g, "tc-install.sqlite", path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return SINTER_EIO;
    }
    uint8_t *buf = malloc(SNAP_CHUNK_BYTES);
    int rc = buf != NULL ? SINTER_OK : SINTER_ENOMEM;
    while (rc == SINTER_OK) {
        size_t n = 0;
        rc = sinter_raft_host_snap_read(r, buf, SNAP_CHUNK_BYTES, &n);
        if (rc != SINTER_OK || n == 0) {
            break;
        }
        rc = write_all(fd, buf, n);
    }
    free(buf);
    if (rc == SINTER_OK && fsync(fd) != 0) {
        rc = SINTER_EIO;
    }
    close(fd);
    if (rc == SINTER_OK) {
        pthread_mutex_lock(&g->snap_mu);
        rc = sinter_tc_fsm_install_from(g->fsm, path);
        pthread_mutex_unlock(&g->snap_mu);
    }
    unlink(path);
    g->n_last = 0;
    sinter_tc_log(rc == SINTER_OK ? SINTER_TC_LOG_INFO : SINTER_TC_LOG_ERROR, group, NULL,
                  "installed snapshot %" PRIu64 " (state now at %" PRIu64 "): %s", index,
                  sinter_tc_fsm_last_applied(g->fsm), sinter_errname(rc));
    return rc;
}

static void sm_on_role(void *arg, uint32_t group, uint32_t role, sinter_raft_id leader,
                       uint64_t term)
{
    struct tc_group *g = &((struct sinter_tc_server *)arg)->groups[group];
    pthread_mutex_lock(&g->role_mu);
    bool changed = g->role != role || g->leader != leader;
    g->role = role;
    g->leader = leader;
    g->term = term;
    pthread_mutex_unlock(&g->role_mu);
    /* Leader-only workers start on every new leader and stop when it steps down; a new leader
     * continues from the replicated state (tc/worker.h). */
    sinter_tc_worker_role(g, role, term);
    if (changed) {
        if (leader != 0) {
            atomic_fetch_add_explicit(&g->srv->metrics.leader_changes[group], 1,
                                      memory_order_relaxed);
        }
        sinter_tc_log(SINTER_TC_LOG_INFO, group, NULL, "role %s, leader %" PRIu64 ", term %" PRIu64,
                      sinter_raft_role_name(role), leader, term);
    }
}

static void sm_tick(void *arg, uint32_t group)
{
    sinter_tc_worker_tick(&((struct sinter_tc_server *)arg)->groups[group]);
}

static void sm_fill(void *arg, uint32_t group, struct sinter_raft_host_sm *out)
{
    (void)group;
    memset(out, 0, sizeof *out);
    out->apply = sm_apply;
    out->snapshot_prepare = sm_snapshot_prepare;
    out->snapshot_save = sm_snapshot_save;
    out->snapshot_release = sm_snapshot_release;
    out->snapshot_load = sm_snapshot_load;
    out->on_role = sm_on_role;
    out->on_tick = sm_tick;
    out->arg = arg;
}

static void host_log(void *arg, int level, uint32_t group, const char *msg)
{
    (void)arg;
    sinter_tc_log(level, group == UINT32_MAX ? SINTER_TC_NO_GROUP : group, NULL, "raft: %s", msg);
}

/* ---------------------------------------------------------------------------------------------
 * Replies to proposals and reads (raft loop thread, or the stopping thread with ESHUTDOWN)
 */

/* A Phase2Report's result from its BRANCH_RESULT's: ESTATE on a branch that already has a
 * phase-2 end means a repeated delivery's report (a retry after a lease expiry or a leader
 * change), which is done, as docs/phase2-protocol.md says. */
static int phase2_report_rc(const struct sinter_tc_result *r)
{
    if (r->rc == SINTER_ESTATE && r->branch_status >= SINTER_BS_PHASE2_COMMITTED &&
        !sinter_tc_branch_needs_phase2(r->branch_status)) {
        return SINTER_OK;
    }
    return r->rc;
}

static void reply_result(struct call *c, const struct sinter_tc_result *r)
{
    struct sinter_proto_msg m;
    memset(&m, 0, sizeof m);
    m.code = sinter_proto_reply_code(c->code);
    m.rs.result = r->rc;
    const char *text = NULL;
    switch (c->code) {
    case SINTER_MSG_GLOBAL_BEGIN:
        if (r->rc == SINTER_OK) {
            m.u.global_begin_result.xid = r->xid;
        }
        break;
    case SINTER_MSG_BRANCH_REGISTER:
        if (r->rc == SINTER_OK) {
            m.u.branch_register_result.branch_id = r->branch_id;
        } else if (r->rc == SINTER_ESTATE) {
            /* Seata: "Could not register branch into global session xid = ... status = ...,
             * cause by globalSession not active" */
            text = "global transaction is no longer Begin: branch not registered";
        }
        break;
    case SINTER_MSG_BRANCH_REPORT:
        break;
    case SINTER_MSG_PHASE2_REPORT:
        m.rs.result = phase2_report_rc(r);
        break;
    case SINTER_MSG_GLOBAL_COMMIT:
    case SINTER_MSG_GLOBAL_ROLLBACK:
    case SINTER_MSG_GLOBAL_REPORT:
        m.u.global_status_result.global_status = r->status;
        if (r->rc == SINTER_ESTATE) {
            text = "global transaction already decided the other way";
        }
        break;
    default:
        break;
    }
    if (r->rc == SINTER_ENOTFOUND) {
        text = "unknown xid or branch";
        if (c->code == SINTER_MSG_GLOBAL_COMMIT || c->code == SINTER_MSG_GLOBAL_ROLLBACK ||
            c->code == SINTER_MSG_GLOBAL_REPORT) {
            m.u.global_status_result.global_status = SINTER_GS_FINISHED;
        }
    } else if (r->rc == SINTER_ESTALE) {
        text = "request older than the client session window: its answer is forgotten";
    } else if (r->rc == SINTER_EINVAL) {
        text = "request refused (sequence number reused for a different request?)";
    }
    m.rs.message = sinter_proto_str_c(text);
    sinter_transport_reply(c->req, &m);
}

static void on_proposed(void *arg, int rc, uint64_t index, sinter_raft_id leader,
                        const char *leader_url)
{
    (void)leader_url; /* a raft URL; the client needs the leader's client URL */
    struct call *c = arg;
    struct tc_group *g = &c->s->groups[c->group];
    if (rc == SINTER_OK) {
        const struct sinter_tc_result *r = sinter_tc_last_result(g, index);
        if (r != NULL) {
            if (r->rc == SINTER_OK && !r->duplicate &&
                (c->code == SINTER_MSG_GLOBAL_BEGIN || c->code == SINTER_MSG_GLOBAL_COMMIT ||
                 c->code == SINTER_MSG_GLOBAL_ROLLBACK)) {
                sinter_tc_log(SINTER_TC_LOG_INFO, c->group, &r->xid, "%s: %s",
                              sinter_proto_code_name(c->code),
                              sinter_global_status_name(r->status));
            }
            if (c->code == SINTER_MSG_PHASE2_REPORT && r->rc == SINTER_OK) {
                /* Durable: a retryable outcome may now reschedule its branch, if it answers the
                 * delivery in flight (docs/phase2-protocol.md; the request is valid until the
                 * reply below). */
                sinter_tc_worker_reported(g,
                                          &sinter_transport_request_msg(c->req)->u.phase2_report);
            }
            if (c->wait_phase2 && r->rc == SINTER_OK) {
                /* The decision is durable; the caller asked to wait for phase 2 as well. */
                sinter_tc_end_wait(g, c->req, c->code, c->xid, c->wait_ms);
            } else {
                reply_result(c, r);
                /* What the RPC layer adds to a write, against the host's proposal stage
                 * counters (docs/operations.md). */
                struct sinter_tc_metrics *mt = &c->s->metrics;
                atomic_fetch_add_explicit(&mt->write_replies, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&mt->write_reply_ns, sinter_tc_mono_ns() - c->t_start,
                                          memory_order_relaxed);
            }
        } else {
            /* Cannot happen with the host's apply-then-resolve order; if it ever does, the
             * outcome is durable and a retry with the same seq returns it. */
            reply_error(c->req, SINTER_ETIMEOUT, "result not retained: retry with the same seq");
        }
    } else if (rc == SINTER_ENOTLEADER) {
        reply_not_leader(c->s, c->req, c->group, leader);
    } else if (rc == SINTER_ESTALE) {
        /* The host lost the entry in a leader change (truncated log): outcome known to be
         * "not applied", but the client's remedy is the same as for a timeout. */
        reply_error(c->req, SINTER_ETIMEOUT, "proposal lost in a leader change: retry");
    } else {
        reply_error(c->req, rc, sinter_strerror(rc));
    }
    free(c);
}

static void on_read(void *arg, int rc, uint64_t index, sinter_raft_id leader,
                    const char *leader_url)
{
    (void)index;
    (void)leader_url;
    struct call *c = arg;
    if (rc == SINTER_OK) {
        /* Read-index (Raft dissertation 6.4): the local state now reflects every write
         * committed before the request arrived, so this read is linearizable. */
        uint32_t st = SINTER_GS_FINISHED;
        int qrc = sinter_tc_fsm_status(c->s->groups[c->group].fsm, c->xid.index, &st);
        struct sinter_proto_msg m;
        memset(&m, 0, sizeof m);
        m.code = SINTER_MSG_GLOBAL_STATUS_RESULT;
        if (qrc == SINTER_OK || qrc == SINTER_ENOTFOUND) {
            m.u.global_status_result.global_status = st; /* Finished for an unknown xid */
        } else {
            m.rs.result = qrc;
        }
        sinter_transport_reply(c->req, &m);
    } else if (rc == SINTER_ENOTLEADER) {
        reply_not_leader(c->s, c->req, c->group, leader);
    } else {
        reply_error(c->req, rc, sinter_strerror(rc));
    }
    free(c);
}

/* ---------------------------------------------------------------------------------------------
 * RPC handlers (nng callback threads, stop_lock held for reading)
 */

/* The roles client_id registered with on this node (0: not registered), and marks it active. */
static unsigned reg_lookup(struct sinter_tc_server *s, uint64_t client_id)
{
    uint64_t now = sinter_tc_mono_ms(); /* idle sweep: an in-memory timer */
    pthread_mutex_lock(&s->reg_mu);
    struct reg_entry *e = s->reg[mix64(client_id) % REG_BUCKETS];
    while (e != NULL && e->client_id != client_id) {
        e = e->next;
    }
    unsigned roles = 0;
    if (e != NULL) {
        e->last_ms = now;
        roles = e->roles;
    }
    pthread_mutex_unlock(&s->reg_mu);
    return roles;
}

void sinter_tc_reg_sweep(struct sinter_tc_server *s, uint64_t now_ms)
{
    /* The registry would otherwise only grow (up to MAX_REGISTERED, then refuse everyone new):
     * client ids are unique per process start. An evicted client that comes back gets
     * SINTER_EAUTH and registers again, as after a node restart. A slice per tick keeps the lock
     * short; the whole table is swept every REG_BUCKETS / 64 ticks. */
    pthread_mutex_lock(&s->reg_mu);
    for (unsigned k = 0; k < 64; k++) {
        struct reg_entry **pp = &s->reg[s->reg_sweep];
        s->reg_sweep = (s->reg_sweep + 1) % REG_BUCKETS;
        while (*pp != NULL) {
            struct reg_entry *e = *pp;
            if (now_ms > e->last_ms && now_ms - e->last_ms > s->cfg->client_idle_ms) {
                *pp = e->next;
                s->n_reg--;
                free(e);
            } else {
                pp = &e->next;
            }
        }
    }
    pthread_mutex_unlock(&s->reg_mu);
}

static int reg_add(struct sinter_tc_server *s, uint64_t client_id, unsigned role)
{
    int rc = SINTER_OK;
    pthread_mutex_lock(&s->reg_mu);
    struct reg_entry **b = &s->reg[mix64(client_id) % REG_BUCKETS];
    struct reg_entry *e = *b;
    while (e != NULL && e->client_id != client_id) {
        e = e->next;
    }
    if (e != NULL) {
        e->roles |= role;
        e->last_ms = sinter_tc_mono_ms();
    } else if (s->n_reg >= MAX_REGISTERED) {
        rc = SINTER_EBUSY;
    } else if ((e = calloc(1, sizeof *e)) == NULL) {
        rc = SINTER_ENOMEM;
    } else {
        e->client_id = client_id;
        e->roles = role;
        e->last_ms = sinter_tc_mono_ms();
        e->next = *b;
        *b = e;
        s->n_reg++;
    }
    pthread_mutex_unlock(&s->reg_mu);
    return rc;
}

/* Compares in time independent of where the first difference is, so the reply time does not
 * reveal how much of a guessed secret was right. */
static bool secret_ok(const char *secret, struct sinter_proto_str cred)
{
    size_t n = strlen(secret);
    unsigned diff = (unsigned)(n ^ cred.len);
    for (size_t i = 0; i < cred.len; i++) {
        diff |= (unsigned)((uint8_t)cred.ptr[i] ^ (uint8_t)secret[i % (n ? n : 1)]);
    }
    return diff == 0;
}

static void handle_register(struct sinter_tc_server *s, struct sinter_transport_request *req,
                            const struct sinter_proto_msg *m)
{
    bool tm = m->code == SINTER_MSG_REGISTER_TM;
    struct sinter_proto_msg r;
    memset(&r, 0, sizeof r);
    r.code = sinter_proto_reply_code(m->code);
    r.u.reg_result.server_version = sinter_proto_str_c(SERVER_VERSION);
    if (m->rq.client_id == 0) {
        r.rs.result = SINTER_EINVAL;
        r.rs.message = sinter_proto_str_c("client_id must be non-zero");
    } else if (!secret_ok(s->cfg->secret, m->u.reg.credential)) {
        r.rs.result = SINTER_EAUTH;
        r.rs.message = sinter_proto_str_c("authentication failed: wrong shared secret");
        sinter_tc_log(SINTER_TC_LOG_WARN, SINTER_TC_NO_GROUP, NULL,
                      "%s refused for client %016" PRIx64 " (app '%.*s'): wrong secret",
                      sinter_proto_code_name(m->code), m->rq.client_id,
                      (int)m->u.reg.application_id.len,
                      m->u.reg.application_id.ptr ? m->u.reg.application_id.ptr : "");
    } else {
        r.rs.result = reg_add(s, m->rq.client_id, tm ? REG_TM : REG_RM);
        if (r.rs.result == SINTER_OK) {
            sinter_tc_log(SINTER_TC_LOG_INFO, SINTER_TC_NO_GROUP, NULL,
                          "%s: client %016" PRIx64 " app '%.*s' version '%.*s' resources %u",
                          sinter_proto_code_name(m->code), m->rq.client_id,
                          (int)m->u.reg.application_id.len,
                          m->u.reg.application_id.ptr ? m->u.reg.application_id.ptr : "",
                          (int)m->u.reg.client_version.len,
                          m->u.reg.client_version.ptr ? m->u.reg.client_version.ptr : "",
                          m->u.reg.n_resources);
        }
    }
    sinter_transport_reply(req, &r);
}

static void handle_cluster_meta(struct sinter_tc_server *s, struct sinter_transport_request *req)
{
    struct sinter_proto_msg *r = calloc(1, sizeof *r); /* ~12 KiB: not on an nng thread's stack */
    if (r == NULL) {
        reply_error(req, SINTER_ENOMEM, NULL);
        return;
    }
    const struct sinter_tc_config *cfg = s->cfg;
    r->code = SINTER_MSG_CLUSTER_META_RESULT;
    r->u.cluster_meta_result.node_id = cfg->node_id;
    struct sinter_raft_host_status st0;
    bool have_cfg = sinter_raft_host_status(s->host, 0, &st0) == SINTER_OK && st0.config.n > 0;
    uint32_t nm = 0;
    for (size_t i = 0; i <= cfg->n_peers && nm < SINTER_PROTO_MAX_MEMBERS; i++) {
        uint64_t id = i == 0 ? cfg->node_id : cfg->peers[i - 1].id;
        bool voter = !have_cfg;
        for (uint32_t k = 0; have_cfg && k < st0.config.n; k++) {
            if (st0.config.servers[k].id == id) {
                voter = st0.config.servers[k].suffrage == SINTER_RAFT_VOTER;
            }
        }
        struct sinter_proto_member *mb = &r->u.cluster_meta_result.members[nm++];
        mb->id = id;
        mb->addr = sinter_proto_str_c(sinter_tc_config_client_url(s->cfg, id));
        mb->voter = voter;
    }
    r->u.cluster_meta_result.n_members = nm;
    for (uint32_t g = 0; g < cfg->groups; g++) {
        struct sinter_raft_host_status st;
        struct sinter_proto_group_info *gi = &r->u.cluster_meta_result.groups[g];
        gi->group = g;
        if (sinter_raft_host_status(s->host, g, &st) == SINTER_OK) {
            gi->leader_id = st.leader;
            gi->term = st.term;
        }
    }
    r->u.cluster_meta_result.n_groups = cfg->groups;
    sinter_transport_reply(req, r);
    free(r);
}

static void propose(struct sinter_tc_server *s, struct sinter_transport_request *req, uint16_t code,
                    uint32_t group, const struct sinter_tc_cmd *cmd)
{
    uint64_t t_start = sinter_tc_mono_ns();
    size_t cap = sinter_tc_cmd_encoded_size(cmd);
    uint8_t *buf = malloc(cap > 0 ? cap : 1);
    struct call *c = calloc(1, sizeof *c);
    if (buf == NULL || c == NULL) {
        free(buf);
        free(c);
        reply_error(req, SINTER_ENOMEM, NULL);
        return;
    }
    size_t len = 0;
    int rc = sinter_tc_cmd_encode(cmd, buf, cap, &len);
    if (rc != SINTER_OK) {
        free(buf);
        free(c);
        /* A field the state machine would refuse (empty resource id, timeout out of range):
         * a client error, answered without touching the log. */
        reply_error(req, rc, "request field out of range for the coordinator");
        return;
    }
    *c = (struct call){s, req, code, group, {0, 0}, false, 0, t_start};
    if (code == SINTER_MSG_GLOBAL_COMMIT || code == SINTER_MSG_GLOBAL_ROLLBACK) {
        const struct sinter_proto_msg *m = sinter_transport_request_msg(req);
        c->xid = m->u.global_end.xid;
        c->wait_phase2 = (m->u.global_end.flags & SINTER_PROTO_END_WAIT_PHASE2) != 0;
        c->wait_ms = m->u.global_end.wait_ms;
    }
    rc = sinter_raft_host_propose(s->host, group, buf, (uint32_t)len, on_proposed, c);
    free(buf);
    if (rc != SINTER_OK) {
        free(c);
        reply_error(req, rc, sinter_strerror(rc));
    }
}

static bool group_ok(const struct sinter_tc_server *s, const struct sinter_xid *x)
{
    return x->group < s->cfg->groups && x->index != 0;
}

static void handle_command(struct sinter_tc_server *s, struct sinter_transport_request *req,
                           const struct sinter_proto_msg *m)
{
    if (m->rq.seq == 0) {
        reply_error(req, SINTER_EINVAL, "seq must be non-zero (it deduplicates retries)");
        return;
    }
    /* The fsm's client sessions are keyed by this text; one spelling per client id. */
    char client[17];
    snprintf(client, sizeof client, "%016" PRIx64, m->rq.client_id);
    struct sinter_tc_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.version = SINTER_TC_CMD_VERSION;
    cmd.now_ms =
        sinter_tc_wall_ms(); /* the leader's clock travels in the entry: replicas never read one */
    cmd.client_id = (struct sinter_tc_bytes){(const uint8_t *)client, 16};
    cmd.seq = m->rq.seq;
    uint32_t group = 0;
    char xa[32];
    const struct sinter_xid *xid = NULL;
    switch (m->code) {
    case SINTER_MSG_GLOBAL_BEGIN: {
        const struct sinter_proto_global_begin *b = &m->u.global_begin;
        /* Sessions live per group, so a retry must reach the group that saw the first attempt:
         * the group is a function of (client id, seq), never of who leads what right now. */
        group = sinter_proto_begin_group(m->rq.client_id, m->rq.seq, s->cfg->groups);
        cmd.type = SINTER_TC_CMD_BEGIN;
        cmd.u.begin.app_id = b->application_id.len > 0
                                 ? tcb(b->application_id)
                                 : (struct sinter_tc_bytes){(const uint8_t *)"unknown", 7};
        cmd.u.begin.tx_name = tcb(b->transaction_name);
        cmd.u.begin.timeout_ms = b->timeout_ms != 0 ? b->timeout_ms : s->cfg->default_timeout_ms;
        break;
    }
    case SINTER_MSG_BRANCH_REGISTER: {
        const struct sinter_proto_branch_register *b = &m->u.branch_register;
        xid = &b->xid;
        cmd.type = SINTER_TC_CMD_REGISTER_BRANCH;
        cmd.u.reg.xid = b->xid;
        cmd.u.reg.branch_type = (uint8_t)b->branch_type;
        cmd.u.reg.resource_id = tcb(b->resource_id);
        cmd.u.reg.app_data = tcb_bytes(b->application_data);
        if (b->xa_local_xid != 0) {
            int n = snprintf(xa, sizeof xa, "pg_xact:%" PRIu64, b->xa_local_xid);
            cmd.u.reg.xa_info = (struct sinter_tc_bytes){(const uint8_t *)xa, (uint32_t)n};
        }
        break;
    }
    case SINTER_MSG_BRANCH_REPORT: {
        const struct sinter_proto_branch_report *b = &m->u.branch_report;
        xid = &b->xid;
        cmd.type = SINTER_TC_CMD_REPORT_BRANCH;
        cmd.u.report.xid = b->xid;
        cmd.u.report.branch_id = b->branch_id;
        cmd.u.report.status = (uint8_t)b->branch_status;
        if (b->application_data.len > 0) {
            cmd.u.report.has |= SINTER_TC_REPORT_HAS_APP_DATA;
            cmd.u.report.app_data = tcb_bytes(b->application_data);
        }
        if (b->xa_local_xid != 0) {
            int n = snprintf(xa, sizeof xa, "pg_xact:%" PRIu64, b->xa_local_xid);
            cmd.u.report.has |= SINTER_TC_REPORT_HAS_XA_INFO;
            cmd.u.report.xa_info = (struct sinter_tc_bytes){(const uint8_t *)xa, (uint32_t)n};
        }
        break;
    }
    case SINTER_MSG_GLOBAL_COMMIT:
    case SINTER_MSG_GLOBAL_ROLLBACK:
        /* The reply goes out once the decision is applied, i.e. committed on a majority: the
         * outcome is then guaranteed (DESIGN.md "TM commit returns once the decision is durable
         * on a majority"). With SINTER_PROTO_END_WAIT_PHASE2 it is parked until the global ends
         * or wait_ms passes (on_proposed, tc/worker.c). */
        xid = &m->u.global_end.xid;
        cmd.type = SINTER_TC_CMD_DECIDE;
        cmd.u.decide.xid = m->u.global_end.xid;
        cmd.u.decide.target =
            m->code == SINTER_MSG_GLOBAL_COMMIT ? SINTER_GS_COMMITTING : SINTER_GS_ROLLBACKING;
        break;
    case SINTER_MSG_GLOBAL_REPORT: {
        /* Seata's GlobalReportRequest (a TM that ran phase two itself, SAGA-style): a reported
         * commit is a commit decision, a reported rollback a rollback decision, under the same
         * compare-and-set as GlobalCommit / GlobalRollback; the reply is the current status. */
        uint32_t gs = m->u.global_report.global_status;
        xid = &m->u.global_report.xid;
        cmd.type = SINTER_TC_CMD_DECIDE;
        cmd.u.decide.xid = m->u.global_report.xid;
        if (gs == SINTER_GS_COMMITTED || gs == SINTER_GS_COMMITTING) {
            cmd.u.decide.target = SINTER_GS_COMMITTING;
        } else if (gs == SINTER_GS_ROLLBACKED || gs == SINTER_GS_ROLLBACKING) {
            cmd.u.decide.target = SINTER_GS_ROLLBACKING;
        } else {
            reply_error(req, SINTER_EINVAL,
                        "GlobalReport: only Committed/Committing or Rollbacked/Rollbacking");
            return;
        }
        break;
    }
    default:
        reply_error(req, SINTER_EINTERNAL, "not a command");
        return;
    }
    if (xid != NULL) {
        if (!group_ok(s, xid)) {
            struct sinter_tc_result nf = {.rc = SINTER_ENOTFOUND, .status = SINTER_GS_FINISHED};
            struct call c = {s, req, m->code, 0, *xid, false, 0, 0};
            reply_result(&c, &nf);
            return;
        }
        group = xid->group;
    }
    propose(s, req, m->code, group, &cmd);
}

/* The outcome is one of the reported phase's results (a commit is not answered Rollbacked). */
static bool phase2_side_ok(const struct sinter_proto_phase2_report *p)
{
    uint32_t bs = p->outcome.branch_status;
    return (p->phase == SINTER_MSG_BRANCH_COMMIT && bs >= SINTER_BS_PHASE2_COMMITTED &&
            bs <= SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE) ||
           (p->phase == SINTER_MSG_BRANCH_ROLLBACK && bs >= SINTER_BS_PHASE2_ROLLBACKED &&
            bs <= SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE);
}

/* The state machine's form of a report's outcome. */
static struct sinter_tc_cmd_branch_result result_of(const struct sinter_proto_phase2_report *p)
{
    /* first_attempt_ms 0 = the entry's time: when no PHASE2_START recorded a deadline base (phase
     * 2 went well, docs/phase2-protocol.md), the first result sets it, within one lease of the
     * first attempt. */
    return (struct sinter_tc_cmd_branch_result){p->outcome.xid, p->outcome.branch_id,
                                                (uint8_t)p->outcome.branch_status, 0};
}

static void branch_result_cmd(const struct sinter_proto_phase2_report *p, struct sinter_tc_cmd *cmd)
{
    memset(cmd, 0, sizeof *cmd);
    cmd->version = SINTER_TC_CMD_VERSION;
    cmd->type = SINTER_TC_CMD_BRANCH_RESULT;
    cmd->now_ms = sinter_tc_wall_ms();
    cmd->u.result = result_of(p);
}

/* Phase2ReportBatch (docs/phase2-protocol.md "Reports"): the outcomes that pass the checks are
 * grouped by raft group, and each group's become ONE BRANCH_RESULTS entry (one BRANCH_RESULT when
 * the group has a single outcome, or when tc.batch_branch_results is off for a rolling upgrade,
 * docs/operations.md "Upgrades": then one BRANCH_RESULT per outcome, proposed at once). An entry
 * per outcome cost one log append, one replication slot and one SQLite apply each; the state
 * machine applies the batched outcomes one by one with the same rules, so every outcome still
 * gets the answer a single Phase2Report would have had. The reply goes out when the last
 * proposal is resolved. `pending` starts at the number of proposals + 1: the submitting thread
 * holds one count until every proposal is made, so the loop thread cannot reply (and free)
 * early. */
struct p2batch;
struct p2part {
    struct p2batch *b;
    uint32_t group;
    uint32_t n;                            /* outcomes in this proposal */
    uint8_t idx[SINTER_PROTO_MAX_REPORTS]; /* their positions in the request */
};
struct p2batch {
    struct sinter_tc_server *s;
    struct sinter_transport_request *req;
    atomic_uint pending;
    uint32_t n;
    _Atomic int32_t results[SINTER_PROTO_MAX_REPORTS];
    struct p2part parts[SINTER_PROTO_MAX_REPORTS];
};

static void p2batch_put(struct p2batch *b)
{
    if (atomic_fetch_sub(&b->pending, 1u) != 1u) {
        return;
    }
    struct sinter_proto_msg *m = calloc(1, sizeof *m);
    if (m == NULL) {
        reply_error(b->req, SINTER_ENOMEM, NULL); /* outcomes are durable: a resend is OK */
    } else {
        m->code = SINTER_MSG_PHASE2_REPORT_BATCH_RESULT;
        m->rs.result = SINTER_OK;
        m->u.phase2_report_batch_result.n_results = b->n;
        for (uint32_t i = 0; i < b->n; i++) {
            m->u.phase2_report_batch_result.results[i] = atomic_load(&b->results[i]);
        }
        sinter_transport_reply(b->req, m);
        free(m);
    }
    free(b);
}

/* The answer to report i of the batch from the state machine's answer r to its outcome. */
static int p2batch_outcome(struct p2batch *b, struct tc_group *g, uint32_t i,
                           const struct sinter_tc_result *r)
{
    if (r->rc == SINTER_OK) {
        /* Durable: as for a single report (on_proposed); the request stays valid until the
         * batch's reply. */
        sinter_tc_worker_reported(
            g, &sinter_transport_request_msg(b->req)->u.phase2_report_batch.reports[i]);
    }
    return phase2_report_rc(r);
}

static void on_batch_proposed(void *arg, int rc, uint64_t index, sinter_raft_id leader,
                              const char *leader_url)
{
    (void)leader;
    (void)leader_url;
    struct p2part *p = arg;
    struct p2batch *b = p->b;
    const struct sinter_tc_result *r = NULL;
    struct tc_group *g = &b->s->groups[p->group];
    int res = rc;
    if (rc == SINTER_OK) {
        r = sinter_tc_last_result(g, index);
        if (r == NULL) {
            res = SINTER_ETIMEOUT; /* cannot happen (apply-then-resolve); a resend is safe */
        } else if (p->n > 1 && r->n_sub != p->n) {
            /* Not applied as a BRANCH_RESULTS (cannot happen: the entry was encoded here). */
            res = r->rc != SINTER_OK ? r->rc : SINTER_EINTERNAL;
            r = NULL;
        }
    } else if (rc == SINTER_ESTALE) {
        res = SINTER_ETIMEOUT; /* lost in a leader change: not applied, resend */
    }
    for (uint32_t j = 0; j < p->n; j++) {
        int v = res;
        if (r != NULL) {
            v = p2batch_outcome(b, g, p->idx[j], p->n > 1 ? &r->sub[j] : r);
        }
        atomic_store(&b->results[p->idx[j]], v);
    }
    p2batch_put(b);
}

/* Encodes part p's outcomes (one BRANCH_RESULT when it has one, else BRANCH_RESULTS) and proposes
 * it; SINTER_OK means on_batch_proposed will answer them. */
static int p2batch_propose(struct sinter_tc_server *s,
                           const struct sinter_proto_phase2_report_batch *pb, struct p2part *p)
{
    struct sinter_tc_cmd *cmd = malloc(sizeof *cmd);
    if (cmd == NULL) {
        return SINTER_ENOMEM;
    }
    branch_result_cmd(&pb->reports[p->idx[0]], cmd);
    if (p->n > 1) {
        cmd->type = SINTER_TC_CMD_BRANCH_RESULTS;
        cmd->u.results.n = p->n;
        for (uint32_t j = 0; j < p->n; j++) {
            cmd->u.results.r[j] = result_of(&pb->reports[p->idx[j]]);
        }
    }
    uint8_t buf[SINTER_TC_CMD_HEADER_MAX_BYTES + 2 + 29 * SINTER_TC_MAX_RESULTS];
    size_t len = 0;
    size_t cap = sinter_tc_cmd_encoded_size(cmd);
    int rc =
        cap <= sizeof buf ? sinter_tc_cmd_encode(cmd, buf, sizeof buf, &len) : SINTER_EINTERNAL;
    free(cmd);
    if (rc != SINTER_OK) {
        return rc;
    }
    return sinter_raft_host_propose(s->host, p->group, buf, (uint32_t)len, on_batch_proposed, p);
}

static void handle_phase2_report_batch(struct sinter_tc_server *s,
                                       struct sinter_transport_request *req,
                                       const struct sinter_proto_msg *m)
{
    const struct sinter_proto_phase2_report_batch *pb = &m->u.phase2_report_batch;
    struct p2batch *b = calloc(1, sizeof *b);
    if (b == NULL) {
        reply_error(req, SINTER_ENOMEM, NULL);
        return;
    }
    b->s = s;
    b->req = req;
    b->n = pb->n_reports;
    /* Checks first; the outcomes that pass go to their group's part, in request order. */
    uint32_t n_parts = 0;
    for (uint32_t i = 0; i < pb->n_reports; i++) {
        const struct sinter_proto_phase2_report *p = &pb->reports[i];
        const struct sinter_xid *x = &p->outcome.xid;
        if (!phase2_side_ok(p)) {
            atomic_store(&b->results[i], SINTER_EINVAL);
            continue;
        }
        if (!group_ok(s, x)) {
            atomic_store(&b->results[i], SINTER_ENOTFOUND);
            continue;
        }
        atomic_fetch_add_explicit(&s->metrics.phase2_reports[p->outcome.branch_status], 1,
                                  memory_order_relaxed);
        uint32_t k = 0;
        if (s->cfg->batch_branch_results) {
            while (k < n_parts && b->parts[k].group != x->group) {
                k++;
            }
        } else {
            k = n_parts; /* one BRANCH_RESULT per outcome (rolling upgrade) */
        }
        if (k == n_parts) {
            b->parts[n_parts++] = (struct p2part){.b = b, .group = x->group, .n = 0};
        }
        b->parts[k].idx[b->parts[k].n++] = (uint8_t)i;
    }
    atomic_init(&b->pending, n_parts + 1u);
    for (uint32_t k = 0; k < n_parts; k++) {
        struct p2part *p = &b->parts[k];
        int rc = p2batch_propose(s, pb, p);
        if (rc != SINTER_OK) {
            for (uint32_t j = 0; j < p->n; j++) {
                atomic_store(&b->results[p->idx[j]], rc);
            }
            atomic_fetch_sub(&b->pending, 1u); /* never the last: this thread still holds one */
        }
    }
    p2batch_put(b);
}

/* Phase2Report (docs/phase2-protocol.md): the RM's outcome of one delivery becomes a
 * BRANCH_RESULT; the reply goes out once it is applied (durable), from on_proposed. A worker-style
 * command (no client session): the state machine itself deduplicates a repeated outcome. */
static void handle_phase2_report(struct sinter_tc_server *s, struct sinter_transport_request *req,
                                 const struct sinter_proto_msg *m)
{
    const struct sinter_proto_phase2_report *p = &m->u.phase2_report;
    uint32_t bs = p->outcome.branch_status;
    if (!phase2_side_ok(p)) {
        reply_error(req, SINTER_EINVAL, "Phase2Report: branch status not a result of that phase");
        return;
    }
    atomic_fetch_add_explicit(&s->metrics.phase2_reports[bs], 1, memory_order_relaxed);
    const struct sinter_xid *x = &p->outcome.xid;
    if (!group_ok(s, x)) {
        struct sinter_tc_result nf = {.rc = SINTER_ENOTFOUND, .status = SINTER_GS_FINISHED};
        struct call c = {s, req, m->code, 0, *x, false, 0, 0};
        reply_result(&c, &nf);
        return;
    }
    struct sinter_tc_cmd cmd;
    branch_result_cmd(p, &cmd);
    propose(s, req, m->code, x->group, &cmd);
}

static void handle_status(struct sinter_tc_server *s, struct sinter_transport_request *req,
                          const struct sinter_proto_msg *m)
{
    const struct sinter_xid *x = &m->u.global_status.xid;
    if (!group_ok(s, x)) {
        /* Not "Finished" (Seata's answer for an xid the coordinator no longer knows): an XA RM's
         * recovery scan rolls back a prepared branch whose global is Finished, so a node whose
         * [raft] groups is smaller than the cluster's would have every scan roll back live
         * branches of the groups it does not serve. An error leaves the branch alone. */
        char why[160];
        if (x->index == 0) {
            reply_error(req, SINTER_EINVAL, "xid index 0 is never a global transaction");
            return;
        }
        snprintf(why, sizeof why,
                 "group %" PRIu32 " is not served here: this node has %" PRIu32
                 " raft group(s) (every node needs the same [raft] groups)",
                 x->group, s->cfg->groups);
        reply_error(req, SINTER_ENOTFOUND, why);
        return;
    }
    struct call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        reply_error(req, SINTER_ENOMEM, NULL);
        return;
    }
    *c = (struct call){s, req, m->code, x->group, *x, false, 0, 0};
    int rc = sinter_raft_host_read(s->host, x->group, on_read, c);
    if (rc != SINTER_OK) {
        free(c);
        reply_error(req, rc, sinter_strerror(rc));
    }
}

static void dispatch(struct sinter_tc_server *s, struct sinter_transport_request *req,
                     const struct sinter_proto_msg *m)
{
    switch (m->code) {
    case SINTER_MSG_REGISTER_TM:
    case SINTER_MSG_REGISTER_RM:
        handle_register(s, req, m);
        return;
    case SINTER_MSG_CLUSTER_META:
        /* Open to anyone: discovery comes before registration, and it reveals only addresses
         * a client must be configured with anyway. */
        handle_cluster_meta(s, req);
        return;
    default:
        break;
    }
    unsigned roles = reg_lookup(s, m->rq.client_id);
    if (roles == 0) {
        /* Also what a client sees after this node restarted: register again, then retry. */
        reply_error(req, SINTER_EAUTH, "client not registered with this node: RegisterTM/RM first");
        return;
    }
    switch (m->code) {
    case SINTER_MSG_HEARTBEAT: {
        struct sinter_proto_msg r;
        memset(&r, 0, sizeof r);
        r.code = SINTER_MSG_HEARTBEAT_RESULT;
        sinter_transport_reply(req, &r);
        return;
    }
    case SINTER_MSG_GLOBAL_BEGIN:
    case SINTER_MSG_BRANCH_REGISTER:
    case SINTER_MSG_BRANCH_REPORT:
    case SINTER_MSG_GLOBAL_COMMIT:
    case SINTER_MSG_GLOBAL_ROLLBACK:
    case SINTER_MSG_GLOBAL_REPORT:
        handle_command(s, req, m);
        return;
    case SINTER_MSG_GLOBAL_STATUS:
        handle_status(s, req, m);
        return;
    case SINTER_MSG_PHASE2_POLL:
    case SINTER_MSG_PHASE2_REPORT:
    case SINTER_MSG_PHASE2_REPORT_BATCH:
        if ((roles & REG_RM) == 0) {
            reply_error(req, SINTER_EAUTH, "phase-2 messages need RegisterRM with this node");
            return;
        }
        if (m->code == SINTER_MSG_PHASE2_POLL) {
            sinter_tc_poll_submit(s, req, m);
        } else if (m->code == SINTER_MSG_PHASE2_REPORT_BATCH) {
            handle_phase2_report_batch(s, req, m);
        } else {
            handle_phase2_report(s, req, m);
        }
        return;
    default:
        /* BranchCommit / BranchRollback travel inside Phase2PollResult (the TC never dials an
         * RM, docs/phase2-protocol.md); as requests to the TC they mean nothing. */
        reply_error(req, SINTER_EUNKNOWNMSG, "message not served by this coordinator version");
        return;
    }
}

static void on_request(void *arg, struct sinter_transport_request *req)
{
    struct sinter_tc_server *s = arg;
    const struct sinter_proto_msg *m = sinter_transport_request_msg(req);
    if (m->code < 256) {
        atomic_fetch_add_explicit(&s->metrics.requests[m->code], 1, memory_order_relaxed);
    }
    pthread_rwlock_rdlock(&s->stop_lock);
    if (s->stopping) {
        reply_error(req, SINTER_ESHUTDOWN, "coordinator is stopping");
    } else {
        dispatch(s, req, m);
    }
    pthread_rwlock_unlock(&s->stop_lock);
}

/* ---------------------------------------------------------------------------------------------
 * Start and stop
 */

static int mkdir_one(const char *p)
{
    return mkdir(p, 0755) == 0 || errno == EEXIST ? SINTER_OK : SINTER_EIO;
}

static void free_server(struct sinter_tc_server *s)
{
    if (s->groups != NULL) {
        for (uint32_t g = 0; g < s->cfg->groups; g++) {
            sinter_tc_fsm_close(s->groups[g].fsm);
            free(s->groups[g].ents);
            free(s->groups[g].res);
            pthread_mutex_destroy(&s->groups[g].snap_mu);
            pthread_mutex_destroy(&s->groups[g].role_mu);
        }
        free(s->groups);
    }
    for (size_t b = 0; b < REG_BUCKETS; b++) {
        while (s->reg[b] != NULL) {
            struct reg_entry *e = s->reg[b];
            s->reg[b] = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&s->reg_mu);
    pthread_rwlock_destroy(&s->stop_lock);
    free(s);
}

static void stop_started(struct sinter_tc_server *s);

int sinter_tc_server_start(struct sinter_tc_server **out, const struct sinter_tc_config *cfg)
{
    struct sinter_tc_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return SINTER_ENOMEM;
    }
    s->cfg = cfg;
    pthread_rwlock_init(&s->stop_lock, NULL);
    pthread_mutex_init(&s->reg_mu, NULL);
    s->groups = calloc(cfg->groups, sizeof *s->groups);
    if (s->groups == NULL) {
        free_server(s);
        return SINTER_ENOMEM;
    }
    for (uint32_t g = 0; g < cfg->groups; g++) {
        pthread_mutex_init(&s->groups[g].snap_mu, NULL);
        pthread_mutex_init(&s->groups[g].role_mu, NULL);
    }
    int rc = mkdir_one(cfg->data_dir);
    for (uint32_t g = 0; g < cfg->groups && rc == SINTER_OK; g++) {
        struct tc_group *tg = &s->groups[g];
        tg->id = g;
        tg->srv = s;
        /* The raft store shares the directory and leaves files that are not its own alone
         * (raft/store: only meta.*, seg-*, snap-*.snap and *.tmp are its). */
        if (snprintf(tg->dir, sizeof tg->dir, "%s/group-%u", cfg->data_dir, g) >=
            (int)sizeof tg->dir) {
            rc = SINTER_ECONFIG;
            break;
        }
        rc = mkdir_one(tg->dir);
        if (rc != SINTER_OK) {
            sinter_tc_log(SINTER_TC_LOG_ERROR, g, NULL, "cannot create %s: %s", tg->dir,
                          strerror(errno));
            break;
        }
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/tc.sqlite", tg->dir);
        rc = sinter_tc_fsm_open(&tg->fsm, path, g);
        if (rc != SINTER_OK) {
            sinter_tc_log(SINTER_TC_LOG_ERROR, g, NULL, "cannot open %s: %s", path,
                          sinter_strerror(rc));
            break;
        }
        sinter_tc_log(SINTER_TC_LOG_INFO, g, NULL, "state %s at index %" PRIu64, path,
                      sinter_tc_fsm_last_applied(tg->fsm));
    }
    if (rc != SINTER_OK) {
        free_server(s);
        return rc;
    }

    struct sinter_raft_host_peer peers[SINTER_TC_MAX_PEERS];
    for (size_t i = 0; i < cfg->n_peers; i++) {
        peers[i] = (struct sinter_raft_host_peer){cfg->peers[i].id, cfg->peers[i].raft_url};
    }
    struct sinter_raft_host_opts ho;
    sinter_raft_host_opts_default(&ho);
    ho.id = cfg->node_id;
    ho.listen_url = cfg->raft_listen;
    ho.peers = peers;
    ho.n_peers = cfg->n_peers;
    ho.data_dir = cfg->data_dir;
    ho.groups = cfg->groups;
    ho.tick_ms = cfg->tick_ms;
    ho.election_ticks = cfg->election_ticks;
    ho.bootstrap = cfg->bootstrap;
    ho.snapshot_every = cfg->snapshot_every;
    ho.balance_leaders = cfg->balance_leaders;
    ho.sm = sm_fill;
    ho.sm_arg = s;
    ho.log = host_log;
    ho.log_arg = s;
    ho.log_level = cfg->log_level;
    /* Node-to-node TLS is mutual: every node presents its certificate and verifies the other's
     * against the cluster CA (config validation made both files required). */
    ho.tls_enable = sinter_tc_config_raft_tls(cfg);
    ho.tls = (struct sinter_raft_transport_tls){cfg->tls_cert_key_file, cfg->tls_key_password,
                                                cfg->tls_ca_file, cfg->tls_server_name};
    rc = sinter_raft_host_start(&s->host, &ho);
    if (rc != SINTER_OK) {
        sinter_tc_log(SINTER_TC_LOG_ERROR, SINTER_TC_NO_GROUP, NULL,
                      "raft host on %s did not start: %s", cfg->raft_listen, sinter_strerror(rc));
        free_server(s);
        return rc;
    }

    struct sinter_transport_server_opts to;
    sinter_transport_server_opts_default(&to);
    to.url = cfg->client_listen;
    to.handler = on_request;
    to.handler_arg = s;
    /* Parked requests (Phase2Polls, one per RM process per node, and WAIT_PHASE2 commits) hold
     * a context each until answered: room for them beside the ordinary traffic. */
    to.n_contexts = 1024;
    /* tc.client_transport = nng: the operator's way back to nng's REP socket for tcp:// (the
     * native engine is the default; the wire is the same, so clients do not care). */
    to.use_nng = cfg->client_transport != NULL && strcmp(cfg->client_transport, "nng") == 0;
    /* Each connection costs a descriptor and buffers: a storm of them (a misconfigured pool, a
     * scan) is refused at the door rather than exhausting the process (EMFILE would also stop
     * raft's own connections and the data files from opening). */
    to.max_connections = cfg->max_client_connections;
    /* Client TLS proves the server and encrypts; clients authenticate with the shared secret at
     * registration, and present a certificate too only when tls.client_verify asks for it (the
     * transport demands one exactly when it is given a CA file). */
    to.tls_enable = sinter_tc_config_client_tls(cfg);
    to.tls = (struct sinter_transport_tls){cfg->tls_cert_key_file, cfg->tls_key_password,
                                           cfg->tls_client_verify ? cfg->tls_ca_file : NULL, NULL};
    rc = sinter_transport_server_open(&s->rpc, &to);
    if (rc != SINTER_OK) {
        sinter_tc_log(SINTER_TC_LOG_ERROR, SINTER_TC_NO_GROUP, NULL,
                      "client listener on %s did not start: %s", cfg->client_listen,
                      sinter_strerror(rc));
        sinter_raft_host_stop(s->host);
        free_server(s);
        return rc;
    }
    rc = sinter_tc_http_start(s);
    if (rc != SINTER_OK) {
        stop_started(s);
        return rc;
    }
    sinter_tc_log(SINTER_TC_LOG_INFO, SINTER_TC_NO_GROUP, NULL,
                  "serving clients on %s, raft on %s, %u group(s), %zu peer(s)", cfg->client_listen,
                  cfg->raft_listen, cfg->groups, cfg->n_peers);
    *out = s;
    return SINTER_OK;
}

/* Stops what sinter_tc_server_start() started (everything up to the client listener) and frees
 * s: the stop path, and start's cleanup when the HTTP endpoint cannot start. */
static void stop_started(struct sinter_tc_server *s)
{
    pthread_rwlock_wrlock(&s->stop_lock); /* waits for handlers inside the host API */
    s->stopping = true;
    pthread_rwlock_unlock(&s->stop_lock);
    /* Completes every pending proposal and read (ESHUTDOWN) on this thread, which replies to
     * their clients; after it no callback can run, so the transport's close does not wait. */
    sinter_raft_host_stop(s->host);
    /* The loop is gone: parked polls and WAIT_PHASE2 replies are answered here. */
    sinter_tc_workers_shutdown(s);
    sinter_transport_server_close(s->rpc);
    /* After the host: HTTP requests waiting on it have been answered by now (tc/http.h). */
    sinter_tc_http_stop(s);
    free_server(s);
}

void sinter_tc_server_stop(struct sinter_tc_server *s)
{
    if (s == NULL) {
        return;
    }
    stop_started(s);
    sinter_tc_log(SINTER_TC_LOG_INFO, SINTER_TC_NO_GROUP, NULL, "stopped");
}
