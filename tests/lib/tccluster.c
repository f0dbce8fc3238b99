/* A loopback cluster of sinter-tc processes for tests (see tccluster.h). */
#include "tccluster.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sinter/client.h"
#include "testproc.h"

/* Writes (mode "w") or appends ("a") text and a newline to DIR/cluster.ini. */
static int ini_put(const struct sinter_tcc *c, const char *mode, const char *text)
{
    char ini[400];
    snprintf(ini, sizeof ini, "%s/cluster.ini", c->tmp);
    FILE *f = fopen(ini, mode);
    if (f == NULL) {
        perror("tccluster: cluster.ini");
        return -1;
    }
    fputs(text, f);
    fputc('\n', f);
    return fclose(f) == 0 ? 0 : -1;
}

int sinter_tcc_init(struct sinter_tcc *c, const char *bin, const char *prefix, int n,
                    unsigned groups, const char *secret, const char *extra_ini)
{
    memset(c, 0, sizeof *c);
    if (n < 1 || n > SINTER_TCC_MAX_NODES || groups == 0) {
        fprintf(stderr, "tccluster: bad node or group count\n");
        return -1;
    }
    c->bin = bin;
    c->n = n;
    c->groups = groups;
    snprintf(c->tmp, sizeof c->tmp, "/tmp/sinter-%s-XXXXXX", prefix);
    if (mkdtemp(c->tmp) == NULL) {
        perror("tccluster: mkdtemp");
        return -1;
    }
    /* election_ticks 50: 1-2 s election timeouts (sinter-tc's default now too, written out so
     * the tests do not follow a change of it). With 200-400 ms, on a loaded CI machine (sanitizer
     * builds, ctest -j) a node starved of CPU for a few hundred ms would start a spurious
     * election, and a test's single-shot call or timing window would meet a leader change
     * (test_raft_host_order moved to 1-2 s for the same reason). */
    char head[600];
    snprintf(head, sizeof head,
             "; written by tests/lib/tccluster.c\n[raft]\ngroups = %u\ntick_ms = 20\n"
             "election_ticks = 50\n[tc]\nsecret = %s",
             groups, secret);
    if (ini_put(c, "w", head) != 0 || (extra_ini != NULL && ini_put(c, "a", extra_ini) != 0)) {
        return -1;
    }
    for (int i = 1; i <= n; i++) {
        struct sinter_tcc_node *d = &c->node[i];
        d->id = (uint64_t)i;
        d->raft_port = sinter_test_free_port();
        d->client_port = sinter_test_free_port();
        d->http_port = sinter_test_free_port();
        if (d->raft_port <= 0 || d->client_port <= 0 || d->http_port <= 0) {
            fprintf(stderr, "tccluster: no free port\n");
            return -1;
        }
        snprintf(d->raft_url, sizeof d->raft_url, "tcp://127.0.0.1:%d", d->raft_port);
        snprintf(d->client_url, sizeof d->client_url, "tcp://127.0.0.1:%d", d->client_port);
        snprintf(d->http_url, sizeof d->http_url, "http://127.0.0.1:%d", d->http_port);
        snprintf(d->dir, sizeof d->dir, "%s/n%d", c->tmp, i);
    }
    return 0;
}

int sinter_tcc_append_ini(struct sinter_tcc *c, const char *text)
{
    return ini_put(c, "a", text);
}

void sinter_tcc_use_tls(struct sinter_tcc *c)
{
    for (int i = 1; i <= c->n; i++) {
        struct sinter_tcc_node *d = &c->node[i];
        snprintf(d->raft_url, sizeof d->raft_url, "tls+tcp://127.0.0.1:%d", d->raft_port);
        snprintf(d->client_url, sizeof d->client_url, "tls+tcp://127.0.0.1:%d", d->client_port);
        snprintf(d->http_url, sizeof d->http_url, "https://127.0.0.1:%d", d->http_port);
    }
}

int sinter_tcc_node_by_url(const struct sinter_tcc *c, const char *url, size_t len)
{
    for (int i = 1; i <= c->n && url != NULL; i++) {
        const char *u = c->node[i].client_url;
        if (strlen(u) == len && memcmp(u, url, len) == 0) {
            return i;
        }
    }
    return 0;
}

int sinter_tcc_start(struct sinter_tcc *c, int i)
{
    struct sinter_tcc_node *n = &c->node[i];
    if (n->pid > 0) {
        return 0;
    }
    char *argv[64];
    char bufs[40][600];
    int a = 0, b = 0;
    argv[a++] = (char *)c->bin;
#define ARG(...)                                                                                   \
    do {                                                                                           \
        snprintf(bufs[b], sizeof bufs[b], __VA_ARGS__);                                            \
        argv[a++] = bufs[b++];                                                                     \
    } while (0)
    /* The file carries the cluster-wide part, flags the per-node part (flags override). */
    ARG("--config");
    ARG("%s/cluster.ini", c->tmp);
    ARG("--id");
    ARG("%" PRIu64, n->id);
    ARG("--raft-listen");
    ARG("%s", n->raft_url);
    ARG("--client-listen");
    ARG("%s", n->client_url);
    ARG("--http-listen");
    ARG("%s", n->http_url);
    ARG("--data-dir");
    ARG("%s", n->dir);
    for (int k = 1; k <= c->n; k++) {
        if (k != i) {
            const struct sinter_tcc_node *p = &c->node[k];
            ARG("--peer");
            ARG("%" PRIu64 "=%s,%s,%s", p->id, p->raft_url, p->client_url, p->http_url);
        }
    }
#undef ARG
    for (const char *const *x = n->extra_args; x != NULL && *x != NULL; x++) {
        if (a >= (int)(sizeof argv / sizeof argv[0]) - 1) {
            fprintf(stderr, "tccluster: too many extra_args\n");
            return -1;
        }
        argv[a++] = (char *)*x;
    }
    argv[a] = NULL;
    char logp[400];
    n->log_from = sinter_test_file_size(sinter_tcc_log_path(c, i, logp, sizeof logp));
    pid_t pid = sinter_test_spawn(argv, logp);
    if (pid < 0) {
        return -1;
    }
    n->pid = pid;
    return 0;
}

int sinter_tcc_start_all(struct sinter_tcc *c)
{
    for (int i = 1; i <= c->n; i++) {
        if (sinter_tcc_start(c, i) != 0) {
            return -1;
        }
    }
    return 0;
}

void sinter_tcc_kill9(struct sinter_tcc *c, int i)
{
    sinter_test_kill9(&c->node[i].pid);
}

/* True while pid has not exited (a zombie has: it exited, waiting to be reaped). */
static bool alive(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *st = strrchr(buf, ')'); /* "pid (comm) S ...": comm may hold spaces */
    return st != NULL && st[1] == ' ' && st[2] != 'Z' && st[2] != 'X';
}

void sinter_tcc_stop(struct sinter_tcc *c, int i)
{
    struct sinter_tcc_node *n = &c->node[i];
    if (n->pid > 0) {
        char logp[400];
        sinter_tcc_log_path(c, i, logp, sizeof logp);
        uint64_t end = sinter_test_now_ms() + 30000;
        while (sinter_test_count_lines(logp, n->log_from, "serving clients on", NULL) == 0 &&
               alive(n->pid) && sinter_test_now_ms() < end) {
            sinter_test_sleep_ms(20);
        }
    }
    char what[48];
    snprintf(what, sizeof what, "tccluster: node %d", i);
    c->bad_exits += sinter_test_stop_clean(&c->node[i].pid, what);
}

void sinter_tcc_stop_all(struct sinter_tcc *c)
{
    for (int i = 1; i <= c->n; i++) {
        sinter_tcc_stop(c, i);
    }
}

int sinter_tcc_client_urls(const struct sinter_tcc *c, const char *urls[SINTER_TCC_MAX_NODES])
{
    for (int i = 1; i <= c->n; i++) {
        urls[i - 1] = c->node[i].client_url;
    }
    return c->n;
}

const char *sinter_tcc_log_path(const struct sinter_tcc *c, int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/node%d.log", c->tmp, i);
    return buf;
}

int sinter_tcc_wait_leaders(struct sinter_tcc *c, unsigned groups, unsigned timeout_ms)
{
    uint64_t end = sinter_test_now_ms() + timeout_ms;
    while (sinter_test_now_ms() < end) {
        unsigned led = 0;
        for (unsigned g = 0; g < groups; g++) {
            char pat[64];
            snprintf(pat, sizeof pat, "group=%u ", g);
            for (int i = 1; i <= c->n; i++) {
                char logp[400];
                if (c->node[i].pid > 0 &&
                    sinter_test_count_lines(sinter_tcc_log_path(c, i, logp, sizeof logp), 0, pat,
                                            "role leader") > 0) {
                    led++;
                    break;
                }
            }
        }
        if (led == groups) {
            return 0;
        }
        sinter_test_sleep_ms(50);
    }
    return -1;
}

int sinter_tcc_finish(struct sinter_tcc *c, int rc)
{
    sinter_tcc_stop_all(c);
    if (c->bad_exits != 0) {
        rc = 1;
    }
    return c->tmp[0] != '\0' ? sinter_test_finish_dir(c->tmp, rc) : rc;
}

int sinter_tcc_ctl(const char *ctl, const char *url, const char *secret, char *const args[],
                   struct sinter_test_output *o)
{
    char *argv[20];
    int a = 0;
    argv[a++] = (char *)ctl;
    argv[a++] = "--http";
    argv[a++] = (char *)url;
    for (; args != NULL && args[a - 3] != NULL; a++) {
        if (a >= 19) {
            fprintf(stderr, "tccluster: too many sinterctl arguments\n");
            return -1;
        }
        argv[a] = args[a - 3];
    }
    argv[a] = NULL;
    static const char *const unset[] = {"SINTER_SECRET", "SINTER_HTTP", NULL};
    char env[160];
    snprintf(env, sizeof env, "SINTER_SECRET=%s", secret != NULL ? secret : "");
    const char *const set[] = {env, NULL};
    return sinter_test_run(argv, unset, secret != NULL ? set : NULL, 60000, o);
}

int sinter_tcc_meta_leader(struct sinter_tcc *c, const char *secret, uint32_t group,
                           unsigned wait_ms)
{
    const char *urls[SINTER_TCC_MAX_NODES];
    size_t n = 0;
    for (int i = 1; i <= c->n; i++) {
        if (c->node[i].pid > 0) {
            urls[n++] = c->node[i].client_url;
        }
    }
    struct sinter_client_opts o;
    sinter_client_opts_default(&o);
    o.urls = urls;
    o.n_urls = n;
    o.secret = secret;
    struct sinter_client *cl = NULL;
    if (n == 0 || sinter_client_open(&cl, &o) != SINTER_OK) {
        return 0;
    }
    int found = 0;
    uint64_t end = sinter_test_now_ms() + wait_ms;
    while (found == 0 && sinter_test_now_ms() < end) {
        if (sinter_client_refresh(cl, 2000) == SINTER_OK) {
            bool all = true;
            int want = 0;
            for (uint32_t g = 0; g < c->groups; g++) {
                int l = sinter_client_leader(cl, g);
                const char *url = l >= 0 ? sinter_client_node_url(cl, (size_t)l) : NULL;
                int node = url != NULL ? sinter_tcc_node_by_url(c, url, strlen(url)) : 0;
                all = all && node != 0 && c->node[node].pid > 0;
                if (g == group) {
                    want = node;
                }
            }
            found = all ? want : 0;
        }
        if (found == 0) {
            sinter_test_sleep_ms(100);
        }
    }
    sinter_client_close(cl);
    return found;
}
