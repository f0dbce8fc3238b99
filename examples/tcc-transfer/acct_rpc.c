/*
 * The account services' line RPC over nng REQ/REP (acct_rpc.h). One REQ socket per handle and
 * one context per call: nng matches each answer to its context, so threads share the socket.
 */
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "acct_rpc.h"
#include "sinter/error.h"

struct sinter_acct_client {
    nng_socket sock;
};

int sinter_acct_open(struct sinter_acct_client **out, const char *url)
{
    if (out == NULL || url == NULL) {
        return SINTER_EINVAL;
    }
    struct sinter_acct_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return SINTER_ENOMEM;
    }
    if (nng_req0_open(&c->sock) != 0) {
        free(c);
        return SINTER_ETRANSPORT;
    }
    /* Never resend: REQ's default resends a request unanswered for a minute, and a "try" sent
     * twice registers two branches (a new branch id each, so the fence cannot tell them apart)
     * and moves the money twice. An unanswered call is reported as such; the client then rolls
     * the global back, which cancels every branch the service did register. */
    nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    int rv = nng_dial(c->sock, url, NULL, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        nng_close(c->sock);
        free(c);
        return rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? SINTER_ECONFIG : SINTER_ETRANSPORT;
    }
    *out = c;
    return SINTER_OK;
}

void sinter_acct_close(struct sinter_acct_client *c)
{
    if (c == NULL) {
        return;
    }
    nng_close(c->sock);
    free(c);
}

int sinter_acct_call(struct sinter_acct_client *c, const char *req, char *resp, size_t cap,
                     unsigned timeout_ms)
{
    if (c == NULL || req == NULL || resp == NULL || cap == 0) {
        return SINTER_EINVAL;
    }
    resp[0] = '\0';
    nng_ctx ctx;
    nng_aio *aio = NULL;
    nng_msg *msg = NULL;
    if (nng_ctx_open(&ctx, c->sock) != 0) {
        return SINTER_ETRANSPORT;
    }
    int rc = SINTER_ETRANSPORT;
    if (nng_aio_alloc(&aio, NULL, NULL) != 0 || nng_msg_alloc(&msg, 0) != 0) {
        rc = SINTER_ENOMEM;
        goto out;
    }
    if (nng_msg_append(msg, req, strlen(req)) != 0) {
        rc = SINTER_ENOMEM;
        goto out;
    }
    nng_aio_set_timeout(aio, (nng_duration)timeout_ms);
    nng_aio_set_msg(aio, msg);
    nng_ctx_send(ctx, aio);
    nng_aio_wait(aio);
    if (nng_aio_result(aio) != 0) {
        rc = nng_aio_result(aio) == NNG_ETIMEDOUT ? SINTER_ETIMEOUT : SINTER_ETRANSPORT;
        goto out; /* msg still ours */
    }
    msg = NULL;
    nng_aio_set_timeout(aio, (nng_duration)timeout_ms);
    nng_ctx_recv(ctx, aio);
    nng_aio_wait(aio);
    int rv = nng_aio_result(aio);
    if (rv != 0) {
        rc = rv == NNG_ETIMEDOUT ? SINTER_ETIMEOUT : SINTER_ETRANSPORT;
        goto out;
    }
    msg = nng_aio_get_msg(aio);
    size_t n = nng_msg_len(msg);
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(resp, nng_msg_body(msg), n);
    resp[n] = '\0';
    rc = SINTER_OK;
out:
    if (msg != NULL) {
        nng_msg_free(msg);
    }
    if (aio != NULL) {
        nng_aio_free(aio);
    }
    nng_ctx_close(ctx);
    return rc;
}

int sinter_acct_answer_code(const char *resp)
{
    if (resp == NULL) {
        return SINTER_EINTERNAL;
    }
    if (strncmp(resp, "ok", 2) == 0 && (resp[2] == '\0' || resp[2] == ' ')) {
        return SINTER_OK;
    }
    if (strncmp(resp, "err ", 4) != 0) {
        return SINTER_EINTERNAL;
    }
    const char *name = resp + 4;
    size_t len = strcspn(name, " ");
    for (int rc = 1; rc < SINTER_ERROR_COUNT; rc++) {
        const char *n = sinter_errname(rc);
        if (strlen(n) == len && strncmp(n, name, len) == 0) {
            return rc;
        }
    }
    return SINTER_EINTERNAL;
}
