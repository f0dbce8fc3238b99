/*
 * The hang guard (hangguard.h). The dump is best effort: gdb may be missing, or ptrace may be
 * refused (Yama's ptrace_scope=1 lets only an ancestor attach, so this process names any
 * process its tracer first; a container without CAP_SYS_PTRACE refuses it outright); the abort
 * happens either way, so the test fails at once with the case named rather than at ctest's
 * timeout.
 *
 * Two deadlines, whichever comes first: the case's (sinter_test_hang_guard) and the process's,
 * read once at start from SINTER_TEST_HANG_GUARD_S (cmake/Sinter.cmake's sinter_test sets it a
 * little under the test's ctest TIMEOUT, so every test program compiled with this file leaves
 * its stacks in the log before ctest kills it).
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
static bool g_armed;               /* the case deadline */
static struct timespec g_deadline; /* CLOCK_MONOTONIC */
static unsigned g_seconds;
static const char *g_what;
static bool g_proc_armed; /* the process deadline */
static struct timespec g_proc_deadline;
static unsigned g_proc_seconds;

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

static bool before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void *guard_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_mu);
    for (;;) {
        while (!g_armed && !g_proc_armed) {
            pthread_cond_wait(&g_cv, &g_mu);
        }
        struct timespec dl = g_armed ? g_deadline : g_proc_deadline;
        if (g_armed && g_proc_armed && before(&g_proc_deadline, &dl)) {
            dl = g_proc_deadline;
        }
        if (pthread_cond_timedwait(&g_cv, &g_mu, &dl) != ETIMEDOUT) {
            continue; /* re-armed or disarmed: look again */
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (g_armed && !before(&now, &g_deadline)) {
            fprintf(stderr, "\nhang guard: %s did not finish within %u s; every thread's stack:\n",
                    g_what != NULL ? g_what : "the test case", g_seconds);
        } else if (g_proc_armed && !before(&now, &g_proc_deadline)) {
            fprintf(stderr,
                    "\nhang guard: the test program still runs after %u s, close to its ctest "
                    "timeout; every thread's stack:\n",
                    g_proc_seconds);
        } else {
            continue;
        }
        fflush(stderr);
        pthread_mutex_unlock(&g_mu);
        dump_threads();
        fprintf(stderr, "hang guard: aborting\n");
        fflush(stderr);
        abort();
    }
    return NULL;
}

/* Starts the guard's thread once. Under g_mu. */
static bool start_locked(void)
{
    if (g_started) {
        return true;
    }
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&g_cv, &a);
    pthread_condattr_destroy(&a);
    pthread_t t;
    if (pthread_create(&t, NULL, guard_main, NULL) != 0) {
        return false; /* no guard: the test still runs, under ctest's timeout */
    }
    pthread_detach(t);
    g_started = true;
#ifdef PR_SET_PTRACER
    (void)prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0); /* let our gdb attach */
#endif
    return true;
}

/* The process deadline, armed before main() when SINTER_TEST_HANG_GUARD_S is set. */
__attribute__((constructor)) static void proc_guard_init(void)
{
    const char *v = getenv("SINTER_TEST_HANG_GUARD_S");
    char *end = NULL;
    unsigned long s = v != NULL ? strtoul(v, &end, 10) : 0;
    if (s == 0 || s > 86400 || end == NULL || *end != '\0') {
        return;
    }
    pthread_mutex_lock(&g_mu);
    if (start_locked()) {
        clock_gettime(CLOCK_MONOTONIC, &g_proc_deadline);
        g_proc_deadline.tv_sec += (time_t)s;
        g_proc_seconds = (unsigned)s;
        g_proc_armed = true;
        pthread_cond_broadcast(&g_cv);
    }
    pthread_mutex_unlock(&g_mu);
}

void sinter_test_hang_guard(unsigned seconds, const char *what)
{
    pthread_mutex_lock(&g_mu);
    if (!start_locked()) {
        pthread_mutex_unlock(&g_mu);
        return;
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
