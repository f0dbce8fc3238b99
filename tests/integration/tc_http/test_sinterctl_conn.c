/*
 * sinterctl ends its own HTTP connections: every request goes out on a persistent HTTP/1.1
 * connection (no "Connection: close"), and sinterctl closes it once it has read the whole answer,
 * so the server never closes first.
 *
 * Why this matters: nng 1.5.2's HTTP server closes a connection right after writing the answer
 * when the request asked for "Connection: close", and over TLS that close can drop the end of the
 * answer still buffered in nng's TLS layer (see exchange() in cli/sinterctl.c). sinterctl used to
 * send "Connection: close" (nng_http_client_transact does), and 1 GET in about 50 over https
 * failed with "Connection shutdown" or no answer. The race itself needs TLS and load to show
 * (test_tc_tls repeats GETs over https); this test checks the behaviour that avoids it, exactly
 * and every time, against a plain-TCP fake server that records what the client does:
 *
 *   - `health` (GET): one connection, no "Connection: close", the client closes after the answer;
 *   - `resolve` (POST with a body): the fake answers 421 naming itself as the leader, sinterctl
 *     follows it on a second connection; both requests carry the whole body, neither asks the
 *     server to close, and the client closes both.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tccluster.h"
#include "testproc.h"

#define MAX_CONNS 4
#define WAIT_MS   30000

static const char *g_ctl;

/* What the fake server saw on one connection. */
struct seen {
    char request[2048];  /* request line and headers, NUL terminated */
    size_t body_len;     /* body bytes read after the headers */
    long content_length; /* from the request, -1 when absent */
    bool client_closed;  /* EOF from the client after the answer, within WAIT_MS */
};

struct fake {
    int lfd;
    int port;
    int n_answers;
    const char *answers[MAX_CONNS]; /* the JSON answered on connection i; "421" prefix: status */
    int status[MAX_CONNS];
    struct seen seen[MAX_CONNS];
    int n_conns;
};

/* Waits up to WAIT_MS for fd to be readable; false on timeout. */
static bool wait_readable(int fd, uint64_t end)
{
    for (;;) {
        uint64_t now = sinter_test_now_ms();
        if (now >= end) {
            return false;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(end - now));
        if (r > 0) {
            return true;
        }
        if (r < 0 && errno != EINTR) {
            return false;
        }
    }
}

/* One connection: reads the request (headers, then Content-Length bytes of body), writes the
 * whole answer, then waits for the client to close (read returns 0). */
static void serve_one(struct fake *f, int fd, int k)
{
    struct seen *s = &f->seen[k];
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    char buf[4096];
    size_t n = 0;
    char *hdr_end = NULL;
    while (hdr_end == NULL && n < sizeof buf - 1 && wait_readable(fd, end)) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0) {
            return;
        }
        n += (size_t)r;
        buf[n] = '\0';
        hdr_end = strstr(buf, "\r\n\r\n");
    }
    if (hdr_end == NULL) {
        return;
    }
    size_t hlen = (size_t)(hdr_end - buf) + 4;
    snprintf(s->request, sizeof s->request, "%.*s", (int)hlen, buf);
    s->content_length = -1;
    for (char *l = strstr(s->request, "\r\n"); l != NULL; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, "Content-Length:", 15) == 0) {
            s->content_length = strtol(l + 17, NULL, 10);
        }
    }
    s->body_len = n - hlen;
    while (s->content_length > 0 && s->body_len < (size_t)s->content_length &&
           wait_readable(fd, end)) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0) {
            return;
        }
        s->body_len += (size_t)r;
    }
    char answer[1024];
    const char *body = f->answers[k];
    int len = snprintf(answer, sizeof answer,
                       "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\n\r\n%s",
                       f->status[k], f->status[k] == 200 ? "OK" : "Misdirected Request",
                       strlen(body), body);
    if (write(fd, answer, (size_t)len) != len) {
        return;
    }
    /* The answer is complete: the client must now end the connection itself. */
    while (wait_readable(fd, end)) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r == 0) {
            s->client_closed = true;
            return;
        }
        if (r < 0) {
            return; /* a reset is not a clean close either */
        }
    }
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    for (int k = 0; k < f->n_answers; k++) {
        if (!wait_readable(f->lfd, sinter_test_now_ms() + WAIT_MS)) {
            return NULL;
        }
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) {
            return NULL;
        }
        f->n_conns++;
        serve_one(f, fd, k);
        close(fd);
    }
    return NULL;
}

/* Listens on a free loopback port (retrying: another process may take a port first). */
static void fake_listen(struct fake *f)
{
    for (int tries = 0; tries < 20; tries++) {
        int port = sinter_test_free_port();
        assert_true(port > 0);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 8) == 0) {
            f->lfd = fd;
            f->port = port;
            return;
        }
        close(fd);
    }
    fail_msg("no free loopback port to listen on");
}

static struct sinter_test_output run_ctl(struct fake *f, char *const args[])
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", f->port);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fake_main, f), 0);
    struct sinter_test_output o;
    int rc = sinter_tcc_ctl(g_ctl, url, "conn-test-secret", args, &o);
    pthread_join(t, NULL);
    close(f->lfd);
    assert_int_equal(rc, 0);
    return o;
}

/* The request asked for nothing that makes the server close first, carried its whole body, and
 * the client closed the connection after the answer. */
static void check_conn(const struct fake *f, int k, const char *method)
{
    const struct seen *s = &f->seen[k];
    if (strncmp(s->request, method, strlen(method)) != 0) {
        fail_msg("connection %d: expected a %s request, got:\n%s", k + 1, method, s->request);
    }
    if (strstr(s->request, "HTTP/1.1\r\n") == NULL) {
        fail_msg("connection %d: not an HTTP/1.1 request (1.0 is closed by the server):\n%s", k + 1,
                 s->request);
    }
    for (const char *l = strstr(s->request, "\r\n"); l != NULL; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, "Connection:", 11) == 0) {
            const char *e = strstr(l + 2, "\r\n");
            for (const char *c = l + 13; e != NULL && c + 5 <= e; c++) {
                if (strncasecmp(c, "close", 5) == 0) {
                    fail_msg("connection %d: the request asks the server to close:\n%s", k + 1,
                             s->request);
                }
            }
        }
    }
    if (s->content_length >= 0 && s->body_len != (size_t)s->content_length) {
        fail_msg("connection %d: body of %zu bytes, Content-Length %ld", k + 1, s->body_len,
                 s->content_length);
    }
    if (!s->client_closed) {
        fail_msg("connection %d: the client did not close the connection after the answer", k + 1);
    }
}

static void get_closes_its_connection(void **state)
{
    (void)state;
    struct fake f = {0};
    fake_listen(&f);
    f.n_answers = 1;
    f.status[0] = 200;
    f.answers[0] = "{\"node\":1,\"status\":\"ok\",\"client\":null,\"http\":null,\"groups\":"
                   "[{\"group\":0,\"role\":\"leader\",\"leader\":1,\"leader_http\":null,"
                   "\"term\":3,\"commit\":7,\"applied\":7,\"error\":null}]}\n";
    struct sinter_test_output o = run_ctl(&f, (char *[]){"health", NULL});
    if (o.exit_code != 0 || strstr(o.out, "status ok") == NULL) {
        fail_msg("sinterctl health: exit %d\n%s\n%s", o.exit_code, o.out, o.err);
    }
    assert_int_equal(f.n_conns, 1);
    check_conn(&f, 0, "GET ");
    sinter_test_output_free(&o);
}

static void post_and_follow_up_close_their_connections(void **state)
{
    (void)state;
    struct fake f = {0};
    fake_listen(&f);
    static char redirect[256];
    snprintf(redirect, sizeof redirect,
             "{\"error\":\"not the leader of this group: send it to the leader\","
             "\"code\":\"SINTER_ENOTLEADER\",\"group\":0,\"leader\":2,"
             "\"leader_http\":\"http://127.0.0.1:%d\",\"leader_client\":null}\n",
             f.port);
    f.n_answers = 2;
    f.status[0] = 421;
    f.answers[0] = redirect;
    f.status[1] = 200;
    f.answers[1] = "{\"xid\":\"0:7\",\"status\":\"Committed\",\"status_code\":9,\"index\":12}\n";
    struct sinter_test_output o =
        run_ctl(&f, (char *[]){"resolve", "0:7", "--target", "committed", NULL});
    if (o.exit_code != 0 || strstr(o.out, "0:7") == NULL ||
        strstr(o.out, "raft index 12") == NULL || strstr(o.err, "asking the leader") == NULL) {
        fail_msg("sinterctl resolve: exit %d\n%s\n%s", o.exit_code, o.out, o.err);
    }
    assert_int_equal(f.n_conns, 2);
    check_conn(&f, 0, "POST ");
    check_conn(&f, 1, "POST ");
    assert_true(f.seen[0].content_length > 0);
    sinter_test_output_free(&o);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/sinterctl\n", argv[0]);
        return 2;
    }
    g_ctl = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(get_closes_its_connection),
        cmocka_unit_test(post_and_follow_up_close_their_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
