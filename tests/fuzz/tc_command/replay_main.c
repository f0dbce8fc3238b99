/*
 * Replays the seed corpus through fuzz_tc_command in normal (non-libFuzzer) builds (the driver is
 * tests/fuzz/replay.c):
 *   fuzz_tc_command_replay DIR...        run every file in each DIR (or a single file)
 *   fuzz_tc_command_replay --seeds DIR   (re)write the seed corpus: one valid command of each
 *                                        type and a few near-misses
 */
#include <stdio.h>
#include <string.h>

#include "replay.h"
#include "sinter/types.h"
#include "tc/command.h"

static struct sinter_tc_bytes str(const char *s)
{
    return (struct sinter_tc_bytes){.p = (const uint8_t *)s, .len = (uint32_t)strlen(s)};
}

static uint8_t g_buf[SINTER_TC_CMD_MAX_BYTES];

/* Encodes c as dir/name; returns its length (0 when the encoder refused it). */
static size_t seed(const char *dir, const char *name, const struct sinter_tc_cmd *c)
{
    size_t len = 0;
    if (sinter_tc_cmd_encode(c, g_buf, sizeof g_buf, &len) != 0) {
        fprintf(stderr, "seed %s: encoder refused it\n", name);
        return 0;
    }
    sinter_fuzz_write_seed(dir, name, g_buf, len);
    return len;
}

static int make_seeds(const char *dir)
{
    const struct sinter_xid x = {.group = 1, .index = 42};
    struct sinter_tc_cmd c;

    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_BEGIN;
    c.now_ms = 1700000000000u;
    c.client_id = str("tm-1");
    c.seq = 7;
    c.u.begin = (struct sinter_tc_cmd_begin){.app_id = str("orders"),
                                             .tx_name = str("place"),
                                             .timeout_ms = 60000,
                                             .app_data = str("{\"k\":1}")};
    size_t n = seed(dir, "begin", &c);
    sinter_fuzz_write_seed(dir, "begin_truncated", g_buf, n / 2);
    g_buf[n - 1] ^= 0x01;
    sinter_fuzz_write_seed(dir, "begin_flipped", g_buf, n);

    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_REGISTER_BRANCH;
    c.now_ms = 1700000000001u;
    c.client_id = str("rm-1");
    c.seq = 3;
    c.u.reg = (struct sinter_tc_cmd_register){.xid = x,
                                              .branch_type = SINTER_BT_XA,
                                              .resource_id = str("pg:accounts"),
                                              .app_data = str(""),
                                              .xa_info = str("pg_xact:12345")};
    seed(dir, "register_xa", &c);

    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_REPORT_BRANCH;
    c.client_id = str("rm-1");
    c.seq = 4;
    c.u.report = (struct sinter_tc_cmd_report){.xid = x,
                                               .branch_id = 43,
                                               .status = SINTER_BS_PHASE1_DONE,
                                               .has = SINTER_TC_REPORT_HAS_XA_INFO,
                                               .xa_info = str("pg_xact:12346")};
    seed(dir, "report", &c);

    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_DECIDE;
    c.u.decide = (struct sinter_tc_cmd_decide){.xid = x, .target = SINTER_GS_TIMEOUT_ROLLBACKING};
    seed(dir, "decide_timeout", &c);

    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_BRANCH_RESULT;
    c.u.result = (struct sinter_tc_cmd_branch_result){
        .xid = x, .branch_id = 43, .outcome = SINTER_BS_PHASE2_COMMITTED, .first_attempt_ms = 5};
    seed(dir, "branch_result", &c);

    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_BRANCH_RESULTS;
    c.u.results.n = 3;
    for (uint32_t i = 0; i < 3; i++) {
        c.u.results.r[i] = (struct sinter_tc_cmd_branch_result){
            .xid = {.group = 1, .index = 40 + i},
            .branch_id = 50 + i,
            .outcome =
                i == 2 ? SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE : SINTER_BS_PHASE2_COMMITTED};
    }
    n = seed(dir, "branch_results", &c);
    g_buf[0] = 1; /* BRANCH_RESULTS under the first format's version: refused */
    sinter_fuzz_write_seed(dir, "branch_results_v1", g_buf, n);

    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_RETRY_TIMEOUT;
    c.u.retry_timeout = (struct sinter_tc_cmd_retry_timeout){.xid = x, .max_retry_ms = 600000};
    seed(dir, "retry_timeout", &c);

    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_GC;
    c.u.gc = (struct sinter_tc_cmd_gc){.global_cutoff_ms = 1000,
                                       .session_cutoff_ms = 900,
                                       .client_cutoff_ms = 800,
                                       .max_items = 500};
    seed(dir, "gc", &c);

    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_RESOLVE;
    c.u.resolve = (struct sinter_tc_cmd_resolve){.xid = x, .target = SINTER_GS_COMMITTED};
    seed(dir, "resolve", &c);

    const uint8_t *none = (const uint8_t *)"";
    sinter_fuzz_write_seed(dir, "empty", none, 0);
    return 0;
}

int main(int argc, char **argv)
{
    return sinter_fuzz_replay_main(argc, argv, "fuzz_tc_command", make_seeds);
}
