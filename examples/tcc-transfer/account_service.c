/*
 * sinter-account — one account service of the TCC transfer demo: a process with its own SQLite
 * database (table accounts, the TCC fence sinter_tcc_fence, and hook_log, a record of every
 * business hook that ran), serving one TCC action through libsinter-rm and "try" requests from
 * clients over the line RPC of acct_rpc.h.
 *
 *   sinter-account --name bank-a --db a.db --listen tcp://127.0.0.1:19001
 *                  --addr tcp://127.0.0.1:18091 [--addr ...] (--secret S | --secret-file F)
 *                  [--open ACCOUNT=AMOUNT ...] [--threads N] [--workers N]
 *                  [--confirm-delay-ms N]
 *
 * The action (resource id = --name) moves money in two phases, Seata's TCC "freeze" pattern:
 *
 *   branch      try                           confirm                  cancel
 *   D (debit)   balance -= x, frozen += x     frozen -= x              frozen -= x, balance += x
 *               (refused: balance < x)
 *   C (credit)  incoming += x                 incoming -= x,           incoming -= x
 *                                             balance += x
 *
 * so balance + frozen, summed over every service, is the same before and after any set of ended
 * transfers. Every hook runs inside the fence's local transaction (sinter/tcc.h), so a business
 * change, its fence row and its hook_log row commit together or not at all; confirm and cancel
 * get their arguments from the coordinator's delivery, so ANY instance serving the action (a
 * second process on the same file, or this one after a restart) can run them.
 *
 * --confirm-delay-ms (tests): the confirm hook sleeps that long inside its transaction, so a
 * coordinator with a shorter phase2_lease_ms delivers the same confirm again meanwhile
 * (docs/phase2-protocol.md "lease"): the fence must run the business confirm once.
 *
 * Prints "ready" on stdout once it serves; stops cleanly on SIGTERM / SIGINT (exit 0).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <sqlite3.h>

#include "acct_rpc.h"
#include "sinter/error.h"
#include "sinter/fence.h"
#include "sinter/rm.h"
#include "sinter/tcc.h"
#include "sinter/types.h"

#define MAX_ADDRS    8
#define MAX_OPEN     32
#define MAX_THREADS  64
#define BUSY_MS      5000
#define LATE_WAIT_MS 60000 /* a "late" try waits at most this long for its cancel */

static const char *schema_sql =
    "CREATE TABLE IF NOT EXISTS accounts ("
    " id TEXT PRIMARY KEY,"
    " balance INTEGER NOT NULL CHECK (balance >= 0),"
    " frozen INTEGER NOT NULL DEFAULT 0 CHECK (frozen >= 0),"
    " incoming INTEGER NOT NULL DEFAULT 0 CHECK (incoming >= 0));"
    "CREATE TABLE IF NOT EXISTS hook_log ("
    " xid TEXT NOT NULL, branch_id INTEGER NOT NULL, hook TEXT NOT NULL,"
    " attempt INTEGER NOT NULL, at_ms INTEGER NOT NULL);";

static struct {
    const char *name, *db_path, *listen, *secret;
    const char *addrs[MAX_ADDRS];
    size_t n_addrs;
    const char *open[MAX_OPEN];
    size_t n_open;
    unsigned threads, workers, confirm_delay_ms;
} cfg = {.threads = 8, .workers = 4};

static struct sinter_rm *g_rm;
static nng_socket g_sock;

/* ---- helpers ----------------------------------------------------------------------------------
 */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A branch's arguments, the bytes stored at the coordinator: "<D|C> <account> <amount>". */
struct targs {
    char kind;
    char account[64];
    int64_t amount;
};

static int parse_args(const uint8_t *p, size_t n, struct targs *t)
{
    char buf[128];
    if (p == NULL || n == 0 || n >= sizeof buf) {
        return SINTER_EINVAL;
    }
    memcpy(buf, p, n);
    buf[n] = '\0';
    char kind[4];
    long long amt;
    if (sscanf(buf, "%3s %63s %lld", kind, t->account, &amt) != 3 || kind[1] != '\0' ||
        (kind[0] != 'D' && kind[0] != 'C') || amt <= 0) {
        return SINTER_EINVAL;
    }
    t->kind = kind[0];
    t->amount = (int64_t)amt;
    return SINTER_OK;
}

/* Runs one UPDATE on the hook's connection with (amount, account) bound; SINTER_OK when a row
 * changed, miss when none did (unknown account, or the WHERE refused it). */
static int exec_update(sqlite3 *db, const char *sql, const struct targs *t, int miss)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        return SINTER_EDB;
    }
    sqlite3_bind_int64(st, 1, t->amount);
    sqlite3_bind_text(st, 2, t->account, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    sqlite3_finalize(st);
    if (src == SQLITE_BUSY || src == SQLITE_LOCKED) {
        return SINTER_EBUSY;
    }
    if (src != SQLITE_DONE) {
        return SINTER_EDB;
    }
    return sqlite3_changes(db) == 1 ? SINTER_OK : miss;
}

static int log_hook(sqlite3 *db, const char *xid, uint64_t branch, const char *hook,
                    uint32_t attempt)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO hook_log (xid, branch_id, hook, attempt, at_ms)"
                           " VALUES (?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK) {
        return SINTER_EDB;
    }
    sqlite3_bind_text(st, 1, xid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)branch);
    sqlite3_bind_text(st, 3, hook, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, attempt);
    sqlite3_bind_int64(st, 5, wall_ms());
    int src = sqlite3_step(st);
    sqlite3_finalize(st);
    return src == SQLITE_DONE ? SINTER_OK : (src == SQLITE_BUSY ? SINTER_EBUSY : SINTER_EDB);
}

/* ---- the TCC hooks (run inside the fence's local transaction) ---------------------------------
 */

static int do_try(sqlite3 *db, const char *xid, uint64_t branch, const struct targs *t)
{
    int rc;
    if (t->kind == 'D') {
        /* Freeze: the WHERE refuses an overdraft, which fails the try and so the global. */
        rc = exec_update(db,
                         "UPDATE accounts SET balance = balance - ?1, frozen = frozen + ?1"
                         " WHERE id = ?2 AND balance >= ?1",
                         t, SINTER_ESTATE);
    } else {
        rc = exec_update(db, "UPDATE accounts SET incoming = incoming + ?1 WHERE id = ?2", t,
                         SINTER_ENOTFOUND);
    }
    return rc == SINTER_OK ? log_hook(db, xid, branch, "try", 0) : rc;
}

static int hook_try(const struct sinter_tcc_ctx *c)
{
    struct targs t;
    int rc = parse_args(c->args, c->args_len, &t);
    return rc == SINTER_OK ? do_try(c->db->sqlite, c->xid, c->branch_id, &t) : rc;
}

static int hook_confirm(const struct sinter_tcc_ctx *c)
{
    struct targs t;
    int rc = parse_args(c->args, c->args_len, &t);
    if (rc != SINTER_OK) {
        return SINTER_ESTATE; /* arguments we never wrote: retrying cannot help */
    }
    if (cfg.confirm_delay_ms > 0) {
        sleep_ms(cfg.confirm_delay_ms);
    }
    if (t.kind == 'D') {
        rc = exec_update(c->db->sqlite, "UPDATE accounts SET frozen = frozen - ?1 WHERE id = ?2",
                         &t, SINTER_EDB);
    } else {
        rc = exec_update(c->db->sqlite,
                         "UPDATE accounts SET incoming = incoming - ?1, balance = balance + ?1"
                         " WHERE id = ?2",
                         &t, SINTER_EDB);
    }
    return rc == SINTER_OK ? log_hook(c->db->sqlite, c->xid, c->branch_id, "confirm", c->attempt)
                           : rc;
}

static int hook_cancel(const struct sinter_tcc_ctx *c)
{
    struct targs t;
    int rc = parse_args(c->args, c->args_len, &t);
    if (rc != SINTER_OK) {
        return SINTER_ESTATE;
    }
    if (t.kind == 'D') {
        rc = exec_update(c->db->sqlite,
                         "UPDATE accounts SET frozen = frozen - ?1, balance = balance + ?1"
                         " WHERE id = ?2",
                         &t, SINTER_EDB);
    } else {
        rc =
            exec_update(c->db->sqlite, "UPDATE accounts SET incoming = incoming - ?1 WHERE id = ?2",
                        &t, SINTER_EDB);
    }
    return rc == SINTER_OK ? log_hook(c->db->sqlite, c->xid, c->branch_id, "cancel", c->attempt)
                           : rc;
}

/* ---- the late try: register, wait for the cancel, then try --------------------------------- */

struct late_call {
    const char *xid;
    uint64_t branch;
    struct targs t;
};

static int late_hook(const struct sinter_fence_db *db, void *arg)
{
    struct late_call *lc = arg;
    return do_try(db->sqlite, lc->xid, lc->branch, &lc->t);
}

/* What sinter_tcc_try does (register the branch, then the try inside the fence, report
 * PhaseOne_Failed when refused), with the try's local transaction held back until the
 * branch's cancel reached the fence: the message that carried the try was "delayed" past the
 * global's rollback. Seata's anti-suspension case; the fence must refuse it. */
static int late_try(const struct sinter_fence_db *fdb, const char *xid, const char *args,
                    const struct targs *t, uint64_t *bid)
{
    int rc =
        sinter_rm_branch_register(g_rm, xid, SINTER_BT_TCC, cfg.name, args, strlen(args), 0, bid);
    if (rc != SINTER_OK) {
        return rc;
    }
    int64_t end = wall_ms() + LATE_WAIT_MS;
    int st = SINTER_FENCE_NONE;
    while (wall_ms() < end) {
        if (sinter_fence_status(fdb, xid, *bid, &st) == SINTER_OK && st != SINTER_FENCE_NONE) {
            break;
        }
        sleep_ms(20);
    }
    struct late_call lc = {xid, *bid, *t};
    rc = sinter_fence_try(fdb, xid, *bid, cfg.name, late_hook, &lc);
    if (rc != SINTER_OK) {
        (void)sinter_rm_branch_report(g_rm, xid, *bid, SINTER_BT_TCC, cfg.name,
                                      SINTER_BS_PHASE1_FAILED, 0);
    }
    return rc;
}

/* ---- the RPC server -----------------------------------------------------------------------------
 */

/* fdb: the serving thread's connection with its fence statement cache. */
static void handle(const struct sinter_fence_db *fdb, const char *req, char *out, size_t cap)
{
    sqlite3 *db = fdb->sqlite;
    char verb[16] = "", a1[128] = "", a2[8] = "", a3[64] = "", a4[16] = "", a5[16] = "";
    int n = sscanf(req, "%15s %127s %7s %63s %15s %15s", verb, a1, a2, a3, a4, a5);
    if (n >= 1 && strcmp(verb, "ping") == 0) {
        snprintf(out, cap, "ok");
    } else if (n >= 5 && strcmp(verb, "try") == 0) {
        char args[128];
        snprintf(args, sizeof args, "%s %s %s", a2, a3, a4);
        struct targs t;
        if (parse_args((const uint8_t *)args, strlen(args), &t) != SINTER_OK) {
            snprintf(out, cap, "err SINTER_EINVAL bad try arguments");
            return;
        }
        uint64_t bid = 0;
        int rc;
        if (n >= 6 && strcmp(a5, "late") == 0) {
            rc = late_try(fdb, a1, args, &t, &bid);
        } else {
            rc = sinter_tcc_try(g_rm, cfg.name, a1, args, strlen(args), fdb, &bid);
        }
        if (rc == SINTER_OK) {
            snprintf(out, cap, "ok %" PRIu64, bid);
        } else {
            snprintf(out, cap, "err %s branch %" PRIu64 ": %s", sinter_errname(rc), bid,
                     rc == SINTER_ESTATE && t.kind == 'D' ? "insufficient funds or global ended"
                                                          : sinter_rm_errmsg());
        }
    } else if (n >= 2 && strcmp(verb, "balance") == 0) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT balance, frozen, incoming FROM accounts WHERE id = ?",
                               -1, &st, NULL) != SQLITE_OK) {
            snprintf(out, cap, "err SINTER_EDB %s", sqlite3_errmsg(db));
            return;
        }
        sqlite3_bind_text(st, 1, a1, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            snprintf(out, cap, "ok %lld %lld %lld", (long long)sqlite3_column_int64(st, 0),
                     (long long)sqlite3_column_int64(st, 1),
                     (long long)sqlite3_column_int64(st, 2));
        } else {
            snprintf(out, cap, "err SINTER_ENOTFOUND no account %s", a1);
        }
        sqlite3_finalize(st);
    } else if (n >= 1 && strcmp(verb, "stats") == 0) {
        struct sinter_rm_stats s;
        sinter_rm_stats(g_rm, &s);
        snprintf(out, cap, "ok %" PRIu64 " %" PRIu64 " %" PRIu64, s.items, s.handled, s.reports_ok);
    } else {
        snprintf(out, cap, "err SINTER_EINVAL unknown request");
    }
}

static sqlite3 *open_db(void)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(cfg.db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        fprintf(stderr, "sinter-account: cannot open %s: %s\n", cfg.db_path,
                db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, BUSY_MS);
    return db;
}

static void *serve(void *arg)
{
    (void)arg;
    sqlite3 *db = open_db();
    nng_ctx ctx;
    nng_aio *aio = NULL;
    if (db == NULL || nng_ctx_open(&ctx, g_sock) != 0) {
        sqlite3_close(db);
        return NULL;
    }
    if (nng_aio_alloc(&aio, NULL, NULL) != 0) {
        nng_ctx_close(ctx);
        sqlite3_close(db);
        return NULL;
    }
    /* The thread's connection and its fence statement cache (sinter/fence.h): the fence's
     * statements are prepared once per thread, not per try. The cache is freed before the
     * connection is closed, or the close would fail. Without one (out of memory) the fence just
     * prepares per call. */
    struct sinter_fence_db fdb = sinter_fence_db_sqlite(db);
    (void)sinter_fence_cache_new(&fdb, &fdb.cache);
    for (;;) {
        nng_ctx_recv(ctx, aio);
        nng_aio_wait(aio);
        if (nng_aio_result(aio) != 0) {
            break; /* NNG_ECLOSED at shutdown */
        }
        nng_msg *msg = nng_aio_get_msg(aio);
        char req[SINTER_ACCT_LINE_MAX], resp[SINTER_ACCT_LINE_MAX];
        size_t n = nng_msg_len(msg);
        if (n >= sizeof req) {
            n = sizeof req - 1;
        }
        memcpy(req, nng_msg_body(msg), n);
        req[n] = '\0';
        handle(&fdb, req, resp, sizeof resp);
        nng_msg_clear(msg);
        if (nng_msg_append(msg, resp, strlen(resp)) != 0) {
            nng_msg_free(msg);
            continue;
        }
        nng_aio_set_msg(aio, msg);
        nng_ctx_send(ctx, aio);
        nng_aio_wait(aio);
        if (nng_aio_result(aio) != 0) {
            nng_msg_free(nng_aio_get_msg(aio));
            if (nng_aio_result(aio) == NNG_ECLOSED) {
                break;
            }
        }
    }
    nng_aio_free(aio);
    nng_ctx_close(ctx);
    sinter_fence_cache_free(fdb.cache);
    sqlite3_close(db);
    return NULL;
}

/* ---- start-up
 * ------------------------------------------------------------------------------------- */

/* Creates the tables (WAL: the RM's phase-2 workers and the try threads write the same file) and
 * opens the accounts given with --open that do not exist yet (a restart keeps its balances). */
static int init_db(void)
{
    sqlite3 *db = open_db();
    if (db == NULL) {
        return -1;
    }
    char *err = NULL;
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL;", NULL, NULL, &err) != SQLITE_OK ||
        sqlite3_exec(db, schema_sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sinter-account: schema: %s\n", err ? err : "?");
        sqlite3_free(err);
        sqlite3_close(db);
        return -1;
    }
    for (size_t i = 0; i < cfg.n_open; i++) {
        char acct[64];
        long long amt;
        if (sscanf(cfg.open[i], "%63[^=]=%lld", acct, &amt) != 2 || amt < 0) {
            fprintf(stderr, "sinter-account: bad --open %s (want ACCOUNT=AMOUNT)\n", cfg.open[i]);
            sqlite3_close(db);
            return -1;
        }
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO accounts (id, balance) VALUES (?, ?)", -1,
                           &st, NULL);
        sqlite3_bind_text(st, 1, acct, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, amt);
        int src = sqlite3_step(st);
        sqlite3_finalize(st);
        if (src != SQLITE_DONE) {
            fprintf(stderr, "sinter-account: open %s: %s\n", acct, sqlite3_errmsg(db));
            sqlite3_close(db);
            return -1;
        }
    }
    sqlite3_close(db);
    return 0;
}

static void usage(void)
{
    fputs("usage: sinter-account --name ACTION --db PATH --listen URL --addr URL [--addr ...]\n"
          "         (--secret S | --secret-file F) [--open ACCOUNT=AMOUNT ...] [--threads N]\n"
          "         [--workers N] [--confirm-delay-ms N]\n",
          stderr);
    exit(2);
}

static char secret_buf[256];

static const char *read_secret(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL || fgets(secret_buf, sizeof secret_buf, f) == NULL) {
        fprintf(stderr, "sinter-account: cannot read the secret file %s\n", path);
        exit(2);
    }
    fclose(f);
    secret_buf[strcspn(secret_buf, "\r\n")] = '\0';
    return secret_buf;
}

static unsigned parse_uint(const char *s)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v > 1000000) {
        usage();
    }
    return (unsigned)v;
}

static void parse_argv(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (i + 1 >= argc) {
            usage();
        }
        const char *v = argv[++i];
        if (strcmp(o, "--name") == 0) {
            cfg.name = v;
        } else if (strcmp(o, "--db") == 0) {
            cfg.db_path = v;
        } else if (strcmp(o, "--listen") == 0) {
            cfg.listen = v;
        } else if (strcmp(o, "--addr") == 0 && cfg.n_addrs < MAX_ADDRS) {
            cfg.addrs[cfg.n_addrs++] = v;
        } else if (strcmp(o, "--secret") == 0) {
            cfg.secret = v;
        } else if (strcmp(o, "--secret-file") == 0) {
            cfg.secret = read_secret(v);
        } else if (strcmp(o, "--open") == 0 && cfg.n_open < MAX_OPEN) {
            cfg.open[cfg.n_open++] = v;
        } else if (strcmp(o, "--threads") == 0) {
            cfg.threads = parse_uint(v);
        } else if (strcmp(o, "--workers") == 0) {
            cfg.workers = parse_uint(v);
        } else if (strcmp(o, "--confirm-delay-ms") == 0) {
            cfg.confirm_delay_ms = parse_uint(v);
        } else {
            usage();
        }
    }
    if (cfg.name == NULL || cfg.db_path == NULL || cfg.listen == NULL || cfg.n_addrs == 0 ||
        cfg.secret == NULL || cfg.threads == 0 || cfg.threads > MAX_THREADS) {
        usage();
    }
}

int main(int argc, char **argv)
{
    parse_argv(argc, argv);
    /* Block the stop signals in every thread (inherited), then wait for them in main. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    if (init_db() != 0) {
        return 1;
    }
    struct sinter_rm_opts o;
    sinter_rm_opts_default(&o);
    o.addresses = cfg.addrs;
    o.n_addresses = cfg.n_addrs;
    o.secret = cfg.secret;
    o.application_id = cfg.name;
    o.resources = &cfg.name;
    o.n_resources = 1;
    o.workers = cfg.workers;
    o.poll_wait_ms = 2000; /* a restarted node gets our poll again within 2 s */
    int rc = sinter_rm_open(&g_rm, &o);
    if (rc != SINTER_OK) {
        fprintf(stderr, "sinter-account: rm open: %s\n", sinter_strerror(rc));
        return 1;
    }
    struct sinter_tcc_action a;
    memset(&a, 0, sizeof a);
    a.name = cfg.name;
    a.try_fn = hook_try;
    a.confirm_fn = hook_confirm;
    a.cancel_fn = hook_cancel;
    a.sqlite_path = cfg.db_path;
    rc = sinter_tcc_register(g_rm, &a);
    if (rc == SINTER_OK) {
        rc = sinter_rm_start(g_rm);
    }
    if (rc != SINTER_OK) {
        fprintf(stderr, "sinter-account: tcc: %s: %s\n", sinter_strerror(rc), sinter_rm_errmsg());
        sinter_rm_close(g_rm);
        return 1;
    }
    int rv = nng_rep0_open(&g_sock);
    if (rv == 0) {
        rv = nng_listen(g_sock, cfg.listen, NULL, 0);
    }
    if (rv != 0) {
        fprintf(stderr, "sinter-account: listen %s: %s\n", cfg.listen, nng_strerror(rv));
        sinter_rm_close(g_rm);
        return 1;
    }
    pthread_t th[MAX_THREADS];
    unsigned started = 0;
    for (; started < cfg.threads; started++) {
        if (pthread_create(&th[started], NULL, serve, NULL) != 0) {
            break;
        }
    }
    printf("ready: %s serving action %s on %s (db %s)\n", cfg.name, cfg.name, cfg.listen,
           cfg.db_path);
    fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    nng_close(g_sock); /* wakes every serve thread with NNG_ECLOSED */
    for (unsigned i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
    }
    sinter_rm_close(g_rm);
    return 0;
}
