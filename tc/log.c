/* sinter-tc structured logging (see tc/log.h). */
#include "tc/log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t g_node;
static int g_level = SINTER_TC_LOG_INFO;

void sinter_tc_log_setup(uint64_t node_id, int level)
{
    g_node = node_id;
    g_level = level;
}

int sinter_tc_log_enabled(int level)
{
    return level <= g_level;
}

void sinter_tc_log(int level, uint32_t group, const struct sinter_xid *xid, const char *fmt, ...)
{
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    if (level > g_level) {
        return;
    }
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* A quote inside msg would end the value early for a log parser. */
    for (char *p = msg; *p != '\0'; p++) {
        if (*p == '"' || *p == '\n') {
            *p = '\'';
        }
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    char where[96] = "";
    size_t off = 0;
    if (group != SINTER_TC_NO_GROUP) {
        off += (size_t)snprintf(where, sizeof where, " group=%u", group);
    }
    if (xid != NULL && off < sizeof where) {
        char x[SINTER_XID_STRLEN];
        sinter_xid_format(xid, x);
        snprintf(where + off, sizeof where - off, " xid=%s", x);
    }
    char line[1024];
    snprintf(line, sizeof line, "%s.%03ldZ level=%s node=%" PRIu64 "%s msg=\"%s\"\n", when,
             ts.tv_nsec / 1000000L,
             names[level < 0   ? 0
                   : level > 3 ? 3
                               : level],
             g_node, where, msg);
    fputs(line, stderr);
}
