/*
 * fsm-bench — the CPU one replica spends APPLYING committed entries to the coordinator's state
 * machine (tc/fsm.c over SQLite), without raft, RPC or a cluster (issue #6: every node applies
 * every entry, and a follower at C=64 spends about two thirds of its CPU here).
 *
 *   fsm-bench [--batch 1,8,32] [--globals 20000] [--prefill 20000] [--inflight 16]
 *             [--outcomes 3] [--clients 8] [--snapshot-every N] [--dir DIR]
 *
 * Workload: synthetic 2-branch TCC globals encoded with tc/command.h exactly as the leader
 * proposes them for sinter-bench tcc (tc/server.c handle_command / p2batch_propose): BEGIN (TM
 * client, its next seq), 2 x REGISTER_BRANCH (RM client, its next seqs; resource "bench-b0" /
 * "bench-b1", no app data), DECIDE Committing (TM client), then the phase-2 outcomes as
 * BRANCH_RESULTS entries of --outcomes outcomes each (no client session, like the leader's
 * batched Phase2ReportBatch; 3 gives the ~4.7 entries per global the cluster shows). TCC tries do
 * not report phase one. --inflight globals move through the stages together (all begins, all
 * first registers, ...), as concurrent clients interleave them in the log; --clients TM and as
 * many RM client ids take turns. The leader's clock advances 1 ms per global.
 *
 * Each row opens a fresh state in a temp dir, applies --prefill globals (not timed: the state a
 * running node holds), then --globals globals in apply batches of B entries (one
 * sinter_tc_fsm_apply_batch = one SQLite transaction, as the raft host hands them over). Columns:
 *
 *   batch  entries/s  us/entry  cpu_us/entry  wal_kib/entry  syscall_wr/entry  minflt/entry
 *
 * us/entry is wall time inside apply_batch; cpu_us/entry the process's user + system CPU over
 * the timed part (rusage); wal_kib/entry the bytes the process passed to write calls (/proc/self/io
 * wchar: the WAL frames, 4 KiB page + 24-byte header each, and checkpoints into the database file);
 * syscall_wr/entry the write syscalls (syscw); minflt/entry minor page faults. With
 * --snapshot-every N a snapshot (sinter_tc_fsm_snapshot_to, same thread) is taken every N entries
 * and its time is included and counted. A "# digest" line per row gives the state's digest: the
 * same flags must give the same digest on every version of the state machine (a change that
 * alters the replicated state shows here).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_common.h"
#include "sinter/error.h"
#include "sinter/types.h"
#include "tc/command.h"
#include "tc/fsm.h"

#define MAX_BATCHES  8
#define MAX_CLIENTS  64
#define MAX_INFLIGHT 1024
#define GROUP        0
#define BRANCHES     2

struct opts {
    unsigned batch[MAX_BATCHES];
    size_t n_batch;
    uint64_t globals;
    uint64_t prefill;
    unsigned inflight;
    unsigned outcomes;
    unsigned clients;
    uint64_t snapshot_every;
    const char *dir;
};

/* One encoded entry waiting to be applied. */
struct ent {
    uint8_t *buf;
    size_t len;
};

/* The generator: a log of encoded commands in proposal order. */
struct gen {
    const struct opts *o;
    uint64_t next_index; /* raft index of the next entry */
    uint64_t now_ms;
    uint64_t seq[2][MAX_CLIENTS]; /* [0] TM clients, [1] RM clients */
    char ids[2][MAX_CLIENTS][17];
    unsigned turn;
    struct sinter_tc_cmd_branch_result pend[SINTER_TC_MAX_RESULTS];
    unsigned n_pend;
    struct ent *ents;
    size_t n, cap;
};

static int push(struct gen *g, const struct sinter_tc_cmd *c)
{
    size_t cap = sinter_tc_cmd_encoded_size(c);
    uint8_t *buf = malloc(cap);
    size_t len = 0;
    if (buf == NULL) {
        return SINTER_ENOMEM;
    }
    int rc = sinter_tc_cmd_encode(c, buf, cap, &len);
    if (rc != SINTER_OK) {
        free(buf);
        return rc;
    }
    if (g->n == g->cap) {
        size_t nc = g->cap > 0 ? g->cap * 2 : 1024;
        struct ent *ne = realloc(g->ents, nc * sizeof *ne);
        if (ne == NULL) {
            free(buf);
            return SINTER_ENOMEM;
        }
        g->ents = ne;
        g->cap = nc;
    }
    g->ents[g->n++] = (struct ent){buf, len};
    g->next_index++;
    return SINTER_OK;
}

static void header(struct gen *g, struct sinter_tc_cmd *c, uint8_t type, int side, unsigned client)
{
    memset(c, 0, sizeof *c);
    c->version = SINTER_TC_CMD_VERSION;
    c->type = type;
    c->now_ms = g->now_ms;
    if (side >= 0) {
        c->client_id = (struct sinter_tc_bytes){(const uint8_t *)g->ids[side][client], 16};
        c->seq = ++g->seq[side][client];
    }
}

static int flush_results(struct gen *g)
{
    if (g->n_pend == 0) {
        return SINTER_OK;
    }
    struct sinter_tc_cmd *c = malloc(sizeof *c);
    if (c == NULL) {
        return SINTER_ENOMEM;
    }
    header(g, c, g->n_pend > 1 ? SINTER_TC_CMD_BRANCH_RESULTS : SINTER_TC_CMD_BRANCH_RESULT, -1, 0);
    if (g->n_pend > 1) {
        c->u.results.n = g->n_pend;
        memcpy(c->u.results.r, g->pend, g->n_pend * sizeof g->pend[0]);
    } else {
        c->u.result = g->pend[0];
    }
    g->n_pend = 0;
    int rc = push(g, c);
    free(c);
    return rc;
}

/* Appends the entries of `count` globals, --inflight at a time. */
static int gen_globals(struct gen *g, uint64_t count)
{
    static const char *const res[BRANCHES] = {"bench-b0", "bench-b1"};
    const struct opts *o = g->o;
    uint64_t xids[MAX_INFLIGHT];
    uint64_t bids[MAX_INFLIGHT][BRANCHES];
    unsigned cl[MAX_INFLIGHT];
    while (count > 0) {
        unsigned w = count < o->inflight ? (unsigned)count : o->inflight;
        struct sinter_tc_cmd c;
        for (unsigned i = 0; i < w; i++) {
            cl[i] = g->turn++ % o->clients;
            header(g, &c, SINTER_TC_CMD_BEGIN, 0, cl[i]);
            c.u.begin.app_id = (struct sinter_tc_bytes){(const uint8_t *)"sinter-bench", 12};
            c.u.begin.tx_name = (struct sinter_tc_bytes){(const uint8_t *)"tcc", 3};
            c.u.begin.timeout_ms = 60000;
            xids[i] = g->next_index;
            int rc = push(g, &c);
            if (rc != SINTER_OK) {
                return rc;
            }
            g->now_ms++;
        }
        for (unsigned b = 0; b < BRANCHES; b++) {
            for (unsigned i = 0; i < w; i++) {
                header(g, &c, SINTER_TC_CMD_REGISTER_BRANCH, 1, cl[i]);
                c.u.reg.xid = (struct sinter_xid){GROUP, xids[i]};
                c.u.reg.branch_type = SINTER_BT_TCC;
                c.u.reg.resource_id =
                    (struct sinter_tc_bytes){(const uint8_t *)res[b], (uint32_t)strlen(res[b])};
                bids[i][b] = g->next_index;
                int rc = push(g, &c);
                if (rc != SINTER_OK) {
                    return rc;
                }
            }
        }
        for (unsigned i = 0; i < w; i++) {
            header(g, &c, SINTER_TC_CMD_DECIDE, 0, cl[i]);
            c.u.decide.xid = (struct sinter_xid){GROUP, xids[i]};
            c.u.decide.target = SINTER_GS_COMMITTING;
            int rc = push(g, &c);
            if (rc != SINTER_OK) {
                return rc;
            }
        }
        for (unsigned i = 0; i < w; i++) {
            for (unsigned b = 0; b < BRANCHES; b++) {
                g->pend[g->n_pend++] = (struct sinter_tc_cmd_branch_result){
                    {GROUP, xids[i]}, bids[i][b], SINTER_BS_PHASE2_COMMITTED, 0};
                if (g->n_pend == o->outcomes) {
                    int rc = flush_results(g);
                    if (rc != SINTER_OK) {
                        return rc;
                    }
                }
            }
        }
        count -= w;
    }
    return SINTER_OK;
}

static void gen_free(struct gen *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->ents[i].buf);
    }
    free(g->ents);
    g->ents = NULL;
    g->n = g->cap = 0;
}

/* Applies entries [from, to) of g in batches of b; 0 or the first error. */
static int apply_range(struct sinter_tc_fsm *f, const struct gen *g, uint64_t first_index,
                       size_t from, size_t to, unsigned b, uint64_t snap_every, const char *snap,
                       unsigned *snaps)
{
    struct sinter_tc_entry *e = calloc(b, sizeof *e);
    struct sinter_tc_result *r = calloc(b, sizeof *r);
    int rc = e != NULL && r != NULL ? SINTER_OK : SINTER_ENOMEM;
    uint64_t since = 0;
    for (size_t i = from; i < to && rc == SINTER_OK;) {
        size_t n = to - i < b ? to - i : b;
        for (size_t k = 0; k < n; k++) {
            e[k] = (struct sinter_tc_entry){first_index + i + k, 1, g->ents[i + k].buf,
                                            g->ents[i + k].len};
        }
        rc = sinter_tc_fsm_apply_batch(f, e, n, r);
        for (size_t k = 0; k < n && rc == SINTER_OK; k++) {
            if (r[k].rc != SINTER_OK) {
                fprintf(stderr, "fsm-bench: entry %" PRIu64 " refused: %s\n", e[k].index,
                        sinter_errname(r[k].rc));
                rc = SINTER_EINTERNAL;
            }
        }
        i += n;
        since += n;
        if (rc == SINTER_OK && snap_every > 0 && since >= snap_every) {
            since = 0;
            rc = sinter_tc_fsm_snapshot_to(f, snap, NULL, NULL, NULL, NULL);
            (*snaps)++;
        }
    }
    free(e);
    free(r);
    return rc;
}

struct io {
    uint64_t wchar, syscw;
};

static struct io read_io(void)
{
    struct io v = {0, 0};
    FILE *fp = fopen("/proc/self/io", "r");
    if (fp == NULL) {
        return v;
    }
    char line[128];
    while (fgets(line, sizeof line, fp) != NULL) {
        unsigned long long x;
        if (sscanf(line, "wchar: %llu", &x) == 1) {
            v.wchar = x;
        } else if (sscanf(line, "syscw: %llu", &x) == 1) {
            v.syscw = x;
        }
    }
    fclose(fp);
    return v;
}

static double cpu_s(const struct rusage *u)
{
    return (double)u->ru_utime.tv_sec + (double)u->ru_utime.tv_usec / 1e6 +
           (double)u->ru_stime.tv_sec + (double)u->ru_stime.tv_usec / 1e6;
}

static int run_row(const struct opts *o, unsigned b)
{
    char *dir = bench_mkdtemp("fsm-bench");
    if (dir == NULL) {
        fprintf(stderr, "fsm-bench: cannot create a temp dir\n");
        return 1;
    }
    char path[1024], snap[1024];
    snprintf(path, sizeof path, "%s/state.db", dir);
    snprintf(snap, sizeof snap, "%s/snap.db", dir);
    struct gen g;
    memset(&g, 0, sizeof g);
    g.o = o;
    g.next_index = 1;
    g.now_ms = 1700000000000ull;
    for (unsigned s = 0; s < 2; s++) {
        for (unsigned i = 0; i < o->clients; i++) {
            snprintf(g.ids[s][i], sizeof g.ids[s][i], "%016x", (s + 1) * 0x1000u + i);
        }
    }
    struct sinter_tc_fsm *f = NULL;
    int rc = sinter_tc_fsm_open(&f, path, GROUP);
    unsigned snaps = 0;
    size_t timed_from = 0;
    if (rc == SINTER_OK) {
        rc = gen_globals(&g, o->prefill);
    }
    if (rc == SINTER_OK) {
        rc = flush_results(&g);
    }
    if (rc == SINTER_OK) {
        rc = apply_range(f, &g, 1, 0, g.n, 32, 0, snap, &snaps);
        timed_from = g.n;
    }
    if (rc == SINTER_OK) {
        rc = gen_globals(&g, o->globals);
    }
    if (rc == SINTER_OK) {
        rc = flush_results(&g);
    }
    if (rc != SINTER_OK) {
        fprintf(stderr, "fsm-bench: setup failed: %s\n", sinter_errname(rc));
        sinter_tc_fsm_close(f);
        gen_free(&g);
        bench_rmrf(dir);
        free(dir);
        return 1;
    }
    struct rusage u0, u1;
    struct io io0 = read_io();
    getrusage(RUSAGE_SELF, &u0);
    uint64_t t0 = bench_now_ns();
    rc = apply_range(f, &g, 1, timed_from, g.n, b, o->snapshot_every, snap, &snaps);
    uint64_t t1 = bench_now_ns();
    getrusage(RUSAGE_SELF, &u1);
    struct io io1 = read_io();
    uint32_t digest = 0;
    if (rc == SINTER_OK) {
        rc = sinter_tc_fsm_digest(f, &digest);
    }
    if (rc != SINTER_OK) {
        fprintf(stderr, "fsm-bench: apply failed: %s\n", sinter_errname(rc));
    } else {
        double n = (double)(g.n - timed_from);
        double secs = (double)(t1 - t0) / 1e9;
        printf("%5u  %9.0f  %8.2f  %12.2f  %13.2f  %16.2f  %12.3f\n", b, n / secs, secs * 1e6 / n,
               (cpu_s(&u1) - cpu_s(&u0)) * 1e6 / n, (double)(io1.wchar - io0.wchar) / 1024.0 / n,
               (double)(io1.syscw - io0.syscw) / n, (double)(u1.ru_minflt - u0.ru_minflt) / n);
        printf("# batch %u: %zu entries (%" PRIu64 " globals, %.2f entries/global) after %zu "
               "prefill entries; %u snapshots; digest %08x\n",
               b, g.n - timed_from, o->globals, n / (double)o->globals, timed_from, snaps, digest);
    }
    fflush(stdout);
    sinter_tc_fsm_close(f);
    gen_free(&g);
    bench_rmrf(dir);
    free(dir);
    return rc == SINTER_OK ? 0 : 1;
}

static int parse_list(const char *s, unsigned *out, size_t max, size_t *n)
{
    *n = 0;
    while (*s != '\0') {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v == 0 || v > 4096 || *n == max) {
            return -1;
        }
        out[(*n)++] = (unsigned)v;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0') {
            return -1;
        }
    }
    return *n > 0 ? 0 : -1;
}

static const char usage[] =
    "usage: fsm-bench [--batch 1,8,32] [--globals 20000] [--prefill 20000] [--inflight 16]\n"
    "                 [--outcomes 3] [--clients 8] [--snapshot-every N] [--dir DIR]\n";

int main(int argc, char **argv)
{
    struct opts o = {{1, 8, 32}, 3, 20000, 20000, 16, 3, 8, 0, NULL};
    for (int i = 1; i < argc; i += 2) { /* every flag takes a value */
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = v == NULL;
        if (!bad && strcmp(a, "--batch") == 0) {
            bad = parse_list(v, o.batch, MAX_BATCHES, &o.n_batch) != 0;
        } else if (!bad && strcmp(a, "--globals") == 0) {
            o.globals = strtoull(v, NULL, 10);
            bad = o.globals == 0;
        } else if (!bad && strcmp(a, "--prefill") == 0) {
            o.prefill = strtoull(v, NULL, 10);
        } else if (!bad && strcmp(a, "--inflight") == 0) {
            o.inflight = (unsigned)strtoul(v, NULL, 10);
            bad = o.inflight == 0 || o.inflight > MAX_INFLIGHT;
        } else if (!bad && strcmp(a, "--outcomes") == 0) {
            o.outcomes = (unsigned)strtoul(v, NULL, 10);
            bad = o.outcomes == 0 || o.outcomes > SINTER_TC_MAX_RESULTS;
        } else if (!bad && strcmp(a, "--clients") == 0) {
            o.clients = (unsigned)strtoul(v, NULL, 10);
            bad = o.clients == 0 || o.clients > MAX_CLIENTS;
        } else if (!bad && strcmp(a, "--snapshot-every") == 0) {
            o.snapshot_every = strtoull(v, NULL, 10);
        } else if (!bad && strcmp(a, "--dir") == 0) {
            o.dir = v;
        } else {
            bad = 1;
        }
        if (bad) {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (o.dir != NULL) {
        setenv("TMPDIR", o.dir, 1); /* bench_mkdtemp creates each row's directory under it */
    }
    printf("# fsm-bench: %" PRIu64 " 2-branch TCC globals after %" PRIu64 " prefill, %u in flight, "
           "%u outcomes per BRANCH_RESULTS, %u TM + %u RM clients, snapshot every %" PRIu64
           " entries (0 = none)\n",
           o.globals, o.prefill, o.inflight, o.outcomes, o.clients, o.clients, o.snapshot_every);
    printf("batch  entries/s  us/entry  cpu_us/entry  wal_kib/entry  syscall_wr/entry  "
           "minflt/entry\n");
    int bad = 0;
    for (size_t i = 0; i < o.n_batch; i++) {
        bad |= run_row(&o, o.batch[i]);
    }
    return bad;
}
