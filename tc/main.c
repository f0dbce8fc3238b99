/*
 * sinter-tc — the transaction coordinator server.
 *
 *   sinter-tc --config /etc/sinter/tc.ini [flags overriding the file]
 *
 * Exit status: 0 after a clean stop (SIGTERM / SIGINT), 2 for a configuration error (the message
 * names the key), 1 when the server could not start (address in use, data dir, database).
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include "sinter/error.h"
#include "tc/config.h"
#include "tc/log.h"
#include "tc/server.h"

int main(int argc, char **argv)
{
    struct sinter_tc_config cfg;
    sinter_tc_config_init(&cfg);
    char err[512];
    bool help = false;
    int rc = sinter_tc_config_load(&cfg, argc, argv, &help, err, sizeof err);
    if (rc == SINTER_OK && help) {
        fputs(sinter_tc_config_usage(), stdout);
        sinter_tc_config_free(&cfg);
        return 0;
    }
    if (rc == SINTER_OK) {
        rc = sinter_tc_config_validate(&cfg, err, sizeof err);
    }
    if (rc != SINTER_OK) {
        fprintf(stderr, "sinter-tc: %s: %s\n%s", sinter_errname(rc), err, sinter_tc_config_usage());
        sinter_tc_config_free(&cfg);
        return 2;
    }
    sinter_tc_log_setup(cfg.node_id, cfg.log_level);

    /* Stop signals are blocked in every thread (the server's threads inherit the mask) and
     * taken by sigwait below, so no handler runs in the middle of library code. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
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
