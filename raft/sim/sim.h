/*
 * raft/sim/sim.h — the deterministic cluster simulator for the pure Raft core (sinter/raft.h).
 *
 * One run = one seed. A run builds a cluster of `nodes` founding voters (plus a few spare servers
 * that start outside the configuration and can be added later), each a struct sinter_raft driven by
 * a simulated host that follows the ready/advance contract of sinter/raft.h to the letter, over an
 * in-memory network (per-link delay, loss, duplication, reordering, symmetric and one-way
 * partitions) and in-memory disks whose unsynced writes a crash may lose. Clients propose, read
 * (read-index), change membership and transfer leadership; the scheduler alternates fault phases
 * with heal phases.
 *
 * Everything random comes from one PRNG seeded by the run's seed, so the seed (with the node count,
 * step count, scenario, profile and max_msg_entries override) fully determines the run:
 * `raft-sim --seed X` replays it byte for byte.
 *
 * After every step a checker verifies the Raft paper's Figure 3 properties (election safety,
 * leader append-only, log matching, leader completeness, state machine safety) plus linearizable
 * reads, and after each heal phase it checks liveness (a leader and a fresh commit within a bound).
 * The first violation ends the run and is printed as `VIOLATION seed=X step=N: <what>` followed by
 * the tail of the event trace.
 */
#ifndef SINTER_RAFT_SIM_H
#define SINTER_RAFT_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sinter/error.h"

#ifdef __cplusplus
extern "C" {
#endif

enum sinter_sim_scenario {
    SINTER_SIM_RANDOM = 0,  /* random fault/heal schedule (the default) */
    SINTER_SIM_FIGURE8 = 1, /* scripted Raft paper Figure 8: an old-term entry reaches a majority
                               while the current-term entry cannot; needs 3 nodes */
};

/* How the random scenario draws its faults. */
enum sinter_sim_profile {
    SINTER_SIM_PROFILE_DEFAULT = 0, /* the broad fault mix (sim.c fault()) */
    SINTER_SIM_PROFILE_LAGGARD = 1, /* Figure 8 hunting: in every fault phase a minority of
                                       "laggard" followers only ever receives entries of terms
                                       older than the APPEND's own, and the current leader is
                                       isolated or crashed over and over (sim.c fault_laggard()) */
};

struct sinter_sim_config {
    uint64_t seed;            /* the run's seed: determines everything */
    uint32_t nodes;           /* founding voters, 1..12 */
    uint64_t steps;           /* simulated steps (5 steps make one Raft tick) */
    int scenario;             /* enum sinter_sim_scenario */
    int profile;              /* enum sinter_sim_profile (random scenario only) */
    uint32_t max_msg_entries; /* 0 = drawn per seed; else forces the cores' max_msg_entries */
    FILE *out;                /* violations, traces and verbose lines go here; NULL = stdout */
    bool trace;               /* print every event as it happens */
    bool verbose;             /* print one summary line per run */
    uint32_t tail;            /* trace events printed after a violation; 0 = default (40) */
};

/* What one run did. Counters are for the summary line and to show the schedule's coverage. */
struct sinter_sim_result {
    bool violation;   /* a safety check failed */
    bool liveness;    /* a liveness bound was missed (also counted as a violation) */
    uint64_t step;    /* step of the violation, or steps run */
    uint64_t leaders; /* distinct (term, leader) pairs observed */
    uint64_t max_term;
    uint64_t commits; /* highest index known committed */
    uint64_t crashes;
    uint64_t lost_writes;  /* crashes that dropped unsynced writes */
    uint64_t snapshots;    /* snapshots taken by hosts */
    uint64_t installs;     /* snapshots installed from a leader */
    uint64_t reads;        /* read-index reads served (and checked) */
    uint64_t conf_changes; /* membership changes accepted by a leader */
    uint64_t transfers;    /* leadership transfers started */
    uint64_t heals;        /* heal phases whose liveness was verified */
    uint64_t msgs;         /* messages delivered */
};

/* Fills *cfg with defaults (3 nodes, 10000 steps, random scenario, default profile, stdout).
 * Ownership: writes *cfg only. */
void sinter_sim_config_defaults(struct sinter_sim_config *cfg);

/* Runs one seeded simulation. Ownership: cfg is read only; *res is written; cfg->out is borrowed
 * (not closed). Returns SINTER_OK whether or not a violation was found (see res), or SINTER_EINVAL
 * (bad config), SINTER_ENOMEM. */
int sinter_sim_run(const struct sinter_sim_config *cfg, struct sinter_sim_result *res);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_RAFT_SIM_H */
