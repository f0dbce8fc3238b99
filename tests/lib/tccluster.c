/* A loopback cluster of sinter-tc processes for tests (see tccluster.h). */
#include "tccluster.h"

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testproc.h"

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
    snprintf(c->tmp, sizeof c->tmp, "/tmp/sinter-%s-XXXXXX", prefix);
    if (mkdtemp(c->tmp) == NULL) {
        perror("tccluster: mkdtemp");
        return -1;
    }
    char ini[400];
    snprintf(ini, sizeof ini, "%s/cluster.ini", c->tmp);
    FILE *f = fopen(ini, "w");
    if (f == NULL) {
        perror("tccluster: cluster.ini");
        return -1;
    }
    fprintf(f, "; written by tests/lib/tccluster.c\n[raft]\ngroups = %u\ntick_ms = 20\n[tc]\nsecret = %s\n",
            groups, secret);
    if (extra_ini != NULL) {
        fputs(extra_ini, f);
        fputc('\n', f);
    }
    if (fclose(f) != 0) {
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
        snprintf(d->client_url, sizeof d->client_url, "tcp://127.0.0.1:%d", d->client_port);
        snprintf(d->http_url, sizeof d->http_url, "http://127.0.0.1:%d", d->http_port);
        snprintf(d->dir, sizeof d->dir, "%s/n%d", c->tmp, i);
    }
    return 0;
}

int sinter_tcc_start(struct sinter_tcc *c, int i)
{
    struct sinter_tcc_node *n = &c->node[i];
    if (n->pid > 0) {
        return 0;
    }
    char *argv[48];
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
    ARG("tcp://127.0.0.1:%d", n->raft_port);
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
            ARG("%" PRIu64 "=tcp://127.0.0.1:%d,%s,%s", p->id, p->raft_port, p->client_url,
                p->http_url);
        }
    }
    argv[a] = NULL;
#undef ARG
    char logp[400];
    sinter_tcc_log_path(c, i, logp, sizeof logp);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("tccluster: fork");
        return -1;
    }
    if (pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(c->bin, argv);
        _exit(127);
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

void sinter_tcc_stop(struct sinter_tcc *c, int i)
{
    struct sinter_tcc_node *n = &c->node[i];
    if (n->pid <= 0) {
        return;
    }
    int ws = sinter_test_stop(&n->pid, 30000);
    if (ws != 0) {
        fprintf(stderr, "tccluster: node %" PRIu64 " did not exit cleanly (status %d)\n", n->id,
                ws);
        c->bad_exits++;
    }
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
    char cmd[700];
    snprintf(cmd, sizeof cmd, "grep -q -e 'Sanitizer' -e 'runtime error:' %s/node*.log 2>/dev/null",
             c->tmp);
    if (system(cmd) == 0) {
        fprintf(stderr, "tccluster: a node log holds a sanitizer report\n");
        rc = 1;
    }
    if (rc == 0 && getenv("SINTER_TEST_KEEP") == NULL) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->tmp);
    } else if (rc == 0) {
        snprintf(cmd, sizeof cmd, "echo 'kept %s' 1>&2", c->tmp);
    } else {
        snprintf(cmd, sizeof cmd, "tail -n 40 %s/node*.log 1>&2; echo 'kept %s' 1>&2", c->tmp,
                 c->tmp);
    }
    if (system(cmd) != 0) {
        fprintf(stderr, "tccluster: could not run: %s\n", cmd);
    }
    return rc;
}
