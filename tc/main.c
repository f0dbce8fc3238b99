/*
 * sinter-tc — the transaction coordinator server.
 *
 *   sinter-tc --config /etc/sinter/tc.ini [flags overriding the file]
 *   sinter-tc --check-config --config /etc/sinter/tc.ini [flags]
 *
 * Exit status: 0 after a clean stop (SIGTERM / SIGINT), 2 for a configuration error (the message
 * names the key), 1 when the server could not start (address in use, data dir, database).
 * --check-config loads and validates exactly what a start would (file, flags, TLS files) and
 * exits 0 or 2 without opening the data dir or a socket, like `nginx -t` or `sshd -t`: an
 * operator (or systemd's ExecStartPre, or a CI job over deploy/config/) checks a changed file
 * before restarting a node of a live cluster with it.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "sinter/error.h"
#include "tc/config.h"
#include "tc/log.h"
#include "tc/server.h"

#define CHECK_FLAG "--check-config"

static const char check_usage[] =
    "       sinter-tc --check-config [--config FILE] [flags]: validate the configuration\n"
    "                 (keys, relations, TLS files) and exit 0 (valid) or 2, touching no data\n"
    "                 and no network.\n";

/* True when argv[i] is a flag that takes its value from the next argument ("--id 1"): every
 * flag of tc/config.h does except --join and --help. Keeps "--secret --check-config" (a secret
 * that happens to look like the flag) a value rather than the flag. */
static bool takes_value(const char *a)
{
    return strncmp(a, "--", 2) == 0 && a[2] != '\0' && strchr(a, '=') == NULL &&
           strcmp(a, "--join") != 0 && strcmp(a, "--help") != 0 && strcmp(a, CHECK_FLAG) != 0;
}

/* Removes every --check-config from argv (compacting it in place, argv[argc] stays NULL) and
 * says whether there was one. The flag is handled here rather than in the key table of
 * tc/config.c because it selects what the program does, not a setting of the node. */
static bool take_check_flag(int *argc, char **argv)
{
    bool found = false;
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], CHECK_FLAG) == 0 && !takes_value(argv[i - 1])) {
            found = true;
            continue;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    *argc = out;
    return found;
}

/* What --check-config prints for a valid configuration: enough for the operator to see that the
 * file says what they meant (which node, how many members, which listeners are TLS). */
static void print_check_ok(const struct sinter_tc_config *c)
{
    size_t members = c->n_peers + 1;
    printf("sinter-tc: configuration OK: node %" PRIu64 ", %zu member(s), %u raft group(s), "
           "data_dir %s\n",
           c->node_id, members, c->groups, c->data_dir);
    printf("  client %s%s\n  raft   %s%s\n  http   %s%s\n", c->client_listen,
           sinter_tc_config_client_tls(c) ? " (TLS)" : "", c->raft_listen,
           sinter_tc_config_raft_tls(c) ? " (mutual TLS)" : "",
           c->http_listen ? c->http_listen : "(none)",
           sinter_tc_config_http_tls(c) ? " (TLS)" : "");
    /* Not an error (a 1-node cluster is a valid test bed, growing one passes through even
     * sizes), but a production cluster of 2 or 4 tolerates no more failures than 1 or 3: a
     * majority of 2 is 2, of 4 is 3 (Raft paper section 5.2). */
    if (members % 2 == 0) {
        printf("  note: %zu members tolerate no more failures than %zu; use 3 or 5\n", members,
               members - 1);
    }
}

int main(int argc, char **argv)
{
    /* Stop signals are blocked in every thread (the server's threads inherit the mask) and
     * taken by sigwait below, so no handler runs in the middle of library code. Blocked first
     * thing: a SIGTERM during start-up (a service manager stopping a node it just started, a
     * test stopping a restarted node) stays pending and ends in the same clean stop once the
     * server is up, instead of killing the process half-started with the default action. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    bool check = take_check_flag(&argc, argv);
    struct sinter_tc_config cfg;
    sinter_tc_config_init(&cfg);
    char err[512];
    bool help = false;
    int rc = sinter_tc_config_load(&cfg, argc, argv, &help, err, sizeof err);
    if (rc == SINTER_OK && help) {
        fputs(sinter_tc_config_usage(), stdout);
        fputs(check_usage, stdout);
        sinter_tc_config_free(&cfg);
        return 0;
    }
    if (rc == SINTER_OK) {
        rc = sinter_tc_config_validate(&cfg, err, sizeof err);
    }
    if (rc != SINTER_OK) {
        /* A check prints the error alone: the usage text would bury the one line that matters
         * in an ExecStartPre or CI log. */
        fprintf(stderr, "sinter-tc: %s: %s\n%s", sinter_errname(rc), err,
                check ? "" : sinter_tc_config_usage());
        sinter_tc_config_free(&cfg);
        return 2;
    }
    if (check) {
        print_check_ok(&cfg);
        sinter_tc_config_free(&cfg);
        return 0;
    }
    sinter_tc_log_setup(cfg.node_id, cfg.log_level);

    signal(SIGPIPE, SIG_IGN);

    struct sinter_tc_server *srv = NULL;
    rc = sinter_tc_server_start(&srv, &cfg);
    if (rc != SINTER_OK) {
        sinter_tc_log(SINTER_TC_LOG_ERROR, SINTER_TC_NO_GROUP, NULL, "cannot start: %s (%s)",
                      sinter_strerror(rc), sinter_errname(rc));
        sinter_tc_config_free(&cfg);
        return rc == SINTER_ECONFIG ? 2 : 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    sinter_tc_log(SINTER_TC_LOG_INFO, SINTER_TC_NO_GROUP, NULL, "signal %d: stopping", sig);
    sinter_tc_server_stop(srv);
    sinter_tc_config_free(&cfg);
    return 0;
}
