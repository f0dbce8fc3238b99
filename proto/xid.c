/* Text form of xids, see sinter/xid.h. Strict parsing: one xid has exactly one spelling, so the
 * text can key maps and the TCC fence table. */
#include "sinter/xid.h"

#include <stdio.h>

#include "sinter/error.h"

size_t sinter_xid_format(const struct sinter_xid *xid, char *buf)
{
    int n = snprintf(buf, SINTER_XID_STRLEN, "%u:%llu", (unsigned)xid->group,
                     (unsigned long long)xid->index);
    return n < 0 ? 0 : (size_t)n;
}

/* Parses a canonical decimal in [0, max]; returns the number of bytes consumed or 0. */
static size_t parse_dec(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (max - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
        i++;
    }
    if (i == 0 || (i > 1 && s[0] == '0')) {
        return 0;
    }
    *out = v;
    return i;
}

int sinter_xid_parse(struct sinter_xid *xid, const char *text, size_t len)
{
    uint64_t group;
    uint64_t index;
    size_t n = parse_dec(text, len, UINT32_MAX, &group);
    if (n == 0 || n >= len || text[n] != ':') {
        return SINTER_EINVAL;
    }
    size_t m = parse_dec(text + n + 1, len - n - 1, UINT64_MAX, &index);
    if (m == 0 || n + 1 + m != len || index == 0) {
        return SINTER_EINVAL;
    }
    xid->group = (uint32_t)group;
    xid->index = index;
    return SINTER_OK;
}
