/*
 * sinter-xa-transfer: moves money between two PostgreSQL databases as XA branches of one global
 * transaction, through a running sinter-tc cluster (examples/xa-transfer/run.sh starts one).
 *
 *   bank_a (database xa_demo_a)  accounts(id, balance CHECK (balance >= 0))
 *   bank_b (database xa_demo_b)  the same
 *
 * Each transfer: TM begin; branch on bank_a (debit), branch on bank_b (credit), each PREPAREd by
 * the RM; TM commit; the coordinator then has the RM run COMMIT PREPARED on both. A transfer
 * larger than the balance fails its debit (the CHECK constraint): that branch is rolled back and
 * reported failed, the TM rolls the global back, and the credit's prepared branch is rolled back
 * by phase 2. At the end the program prints balances and statuses and checks that the total is
 * unchanged and no prepared transaction is left.
 *
 * usage: sinter-xa-transfer --secret-file F --addr URL [--addr URL ...] --conninfo "host=..
 * port=.."
 *                           [--transfers N]
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "sinter/rm.h"
#include "sinter/rm_xa.h"
#include "sinter/tm.h"
#include "sinter/types.h"

#define MAX_ADDR 8

static char base[1024];

static PGconn *db(const char *name)
{
    char ci[1200];
    snprintf(ci, sizeof ci, "%s dbname=%s", base, name);
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "connect %s: %s", name, PQerrorMessage(c));
        exit(1);
    }
    return c;
}

/* Runs sql; returns whether it succeeded (the error is printed). */
static bool run(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        printf("  (%s: %s)\n", sql, PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    }
    PQclear(r);
    return ok;
}

static long long scalar(const char *dbname, const char *sql)
{
    PGconn *c = db(dbname);
    PGresult *r = PQexec(c, sql);
    long long v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                      ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                      : -1;
    PQclear(r);
    PQfinish(c);
    return v;
}

static void setup_db(const char *name)
{
    PGconn *adm = db("postgres");
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT 1 FROM pg_database WHERE datname = '%s'", name);
    PGresult *r = PQexec(adm, sql);
    bool exists = PQntuples(r) == 1;
    PQclear(r);
    if (!exists) {
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
        if (!run(adm, sql)) {
            exit(1);
        }
    }
    PQfinish(adm);
    PGconn *c = db(name);
    if (!run(c, "CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, "
                "balance bigint NOT NULL CHECK (balance >= 0))") ||
        !run(c, "INSERT INTO accounts VALUES (1, 1000) ON CONFLICT DO NOTHING")) {
        exit(1);
    }
    PQfinish(c);
}

static void balances(void)
{
    long long a = scalar("xa_demo_a", "SELECT balance FROM accounts WHERE id = 1");
    long long b = scalar("xa_demo_b", "SELECT balance FROM accounts WHERE id = 1");
    printf("  balances: bank_a %lld, bank_b %lld, total %lld\n", a, b, a + b);
}

/* One transfer of amount from bank_a to bank_b; returns the global's final status. */
static uint32_t transfer(struct sinter_tm *tm, struct sinter_rm_xa *xa, struct sinter_rm_xa *xb,
                         PGconn *ca, PGconn *cb, long long amount)
{
    char xid[SINTER_XID_STRLEN];
    int rc = sinter_tm_begin(tm, "xa-transfer", 30000, xid);
    if (rc != SINTER_OK) {
        fprintf(stderr, "begin: %s (%s)\n", sinter_strerror(rc), sinter_tm_errmsg());
        exit(1);
    }
    printf("transfer %lld from bank_a to bank_b: global %s\n", amount, xid);
    char sql[200];
    struct sinter_xa_branch ba, bb;
    bool ok = true;
    /* The credit branch first, so that a failing debit shows phase 2 rolling a PREPARED branch
     * back. */
    if (sinter_rm_xa_begin(xb, cb, xid, &bb) != SINTER_OK) {
        fprintf(stderr, "branch bank_b: %s %s\n", sinter_xa_errmsg(), sinter_rm_errmsg());
        exit(1);
    }
    snprintf(sql, sizeof sql, "UPDATE accounts SET balance = balance + %lld WHERE id = 1", amount);
    bool okb = run(cb, sql);
    rc = sinter_rm_xa_end(xb, cb, &bb, okb);
    printf("  branch %" PRIu64 " on bank_b (credit): %s, gid %s\n", bb.branch_id,
           okb && rc == SINTER_OK ? "prepared" : "failed, rolled back", bb.gid);
    ok = ok && okb && rc == SINTER_OK;
    if (sinter_rm_xa_begin(xa, ca, xid, &ba) != SINTER_OK) {
        fprintf(stderr, "branch bank_a: %s %s\n", sinter_xa_errmsg(), sinter_rm_errmsg());
        exit(1);
    }
    snprintf(sql, sizeof sql, "UPDATE accounts SET balance = balance - %lld WHERE id = 1", amount);
    bool oka = run(ca, sql);
    rc = sinter_rm_xa_end(xa, ca, &ba, oka);
    printf("  branch %" PRIu64 " on bank_a (debit):  %s, gid %s\n", ba.branch_id,
           oka && rc == SINTER_OK ? "prepared" : "failed, rolled back", ba.gid);
    ok = ok && oka && rc == SINTER_OK;
    uint32_t st = 0;
    rc = ok ? sinter_tm_commit(tm, xid, 30000, &st) : sinter_tm_rollback(tm, xid, 30000, &st);
    printf("  TM %s: %s, global status %s\n", ok ? "commit" : "rollback", sinter_strerror(rc),
           sinter_global_status_name(st));
    return st;
}

int main(int argc, char **argv)
{
    const char *addrs[MAX_ADDR];
    size_t n_addr = 0;
    const char *secret_file = NULL;
    int transfers = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--addr") == 0 && n_addr < MAX_ADDR) {
            addrs[n_addr++] = argv[i + 1];
        } else if (strcmp(argv[i], "--secret-file") == 0) {
            secret_file = argv[i + 1];
        } else if (strcmp(argv[i], "--conninfo") == 0) {
            snprintf(base, sizeof base, "%s", argv[i + 1]);
        } else if (strcmp(argv[i], "--transfers") == 0) {
            transfers = atoi(argv[i + 1]);
        } else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    char secret[256] = "";
    FILE *f = secret_file ? fopen(secret_file, "r") : NULL;
    if (f == NULL || fgets(secret, sizeof secret, f) == NULL || n_addr == 0 || base[0] == '\0') {
        fprintf(stderr,
                "usage: %s --secret-file F --addr URL... --conninfo CONNINFO "
                "[--transfers N]\n",
                argv[0]);
        return 2;
    }
    fclose(f);
    secret[strcspn(secret, "\r\n")] = '\0';

    setup_db("xa_demo_a");
    setup_db("xa_demo_b");
    long long total0 = scalar("xa_demo_a", "SELECT balance FROM accounts WHERE id = 1") +
                       scalar("xa_demo_b", "SELECT balance FROM accounts WHERE id = 1");

    struct sinter_tm_opts to;
    sinter_tm_opts_default(&to);
    to.addresses = addrs;
    to.n_addresses = n_addr;
    to.secret = secret;
    to.application_id = "xa-transfer";
    struct sinter_tm *tm = NULL;
    static const char *const res[] = {"bank_a", "bank_b"};
    struct sinter_rm_opts ro;
    sinter_rm_opts_default(&ro);
    ro.addresses = addrs;
    ro.n_addresses = n_addr;
    ro.secret = secret;
    ro.application_id = "xa-transfer";
    ro.resources = res;
    ro.n_resources = 2;
    struct sinter_rm *rm = NULL;
    if (sinter_tm_open(&tm, &to) != SINTER_OK || sinter_rm_open(&rm, &ro) != SINTER_OK) {
        fprintf(stderr, "cannot open the TM / RM: %s %s\n", sinter_tm_errmsg(), sinter_rm_errmsg());
        return 1;
    }
    struct sinter_rm_xa *x[2];
    static const char *const dbs[] = {"xa_demo_a", "xa_demo_b"};
    for (int i = 0; i < 2; i++) {
        char ci[1200];
        snprintf(ci, sizeof ci, "%s dbname=%s", base, dbs[i]);
        struct sinter_rm_xa_opts xo = {.resource_id = res[i], .ns = res[i], .conninfo = ci};
        struct sinter_rm_xa_recovery rec;
        int rc = sinter_rm_xa_register(rm, &xo, &x[i], &rec);
        if (rc != SINTER_OK) {
            fprintf(stderr, "register %s: %s: %s\n", res[i], sinter_strerror(rc),
                    sinter_rm_errmsg());
            return 1;
        }
        printf("resource %s registered (recovery: %u prepared found, %u committed, %u rolled "
               "back, %u left)\n",
               res[i], rec.found, rec.committed, rec.rolled_back, rec.left);
    }
    if (sinter_rm_start(rm) != SINTER_OK) {
        fprintf(stderr, "rm start failed\n");
        return 1;
    }
    balances();
    PGconn *ca = db("xa_demo_a"), *cb = db("xa_demo_b");
    int bad = 0;
    for (int i = 0; i < transfers; i++) {
        bad += transfer(tm, x[0], x[1], ca, cb, 100) != SINTER_GS_COMMITTED;
        balances();
    }
    /* More than bank_a holds: the debit violates the CHECK, the global rolls back. */
    bad += transfer(tm, x[0], x[1], ca, cb, 1000000) != SINTER_GS_ROLLBACKED;
    balances();
    PQfinish(ca);
    PQfinish(cb);
    sinter_rm_close(rm);
    sinter_tm_close(tm);
    long long total = scalar("xa_demo_a", "SELECT balance FROM accounts WHERE id = 1") +
                      scalar("xa_demo_b", "SELECT balance FROM accounts WHERE id = 1");
    long long left = scalar("postgres", "SELECT count(*) FROM pg_prepared_xacts WHERE "
                                        "starts_with(gid, 'sntr:bank_')");
    printf("total before %lld, after %lld; prepared transactions left: %lld\n", total0, total,
           left);
    if (bad != 0 || total != total0 || left != 0) {
        printf("UNEXPECTED: %d transfer(s) did not end as expected\n", bad);
        return 1;
    }
    printf("all transfers ended as expected\n");
    return 0;
}
