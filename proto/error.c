/* Error strings for the codes in sinter/error.h. One table, indexed by code, so a code without a
 * string is a compile-time-visible gap (the test checks every code has a distinct entry). */
#include "sinter/error.h"

#include <stddef.h>

struct errdesc {
    const char *name;
    const char *text;
};

static const struct errdesc errtab[SINTER_ERROR_COUNT] = {
    [SINTER_OK] = {"SINTER_OK", "success"},
    [SINTER_ENOMEM] = {"SINTER_ENOMEM", "out of memory"},
    [SINTER_EINVAL] = {"SINTER_EINVAL", "invalid argument"},
    [SINTER_EIO] = {"SINTER_EIO", "I/O error"},
    [SINTER_ENOSPC] = {"SINTER_ENOSPC", "no space left on device"},
    [SINTER_ECORRUPT] = {"SINTER_ECORRUPT", "data corrupted"},
    [SINTER_ECRC] = {"SINTER_ECRC", "checksum mismatch"},
    [SINTER_ETRUNCATED] = {"SINTER_ETRUNCATED", "frame truncated"},
    [SINTER_EBADMAGIC] = {"SINTER_EBADMAGIC", "bad frame magic"},
    [SINTER_EBADVERSION] = {"SINTER_EBADVERSION", "unsupported frame version"},
    [SINTER_EUNKNOWNMSG] = {"SINTER_EUNKNOWNMSG", "unknown message code"},
    [SINTER_ETOOBIG] = {"SINTER_ETOOBIG", "length exceeds limit"},
    [SINTER_EBADLEN] = {"SINTER_EBADLEN", "length field inconsistent with data"},
    [SINTER_EBADVALUE] = {"SINTER_EBADVALUE", "field value out of range"},
    [SINTER_ENOTLEADER] = {"SINTER_ENOTLEADER", "not the leader"},
    [SINTER_EBUSY] = {"SINTER_EBUSY", "busy, try again later"},
    [SINTER_ETIMEOUT] = {"SINTER_ETIMEOUT", "timed out"},
    [SINTER_ESHUTDOWN] = {"SINTER_ESHUTDOWN", "shutting down"},
    [SINTER_ECONFCHANGE] = {"SINTER_ECONFCHANGE", "membership change in progress"},
    [SINTER_ESTALE] = {"SINTER_ESTALE", "stale term, index or leader"},
    [SINTER_ECOMPACTED] = {"SINTER_ECOMPACTED", "log entries compacted"},
    [SINTER_ETRANSPORT] = {"SINTER_ETRANSPORT", "transport error"},
    [SINTER_ENOTFOUND] = {"SINTER_ENOTFOUND", "not found"},
    [SINTER_ESTATE] = {"SINTER_ESTATE", "not allowed in current state"},
    [SINTER_EEXIST] = {"SINTER_EEXIST", "already exists"},
    [SINTER_EAUTH] = {"SINTER_EAUTH", "authentication failed"},
    [SINTER_ECONFIG] = {"SINTER_ECONFIG", "invalid configuration"},
    [SINTER_ECANCELED] = {"SINTER_ECANCELED", "canceled"},
    [SINTER_EDB] = {"SINTER_EDB", "database error"},
    [SINTER_ENOPREPARED] =
        {"SINTER_ENOPREPARED",
         "PostgreSQL max_prepared_transactions is 0 (two-phase commit disabled)"},
    [SINTER_EFENCE] = {"SINTER_EFENCE", "refused by TCC fence"},
    [SINTER_EINTERNAL] = {"SINTER_EINTERNAL", "internal error"},
};

const char *sinter_strerror(int rc)
{
    if (rc < 0 || rc >= SINTER_ERROR_COUNT || errtab[rc].text == NULL) {
        return "unknown error";
    }
    return errtab[rc].text;
}

const char *sinter_errname(int rc)
{
    if (rc < 0 || rc >= SINTER_ERROR_COUNT || errtab[rc].name == NULL) {
        return "SINTER_E?";
    }
    return errtab[rc].name;
}
