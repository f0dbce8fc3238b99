/*
 * raft-sim: runs seeded schedules of the deterministic cluster simulator (sim.h).
 *
 *   raft-sim --seeds N --nodes K [--steps S] [--seed X] [--scenario random|figure8]
 *            [--profile default|laggard] [--max-msg-entries N] [--verbose] [--trace] [--tail N]
 *
 * --profile laggard hunts Figure 8 (sim.c fault_laggard); --max-msg-entries N forces the cores'
 * batch size instead of drawing it per seed. Both are part of a seed's identity: the replay line
 * printed with a failure repeats them.
 *
 * Runs seeds 1..N (or X..X+N-1 with --seed X; --seed X alone runs just X). Every violation is
 * printed with its seed, step, the tail of the trace and the command that replays it. The last
 * line is always `N seeds, V violations`; the exit status is 0 only when V is 0 (2 on bad usage).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: raft-sim --seeds N --nodes K [--steps S] [--seed X]\n"
               "                [--scenario random|figure8] [--profile default|laggard]\n"
               "                [--max-msg-entries N] [--verbose] [--trace] [--tail N]\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    struct sinter_sim_config cfg;
    sinter_sim_config_defaults(&cfg);
    uint64_t seeds = 0, first = 1, v;
    bool have_seed = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--seeds") && parse_u64(val, &seeds) == 0 && seeds > 0) {
            i++;
        } else if (!strcmp(a, "--nodes") && parse_u64(val, &v) == 0 && v >= 1 && v <= 12) {
            cfg.nodes = (uint32_t)v;
            i++;
        } else if (!strcmp(a, "--steps") && parse_u64(val, &v) == 0 && v > 0) {
            cfg.steps = v;
            i++;
        } else if (!strcmp(a, "--seed") && parse_u64(val, &first) == 0) {
            have_seed = true;
            i++;
        } else if (!strcmp(a, "--tail") && parse_u64(val, &v) == 0 && v <= 512) {
            cfg.tail = (uint32_t)v;
            i++;
        } else if (!strcmp(a, "--scenario") && val &&
                   (!strcmp(val, "random") || !strcmp(val, "figure8"))) {
            cfg.scenario = !strcmp(val, "figure8") ? SINTER_SIM_FIGURE8 : SINTER_SIM_RANDOM;
            i++;
        } else if (!strcmp(a, "--profile") && val &&
                   (!strcmp(val, "default") || !strcmp(val, "laggard"))) {
            cfg.profile =
                !strcmp(val, "laggard") ? SINTER_SIM_PROFILE_LAGGARD : SINTER_SIM_PROFILE_DEFAULT;
            i++;
        } else if (!strcmp(a, "--max-msg-entries") && parse_u64(val, &v) == 0 && v >= 1 &&
                   v <= 4096) {
            cfg.max_msg_entries = (uint32_t)v;
            i++;
        } else if (!strcmp(a, "--verbose")) {
            cfg.verbose = true;
        } else if (!strcmp(a, "--trace")) {
            cfg.trace = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "raft-sim: bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (seeds == 0)
        seeds = have_seed ? 1 : 100;
    if (cfg.scenario == SINTER_SIM_FIGURE8 && cfg.nodes != 3) {
        fprintf(stderr, "raft-sim: --scenario figure8 needs --nodes 3\n");
        return 2;
    }
    if (cfg.scenario == SINTER_SIM_FIGURE8 && cfg.profile != SINTER_SIM_PROFILE_DEFAULT) {
        fprintf(stderr, "raft-sim: --profile applies to the random scenario only\n");
        return 2;
    }
    cfg.out = stdout;
    uint64_t violations = 0, liveness = 0;
    struct sinter_sim_result tot = {0};
    for (uint64_t k = 0; k < seeds; k++) {
        cfg.seed = first + k;
        struct sinter_sim_result r;
        int rc = sinter_sim_run(&cfg, &r);
        if (rc != SINTER_OK) {
            fprintf(stderr, "raft-sim: seed %" PRIu64 ": %s\n", cfg.seed, sinter_strerror(rc));
            return 2;
        }
        if (r.violation) {
            violations++;
            if (r.liveness)
                liveness++;
        }
        tot.leaders += r.leaders;
        tot.crashes += r.crashes;
        tot.lost_writes += r.lost_writes;
        tot.snapshots += r.snapshots;
        tot.installs += r.installs;
        tot.reads += r.reads;
        tot.conf_changes += r.conf_changes;
        tot.transfers += r.transfers;
        tot.heals += r.heals;
        tot.msgs += r.msgs;
        tot.commits += r.commits;
    }
    printf("totals: leaders=%" PRIu64 " commits=%" PRIu64 " crashes=%" PRIu64
           " lost_writes=%" PRIu64 " snapshots=%" PRIu64 " installs=%" PRIu64 " reads=%" PRIu64
           " conf_changes=%" PRIu64 " transfers=%" PRIu64 " healed_phases=%" PRIu64 " msgs=%" PRIu64
           " liveness_failures=%" PRIu64 "\n",
           tot.leaders, tot.commits, tot.crashes, tot.lost_writes, tot.snapshots, tot.installs,
           tot.reads, tot.conf_changes, tot.transfers, tot.heals, tot.msgs, liveness);
    printf("%" PRIu64 " seeds, %" PRIu64 " violations\n", seeds, violations);
    return violations == 0 ? 0 : 1;
}
