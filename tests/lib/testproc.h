/*
 * Helpers for tests that run real processes on loopback: time, free ports, stopping a child by
 * its PID, and reading the child's log file. Shared by the multi-process integration tests so
 * each test keeps only what is particular to the program it drives. Library: sinter-testlib.
 */
#ifndef SINTER_TESTPROC_H
#define SINTER_TESTPROC_H

#include <stdint.h>
#include <sys/types.h>

/* Monotonic milliseconds, for bounded waits. */
uint64_t sinter_test_now_ms(void);

void sinter_test_sleep_ms(unsigned ms);

/* A TCP port on 127.0.0.1 that was free a moment ago, or -1. Never the same port twice in one
 * process, never a port another test process got from this function while that process lives,
 * and never in the kernel's ephemeral range (so no outgoing connection takes it first). A process
 * outside the tests may still take it before the caller binds: callers retry on failure. */
int sinter_test_free_port(void);

/* SIGKILL and reap *pid; sets *pid to 0. Nothing when *pid <= 0. */
void sinter_test_kill9(pid_t *pid);

/* SIGTERM, then waits up to timeout_ms for *pid to exit, then SIGKILL. Sets *pid to 0.
 * Returns 0 when it exited with status 0, the wait status when it exited otherwise (a crash, a
 * sanitizer report), or -1 when it had to be killed. Returns 0 when *pid <= 0. */
int sinter_test_stop(pid_t *pid, unsigned timeout_ms);

/* Starts argv[0] (a path) with argv in the background, its stderr appended to log_path (created
 * 0644 when missing; stdout stays the caller's). Returns the child's pid (the caller stops it with
 * sinter_test_stop / _kill9), or -1 when fork failed (message on stderr). A child that cannot
 * exec exits with status 127. */
pid_t sinter_test_spawn(char *const argv[], const char *log_path);

/* sinter_test_stop(pid, 30 s) for a child that must end cleanly: a crash, a sanitizer report or a
 * child that ignored SIGTERM and was killed is said on stderr (naming `what`) and returns 1, a
 * clean exit (or nothing running) 0, so callers add the result to a bad-exit count. */
int sinter_test_stop_clean(pid_t *pid, const char *what);

/* The end of a run whose children logged to dir/node*.log: rc becomes 1 when a log holds a
 * sanitizer report (ASan/UBSan write to stderr, which the child's exit status may not show).
 * With rc 0 the dir is removed (kept, and said so, with SINTER_TEST_KEEP=1); otherwise the tail
 * of every log is printed and the dir kept for a post-mortem. Returns rc. */
int sinter_test_finish_dir(const char *dir, int rc);

/* Size of the file at path in bytes (0 when it does not exist): a position to count from. */
long sinter_test_file_size(const char *path);

/* Lines of the file at path, from byte `from` on, that contain a and (unless NULL) b. */
int sinter_test_count_lines(const char *path, long from, const char *a, const char *b);

/* The output of a program run by sinter_test_run(). */
struct sinter_test_output {
    int exit_code; /* exit status, or 128 + signal, or -1 when it had to be killed */
    char *out;     /* stdout, malloc'ed and NUL terminated (never NULL after a run) */
    char *err;     /* stderr, likewise */
};

/* Runs argv[0] (a path) with argv, the current environment minus every variable named in unset
 * (NULL-terminated list of names, may be NULL) plus set (NULL-terminated "NAME=value" list, may
 * be NULL), waits up to timeout_ms (then SIGKILL), and captures stdout and stderr in *o (free
 * them with sinter_test_output_free). Returns 0, or -1 when the program could not be started. */
int sinter_test_run(char *const argv[], const char *const *unset, const char *const *set,
                    unsigned timeout_ms, struct sinter_test_output *o);

void sinter_test_output_free(struct sinter_test_output *o);

#endif /* SINTER_TESTPROC_H */
