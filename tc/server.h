/*
 * tc/server.h — the sinter-tc server (internal to tc/): raft groups whose state machines are the
 * transaction state machine (tc/fsm.h), and the client RPC service on top.
 *
 * Layers (the leader-only workers, the phase-2 service and parked replies are in tc/worker.h):
 *   - state machine adapter: group g's state is a sinter_tc_fsm in DATA/group-g/tc.sqlite; the
 *     raft host applies committed entries to it in batches; snapshots stream the fsm's SQLite copy
 *     through the host's chunked writer / reader;
 *   - proposals: a command is proposed to a group and its per-entry result (tc/fsm.h) comes back
 *     to the proposer's completion, on the raft loop thread;
 *   - RPC: the sinter transport (nng REQ/REP contexts); handlers only enqueue, replies are sent
 *     from the raft host's completions; Phase2Poll and WAIT_PHASE2 commits are parked on the loop
 *     thread (tc/worker.c) and answered when work or the end arrives, or their wait passes;
 *   - the host's on_role starts / drops a group's leader-only workers, on_tick drives their
 *     timers, and every applied batch feeds them (tc/worker.h).
 */
#ifndef SINTER_TC_SERVER_H
#define SINTER_TC_SERVER_H

#include "tc/config.h"

struct sinter_tc_server;

/* Opens every group's state database, starts the raft host and the client RPC listener.
 * Ownership: *out is the caller's, released with sinter_tc_server_stop(); cfg must stay alive and
 * unchanged until then (it is validated already).
 * Errors: SINTER_ECONFIG (a state database of another group, bad URL), SINTER_ETRANSPORT (a
 * listen address in use), SINTER_EIO (data dir), SINTER_EDB, SINTER_ECORRUPT, SINTER_ENOMEM. */
int sinter_tc_server_start(struct sinter_tc_server **out, const struct sinter_tc_config *cfg);

/* Stops serving: new requests are refused with SINTER_ESHUTDOWN, requests in flight are answered
 * (SINTER_ESHUTDOWN when their outcome is not known yet: clients retry with the same seq), the
 * raft host stops, the databases close. NULL is ok. */
void sinter_tc_server_stop(struct sinter_tc_server *s);

#endif /* SINTER_TC_SERVER_H */
