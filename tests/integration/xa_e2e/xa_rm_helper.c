/*
 * xa_rm_helper — an RM in its own process for test_xa_e2e, so the test can kill it with SIGKILL
 * between PREPARE and COMMIT PREPARED and start it again.
 *
 * usage: xa_rm_helper prepare|recover CONNINFO SECRET XID URL...
 *   prepare  registers the XA resources "helper_a" / "helper_b" (databases xa_e2e_a / xa_e2e_b,
 *            no recovery scan, no phase-2 service), runs one branch on each for XID (100 moved
 *            from account 1 of A to account 1 of B), prepares both, prints "PREPARED" and waits
 *            for its SIGKILL.
 *   recover  registers the same resources (the recovery scan runs), prints what it did per
 *            resource ("RECOVERED <res> found=.. committed=.. rolled_back=.. left=.. failed=.."),
 *            starts phase 2 and waits (bounded) until XID's global status is final; prints
 *            "STATUS <n>" and exits 0 when it is, 1 otherwise.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pgtest.h"
#include "sinter/rm.h"
#include "sinter/rm_xa.h"
#include "sinter/types.h"

#define WAIT_MS 90000

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static PGconn *db(const char *base, const char *name)
{
    PGconn *c = sinter_test_pg_connect(base, name);
    if (c == NULL) {
        exit(2); /* the library said why on stderr */
    }
    return c;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s prepare|recover CONNINFO SECRET XID URL...\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1], *base = argv[2], *xid = argv[4];
    bool recover = strcmp(mode, "recover") == 0;
    static const char *const res_ids[] = {"helper_a", "helper_b"};
    static const char *const ns[] = {"e2eha", "e2ehb"};
    static const char *const dbs[] = {"xa_e2e_a", "xa_e2e_b"};

    struct sinter_rm_opts o;
    sinter_rm_opts_default(&o);
    o.addresses = (const char *const *)&argv[5];
    o.n_addresses = (size_t)(argc - 5);
    o.secret = argv[3];
    o.application_id = "xa-e2e-helper";
    o.resources = res_ids;
    o.n_resources = 2;
    o.deadline_ms = 30000;
    o.poll_wait_ms = 1000;
    struct sinter_rm *rm = NULL;
    if (sinter_rm_open(&rm, &o) != SINTER_OK) {
        fprintf(stderr, "helper: rm open: %s\n", sinter_rm_errmsg());
        return 2;
    }
    struct sinter_rm_xa *x[2];
    for (int i = 0; i < 2; i++) {
        char ci[1024];
        snprintf(ci, sizeof ci, "%s dbname=%s", base, dbs[i]);
        struct sinter_rm_xa_opts xo = {
            .resource_id = res_ids[i], .ns = ns[i], .conninfo = ci, .skip_recovery = !recover};
        struct sinter_rm_xa_recovery rec;
        int rc = sinter_rm_xa_register(rm, &xo, &x[i], &rec);
        if (rc != SINTER_OK) {
            fprintf(stderr, "helper: register %s: %s (%s)\n", res_ids[i], sinter_strerror(rc),
                    sinter_rm_errmsg());
            return 2;
        }
        if (recover) {
            printf("RECOVERED %s found=%u committed=%u rolled_back=%u left=%u failed=%u\n",
                   res_ids[i], rec.found, rec.committed, rec.rolled_back, rec.left, rec.failed);
            fflush(stdout);
        }
    }
    if (!recover) {
        static const char *const sql[] = {
            "UPDATE accounts SET balance = balance - 100 WHERE id = 1",
            "UPDATE accounts SET balance = balance + 100 WHERE id = 1"};
        PGconn *c[2];
        struct sinter_xa_branch br[2];
        for (int i = 0; i < 2; i++) {
            c[i] = db(base, dbs[i]);
            int rc = sinter_rm_xa_begin(x[i], c[i], xid, &br[i]);
            if (rc != SINTER_OK || sinter_test_pg_exec(c[i], sql[i]) != 0) {
                fprintf(stderr, "helper: branch %d: %s\n", i, sinter_strerror(rc));
                return 2;
            }
            rc = sinter_rm_xa_end(x[i], c[i], &br[i], true);
            if (rc != SINTER_OK) {
                fprintf(stderr, "helper: prepare %d: %s (%s)\n", i, sinter_strerror(rc),
                        sinter_xa_errmsg());
                return 2;
            }
        }
        printf("PREPARED %s %s\n", br[0].gid, br[1].gid);
        fflush(stdout);
        for (;;) {
            pause(); /* until the test's SIGKILL */
        }
    }
    if (sinter_rm_start(rm) != SINTER_OK) {
        fprintf(stderr, "helper: rm start failed\n");
        return 2;
    }
    uint32_t st = 0;
    uint64_t end = now_ms() + WAIT_MS;
    while (now_ms() < end) {
        if (sinter_rm_global_status(rm, xid, &st) == SINTER_OK &&
            sinter_global_status_is_final(st)) {
            break;
        }
        usleep(100 * 1000);
    }
    printf("STATUS %u\n", st);
    fflush(stdout);
    sinter_rm_close(rm);
    return sinter_global_status_is_final(st) ? 0 : 1;
}
