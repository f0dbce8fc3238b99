/*
 * Global transaction ids (xid).
 *
 * An xid names the raft group that owns the transaction and the log index of the entry that began
 * it: unique for the life of the cluster (log indexes are never reused) and routable by any client
 * without a lookup. Branch ids are the log index of the register entry in the same group. The text
 * form "<group>:<index>" (decimal, e.g. "0:1234") is what crosses service boundaries, for example
 * in an RPC header, so a callee joins the caller's global transaction.
 */
#ifndef SINTER_XID_H
#define SINTER_XID_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct sinter_xid {
    uint32_t group;
    uint64_t index; /* > 0 */
};

/* Longest text form including the terminating NUL: 10 + 1 + 20 + 1. */
#define SINTER_XID_STRLEN 32

/* Writes the text form into buf (at least SINTER_XID_STRLEN bytes) and returns its length.
 * Ownership: writes buf only. */
size_t sinter_xid_format(const struct sinter_xid *xid, char *buf);

/* Parses exactly len bytes of text form (no sign, no spaces, no leading zeros except "0", index
 * non-zero). Errors: SINTER_EINVAL. */
int sinter_xid_parse(struct sinter_xid *xid, const char *text, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_XID_H */
