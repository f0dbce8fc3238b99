/*
 * The XA resource on PostgreSQL through libpq (include/sinter/xa.h): branch start and end on a
 * caller's connection, phase 2 by gid from any connection, recovery of prepared transactions.
 *
 * PostgreSQL's two-phase commit (docs: sql-prepare-transaction, sql-commit-prepared,
 * view-pg-prepared-xacts): PREPARE TRANSACTION 'gid' detaches the transaction from the session,
 * keeps its locks and survives crashes; any session of the same database finishes it with
 * COMMIT PREPARED / ROLLBACK PREPARED. Those commands take a string literal, not a parameter, so
 * their SQL is built from our own gids only, after checking that a gid consists of
 * [A-Za-z0-9_.:-] (no quote can appear; checked on every path, not only in debug builds).
 *
 * Classification is by SQLSTATE only (PQresultErrorField(res, PG_DIAG_SQLSTATE)), never by
 * message text, which follows lc_messages. The decisive one is 42704 undefined_object, "prepared
 * transaction with identifier ... does not exist": it is the answer to a retried COMMIT PREPARED
 * whose first attempt committed (the reply was lost) AND to one whose transaction was rolled
 * back. Only the transaction's fate tells them apart, so we ask pg_xact_status(xid8) about the id
 * recorded at begin (docs: functions-info, "Transaction ID and Snapshot Information"): it answers
 * 'committed', 'aborted', 'in progress', or NULL when the id is too old for the commit log to
 * remember. Seata's XA mode does the same in spirit (XAER_NOTA on a retry is looked up rather than
 * taken as success); we never turn an unknown into success.
 *
 * Hang protection. A statement can block forever where PostgreSQL sees no deadlock: two branches
 * of one global touching the same row (the second waits for the first's locks, which only the
 * coordinator's phase 2 releases, and the coordinator waits for the second branch). So:
 *   - inside a branch the service's statements run under SET LOCAL statement_timeout and
 *     lock_timeout (they end with the transaction, so the caller's session settings are left as
 *     they were), giving 55P03 lock_not_available / 57014 query_canceled: retryable;
 *   - every statement this layer sends itself goes through exec_deadline(): asynchronous libpq
 *     (PQsendQueryParams, poll() on PQsocket with a deadline), PQcancel when the deadline passes,
 *     then a short grace for the server to answer the cancel. COMMIT PREPARED cannot run inside a
 *     transaction block, so SET LOCAL cannot bound it; the client deadline also covers a stalled
 *     network, which no server setting can.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sinter/error.h"
#include "sinter/xa.h"

_Static_assert(SINTER_XA_GID_MAXLEN < SINTER_XA_GID_LEN,
               "every gid must fit PostgreSQL's GIDSIZE (200 bytes with the NUL)");

#define GID_MAGIC "sntr:"

#define DEFAULT_STATEMENT_MS 30000u
#define DEFAULT_LOCK_MS      10000u
#define DEFAULT_CALL_MS      30000u
#define RESOURCE_ID_MAX      255

struct sinter_xa_resource {
    char ns[SINTER_XA_NS_MAX + 1];
    char prefix[sizeof GID_MAGIC + SINTER_XA_NS_MAX + 1]; /* "sntr:<ns>:" */
    char resource_id[RESOURCE_ID_MAX + 1];
    uint32_t statement_ms, lock_ms, idle_ms, call_ms;
    struct sinter_xa_hooks hooks;
};

/* ---- per-thread error message ---- */

static _Thread_local char xa_errbuf[1024];

static void set_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(xa_errbuf, sizeof xa_errbuf, fmt, ap);
    va_end(ap);
}

const char *sinter_xa_errmsg(void)
{
    return xa_errbuf;
}

/* ---- gids ---- */

static bool ns_valid(const char *ns)
{
    if (ns == NULL)
        return false;
    size_t n = strnlen(ns, SINTER_XA_NS_MAX + 1);
    if (n == 0 || n > SINTER_XA_NS_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = ns[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

/* The check that makes splicing a gid into PREPARE TRANSACTION '...' safe: bounded, and only
 * characters that can never end or escape a string literal. */
static bool gid_literal_safe(const char *gid)
{
    size_t n = strnlen(gid, SINTER_XA_GID_LEN);
    if (n == 0 || n >= SINTER_XA_GID_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = gid[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-' || c == ':'))
            return false;
    }
    return true;
}

size_t sinter_xa_gid(const char *ns, const struct sinter_xid *xid, uint64_t branch_id,
                     char buf[SINTER_XA_GID_LEN])
{
    if (buf == NULL)
        return 0;
    buf[0] = '\0';
    if (!ns_valid(ns) || xid == NULL || xid->index == 0 || branch_id == 0)
        return 0;
    int n = snprintf(buf, SINTER_XA_GID_LEN, GID_MAGIC "%s:%" PRIu32 ":%" PRIu64 ":%" PRIu64, ns,
                     xid->group, xid->index, branch_id);
    /* Cannot fail or truncate: the longest gid is SINTER_XA_GID_MAXLEN (static assert above). */
    if (n <= 0 || n > SINTER_XA_GID_MAXLEN) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

/* Canonical decimal u64 > 0 of exactly len bytes. */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20 || (s[0] == '0'))
        return SINTER_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SINTER_EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return SINTER_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return SINTER_OK;
}

int sinter_xa_gid_parse(const char *gid, const char *ns, struct sinter_xid *xid,
                        uint64_t *branch_id)
{
    if (gid == NULL || xid == NULL || branch_id == NULL)
        return SINTER_EINVAL;
    size_t len = strnlen(gid, SINTER_XA_GID_LEN);
    const size_t magic = sizeof GID_MAGIC - 1;
    if (len >= SINTER_XA_GID_LEN || len <= magic || memcmp(gid, GID_MAGIC, magic) != 0)
        return SINTER_EINVAL;
    const char *p = gid + magic, *end = gid + len;
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (colon == NULL || colon == p || (size_t)(colon - p) > SINTER_XA_NS_MAX)
        return SINTER_EINVAL;
    char got_ns[SINTER_XA_NS_MAX + 1];
    memcpy(got_ns, p, (size_t)(colon - p));
    got_ns[colon - p] = '\0';
    if (!ns_valid(got_ns) || (ns != NULL && strcmp(ns, got_ns) != 0))
        return SINTER_EINVAL;
    /* The rest is "<group>:<index>:<branch>": the xid's own text form, then the branch. */
    const char *x = colon + 1;
    const char *last = NULL;
    for (const char *q = end; q > x; q--)
        if (q[-1] == ':') {
            last = q - 1;
            break;
        }
    if (last == NULL)
        return SINTER_EINVAL;
    struct sinter_xid v;
    uint64_t b;
    if (sinter_xid_parse(&v, x, (size_t)(last - x)) != SINTER_OK ||
        parse_u64(last + 1, (size_t)(end - last - 1), &b) != SINTER_OK)
        return SINTER_EINVAL;
    *xid = v;
    *branch_id = b;
    return SINTER_OK;
}

/* ---- statements with a deadline ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends one statement (extended protocol, text parameters: never spliced into the SQL) and waits
 * for its result until timeout_ms have passed; then asks the server to cancel it (PQcancel: the
 * statement ends with 57014 query_canceled, and a transaction it ran in is aborted) and waits a
 * short grace for that answer. Returns the statement's result (the first error result if there
 * were several), or NULL when the connection failed or even the cancel went unanswered (then
 * *gave_up is set and a query is still in flight: the caller must discard the connection).
 * *timed_out is set when the deadline passed (whether or not the cancel was answered). */
static PGresult *exec_deadline(PGconn *c, uint32_t timeout_ms, const char *sql, int n,
                               const char *const *params, bool *timed_out, bool *gave_up)
{
    *timed_out = false;
    *gave_up = false;
    if (PQstatus(c) != CONNECTION_OK)
        return NULL;
    if (!PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0))
        return NULL;
    int64_t deadline = now_ms() + timeout_ms;
    bool cancelled = false;
    PGresult *keep = NULL;
    for (;;) {
        while (!PQisBusy(c)) {
            PGresult *r = PQgetResult(c);
            if (r == NULL)
                return keep;
            if (keep == NULL || PQresultStatus(keep) != PGRES_FATAL_ERROR) {
                PQclear(keep);
                keep = r;
            } else {
                PQclear(r);
            }
        }
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            if (cancelled) {
                *gave_up = true;
                PQclear(keep);
                return NULL;
            }
            *timed_out = true;
            cancelled = true;
            PGcancel *cn = PQgetCancel(c);
            char eb[256];
            if (cn != NULL) {
                (void)PQcancel(cn, eb, (int)sizeof eb);
                PQfreeCancel(cn);
            }
            /* Grace for the cancel's answer: a live server answers in milliseconds. */
            deadline = now_ms() + (timeout_ms < 1000   ? 1000
                                   : timeout_ms > 5000 ? 5000
                                                       : timeout_ms);
            continue;
        }
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN, .revents = 0};
        if (pfd.fd < 0) {
            PQclear(keep);
            return NULL;
        }
        int pr = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (pr < 0 && errno != EINTR) {
            PQclear(keep);
            return NULL;
        }
        if (pr > 0 && !PQconsumeInput(c)) {
            PQclear(keep);
            return NULL; /* connection lost: PQstatus is now CONNECTION_BAD */
        }
    }
}

int sinter_xa_sqlstate_rc(const char *s)
{
    if (s == NULL || strlen(s) != 5)
        return SINTER_EDB;
    /* Contention or a bound we set: the same work can succeed when tried again.
     * 40001 serialization_failure, 40P01 deadlock_detected, 55P03 lock_not_available
     * (lock_timeout), 57014 query_canceled (statement_timeout, our PQcancel), 55000
     * object_not_in_prerequisite_state ("prepared transaction ... is busy": another session is
     * finishing that gid right now). */
    if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 || strcmp(s, "55P03") == 0 ||
        strcmp(s, "57014") == 0 || strcmp(s, "55000") == 0)
        return SINTER_EBUSY;
    /* Class 08 connection_exception; 57P01..57P05 the server ended the session (admin /
     * crash shutdown, cannot connect now, database dropped, idle session timeout). */
    if (strncmp(s, "08", 2) == 0 || (strncmp(s, "57P0", 4) == 0 && s[4] >= '1' && s[4] <= '5'))
        return SINTER_ETRANSPORT;
    return SINTER_EDB;
}

/* Records the failure of one statement (r may be NULL) and classifies it. Frees r. state (may be
 * NULL, else 6 bytes) gets the SQLSTATE or "". */
static int fail(PGconn *c, PGresult *r, const char *what, bool timed_out, bool gave_up, char *state)
{
    const char *st = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state != NULL)
        snprintf(state, 6, "%s", st != NULL ? st : "");
    const char *msg = r != NULL ? PQresultErrorMessage(r) : NULL;
    if (msg == NULL || *msg == '\0')
        msg = PQerrorMessage(c);
    if (msg == NULL || *msg == '\0')
        msg = r != NULL ? PQresStatus(PQresultStatus(r)) : "no result";
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    int rc;
    if (gave_up) {
        rc = SINTER_ETIMEOUT;
        set_err("postgres: %s: no answer within the deadline, not even to the cancel request: "
                "discard this connection",
                what);
        PQclear(r);
        return rc;
    }
    if (timed_out)
        rc = SINTER_ETIMEOUT;
    else if (PQstatus(c) != CONNECTION_OK)
        rc = SINTER_ETRANSPORT;
    else if (r == NULL)
        rc = SINTER_EDB; /* e.g. "another command is already in progress" */
    else
        rc = sinter_xa_sqlstate_rc(st);
    set_err("postgres: %s%s: %.*s%s%s%s", what, timed_out ? " (deadline passed, cancelled)" : "",
            (int)n, msg, st != NULL ? " (SQLSTATE " : "", st != NULL ? st : "",
            st != NULL ? ")" : "");
    PQclear(r);
    return rc;
}

/* One statement under the deadline; *out (may be NULL) gets the result on success. */
static int run(PGconn *c, uint32_t timeout_ms, const char *sql, int n, const char *const *params,
               const char *what, ExecStatusType want, PGresult **out, char *state)
{
    bool timed_out, gave_up;
    if (state != NULL)
        state[0] = '\0';
    PGresult *r = exec_deadline(c, timeout_ms, sql, n, params, &timed_out, &gave_up);
    if (r == NULL || PQresultStatus(r) != want)
        return fail(c, r, what, timed_out, gave_up, state);
    if (out != NULL)
        *out = r;
    else
        PQclear(r);
    return SINTER_OK;
}

/* Rolls back whatever transaction conn is in; errors are ignored (a failed ROLLBACK leaves the
 * transaction to end with the session, and a lost connection has rolled back already). */
static void rollback_local(PGconn *c, uint32_t timeout_ms)
{
    PGTransactionStatusType t = PQtransactionStatus(c);
    if (t == PQTRANS_INTRANS || t == PQTRANS_INERROR) {
        bool to, gu;
        PQclear(exec_deadline(c, timeout_ms, "ROLLBACK", 0, NULL, &to, &gu));
    }
}

static bool in_txn(PGconn *c)
{
    PGTransactionStatusType t = PQtransactionStatus(c);
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

/* ---- server check and resource ---- */

static int check_server(PGconn *conn, uint32_t timeout_ms)
{
    PGresult *r = NULL;
    int rc = run(conn, timeout_ms,
                 "SELECT current_setting('max_prepared_transactions')::int, "
                 "current_setting('server_version_num')::int",
                 0, NULL, "read max_prepared_transactions", PGRES_TUPLES_OK, &r, NULL);
    if (rc != SINTER_OK)
        return rc;
    long maxprep = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    long version = strtol(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    if (version < 130000) {
        set_err("PostgreSQL %ld is too old for XA branches: version 13 or newer is needed "
                "(pg_current_xact_id and pg_xact_status on xid8)",
                version);
        return SINTER_ECONFIG;
    }
    if (maxprep <= 0) {
        /* PostgreSQL's default is 0, which disables PREPARE TRANSACTION ("prepared transactions
         * are disabled", SQLSTATE 55000) only when a branch ends: say it here, once, clearly. */
        set_err("PostgreSQL max_prepared_transactions is 0 on this server, so PREPARE "
                "TRANSACTION is disabled and XA branches cannot work: set "
                "max_prepared_transactions in postgresql.conf (or ALTER SYSTEM SET "
                "max_prepared_transactions = N) to at least the number of branches prepared at "
                "once (e.g. max_connections), then restart PostgreSQL: the setting only takes "
                "effect at server start");
        return SINTER_ENOPREPARED;
    }
    return SINTER_OK;
}

static void copy_err(char *err, size_t errlen)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", xa_errbuf);
}

int sinter_xa_check_server(PGconn *conn, char *err, size_t errlen)
{
    xa_errbuf[0] = '\0';
    int rc;
    if (conn == NULL) {
        set_err("invalid argument: no connection");
        rc = SINTER_EINVAL;
    } else {
        rc = check_server(conn, DEFAULT_CALL_MS);
    }
    copy_err(err, errlen);
    return rc;
}

/* 0 = default, UINT32_MAX = unbounded (PostgreSQL's 0); PostgreSQL's timeouts are int ms. */
static uint32_t bound_ms(uint32_t v, uint32_t def)
{
    if (v == 0)
        return def;
    if (v == UINT32_MAX)
        return 0;
    return v > INT32_MAX ? INT32_MAX : v;
}

int sinter_xa_resource_open(const struct sinter_xa_config *cfg, PGconn *conn,
                            struct sinter_xa_resource **out, char *err, size_t errlen)
{
    xa_errbuf[0] = '\0';
    if (out != NULL)
        *out = NULL;
    if (cfg == NULL || conn == NULL || out == NULL || !ns_valid(cfg->ns) ||
        cfg->hooks.register_branch == NULL || cfg->hooks.global_status == NULL ||
        (cfg->resource_id != NULL &&
         (cfg->resource_id[0] == '\0' ||
          strnlen(cfg->resource_id, RESOURCE_ID_MAX + 1) > RESOURCE_ID_MAX))) {
        set_err("invalid argument: need a connection, ns of 1..%d characters [A-Za-z0-9_.-], "
                "hooks register_branch and global_status, resource_id of 1..%d bytes or NULL",
                SINTER_XA_NS_MAX, RESOURCE_ID_MAX);
        copy_err(err, errlen);
        return SINTER_EINVAL;
    }
    struct sinter_xa_resource *r = calloc(1, sizeof *r);
    if (r == NULL) {
        set_err("out of memory");
        copy_err(err, errlen);
        return SINTER_ENOMEM;
    }
    snprintf(r->ns, sizeof r->ns, "%s", cfg->ns);
    snprintf(r->prefix, sizeof r->prefix, GID_MAGIC "%s:", cfg->ns);
    snprintf(r->resource_id, sizeof r->resource_id, "%s",
             cfg->resource_id != NULL ? cfg->resource_id : cfg->ns);
    r->statement_ms = bound_ms(cfg->statement_timeout_ms, DEFAULT_STATEMENT_MS);
    r->lock_ms = bound_ms(cfg->lock_timeout_ms, DEFAULT_LOCK_MS);
    r->idle_ms = cfg->idle_timeout_ms > INT32_MAX ? INT32_MAX : cfg->idle_timeout_ms;
    r->call_ms = cfg->call_timeout_ms == 0 ? DEFAULT_CALL_MS : cfg->call_timeout_ms;
    r->hooks = cfg->hooks;
    int rc = check_server(conn, r->call_ms);
    if (rc != SINTER_OK) {
        copy_err(err, errlen);
        free(r);
        return rc;
    }
    *out = r;
    return SINTER_OK;
}

void sinter_xa_resource_close(struct sinter_xa_resource *res)
{
    free(res);
}

const char *sinter_xa_resource_ns(const struct sinter_xa_resource *res)
{
    return res != NULL ? res->ns : "";
}

/* ---- phase one ---- */

enum { BR_NONE = 0, BR_ACTIVE = 1, BR_ENDED = 2 };

static void report(const struct sinter_xa_resource *res, const struct sinter_xa_branch *br,
                   uint32_t status, int *rc_out)
{
    int rc = SINTER_OK;
    if (res->hooks.report != NULL)
        rc = res->hooks.report(res->hooks.arg, br, status);
    if (rc_out != NULL)
        *rc_out = rc;
}

/* Phase one failed after the branch was registered: roll back, tell the coordinator (best
 * effort: a lost report only delays the global's rollback until its timeout), keep the first
 * error's message. */
static void fail_branch(const struct sinter_xa_resource *res, PGconn *conn,
                        struct sinter_xa_branch *br)
{
    char saved[sizeof xa_errbuf];
    memcpy(saved, xa_errbuf, sizeof saved);
    rollback_local(conn, res->call_ms);
    br->state = BR_ENDED;
    report(res, br, SINTER_BS_PHASE1_FAILED, NULL);
    memcpy(xa_errbuf, saved, sizeof saved);
}

static void ms_text(char *buf, size_t n, uint32_t ms)
{
    snprintf(buf, n, "%" PRIu32, ms);
}

int sinter_xa_begin(const struct sinter_xa_resource *res, PGconn *conn,
                    const struct sinter_xid *xid, struct sinter_xa_branch *br)
{
    xa_errbuf[0] = '\0';
    if (res == NULL || conn == NULL || xid == NULL || xid->index == 0 || br == NULL) {
        set_err("invalid argument");
        return SINTER_EINVAL;
    }
    memset(br, 0, sizeof *br);
    if (PQstatus(conn) != CONNECTION_OK) {
        set_err("postgres: connection not usable: %s", PQerrorMessage(conn));
        return SINTER_ETRANSPORT;
    }
    if (in_txn(conn)) {
        /* Our BEGIN would be ignored with a warning and the branch would swallow the caller's
         * half-done work: refuse. */
        set_err("the connection is already inside a transaction");
        return SINTER_ESTATE;
    }
    br->xid = *xid;
    /* BEGIN first, register second: the coordinator must learn the local transaction id with
     * the branch itself. A phase-2 delivery can reach a branch that is still only Registered
     * (a global timeout while the service works); with the id, its 42704 is resolved by
     * pg_xact_status ('in progress': retryable, the transaction may still prepare) instead of
     * being answered as an empty rollback that leaves a later PREPARE to the late-prepare
     * guard alone. */
    int rc = run(conn, res->call_ms, "BEGIN", 0, NULL, "begin", PGRES_COMMAND_OK, NULL, NULL);
    PGresult *r = NULL;
    if (rc == SINTER_OK) {
        char st[16], lk[16], idle[16];
        ms_text(st, sizeof st, res->statement_ms);
        ms_text(lk, sizeof lk, res->lock_ms);
        ms_text(idle, sizeof idle, res->idle_ms);
        const char *p[3] = {st, lk, res->idle_ms != 0 ? idle : NULL};
        /* set_config(..., true) is SET LOCAL: the bounds end with the branch transaction.
         * pg_current_xact_id() assigns the transaction id now (docs: "assigning a new one if the
         * current transaction does not have one"), so even a read-only branch has an id for
         * pg_xact_status in phase 2. */
        rc = run(conn, res->call_ms,
                 "SELECT set_config('statement_timeout', $1, true), "
                 "set_config('lock_timeout', $2, true), "
                 "set_config('idle_in_transaction_session_timeout', "
                 "coalesce($3, current_setting('idle_in_transaction_session_timeout')), true), "
                 "pg_current_xact_id()::text",
                 3, p, "start branch", PGRES_TUPLES_OK, &r, NULL);
    }
    if (rc == SINTER_OK) {
        char v[32];
        snprintf(v, sizeof v, "%s", PQntuples(r) == 1 ? PQgetvalue(r, 0, 3) : "");
        PQclear(r);
        char *end = NULL;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || x == 0) {
            set_err("postgres: pg_current_xact_id() returned '%s'", v);
            rc = SINTER_EDB;
        } else {
            br->local_xid = (uint64_t)x;
        }
    }
    if (rc != SINTER_OK) {
        /* Nothing registered yet: roll back, report nothing (br stays "never begun"). */
        rollback_local(conn, res->call_ms);
        return rc;
    }
    uint64_t bid = 0;
    rc = res->hooks.register_branch(res->hooks.arg, xid, res->resource_id, br->local_xid, &bid);
    if (rc != SINTER_OK) {
        /* Late register (ESTATE) or the coordinator unreachable: nothing to report. Should the
         * registration have happened after all (a lost reply), the coordinator rolls the branch
         * back and phase 2 finds local_xid aborted: Rollbacked. */
        set_err("register_branch: %s", sinter_strerror(rc));
        rollback_local(conn, res->call_ms);
        br->local_xid = 0;
        return rc;
    }
    br->branch_id = bid;
    if (bid == 0 || sinter_xa_gid(res->ns, xid, bid, br->gid) == 0) {
        set_err("register_branch returned branch id 0");
        fail_branch(res, conn, br);
        return SINTER_EINTERNAL;
    }
    br->state = BR_ACTIVE;
    return SINTER_OK;
}

/* A global in which a just-prepared branch must be rolled back at once: rollback side, or
 * unknown to the coordinator (Finished: forgotten, nobody would ever finish the branch). */
static bool refuses_prepare(uint32_t gs)
{
    return sinter_global_status_is_rollback_side(gs) || gs == SINTER_GS_FINISHED ||
           gs == SINTER_GS_UNKNOWN;
}

/* The late-prepare guard: SINTER_OK when the global may still commit. The coordinator's rollback
 * decision is durable before its ROLLBACK PREPARED deliveries start, so a prepare that completed
 * after such a delivery (which found nothing: 42704, "empty rollback") sees the decision here. */
static int guard(const struct sinter_xa_resource *res, const struct sinter_xa_branch *br)
{
    uint32_t gs = SINTER_GS_UNKNOWN;
    int rc = res->hooks.global_status(res->hooks.arg, &br->xid, &gs);
    if (rc != SINTER_OK) {
        set_err("late-prepare guard: global_status failed (%s): branch %s rolled back",
                sinter_strerror(rc), br->gid);
        return rc;
    }
    if (refuses_prepare(gs)) {
        set_err("late prepare: global is %s, branch %s rolled back at once",
                sinter_global_status_name(gs), br->gid);
        return SINTER_ESTATE;
    }
    return SINTER_OK;
}

static int rollback_prepared(const struct sinter_xa_resource *res, PGconn *conn, const char *gid,
                             uint64_t local_xid, uint32_t *outcome);

/* Undo a branch we just prepared: ROLLBACK PREPARED on conn (the branch's own connection from
 * sinter_xa_prepare, a pooled one from sinter_xa_report_settle). Returns ROLLBACK PREPARED's
 * result: SINTER_OK when the branch is now rolled back (by us, or found so: 42704 resolved by
 * pg_xact_status 'aborted'). */
static int undo_prepared(const struct sinter_xa_resource *res, PGconn *conn,
                         const struct sinter_xa_branch *br)
{
    char saved[sizeof xa_errbuf];
    memcpy(saved, xa_errbuf, sizeof saved);
    uint32_t outcome;
    int rc = rollback_prepared(res, conn, br->gid, br->local_xid, &outcome);
    if (rc != SINTER_OK) {
        /* Still prepared: the coordinator's rollback (the branch is registered) or the recovery
         * scan finishes it. Say so in the message. */
        char why[sizeof xa_errbuf];
        memcpy(why, xa_errbuf, sizeof why);
        set_err("%.400s; ROLLBACK PREPARED failed too, left to phase 2 / recovery: %.400s", saved,
                why);
    } else {
        memcpy(xa_errbuf, saved, sizeof saved);
    }
    report(res, br, SINTER_BS_PHASE1_FAILED, NULL);
    return rc;
}

/* What follows a PhaseOne_Done report that was not accepted (rrc != SINTER_OK), on an idle
 * connection of the resource's database: the second half of the late-prepare guard, shared by
 * sinter_xa_prepare (the branch's connection, right after its synchronous report) and
 * sinter_xa_report_settle (a pooled connection, after an asynchronous report). The return codes
 * are sinter_xa_prepare's table rows after PREPARE. */
static int settle_refused(const struct sinter_xa_resource *res, PGconn *conn,
                          const struct sinter_xa_conn_source *src,
                          const struct sinter_xa_branch *br, int rrc, bool *rolled_back)
{
    /* Refused (ESTATE: the global is no longer Begin, a decision came in between; ENOTFOUND:
     * the coordinator no longer knows it) or lost (the report may or may not have been
     * recorded). Ask which side the global is on. */
    bool refused = rrc == SINTER_ESTATE || rrc == SINTER_ENOTFOUND;
    uint32_t gs = SINTER_GS_UNKNOWN;
    int grc = res->hooks.global_status(res->hooks.arg, &br->xid, &gs);
    if (grc == SINTER_OK && refuses_prepare(gs)) {
        set_err("late prepare: PhaseOne_Done %s (%s), global is %s, branch %s rolled back at "
                "once",
                refused ? "refused" : "not answered", sinter_errname(rrc),
                sinter_global_status_name(gs), br->gid);
        PGconn *c = conn != NULL ? conn : src->get(src->arg);
        if (c == NULL) {
            /* No connection now: the branch is registered and prepared, so the rollback
             * decision's phase 2 (or the recovery scan) ends it; tell the coordinator it
             * failed, as undo_prepared would. */
            char why[sizeof xa_errbuf];
            memcpy(why, xa_errbuf, sizeof why);
            set_err("%.400s; no connection for ROLLBACK PREPARED, left to phase 2 / recovery", why);
            report(res, br, SINTER_BS_PHASE1_FAILED, NULL);
            return SINTER_ESTATE;
        }
        int urc = undo_prepared(res, c, br);
        if (conn == NULL) /* ROLLBACK PREPARED's own result: ETIMEOUT / ETRANSPORT close it */
            src->put(src->arg, c, urc);
        if (rolled_back != NULL)
            *rolled_back = urc == SINTER_OK;
        return SINTER_ESTATE;
    }
    /* Commit side (or still Begin after a lost report): the branch is registered (with its
     * local_xid), so the coordinator's phase 2 commits it, or the TM's decision does; undoing it
     * would break the global's atomicity. The same when the side cannot be told: a refusal
     * proves a decision that may be commit, a lost report may have been recorded, and either
     * decision's phase 2 (or the recovery scan) finishes the branch. Not ESTATE, which says
     * "rolled back". */
    if (refused) {
        if (grc != SINTER_OK)
            set_err("PhaseOne_Done refused (%s: the global is no longer Begin) and "
                    "global_status failed (%s): branch %s stays prepared, outcome decided by the "
                    "coordinator",
                    sinter_errname(rrc), sinter_errname(grc), br->gid);
        else
            set_err("PhaseOne_Done refused: global is %s, branch %s stays prepared for the "
                    "coordinator's phase 2 (outcome decided by the coordinator)",
                    sinter_global_status_name(gs), br->gid);
    } else {
        set_err("report PhaseOne_Done failed (%s): branch %s stays prepared, outcome decided by "
                "the coordinator (phase 2 / recovery)",
                sinter_errname(rrc), br->gid);
    }
    return SINTER_ETIMEOUT;
}

int sinter_xa_prepare(const struct sinter_xa_resource *res, PGconn *conn,
                      struct sinter_xa_branch *br)
{
    xa_errbuf[0] = '\0';
    if (res == NULL || conn == NULL || br == NULL) {
        set_err("invalid argument");
        return SINTER_EINVAL;
    }
    if (br->state != BR_ACTIVE) {
        set_err("the branch is not active (never begun, or already ended)");
        return SINTER_ESTATE;
    }
    switch (PQtransactionStatus(conn)) {
    case PQTRANS_INTRANS:
        break;
    case PQTRANS_INERROR:
        /* PREPARE of an aborted transaction "succeeds" as ROLLBACK: nothing would be prepared. */
        set_err("a statement of the branch failed and aborted its transaction: %s",
                PQerrorMessage(conn));
        fail_branch(res, conn, br);
        return SINTER_EDB;
    case PQTRANS_IDLE:
        set_err("the service ended the branch transaction itself (it must not commit or roll "
                "back)");
        fail_branch(res, conn, br);
        return SINTER_ESTATE;
    default:
        set_err("postgres: connection not usable: %s", PQerrorMessage(conn));
        fail_branch(res, conn, br);
        return PQstatus(conn) != CONNECTION_OK ? SINTER_ETRANSPORT : SINTER_ESTATE;
    }
    char sql[64 + SINTER_XA_GID_LEN];
    if (!gid_literal_safe(br->gid)) { /* never: sinter_xa_gid made it */
        set_err("internal: unsafe gid");
        fail_branch(res, conn, br);
        return SINTER_EINTERNAL;
    }
    snprintf(sql, sizeof sql, "PREPARE TRANSACTION '%s'", br->gid);
    PGresult *r = NULL;
    char state[6];
    int rc =
        run(conn, res->call_ms, sql, 0, NULL, "prepare transaction", PGRES_COMMAND_OK, &r, state);
    if (rc == SINTER_OK) {
        /* An aborted transaction answers PREPARE with command tag ROLLBACK and no error. */
        if (strcmp(PQcmdStatus(r), "PREPARE TRANSACTION") != 0) {
            set_err("postgres: prepare transaction: the transaction was rolled back (%s)",
                    PQcmdStatus(r));
            rc = SINTER_EDB;
        }
        PQclear(r);
    } else if (strcmp(state, "55000") == 0 && check_server(conn, res->call_ms) != SINTER_OK) {
        /* 55000 "prepared transactions are disabled": max_prepared_transactions was set to 0
         * since the resource was opened (a restart). Not retryable: say why. */
        rc = SINTER_ENOPREPARED;
    }
    if (rc != SINTER_OK) {
        /* A failed PREPARE TRANSACTION "becomes a ROLLBACK" (docs), so nothing is prepared —
         * except when the connection died or the deadline gave up with the outcome unknown; the
         * failure report then makes the coordinator roll back, and its ROLLBACK PREPARED or the
         * recovery scan removes a prepare that did happen. */
        fail_branch(res, conn, br);
        return rc;
    }
    br->state = BR_ENDED;
    if (res->hooks.report == NULL) {
        /* No reports: the guard is the only thing that can catch a decision taken while we
         * prepared. */
        rc = guard(res, br);
        if (rc != SINTER_OK) {
            /* Rolled back (ESTATE), or the coordinator could not be asked: then rolling back is
             * the safe side too, since without our PhaseOne_Done the service fails its phase one
             * and the TM rolls the global back; if a commit still came, phase 2 would answer
             * CommitFailed_Unretryable (pg_xact_status 'aborted'), never a false success. */
            undo_prepared(res, conn, br);
        }
        return rc;
    }
    /* The report is the guard. The coordinator accepts PhaseOne_Done only while the global is
     * Begin (compare-and-set in tc/fsm.c), so an accepted report proves no decision was taken
     * before it; any later rollback decision delivers ROLLBACK PREPARED to this prepared branch.
     * Only when the report is not accepted do we ask which side was decided: one coordinator
     * round trip (a linearizable read) less per branch on the common path. */
    if (res->hooks.report_async != NULL && res->hooks.report_async(res->hooks.arg, br) == SINTER_OK)
        return SINTER_OK; /* "Asynchronous PhaseOne_Done" below: the guard runs on the RM's side */
    int rrc;
    report(res, br, SINTER_BS_PHASE1_DONE, &rrc);
    if (rrc == SINTER_OK)
        return SINTER_OK;
    return settle_refused(res, conn, NULL, br, rrc, NULL);
}

/*
 * Asynchronous PhaseOne_Done (the report_async hook; rm/rm_xa.c's async_report option).
 *
 * sinter_xa_prepare returns SINTER_OK once PREPARE TRANSACTION succeeded, and the report goes
 * out later on the RM's own threads, whose answer is handed to sinter_xa_report_settle on a
 * pooled connection: accepted -> nothing; refused (ESTATE: the global left Begin first) or lost
 * after the bounded resends -> settle_refused: GlobalStatus, and on the rollback side (or
 * Finished / unknown) ROLLBACK PREPARED at once. Seata's RM does much the same by default
 * (client.rm.reportSuccessEnable=false: it reports only failures and lets the commit find the
 * prepared branch). What keeps the guard's promise -- "a late PREPARE after a rollback of its
 * global is refused or immediately rolled back" -- and the global atomic, against tc/fsm.c:
 *
 *   (F1) REPORT_BRANCH accepts PhaseOne_Done only while the global is Begin and the branch
 *        Registered (or repeats the recorded status); DECIDE is the only way out of Begin, and a
 *        decided side never flips (compare-and-set).
 *   (F2) DECIDE commits with branches that are Registered and never reported; only
 *        PhaseOne_Failed blocks a commit. So the caller may commit while the report is in flight.
 *   (F3) Phase 2 delivers to EVERY branch without a phase-2 end, Registered ones included, and a
 *        rollback-side global settles only when each branch has a rollback result; the branch
 *        was registered WITH its local_xid (sinter_xa_begin), so every delivery can tell "not
 *        prepared yet" ('in progress': retryable) from "already done" (42704 + pg_xact_status).
 *   (F4) PREPARE completed before sinter_xa_prepare returned, i.e. before the caller could let
 *        the TM commit; the report is queued only after PREPARE.
 *
 * The interleavings of {PREPARE done, report accepted / refused / lost, commit decided,
 * rollback or timeout decided, RM killed}, the branch being prepared in each (F4):
 *   - accepted, then any decision: the global was Begin when it was recorded (F1), so the
 *     decision came later and phase 2 delivers it to this prepared branch (F3). As synchronous.
 *   - commit decided before the report arrives (the common case now, F2): phase 2 commits the
 *     prepared branch (F3); the report is refused, GlobalStatus says commit side, nothing is
 *     undone. The global commits atomically.
 *   - rollback / timeout decided before the report arrives: phase 2 delivers ROLLBACK PREPARED
 *     (F3: while the transaction was still in progress the delivery was retryable, never an
 *     empty "done"); the refused report makes the guard ROLLBACK PREPARED at once, on a pooled
 *     connection. Whichever runs second finds 42704, resolved by pg_xact_status 'aborted', or
 *     55000 (both at the same instant: the loser leaves it to the winner). The refusal reaches
 *     the rollback side only, since a decided side never flips (F1); the commit side is never
 *     undone. Balance unchanged.
 *   - report lost (no answer after the resends): the report may or may not be recorded. Either
 *     way the branch is registered and prepared: whichever decision comes (the TM's, or the
 *     coordinator's timeout rollback if the TM never decides) is delivered by phase 2 (F3); the
 *     guard asks GlobalStatus once more and rolls back at once if the rollback side is already
 *     known, as the synchronous path does.
 *   - RM killed (or closed) with the report queued or in flight: the same as lost -- the branch
 *     is registered and prepared, its decision reaches it through phase 2 at any live instance
 *     of the resource, and the recovery scan of the next start settles it by GlobalStatus (a
 *     Begin global is left to the coordinator, whose timeout rollback ends it at the latest).
 *     Not reporting never strands a prepared branch: nothing waits for PhaseOne_Done (F2).
 *   - report delayed (the RM's report_delay_ms) and phase 2 ends the branch on this RM first
 *     (COMMIT PREPARED / ROLLBACK PREPARED done, or 42704 resolved as done): the report is
 *     dropped unsent. Phase 2 runs only after a decision, so the race the guard watches for is
 *     over, and the branch is no longer prepared: the report would be refused and the guard
 *     would find nothing to undo. The coordinator loses nothing (F2: it never needs
 *     PhaseOne_Done). A delay could postpone the guard's own ROLLBACK PREPARED after a rollback
 *     that came first; rm/rm_xa.c bounds it (report_delay_ms <= 1000) and skips it when a
 *     phase-2 rollback delivery already found the branch 'in progress' (async_rollback_seen):
 *     the report is then sent synchronously, or at once if queued.
 * So the branch always ends with the global's outcome, and no prepared transaction is left
 * holding locks beyond its global's decision plus phase 2 (or, with every instance of the
 * resource gone, until one runs its recovery scan: as for a crash between PREPARE and a
 * synchronous report). What the caller gives up: SINTER_ESTATE / SINTER_ETIMEOUT from
 * sinter_xa_prepare, i.e. learning before its commit that the global was rolled back meanwhile;
 * its TM commit then fails with SINTER_ESTATE (the decision is already rollback) instead, so
 * no caller is told "committed" for a rolled-back global.
 */
int sinter_xa_report_settle(const struct sinter_xa_resource *res,
                            const struct sinter_xa_conn_source *src,
                            const struct sinter_xa_branch *br, int rrc, bool *rolled_back)
{
    xa_errbuf[0] = '\0';
    if (rolled_back != NULL)
        *rolled_back = false;
    if (res == NULL || src == NULL || src->get == NULL || src->put == NULL || br == NULL ||
        br->branch_id == 0 || !gid_literal_safe(br->gid)) {
        set_err("invalid argument");
        return SINTER_EINVAL;
    }
    if (rrc == SINTER_OK)
        return SINTER_OK;
    return settle_refused(res, NULL, src, br, rrc, rolled_back);
}

int sinter_xa_abort(const struct sinter_xa_resource *res, PGconn *conn, struct sinter_xa_branch *br)
{
    xa_errbuf[0] = '\0';
    if (res == NULL || conn == NULL || br == NULL) {
        set_err("invalid argument");
        return SINTER_EINVAL;
    }
    if (br->state == BR_NONE) {
        set_err("the branch was never begun");
        return SINTER_ESTATE;
    }
    if (br->state == BR_ENDED)
        return SINTER_OK; /* already rolled back and reported, or prepared: phase 2 decides */
    rollback_local(conn, res->call_ms);
    br->state = BR_ENDED;
    int rc;
    report(res, br, SINTER_BS_PHASE1_FAILED, &rc);
    if (rc != SINTER_OK)
        set_err("report PhaseOne_Failed failed: %s", sinter_strerror(rc));
    return rc;
}

/* ---- phase two ---- */

/* Widens a 32-bit xid from pg_prepared_xacts to the xid8 pg_xact_status takes. The reference
 * is the current snapshot's xmax (an xid8: one past the latest completed transaction; a
 * prepared transaction's id may lie below or above it). A prepared transaction is still in
 * progress, so wraparound protection keeps its id within 2^31 of any current id: the signed
 * 32-bit difference is exact (PostgreSQL's own circular xid comparison, TransactionIdPrecedes). */
static uint64_t widen_xid(uint32_t xid32, uint64_t ref)
{
    int64_t diff = (int32_t)(xid32 - (uint32_t)ref);
    if (diff < 0 && (uint64_t)(-diff) > ref)
        return 0;
    return (uint64_t)((int64_t)ref + diff);
}

static int lookup_local_xid(PGconn *conn, uint32_t timeout_ms, const char *gid, uint64_t *out)
{
    const char *p[1] = {gid};
    PGresult *r = NULL;
    int rc = run(conn, timeout_ms,
                 "SELECT transaction::text, pg_snapshot_xmax(pg_current_snapshot())::text "
                 "FROM pg_prepared_xacts WHERE gid = $1",
                 1, p, "look up prepared transaction", PGRES_TUPLES_OK, &r, NULL);
    if (rc != SINTER_OK)
        return rc;
    if (PQntuples(r) == 1) {
        uint32_t x = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
        uint64_t next = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
        *out = widen_xid(x, next);
    }
    PQclear(r);
    return SINTER_OK;
}

/* 42704: no prepared transaction of that gid. Decide from the local transaction's fate. */
static int resolve_missing(const struct sinter_xa_resource *res, PGconn *conn, const char *gid,
                           uint64_t local_xid, bool commit, uint32_t *outcome)
{
    const uint32_t done = commit ? SINTER_BS_PHASE2_COMMITTED : SINTER_BS_PHASE2_ROLLBACKED;
    const uint32_t retry = commit ? SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE
                                  : SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE;
    const uint32_t unretry = commit ? SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE
                                    : SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE;
    if (local_xid == 0) {
        if (commit) {
            /* Could be a lost reply of a commit that happened, or a rollback: we cannot know,
             * and "success" would be a guess. */
            *outcome = unretry;
            set_err("COMMIT PREPARED '%s': no such prepared transaction and no local "
                    "transaction id to tell whether it committed: unretryable, check by hand",
                    gid);
            return SINTER_ENOTFOUND;
        }
        /* Never prepared (a rollback that overtook the branch, or a branch that failed before
         * preparing): the "empty rollback" of Seata's XA mode. */
        *outcome = done;
        return SINTER_OK;
    }
    char x[24];
    snprintf(x, sizeof x, "%" PRIu64, local_xid);
    const char *p[1] = {x};
    PGresult *r = NULL;
    char state[6];
    int rc = run(conn, res->call_ms, "SELECT pg_xact_status($1::xid8)", 1, p,
                 "pg_xact_status of the branch's transaction", PGRES_TUPLES_OK, &r, state);
    if (rc != SINTER_OK) {
        if (strcmp(state, "22023") == 0) {
            /* "transaction ID ... is in the future": the id was not recorded on this server (a
             * restored or failed-over database). Its transaction never ran here. */
            *outcome = commit ? unretry : done;
            return commit ? SINTER_ENOTFOUND : SINTER_OK;
        }
        *outcome = retry; /* could not ask: ask again later */
        return rc;
    }
    const char *v = PQgetisnull(r, 0, 0) ? NULL : PQgetvalue(r, 0, 0);
    char status[16];
    snprintf(status, sizeof status, "%s", v != NULL ? v : "");
    PQclear(r);
    if (v == NULL) {
        /* Too old for the commit log (docs: "NULL if the transaction ID is too old"). */
        *outcome = commit ? unretry : done;
        if (commit) {
            set_err("COMMIT PREPARED '%s': no such prepared transaction and transaction %s is "
                    "too old to tell whether it committed: unretryable, check by hand",
                    gid, x);
            return SINTER_ENOTFOUND;
        }
        return SINTER_OK;
    }
    if (strcmp(status, commit ? "committed" : "aborted") == 0) {
        *outcome = done; /* an earlier delivery did it: a deduplicated retry */
        return SINTER_OK;
    }
    if (strcmp(status, "in progress") == 0) {
        /* Not prepared yet (phase 2 overtook phase one): it may still prepare. For a rollback,
         * retrying rather than answering Rollbacked keeps us from relying on the late-prepare
         * guard alone. */
        *outcome = retry;
        set_err("%s PREPARED '%s': transaction %s is still in progress (not prepared yet)",
                commit ? "COMMIT" : "ROLLBACK", gid, x);
        return SINTER_EBUSY;
    }
    /* The opposite fate: the branch is lost for this decision. Never reported as success. */
    *outcome = unretry;
    set_err("%s PREPARED '%s': no such prepared transaction and transaction %s %s",
            commit ? "COMMIT" : "ROLLBACK", gid, x, status);
    return SINTER_ESTATE;
}

static int phase2(const struct sinter_xa_resource *res, PGconn *conn, const char *gid,
                  uint64_t local_xid, uint32_t *outcome, bool commit)
{
    xa_errbuf[0] = '\0';
    const uint32_t done = commit ? SINTER_BS_PHASE2_COMMITTED : SINTER_BS_PHASE2_ROLLBACKED;
    const uint32_t retry = commit ? SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE
                                  : SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE;
    const uint32_t unretry = commit ? SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE
                                    : SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE;
    if (outcome == NULL)
        return SINTER_EINVAL;
    *outcome = retry;
    struct sinter_xid xid;
    uint64_t bid;
    if (res == NULL || conn == NULL || gid == NULL ||
        sinter_xa_gid_parse(gid, res->ns, &xid, &bid) != SINTER_OK || !gid_literal_safe(gid)) {
        /* Not a gid of this resource: no retry can make it one. */
        *outcome = unretry;
        set_err("invalid argument: '%.200s' is not a gid of namespace %s",
                gid != NULL ? gid : "(null)", res != NULL ? res->ns : "?");
        return SINTER_EINVAL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        set_err("postgres: connection not usable: %s", PQerrorMessage(conn));
        return SINTER_ETRANSPORT;
    }
    if (in_txn(conn)) {
        /* "COMMIT PREPARED cannot be executed inside a transaction block" (25001); another
         * connection can do it: retryable. */
        set_err("the connection is inside a transaction: %s PREPARED needs an idle one",
                commit ? "COMMIT" : "ROLLBACK");
        return SINTER_ESTATE;
    }
    if (local_xid == 0 && lookup_local_xid(conn, res->call_ms, gid, &local_xid) != SINTER_OK)
        local_xid = 0; /* the statement below will tell what is wrong with the connection */
    char sql[64 + SINTER_XA_GID_LEN];
    snprintf(sql, sizeof sql, "%s PREPARED '%s'", commit ? "COMMIT" : "ROLLBACK", gid);
    char state[6];
    int rc = run(conn, res->call_ms, sql, 0, NULL, commit ? "commit prepared" : "rollback prepared",
                 PGRES_COMMAND_OK, NULL, state);
    if (rc == SINTER_OK) {
        *outcome = done;
        return SINTER_OK;
    }
    if (strcmp(state, "42704") == 0) /* undefined_object: no prepared transaction of that gid */
        return resolve_missing(res, conn, gid, local_xid, commit, outcome);
    /* Everything else is retryable: 55000 "is busy" (another session is finishing that gid at
     * this moment), 57014 / 55P03 (our deadline or a lock), connection loss (class 08, 57P0x:
     * for a commit the outcome is unknown, and the retry's 42704 + pg_xact_status tells), and any
     * other SQLSTATE (e.g. 42501 permission, 0A000 "prepared transaction belongs to another
     * database": a connection to the right database or with the right role can still do it):
     * the coordinator retries with backoff until its deadline, and the failure stays visible
     * (RetryTimeout) with the SQLSTATE in our message. Never unretryable on a guess. */
    *outcome = retry;
    return rc;
}

int sinter_xa_commit_prepared(const struct sinter_xa_resource *res, PGconn *conn, const char *gid,
                              uint64_t local_xid, uint32_t *outcome)
{
    return phase2(res, conn, gid, local_xid, outcome, true);
}

static int rollback_prepared(const struct sinter_xa_resource *res, PGconn *conn, const char *gid,
                             uint64_t local_xid, uint32_t *outcome)
{
    return phase2(res, conn, gid, local_xid, outcome, false);
}

int sinter_xa_rollback_prepared(const struct sinter_xa_resource *res, PGconn *conn, const char *gid,
                                uint64_t local_xid, uint32_t *outcome)
{
    return rollback_prepared(res, conn, gid, local_xid, outcome);
}

/* ---- recovery ---- */

int sinter_xa_recover(const struct sinter_xa_resource *res, PGconn *conn, sinter_xa_recover_cb cb,
                      void *arg)
{
    xa_errbuf[0] = '\0';
    if (res == NULL || conn == NULL || cb == NULL) {
        set_err("invalid argument");
        return SINTER_EINVAL;
    }
    /* starts_with() instead of LIKE: the namespace may contain '_', a LIKE wildcard. Only this
     * database's rows: COMMIT PREPARED must run in the database that prepared (0A000 otherwise),
     * and another database's prepared transactions belong to another resource. */
    const char *p[1] = {res->prefix};
    PGresult *r = NULL;
    int rc = run(conn, res->call_ms,
                 "SELECT gid, transaction::text, "
                 "(extract(epoch FROM prepared) * 1000)::bigint::text, owner::text, "
                 "pg_snapshot_xmax(pg_current_snapshot())::text "
                 "FROM pg_prepared_xacts "
                 "WHERE database = current_database() AND starts_with(gid, $1) "
                 "ORDER BY prepared, gid",
                 1, p, "scan pg_prepared_xacts", PGRES_TUPLES_OK, &r, NULL);
    if (rc != SINTER_OK)
        return rc;
    int n = PQntuples(r);
    struct sinter_xa_prepared *v = n > 0 ? calloc((size_t)n, sizeof *v) : NULL;
    if (n > 0 && v == NULL) {
        PQclear(r);
        set_err("out of memory");
        return SINTER_ENOMEM;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        struct sinter_xa_prepared *e = &v[k];
        const char *gid = PQgetvalue(r, i, 0);
        /* A gid with our prefix that we could not have built is someone else's: leave it. */
        if (sinter_xa_gid_parse(gid, res->ns, &e->xid, &e->branch_id) != SINTER_OK)
            continue;
        snprintf(e->gid, sizeof e->gid, "%s", gid);
        e->local_xid = widen_xid((uint32_t)strtoul(PQgetvalue(r, i, 1), NULL, 10),
                                 strtoull(PQgetvalue(r, i, 4), NULL, 10));
        e->prepared_ms = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        snprintf(e->owner, sizeof e->owner, "%s", PQgetvalue(r, i, 3));
        k++;
    }
    PQclear(r);
    rc = SINTER_OK;
    for (int i = 0; i < k && rc == SINTER_OK; i++)
        rc = cb(arg, conn, &v[i]);
    free(v);
    return rc;
}

int sinter_xa_resolve(const struct sinter_xa_resource *res, PGconn *conn,
                      const struct sinter_xa_prepared *p, uint32_t global_status, uint32_t *outcome)
{
    xa_errbuf[0] = '\0';
    if (outcome == NULL || res == NULL || conn == NULL || p == NULL) {
        set_err("invalid argument");
        return SINTER_EINVAL;
    }
    if (sinter_global_status_is_commit_side(global_status))
        return sinter_xa_commit_prepared(res, conn, p->gid, p->local_xid, outcome);
    if (sinter_global_status_is_rollback_side(global_status))
        return sinter_xa_rollback_prepared(res, conn, p->gid, p->local_xid, outcome);
    *outcome = SINTER_BS_PHASE1_DONE;
    if (global_status == SINTER_GS_BEGIN)
        return SINTER_OK; /* undecided: the coordinator will drive it */
    set_err("prepared branch %s belongs to a global the coordinator does not know (%s): left "
            "prepared for an operator (COMMIT PREPARED or ROLLBACK PREPARED by hand)",
            p->gid, sinter_global_status_name(global_status));
    return SINTER_ENOTFOUND;
}
