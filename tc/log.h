/*
 * tc/log.h — sinter-tc's structured log lines (internal to tc/).
 *
 * One line per event on stderr, key=value pairs an operator can grep or ship as is:
 *   2024-05-01T10:00:00.123Z level=INFO node=1 group=0 xid=0:42 msg="commit decided"
 * group and xid appear only when the line is about one.
 */
#ifndef SINTER_TC_LOG_H
#define SINTER_TC_LOG_H

#include <stdint.h>

#include "sinter/xid.h"

#define SINTER_TC_LOG_ERROR 0
#define SINTER_TC_LOG_WARN  1
#define SINTER_TC_LOG_INFO  2
#define SINTER_TC_LOG_DEBUG 3
#define SINTER_TC_NO_GROUP  UINT32_MAX

/* Sets the node id printed on every line and the most verbose level kept. Call before any thread
 * logs. */
void sinter_tc_log_setup(uint64_t node_id, int level);

/* True when a line at level would be written (to skip building expensive messages). */
int sinter_tc_log_enabled(int level);

/* Writes one line (thread-safe: one fputs of a preformatted line). group may be
 * SINTER_TC_NO_GROUP, xid may be NULL. */
void sinter_tc_log(int level, uint32_t group, const struct sinter_xid *xid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* SINTER_TC_LOG_H */
