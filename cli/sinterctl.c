/*
 * sinterctl — the operator's command line over sinter-tc's HTTP admin API (tc/http.h,
 * docs/operations.md).
 *
 *   sinterctl [--http URL] [--secret S] [--ca FILE] [--server-name NAME] [--timeout MS] [--json]
 *             health | metrics | list [--status S] [--group G] [--limit N] [--after XID]
 *             | show XID | redrive XID | resolve XID --target
 * committed|rollbacked|timeout_rollbacked
 *
 * URL defaults to $SINTER_HTTP, else http://127.0.0.1:8081; the secret to $SINTER_SECRET (an
 * environment variable keeps it out of `ps`). Human-readable tables by default, the server's
 * JSON as is with --json. A follower answers a state-changing call with 421 and the leader's HTTP
 * address (the API does not forward, so the answer always comes from the node that decided);
 * sinterctl repeats the call there once, as an operator would.
 *
 * Exit status: 0 ok, 1 the server said no (4xx / 5xx, its message printed; /health 503 too),
 * 2 usage error, 3 cannot connect (or no answer in time).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

enum { EXIT_OK = 0, EXIT_SERVER = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3 };

#define SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt" /* Debian's ca-certificates bundle */

struct opts {
    const char *http;
    const char *secret;
    const char *ca;
    const char *server_name;
    unsigned timeout_ms;
    bool json;
    const char *status, *group, *limit, *after, *target;
};

static const char usage_text[] =
    "usage: sinterctl [--http URL] [--secret S] [--ca FILE] [--server-name NAME]\n"
    "                 [--timeout MS] [--json] COMMAND\n"
    "commands:\n"
    "  health                      each raft group's role, leader, term and indexes on the node\n"
    "  metrics                     the node's Prometheus metrics\n"
    "  list [--status S] [--group G] [--limit N] [--after XID]\n"
    "                              globals, in (group, index) order, a page at a time\n"
    "  show XID                    one global and its branches\n"
    "  redrive XID                 a failed global back to retrying (needs the secret)\n"
    "  resolve XID --target committed|rollbacked|timeout_rollbacked\n"
    "                              a failed global declared finished (needs the secret)\n"
    "URL: $SINTER_HTTP, else http://127.0.0.1:8081 (https:// verifies the node against --ca,\n"
    "else the system CAs). Secret: --secret or $SINTER_SECRET.\n"
    "Exit status: 0 ok, 1 the server said no, 2 usage error, 3 cannot connect.\n";

static int usage(const char *fmt, ...)
{
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        fputs("sinterctl: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

/* ---- HTTP ----------------------------------------------------------------------------------- */

struct answer {
    int status;
    char *body; /* malloc'ed, NUL terminated */
    size_t len;
};

/* One request and its whole answer on a connection of our own, which we close afterwards; the
 * deadline bounds the connect (and TLS handshake) and the exchange together. Returns an nng code.
 *
 * Why not nng_http_client_transact: it sends "Connection: close", so nng's HTTP server closes the
 * connection as soon as its write of the answer completes. Over TLS, nng 1.5.2 completes a write
 * once the bytes are in the TLS layer's send buffer (src/supplemental/tls/tls_common.c,
 * tls_do_send), and tls_close() shuts the TCP socket without flushing that buffer; the answer's
 * body, written after its header while the header's TCP send had not yet called back
 * (tcp_send_active), is then lost. The client saw "Connection shutdown" (once in CI, under ASan),
 * or, when no read was pending as the EOF arrived, no answer at all until its timeout: the TLS
 * connection never marks itself closed, and its next TCP read is refused by nni_aio_begin()
 * without a callback. Measured: 6 of 300 GETs over https against a real node (2 "Connection
 * shutdown", 4 without an answer in 10 s); 0 of 300 with this function. On a persistent HTTP/1.1
 * connection the server only closes after we do, so it never closes with part of an answer still
 * buffered (test_sinterctl_conn checks that we never ask it to close). */
static int exchange(nng_http_client *cl, nng_http_req *req, nng_http_res *res, nng_aio *aio,
                    nng_time deadline)
{
    nng_time now = nng_clock();
    if (now >= deadline) {
        return NNG_ETIMEDOUT;
    }
    nng_aio_set_timeout(aio, (nng_duration)(deadline - now));
    nng_http_client_connect(cl, aio);
    nng_aio_wait(aio);
    int rv = nng_aio_result(aio);
    if (rv != 0) {
        return rv;
    }
    nng_http_conn *conn = nng_aio_get_output(aio, 0);
    now = nng_clock();
    if (now >= deadline) {
        nng_http_conn_close(conn);
        return NNG_ETIMEDOUT;
    }
    nng_aio_set_timeout(aio, (nng_duration)(deadline - now));
    nng_http_conn_transact(conn, req, res, aio);
    nng_aio_wait(aio);
    rv = nng_aio_result(aio);
    nng_http_conn_close(conn); /* closes and frees it */
    return rv;
}

/* One request to base + path. 0 with *a filled, or EXIT_CONNECT (message printed) when the node
 * cannot be reached, refuses the TLS handshake or does not answer in time. */
static int transact(const struct opts *o, const char *base, const char *method, const char *path,
                    const char *body, struct answer *a)
{
    char url[1024];
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/') {
        bl--; /* "http://h:p/" + "/health" */
    }
    if (bl + strlen(path) >= sizeof url) {
        fprintf(stderr, "sinterctl: URL too long\n");
        return EXIT_USAGE;
    }
    memcpy(url, base, bl);
    memcpy(url + bl, path, strlen(path) + 1);
    nng_url *u = NULL;
    nng_http_client *cl = NULL;
    nng_http_req *req = NULL;
    nng_http_res *res = NULL;
    nng_aio *aio = NULL;
    nng_tls_config *tls = NULL;
    const char *what = "bad URL";
    int rv = nng_url_parse(&u, url);
    if (rv == 0 && strcmp(u->u_scheme, "http") != 0 && strcmp(u->u_scheme, "https") != 0) {
        rv = NNG_EADDRINVAL;
    }
    if (rv == 0) {
        what = "cannot set up the request";
        rv = nng_http_client_alloc(&cl, u);
    }
    if (rv == 0 && strcmp(u->u_scheme, "https") == 0) {
        /* Verify the node's certificate: against --ca (a private cluster CA), else the system
         * bundle. The name checked is --server-name, else the URL's host. */
        what = "TLS setup (--ca)";
        const char *ca = o->ca != NULL ? o->ca : SYSTEM_CA;
        rv = nng_tls_config_alloc(&tls, NNG_TLS_MODE_CLIENT);
        if (rv == 0) {
            rv = nng_tls_config_ca_file(tls, ca);
        }
        if (rv == 0) {
            rv = nng_tls_config_auth_mode(tls, NNG_TLS_AUTH_MODE_REQUIRED);
        }
        if (rv == 0) {
            rv = nng_tls_config_server_name(tls, o->server_name ? o->server_name : u->u_hostname);
        }
        if (rv == 0) {
            rv = nng_http_client_set_tls(cl, tls);
        }
    }
    if (rv == 0) {
        rv = nng_http_req_alloc(&req, u);
    }
    if (rv == 0) {
        rv = nng_http_req_set_method(req, method);
    }
    if (rv == 0 && o->secret != NULL && strcmp(method, "POST") == 0) {
        char auth[600];
        snprintf(auth, sizeof auth, "Bearer %s", o->secret);
        rv = nng_http_req_set_header(req, "Authorization", auth);
    }
    if (rv == 0 && body != NULL) {
        rv = nng_http_req_set_header(req, "Content-Type", "application/json");
        if (rv == 0) {
            rv = nng_http_req_copy_data(req, body, strlen(body));
        }
    }
    if (rv == 0) {
        rv = nng_http_res_alloc(&res);
    }
    if (rv == 0) {
        rv = nng_aio_alloc(&aio, NULL, NULL);
    }
    int ret = EXIT_USAGE;
    if (rv == 0) {
        ret = EXIT_CONNECT;
        nng_time deadline = nng_clock() + o->timeout_ms;
        rv = exchange(cl, req, res, aio, deadline);
        /* A GET changes nothing, so a connection the server dropped before answering (a node
         * stopping, or one restarted between the connect and the request) is tried once more on
         * a new one. POSTs are never repeated: redrive / resolve answer differently the second
         * time. */
        if ((rv == NNG_ECONNSHUT || rv == NNG_ECONNRESET || rv == NNG_ECLOSED) &&
            strcmp(method, "GET") == 0) {
            fprintf(stderr,
                    "sinterctl: %s: connection dropped before the answer (%s): trying once more\n",
                    url, nng_strerror(rv));
            nng_msleep(100);
            nng_http_res_free(res); /* a fresh response: nothing half-read carries over */
            res = NULL;
            rv = nng_http_res_alloc(&res);
            if (rv == 0) {
                rv = exchange(cl, req, res, aio, deadline);
            }
        }
    }
    if (rv == 0) {
        void *data = NULL;
        size_t len = 0;
        nng_http_res_get_data(res, &data, &len);
        a->status = nng_http_res_get_status(res);
        a->body = malloc(len + 1);
        a->len = len;
        if (a->body == NULL) {
            rv = NNG_ENOMEM;
        } else {
            if (len > 0) {
                memcpy(a->body, data, len);
            }
            a->body[len] = '\0';
            ret = 0;
        }
    }
    if (ret == EXIT_CONNECT && rv == NNG_ETIMEDOUT) {
        fprintf(stderr, "sinterctl: %s: no answer within %u ms\n", url, o->timeout_ms);
    } else if (ret == EXIT_CONNECT) {
        /* Refused, unreachable, or a TLS handshake that failed (wrong CA, plain HTTP to an
         * https:// port and the reverse): all mean "this client cannot talk to that node". */
        fprintf(stderr, "sinterctl: %s: cannot connect: %s\n", url, nng_strerror(rv));
    } else if (ret != 0) {
        fprintf(stderr, "sinterctl: %s: %s: %s\n", url, what, nng_strerror(rv));
    }
    nng_aio_free(aio);
    if (res != NULL) {
        nng_http_res_free(res);
    }
    nng_http_req_free(req);
    if (cl != NULL) {
        nng_http_client_free(cl);
    }
    if (tls != NULL) {
        nng_tls_config_free(tls);
    }
    nng_url_free(u);
    return ret;
}

/* ---- output helpers ------------------------------------------------------------------------- */

#define MAX_COLS 10

/* A table printed with each column as wide as its widest cell, so it reads in a terminal and
 * splits with awk. Cells are copied. */
struct table {
    size_t ncols, nrows, cap;
    char **cells; /* nrows * ncols */
};

static void table_row(struct table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cells, t->cap * t->ncols * sizeof *c);
        if (c == NULL) {
            fputs("sinterctl: out of memory\n", stderr);
            exit(EXIT_SERVER);
        }
        t->cells = c;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        t->cells[t->nrows * t->ncols + i] = strdup(cells[i] != NULL ? cells[i] : "-");
    }
    t->nrows++;
}

static void table_print(struct table *t)
{
    size_t w[MAX_COLS] = {0};
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            size_t l = strlen(t->cells[r * t->ncols + i]);
            w[i] = l > w[i] ? l : w[i];
        }
    }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *c = t->cells[r * t->ncols + i];
            if (i + 1 == t->ncols) {
                printf("%s\n", c);
            } else {
                printf("%-*s  ", (int)w[i], c);
            }
            free(t->cells[r * t->ncols + i]);
        }
    }
    free(t->cells);
    t->cells = NULL;
    t->nrows = t->cap = 0;
}

/* Text of a JSON member for a table cell: strings as is, numbers in decimal, null as "-". */
static const char *cell(json_t *o, const char *key, char *buf, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v)) {
        return json_string_value(v);
    }
    if (json_is_integer(v)) {
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    if (json_is_true(v) || json_is_false(v)) {
        return json_is_true(v) ? "true" : "false";
    }
    return "-";
}

/* Milliseconds since the epoch as UTC ISO 8601; "-" for 0 (not happened yet). */
static const char *time_cell(json_t *o, const char *key, char *buf, size_t cap)
{
    json_int_t ms = json_integer_value(json_object_get(o, key));
    if (ms <= 0) {
        return "-";
    }
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03dZ", (int)(ms % 1000));
    return buf;
}

/* Prints the server's refusal ({"error", "code"} with the HTTP status) and returns EXIT_SERVER. */
static int server_said_no(const struct answer *a, json_t *j)
{
    const char *msg = json_string_value(json_object_get(j, "error"));
    const char *code = json_string_value(json_object_get(j, "code"));
    const char *st = json_string_value(json_object_get(j, "status"));
    if (msg == NULL) {
        fprintf(stderr, "sinterctl: HTTP %d: %.300s\n", a->status, a->body);
    } else {
        fprintf(stderr, "sinterctl: HTTP %d: %s (%s)%s%s\n", a->status, msg,
                code != NULL ? code : "?", st != NULL ? "; status " : "", st != NULL ? st : "");
    }
    return EXIT_SERVER;
}

/* ---- commands ------------------------------------------------------------------------------- */

static int print_health(json_t *j)
{
    char b1[32], b2[32];
    printf("node %s  status %s  client %s  http %s\n", cell(j, "node", b1, sizeof b1),
           cell(j, "status", b2, sizeof b2), json_string_value(json_object_get(j, "client")),
           json_string_value(json_object_get(j, "http")));
    struct table t = {.ncols = 8};
    table_row(&t, (const char *[]){"GROUP", "ROLE", "LEADER", "LEADER_HTTP", "TERM", "COMMIT",
                                   "APPLIED", "ERROR"});
    json_t *gs = json_object_get(j, "groups");
    for (size_t i = 0; i < json_array_size(gs); i++) {
        json_t *g = json_array_get(gs, i);
        char c[7][32];
        json_t *e = json_object_get(g, "error");
        char err[300] = "-";
        if (json_is_object(e)) {
            snprintf(err, sizeof err, "%s: %s", json_string_value(json_object_get(e, "code")),
                     json_string_value(json_object_get(e, "message")));
        }
        table_row(&t,
                  (const char *[]){cell(g, "group", c[0], 32), cell(g, "role", c[1], 32),
                                   cell(g, "leader", c[2], 32), cell(g, "leader_http", c[3], 32),
                                   cell(g, "term", c[4], 32), cell(g, "commit", c[5], 32),
                                   cell(g, "applied", c[6], 32), err});
    }
    table_print(&t);
    return EXIT_OK;
}

static int print_list(json_t *j)
{
    struct table t = {.ncols = 7};
    table_row(&t, (const char *[]){"XID", "GROUP", "STATUS", "APP", "TX_NAME", "BEGIN_UTC",
                                   "TIMEOUT_MS"});
    json_t *a = json_object_get(j, "globals");
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *g = json_array_get(a, i);
        char c[7][48];
        table_row(&t,
                  (const char *[]){cell(g, "xid", c[0], 48), cell(g, "group", c[1], 48),
                                   cell(g, "status", c[2], 48), cell(g, "app_id", c[3], 48),
                                   cell(g, "tx_name", c[4], 48), time_cell(g, "begin_ms", c[5], 48),
                                   cell(g, "timeout_ms", c[6], 48)});
    }
    size_t n = json_array_size(a);
    table_print(&t);
    const char *next = json_string_value(json_object_get(j, "next_after"));
    printf("%zu global(s)", n);
    if (next != NULL) {
        printf("; more after %s: sinterctl list --after %s ...", next, next);
    }
    printf("\n");
    return EXIT_OK;
}

/* "Committing (2)" from a status name and its code. */
static const char *status_cell(json_t *o, const char *name, const char *code, char *buf, size_t cap)
{
    const char *n = json_string_value(json_object_get(o, name));
    json_t *c = json_object_get(o, code);
    if (n == NULL) {
        return "-";
    }
    snprintf(buf, cap, "%s (%" JSON_INTEGER_FORMAT ")", n, json_integer_value(c));
    return buf;
}

static int print_show(json_t *j)
{
    static const char *const plain[] = {"xid",     "group",         "app_id",
                                        "tx_name", "client_id",     "timeout_ms",
                                        "node",    "applied_index", "app_data_base64"};
    static const char *const times[] = {"begin_ms", "deadline_ms", "decided_ms", "phase2_first_ms",
                                        "end_ms"};
    char v[96];
    struct table t = {.ncols = 2};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        table_row(&t, (const char *[]){plain[i], cell(j, plain[i], v, sizeof v)});
        if (i == 0) {
            table_row(&t, (const char *[]){"status",
                                           status_cell(j, "status", "status_code", v, sizeof v)});
            table_row(&t, (const char *[]){"decision", status_cell(j, "decision", "decision_code",
                                                                   v, sizeof v)});
        }
    }
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        table_row(&t, (const char *[]){times[i], time_cell(j, times[i], v, sizeof v)});
    }
    table_print(&t);
    json_t *bs = json_object_get(j, "branches");
    printf("\n%zu branch(es)\n", json_array_size(bs));
    if (json_array_size(bs) == 0) {
        return EXIT_OK;
    }
    t = (struct table){.ncols = 7};
    table_row(&t, (const char *[]){"BRANCH", "TYPE", "STATUS", "RESOURCE", "REGISTERED_UTC",
                                   "PHASE2_RESULTS", "CLIENT"});
    for (size_t i = 0; i < json_array_size(bs); i++) {
        json_t *b = json_array_get(bs, i);
        char c[7][96];
        table_row(&t, (const char *[]){
                          cell(b, "branch_id", c[0], 96), cell(b, "branch_type", c[1], 96),
                          status_cell(b, "status", "status_code", c[2], 96),
                          cell(b, "resource_id", c[3], 96), time_cell(b, "register_ms", c[4], 96),
                          cell(b, "phase2_results", c[5], 96), cell(b, "client_id", c[6], 96)});
    }
    table_print(&t);
    return EXIT_OK;
}

static int print_admin(json_t *j)
{
    char v[96], v2[32];
    printf("%s: %s at raft index %s\n", cell(j, "xid", v2, sizeof v2),
           status_cell(j, "status", "status_code", v, sizeof v),
           cell(j, "index", (char[32]){0}, 32));
    return EXIT_OK;
}

/* Percent-encodes everything but unreserved characters and ':' (the xid's separator), so an xid
 * argument can never add a path segment or a query to the request. */
static void encode(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p != '\0' && n + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == ':' || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
}

static void add_param(char *q, size_t cap, const char *name, const char *value)
{
    if (value == NULL) {
        return;
    }
    char enc[256];
    encode(value, enc, sizeof enc);
    size_t n = strlen(q);
    snprintf(q + n, cap - n, "%c%s=%s", strchr(q, '?') ? '&' : '?', name, enc);
}

enum cmd { C_HEALTH, C_METRICS, C_LIST, C_SHOW, C_REDRIVE, C_RESOLVE };

/* Runs the request, following one 421 to the leader's HTTP address, and prints the answer. */
static int run(const struct opts *o, enum cmd c, const char *method, const char *path,
               const char *body)
{
    struct answer a = {0};
    const char *base = o->http;
    char leader[512];
    int rc = transact(o, base, method, path, body, &a);
    if (rc != 0) {
        return rc;
    }
    if (a.status == 421) {
        json_t *j = json_loads(a.body, 0, NULL);
        const char *lh = json_string_value(json_object_get(j, "leader_http"));
        if (lh != NULL && strlen(lh) < sizeof leader) {
            snprintf(leader, sizeof leader, "%s", lh);
            fprintf(stderr, "sinterctl: %s does not lead group %s: asking the leader at %s\n", base,
                    cell(j, "group", (char[32]){0}, 32), leader);
            json_decref(j);
            free(a.body);
            a = (struct answer){0};
            if ((rc = transact(o, leader, method, path, body, &a)) != 0) {
                return rc;
            }
        } else {
            json_decref(j); /* the leader's HTTP address is not configured: report the 421 */
        }
    }
    if (c == C_METRICS) {
        fwrite(a.body, 1, a.len, a.status == 200 ? stdout : stderr);
        rc = a.status == 200 ? EXIT_OK : EXIT_SERVER;
        free(a.body);
        return rc;
    }
    json_error_t je;
    json_t *j = json_loads(a.body, 0, &je);
    if (o->json) {
        fwrite(a.body, 1, a.len, stdout);
        if (a.len == 0 || a.body[a.len - 1] != '\n') {
            putchar('\n');
        }
    }
    if (j == NULL) {
        fprintf(stderr, "sinterctl: HTTP %d, not JSON (%s): %.300s\n", a.status, je.text, a.body);
        free(a.body);
        return EXIT_SERVER;
    }
    if (c == C_HEALTH && (a.status == 200 || a.status == 503)) {
        /* 503 carries the same document: show it, and say "no" through the exit status. */
        if (!o->json) {
            print_health(j);
        }
        rc = a.status == 200 ? EXIT_OK : EXIT_SERVER;
    } else if (a.status != 200) {
        rc = server_said_no(&a, j);
    } else if (o->json) {
        rc = EXIT_OK;
    } else if (c == C_LIST) {
        rc = print_list(j);
    } else if (c == C_SHOW) {
        rc = print_show(j);
    } else {
        rc = print_admin(j);
    }
    json_decref(j);
    free(a.body);
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o = {
        .http = getenv("SINTER_HTTP"), .secret = getenv("SINTER_SECRET"), .timeout_ms = 10000};
    if (o.http == NULL || o.http[0] == '\0') {
        o.http = "http://127.0.0.1:8081";
    }
    if (o.secret != NULL && o.secret[0] == '\0') {
        o.secret = NULL;
    }
    enum {
        O_HTTP = 256,
        O_SECRET,
        O_CA,
        O_SNAME,
        O_TIMEOUT,
        O_JSON,
        O_STATUS,
        O_GROUP,
        O_LIMIT,
        O_AFTER,
        O_TARGET,
        O_HELP
    };
    static const struct option lo[] = {
        {"http", required_argument, NULL, O_HTTP},
        {"secret", required_argument, NULL, O_SECRET},
        {"ca", required_argument, NULL, O_CA},
        {"server-name", required_argument, NULL, O_SNAME},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"json", no_argument, NULL, O_JSON},
        {"status", required_argument, NULL, O_STATUS},
        {"group", required_argument, NULL, O_GROUP},
        {"limit", required_argument, NULL, O_LIMIT},
        {"after", required_argument, NULL, O_AFTER},
        {"target", required_argument, NULL, O_TARGET},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    for (int ch; (ch = getopt_long(argc, argv, "h", lo, NULL)) != -1;) {
        switch (ch) {
        case O_HTTP:
            o.http = optarg;
            break;
        case O_SECRET:
            o.secret = optarg;
            break;
        case O_CA:
            o.ca = optarg;
            break;
        case O_SNAME:
            o.server_name = optarg;
            break;
        case O_TIMEOUT: {
            char *end = NULL;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end != '\0' || v < 1 || v > 3600000) {
                return usage("--timeout '%s': milliseconds, 1..3600000", optarg);
            }
            o.timeout_ms = (unsigned)v;
            break;
        }
        case O_JSON:
            o.json = true;
            break;
        case O_STATUS:
            o.status = optarg;
            break;
        case O_GROUP:
            o.group = optarg;
            break;
        case O_LIMIT:
            o.limit = optarg;
            break;
        case O_AFTER:
            o.after = optarg;
            break;
        case O_TARGET:
            o.target = optarg;
            break;
        case 'h':
        case O_HELP:
            fputs(usage_text, stdout);
            return EXIT_OK;
        default:
            return usage("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) {
        return usage("no command");
    }
    static const char *const names[] = {"health", "metrics", "list", "show", "redrive", "resolve"};
    int c = -1;
    for (int i = 0; i < 6; i++) {
        if (strcmp(argv[optind], names[i]) == 0) {
            c = i;
        }
    }
    if (c < 0) {
        return usage("unknown command '%s'", argv[optind]);
    }
    int nargs = argc - optind - 1;
    bool needs_xid = c >= C_SHOW;
    if (nargs != (needs_xid ? 1 : 0)) {
        return needs_xid ? usage("%s takes one XID (GROUP:INDEX)", names[c])
                         : usage("%s takes no argument", names[c]);
    }
    if (c != C_LIST && (o.status || o.group || o.limit || o.after)) {
        return usage("--status, --group, --limit and --after belong to list");
    }
    if ((c == C_RESOLVE) != (o.target != NULL)) {
        return c == C_RESOLVE ? usage("resolve needs --target committed|rollbacked|"
                                      "timeout_rollbacked")
                              : usage("--target belongs to resolve");
    }
    if ((c == C_REDRIVE || c == C_RESOLVE) && o.secret == NULL) {
        return usage("%s changes state: give the cluster's secret with --secret or SINTER_SECRET",
                     names[c]);
    }
    char path[1024], xid[256];
    const char *method = "GET";
    char body[256];
    const char *bodyp = NULL;
    if (needs_xid) {
        encode(argv[optind + 1], xid, sizeof xid);
    }
    switch ((enum cmd)c) {
    case C_HEALTH:
        snprintf(path, sizeof path, "/health");
        break;
    case C_METRICS:
        snprintf(path, sizeof path, "/metrics");
        break;
    case C_LIST:
        snprintf(path, sizeof path, "/api/v1/globals");
        add_param(path, sizeof path, "status", o.status);
        add_param(path, sizeof path, "group", o.group);
        add_param(path, sizeof path, "limit", o.limit);
        add_param(path, sizeof path, "after", o.after);
        break;
    case C_SHOW:
        snprintf(path, sizeof path, "/api/v1/globals/%s", xid);
        break;
    case C_REDRIVE:
        snprintf(path, sizeof path, "/api/v1/globals/%s/redrive", xid);
        method = "POST";
        break;
    case C_RESOLVE: {
        snprintf(path, sizeof path, "/api/v1/globals/%s/resolve", xid);
        method = "POST";
        json_t *b = json_pack("{s:s}", "target", o.target);
        char *d = b != NULL ? json_dumps(b, JSON_COMPACT) : NULL;
        json_decref(b);
        if (d == NULL || strlen(d) >= sizeof body) {
            free(d);
            return usage("--target '%s': too long", o.target);
        }
        snprintf(body, sizeof body, "%s", d);
        free(d);
        bodyp = body;
        break;
    }
    }
    /* No nng_fini(): nng 1.5 may still be reaping the HTTP connection in the background, and
     * tearing it down under that thread panics; the process exit releases everything. */
    return run(&o, (enum cmd)c, method, path, bodyp);
}
