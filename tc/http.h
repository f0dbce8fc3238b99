/*
 * tc/http.h — sinter-tc's operations endpoints over HTTP (internal to tc/), on their own port
 * (node.http_listen), served by nng's HTTP server:
 *
 *   GET  /health                          200 when every group runs and has a known leader, else
 *                                         503; JSON with the role, leader, term, commit and
 *                                         applied index of each group
 *   GET  /metrics                         Prometheus text format 0.0.4 (tc/http_render.h)
 *   GET  /api/v1/globals?status=&group=&after=&limit=    paged listing (this replica's state)
 *   GET  /api/v1/globals/{xid}            one global, every field, with its branches
 *   POST /api/v1/globals/{xid}/redrive    failed global back to retrying (admin, leader only)
 *   POST /api/v1/globals/{xid}/resolve    failed global declared done, target required
 *
 * docs/operations.md documents the requests and answers. Threads: nng's HTTP threads only parse
 * and enqueue; everything that reads a state machine runs on the raft loop thread through
 * sinter_raft_host_call() / _propose(), which completes the HTTP request from there, so no nng
 * thread ever waits for raft or SQLite (DESIGN.md "Handlers never block nng's callback threads").
 */
#ifndef SINTER_TC_HTTP_H
#define SINTER_TC_HTTP_H

struct sinter_tc_server;

/* Starts the HTTP server on s->cfg->http_listen (nothing when it is NULL). Call once the raft
 * host runs. Ownership: the endpoint hangs off s (s->http) until sinter_tc_http_stop().
 * Errors: SINTER_ECONFIG (URL nng refuses), SINTER_ETRANSPORT (address in use), SINTER_ENOMEM. */
int sinter_tc_http_start(struct sinter_tc_server *s);

/* Stops and frees the endpoint (NULL endpoint is ok). Call after s->stopping is set and the raft
 * host stopped: every request waiting on the host has then been answered (503), so nng's server
 * can close its connections without waiting for one. */
void sinter_tc_http_stop(struct sinter_tc_server *s);

#endif /* SINTER_TC_HTTP_H */
