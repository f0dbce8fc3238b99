/*
 * The hang guard (hangguard.h). The dump is best effort: gdb may be missing, or ptrace may be
 * refused (Yama's ptrace_scope=1 lets only an ancestor attach, so this process names any
 * process its tracer first; a container without CAP_SYS_PTRACE refuses it outright); the abort
 * happens either way, so the test fails at once with the case named rather than at ctest's
 * timeout.
 */
#include "hangguard.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;
static bool g_started;
static bool g_armed;
static struct timespec g_deadline; /* CLOCK_MONOTONIC */
static unsigned g_seconds;
static const char *g_what;

/* Runs gdb on this process for at most 60 s; its output goes to our stderr. */
static void dump_threads(void)
{
    char pid[24];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    pid_t c = fork();
    if (c < 0) {
        return;
    }
    if (c == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execlp("gdb", "gdb", "-nx", "-batch", "-p", pid, "-ex", "thread apply all bt 30",
               (char *)NULL);
        fprintf(stderr, "hang guard: no backtraces (gdb: %s)\n", strerror(errno));
        _exit(127);
    }
    for (int i = 0; i < 600; i++) {
        int st;
        if (waitpid(c, &st, WNOHANG) == c) {
            return;
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
}

static void *guard_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_mu);
    for (;;) {
        while (!g_armed) {
            pthread_cond_wait(&g_cv, &g_mu);
        }
        struct timespec dl = g_deadline;
        if (pthread_cond_timedwait(&g_cv, &g_mu, &dl) != ETIMEDOUT) {
            continue; /* re-armed or disarmed: look again */
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!g_armed || now.tv_sec < g_deadline.tv_sec ||
            (now.tv_sec == g_deadline.tv_sec && now.tv_nsec < g_deadline.tv_nsec)) {
            continue;
        }
        fprintf(stderr, "\nhang guard: %s did not finish within %u s; every thread's stack:\n",
                g_what != NULL ? g_what : "the test", g_seconds);
        fflush(stderr);
        pthread_mutex_unlock(&g_mu);
        dump_threads();
        fprintf(stderr, "hang guard: aborting\n");
        fflush(stderr);
        abort();
    }
    return NULL;
}

void sinter_test_hang_guard(unsigned seconds, const char *what)
{
    pthread_mutex_lock(&g_mu);
    if (!g_started) {
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&g_cv, &a);
        pthread_condattr_destroy(&a);
        pthread_t t;
        if (pthread_create(&t, NULL, guard_main, NULL) != 0) {
            pthread_mutex_unlock(&g_mu);
            return; /* no guard: the test still runs, under ctest's timeout */
        }
        pthread_detach(t);
        g_started = true;
#ifdef PR_SET_PTRACER
        (void)prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0); /* let our gdb attach */
#endif
    }
    clock_gettime(CLOCK_MONOTONIC, &g_deadline);
    g_deadline.tv_sec += (time_t)seconds;
    g_seconds = seconds;
    g_what = what;
    g_armed = true;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

void sinter_test_hang_guard_off(void)
{
    pthread_mutex_lock(&g_mu);
    g_armed = false;
    if (g_started) {
        pthread_cond_broadcast(&g_cv);
    }
    pthread_mutex_unlock(&g_mu);
}
