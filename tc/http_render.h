/*
 * tc/http_render.h — the pure pieces of sinter-tc's HTTP endpoints (internal to tc/): the
 * Prometheus text rendering of /metrics, the parsing of the admin API's query strings and
 * targets, and base64 for binary fields. No threads, no sockets, no raft: tc/http.c gathers the
 * inputs on the right threads and these functions turn them into text, so unit tests
 * (tests/unit/tc_http/) check the exact output.
 */
#ifndef SINTER_TC_HTTP_RENDER_H
#define SINTER_TC_HTTP_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/raft_host.h"
#include "sinter/transport.h"
#include "sinter/types.h"
#include "sinter/xid.h"
#include "tc/metrics.h"

/* A growable text buffer. Once an allocation failed, oom stays set and appends do nothing, so a
 * renderer checks once at the end. */
struct sinter_tc_buf {
    char *p; /* malloc'ed, NUL terminated when len > 0 */
    size_t len, cap;
    bool oom;
};

/* printf-style append. Ownership: b->p grows (realloc); release with sinter_tc_buf_free(). */
void sinter_tc_buf_printf(struct sinter_tc_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sinter_tc_buf_free(struct sinter_tc_buf *b);

/* One raft group as /metrics sees it: the host's status (any thread) and, when the loop thread
 * could read the group's state machine, the globals per status. */
struct sinter_tc_prom_group {
    uint32_t group;
    uint32_t role; /* enum sinter_raft_role */
    uint64_t leader, term, commit, applied;
    int error;        /* SINTER_OK or the error that stopped the group */
    bool have_counts; /* counts valid (false: the group's state could not be read) */
    uint64_t counts[SINTER_GS_MAX + 1];
};

/* Renders the Prometheus text exposition format 0.0.4 for node_id: every metric family with its
 * # HELP and # TYPE lines, counters named *_total, the phase-2 latency as a histogram in seconds
 * with cumulative _bucket{le=...}, _sum and _count, and, when host is not NULL, the raft host's
 * loop and disk counters (sinter_raft_host_stats, never reset by the coordinator), and, when rpc
 * is not NULL, the client listener's connection counters (sinter_transport_server_stats).
 * Ownership: reads its inputs, appends to out (the caller frees). Errors: SINTER_ENOMEM. */
int sinter_tc_prom_render(uint64_t node_id, const struct sinter_tc_prom_group *groups, size_t n,
                          const struct sinter_tc_metrics *m,
                          const struct sinter_raft_host_stats *host,
                          const struct sinter_transport_server_stats *rpc,
                          struct sinter_tc_buf *out);

/* GET /api/v1/globals query. */
#define SINTER_TC_LIST_DEFAULT_LIMIT 100u
#define SINTER_TC_LIST_MAX_LIMIT     500u /* one page is read on the raft loop thread: bounded */

struct sinter_tc_list_query {
    uint32_t status;         /* 0 = every status */
    bool has_group;          /* false = every group */
    uint32_t group;          /* when has_group */
    struct sinter_xid after; /* index 0 = from the start; else the page starts after this xid */
    uint32_t limit;          /* 1..SINTER_TC_LIST_MAX_LIMIT */
};

/* Parses a query string ("status=Committing&group=0&after=0:12&limit=50", no leading '?', may be
 * NULL or empty) into q. status is a Seata name (case-insensitive: "Committing",
 * "commit_retrying" is not accepted, "CommitRetrying" is) or its number; unknown parameters are
 * refused (a typo must not silently widen a listing). Ownership: reads query, writes q and err.
 * Errors: SINTER_EINVAL with err saying which parameter is wrong. */
int sinter_tc_list_query_parse(const char *query, uint32_t n_groups, struct sinter_tc_list_query *q,
                               char *err, size_t errlen);

/* The value of parameter `name` in a query string or form body ("a=1&target=committed"),
 * percent-decoded into out. Errors: SINTER_ENOTFOUND (absent), SINTER_EINVAL (bad escape or
 * longer than cap - 1). */
int sinter_tc_query_get(const char *query, const char *name, char *out, size_t cap);

/* Percent-decodes n bytes of a URL path segment into out (NUL terminated). Errors: SINTER_EINVAL
 * (bad escape, an escaped NUL, or more than cap - 1 bytes). */
int sinter_tc_url_decode(const char *s, size_t n, char *out, size_t cap);

/* A global status by Seata name (case-insensitive) or decimal code: SINTER_OK and *status, or
 * SINTER_EINVAL (not a defined status other than Finished, which is never stored). */
int sinter_tc_status_parse(const char *text, uint32_t *status);

/* RESOLVE target: "committed" | "rollbacked" | "timeout_rollbacked" (also the Seata names
 * Committed, Rollbacked, TimeoutRollbacked, case-insensitive) -> SINTER_GS_COMMITTED / _ROLLBACKED
 * / _TIMEOUT_ROLLBACKED. Errors: SINTER_EINVAL. */
int sinter_tc_resolve_target_parse(const char *text, uint32_t *status);

/* Standard base64 (RFC 4648, with padding) of n bytes into out, which needs
 * sinter_tc_base64_len(n) + 1 bytes (NUL terminated). */
size_t sinter_tc_base64_len(size_t n);
void sinter_tc_base64(const uint8_t *p, size_t n, char *out);

#endif /* SINTER_TC_HTTP_RENDER_H */
