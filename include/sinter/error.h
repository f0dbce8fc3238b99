/*
 * Sinter's one error convention.
 *
 * Every fallible function returns an int: SINTER_OK (0) on success, or one of the positive codes
 * below. The numbers are stable: they travel on the wire in every reply's result code and appear
 * in logs, so a code is never renumbered or reused; new codes are appended before
 * SINTER_ERROR_COUNT. sinter_strerror() turns any int into a static, human-readable string.
 */
#ifndef SINTER_ERROR_H
#define SINTER_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum sinter_error {
    SINTER_OK = 0,
    /* Generic. */
    SINTER_ENOMEM = 1,   /* out of memory */
    SINTER_EINVAL = 2,   /* invalid argument */
    SINTER_EIO = 3,      /* I/O error (read, write, fsync, rename) */
    SINTER_ENOSPC = 4,   /* no space left on device */
    SINTER_ECORRUPT = 5, /* on-disk data failed validation (CRC, version, structure) */
    SINTER_ECRC = 6,     /* checksum mismatch */
    /* Wire protocol (proto/). */
    SINTER_ETRUNCATED = 7,   /* buffer ends before the frame or field it announces */
    SINTER_EBADMAGIC = 8,    /* frame does not start with Sinter's magic */
    SINTER_EBADVERSION = 9,  /* frame version not supported by this build */
    SINTER_EUNKNOWNMSG = 10, /* message code not known */
    SINTER_ETOOBIG = 11,     /* a length exceeds its hard limit */
    SINTER_EBADLEN = 12,     /* a length field disagrees with the bytes present */
    SINTER_EBADVALUE = 13,   /* a field holds a value outside its domain (enum, flag) */
    /* Consensus and cluster. */
    SINTER_ENOTLEADER = 14,  /* this node is not the leader; the reply names the leader if known */
    SINTER_EBUSY = 15,       /* back-pressure: too much in flight, transfer or change in progress */
    SINTER_ETIMEOUT = 16,    /* the operation did not complete in time; its outcome is unknown */
    SINTER_ESHUTDOWN = 17,   /* the component is shutting down */
    SINTER_ECONFCHANGE = 18, /* membership change not allowed now (another one is pending) */
    SINTER_ESTALE = 19, /* request refers to a term, index or leader that is no longer current */
    SINTER_ECOMPACTED = 20, /* requested log entries were compacted into a snapshot */
    SINTER_ETRANSPORT = 21, /* network transport failure */
    /* Transactions. */
    SINTER_ENOTFOUND = 22,   /* unknown xid, branch, resource or record */
    SINTER_ESTATE = 23,      /* operation not allowed in the current state (e.g. late register) */
    SINTER_EEXIST = 24,      /* the thing already exists */
    SINTER_EAUTH = 25,       /* authentication failed (wrong secret, unregistered client) */
    SINTER_ECONFIG = 26,     /* configuration is invalid */
    SINTER_ECANCELED = 27,   /* the operation was cancelled */
    SINTER_EDB = 28,         /* a database (SQLite or PostgreSQL) reported an error */
    SINTER_ENOPREPARED = 29, /* PostgreSQL max_prepared_transactions is 0 */
    SINTER_EFENCE = 30,      /* TCC fence refused the action (try after cancel) */
    SINTER_EINTERNAL = 31,   /* invariant violated inside Sinter: a bug, please report */
    SINTER_ERROR_COUNT       /* number of codes; not an error itself */
};

/* Returns a static string describing rc. Never NULL: unknown values give "unknown error".
 * Ownership: the string is static, the caller must not free it. */
const char *sinter_strerror(int rc);

/* Returns the symbolic name of rc ("SINTER_ENOTLEADER"), or "SINTER_E?" for unknown values.
 * Ownership: static string. */
const char *sinter_errname(int rc);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_ERROR_H */
