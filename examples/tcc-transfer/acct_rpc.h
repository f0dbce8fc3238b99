/*
 * examples/tcc-transfer/acct_rpc.h — the account services' tiny RPC: one line of text per
 * request and per answer over nng REQ/REP (the xid travels as its text form, sinter/xid.h).
 *
 *   try <xid> <D|C> <account> <amount> [late]  -> "ok <branch_id>" | "err <CODE> <detail>"
 *       D freezes amount on account (debit), C announces an incoming credit. "late" (tests and
 *       the demo's anti-suspension case): the service registers the branch, then holds the
 *       try's local transaction back until the branch's cancel has reached the fence.
 *   balance <account>  -> "ok <balance> <frozen> <incoming>"
 *   stats              -> "ok <phase-2 items received> <handled> <hook runs>"
 *   ping               -> "ok"
 *
 * A client handle holds one REQ socket; every call uses its own nng context, so one handle may
 * be shared by any number of threads.
 */
#ifndef SINTER_ACCT_RPC_H
#define SINTER_ACCT_RPC_H

#include <stddef.h>

#define SINTER_ACCT_LINE_MAX 512

struct sinter_acct_client;

/* Opens a REQ socket dialing url (non-blocking dial: the service may start later).
 * Ownership: url copied by nng; *out is the caller's, freed with sinter_acct_close.
 * Errors: SINTER_ECONFIG (bad url), SINTER_ENOMEM, SINTER_ETRANSPORT. */
int sinter_acct_open(struct sinter_acct_client **out, const char *url);

/* Closes the handle; no call may be running. NULL is a no-op. */
void sinter_acct_close(struct sinter_acct_client *c);

/* Sends request line req and writes the answer line (NUL-terminated, truncated to cap) into
 * resp. Waits up to timeout_ms for the answer; the request is sent once (a resent "try" would
 * register a second branch and move the money twice: see acct_rpc.c).
 * Ownership: borrows req, writes resp. Errors: SINTER_EINVAL, SINTER_ETIMEOUT (no answer: the
 * outcome is unknown), SINTER_ETRANSPORT, SINTER_ENOMEM. */
int sinter_acct_call(struct sinter_acct_client *c, const char *req, char *resp, size_t cap,
                     unsigned timeout_ms);

/* The sinter error code named by an "err <CODE> ..." answer (SINTER_OK for "ok ...",
 * SINTER_EINTERNAL for anything unrecognised). Ownership: borrows resp. */
int sinter_acct_answer_code(const char *resp);

#endif /* SINTER_ACCT_RPC_H */
