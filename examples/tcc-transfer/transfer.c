/*
 * sinter-transfer — the client (TM) of the TCC transfer demo: moves money from an account on one
 * account service (sinter-account) to an account on another in one global transaction, and says
 * what happened at each step.
 *
 *   sinter-transfer --addr URL [--addr ...] (--secret S | --secret-file F)
 *                   --from SVC_URL ACCOUNT --to SVC_URL ACCOUNT --amount N
 *                   [--timeout-ms T] [--no-commit] [--expect STATUS]
 *   sinter-transfer --balance SVC_URL ACCOUNT [--balance ...]   (no cluster needed)
 *
 * The flow is Seata's TCC: begin (libsinter-tm) -> try on the debit service and on the credit
 * service, each given the xid (the service registers its branch with libsinter-rm and freezes /
 * announces the amount inside the TCC fence) -> commit when both tries succeeded, rollback when
 * one failed. The coordinator then delivers confirm / cancel to the services, and the client
 * waits for phase 2 to end before printing the balances. --no-commit stops after the tries: the
 * global stays in Begin until its timeout (--timeout-ms), when the coordinator rolls it back
 * (TimeoutRollbacked) and cancels both branches; the client only watches.
 *
 * --expect (Committed, Rollbacked, TimeoutRollbacked): exit 1 unless the global ended there.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acct_rpc.h"
#include "sinter/error.h"
#include "sinter/tm.h"
#include "sinter/types.h"

#define MAX_ADDRS   8
#define MAX_BAL     8
#define RPC_MS      15000u
#define PHASE2_WAIT 30000u

static void usage(void)
{
    fputs("usage: sinter-transfer --addr URL [--addr ...] (--secret S | --secret-file F)\n"
          "         --from SVC_URL ACCOUNT --to SVC_URL ACCOUNT --amount N\n"
          "         [--timeout-ms T] [--no-commit] [--expect STATUS]\n"
          "       sinter-transfer --balance SVC_URL ACCOUNT [--balance SVC_URL ACCOUNT ...]\n",
          stderr);
    exit(2);
}

/* Prints one account's balance line; returns 0 or -1. */
static int show_balance(const char *url, const char *account)
{
    struct sinter_acct_client *c = NULL;
    char resp[SINTER_ACCT_LINE_MAX], req[128];
    snprintf(req, sizeof req, "balance %s", account);
    int rc = sinter_acct_open(&c, url);
    if (rc == SINTER_OK) {
        rc = sinter_acct_call(c, req, resp, sizeof resp, RPC_MS);
    }
    sinter_acct_close(c);
    long long bal, frozen, incoming;
    if (rc != SINTER_OK || sscanf(resp, "ok %lld %lld %lld", &bal, &frozen, &incoming) != 3) {
        printf("  %-8s at %s: cannot read (%s %s)\n", account, url, sinter_errname(rc), resp);
        return -1;
    }
    printf("  %-8s at %s: balance %6lld  frozen %4lld  incoming %4lld\n", account, url, bal, frozen,
           incoming);
    return 0;
}

/* One try: prints the answer; returns the service's code. */
static int try_branch(struct sinter_acct_client *c, const char *what, const char *xid, char kind,
                      const char *account, long long amount)
{
    char req[256], resp[SINTER_ACCT_LINE_MAX];
    snprintf(req, sizeof req, "try %s %c %s %lld", xid, kind, account, amount);
    int rc = sinter_acct_call(c, req, resp, sizeof resp, RPC_MS);
    if (rc != SINTER_OK) {
        printf("  try %-6s %-8s %5lld: no answer (%s)\n", what, account, amount,
               sinter_strerror(rc));
        return rc;
    }
    rc = sinter_acct_answer_code(resp);
    printf("  try %-6s %-8s %5lld: %s\n", what, account, amount, resp);
    return rc;
}

int main(int argc, char **argv)
{
    const char *addrs[MAX_ADDRS], *secret = NULL, *expect = NULL;
    size_t n_addrs = 0, n_bal = 0;
    const char *from_url = NULL, *from = NULL, *to_url = NULL, *to = NULL;
    const char *bal_url[MAX_BAL], *bal_acct[MAX_BAL];
    long long amount = 0;
    unsigned long timeout_ms = 0;
    bool commit = true;
    static char secret_buf[256];
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        bool more = i + 1 < argc, two = i + 2 < argc;
        if (strcmp(o, "--addr") == 0 && more && n_addrs < MAX_ADDRS) {
            addrs[n_addrs++] = argv[++i];
        } else if (strcmp(o, "--secret") == 0 && more) {
            secret = argv[++i];
        } else if (strcmp(o, "--secret-file") == 0 && more) {
            FILE *f = fopen(argv[++i], "r");
            if (f == NULL || fgets(secret_buf, sizeof secret_buf, f) == NULL) {
                fprintf(stderr, "sinter-transfer: cannot read %s\n", argv[i]);
                return 2;
            }
            fclose(f);
            secret_buf[strcspn(secret_buf, "\r\n")] = '\0';
            secret = secret_buf;
        } else if (strcmp(o, "--from") == 0 && two) {
            from_url = argv[++i];
            from = argv[++i];
        } else if (strcmp(o, "--to") == 0 && two) {
            to_url = argv[++i];
            to = argv[++i];
        } else if (strcmp(o, "--balance") == 0 && two && n_bal < MAX_BAL) {
            bal_url[n_bal] = argv[++i];
            bal_acct[n_bal++] = argv[++i];
        } else if (strcmp(o, "--amount") == 0 && more) {
            amount = strtoll(argv[++i], NULL, 10);
        } else if (strcmp(o, "--timeout-ms") == 0 && more) {
            timeout_ms = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(o, "--no-commit") == 0) {
            commit = false;
        } else if (strcmp(o, "--expect") == 0 && more) {
            expect = argv[++i];
        } else {
            usage();
        }
    }
    if (n_bal > 0) {
        int bad = 0;
        for (size_t i = 0; i < n_bal; i++) {
            bad |= show_balance(bal_url[i], bal_acct[i]);
        }
        return bad ? 1 : 0;
    }
    if (n_addrs == 0 || secret == NULL || from == NULL || to == NULL || amount <= 0 ||
        timeout_ms > UINT32_MAX) {
        usage();
    }

    struct sinter_tm_opts o;
    sinter_tm_opts_default(&o);
    o.addresses = addrs;
    o.n_addresses = n_addrs;
    o.secret = secret;
    o.application_id = "tcc-transfer";
    struct sinter_tm *tm = NULL;
    struct sinter_acct_client *debit = NULL, *credit = NULL;
    int rc = sinter_tm_open(&tm, &o);
    if (rc == SINTER_OK) {
        rc = sinter_acct_open(&debit, from_url);
    }
    if (rc == SINTER_OK) {
        rc = sinter_acct_open(&credit, to_url);
    }
    if (rc != SINTER_OK) {
        fprintf(stderr, "sinter-transfer: %s\n", sinter_strerror(rc));
        return 1;
    }
    printf("before:\n");
    show_balance(from_url, from);
    show_balance(to_url, to);

    char xid[SINTER_XID_STRLEN];
    rc = sinter_tm_begin(tm, "transfer", (uint32_t)timeout_ms, xid);
    if (rc != SINTER_OK) {
        fprintf(stderr, "sinter-transfer: begin: %s (%s)\n", sinter_strerror(rc),
                sinter_tm_errmsg());
        return 1;
    }
    printf("begin: global %s (timeout %s)\n", xid,
           timeout_ms ? "as asked" : "the coordinator's default");
    int r1 = try_branch(debit, "debit", xid, 'D', from, amount);
    /* Seata's TCC aborts at the first failed try; so do we: nothing to credit then. */
    int r2 = r1 == SINTER_OK ? try_branch(credit, "credit", xid, 'C', to, amount) : r1;
    uint32_t st = 0;
    if (!commit) {
        printf("no commit: the client walks away; the coordinator rolls the global back at its "
               "timeout\n");
        printf("meanwhile (tries done, global in Begin):\n");
        show_balance(from_url, from);
        show_balance(to_url, to);
        rc = sinter_tm_status(tm, xid, (uint32_t)timeout_ms + PHASE2_WAIT, &st);
    } else if (r1 == SINTER_OK && r2 == SINTER_OK) {
        printf("commit: both tries succeeded\n");
        rc = sinter_tm_commit(tm, xid, PHASE2_WAIT, &st);
    } else {
        printf("rollback: a try failed\n");
        rc = sinter_tm_rollback(tm, xid, PHASE2_WAIT, &st);
    }
    if (rc != SINTER_OK && rc != SINTER_ESTATE) {
        fprintf(stderr, "sinter-transfer: %s: %s (%s)\n", xid, sinter_strerror(rc),
                sinter_tm_errmsg());
        return 1;
    }
    printf("global %s: %s (%" PRIu32 ")\n", xid, sinter_global_status_name(st), st);
    printf("after:\n");
    show_balance(from_url, from);
    show_balance(to_url, to);
    sinter_acct_close(debit);
    sinter_acct_close(credit);
    sinter_tm_close(tm);
    if (expect != NULL && strcmp(expect, sinter_global_status_name(st)) != 0) {
        fprintf(stderr, "sinter-transfer: expected %s, the global ended %s\n", expect,
                sinter_global_status_name(st));
        return 1;
    }
    return 0;
}
