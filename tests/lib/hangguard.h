/*
 * A hang guard for tests: a thread that, when a case runs longer than it should, prints every
 * thread's backtrace (by running gdb on this process, when gdb is installed) and aborts. A hung
 * case then leaves its diagnosis in the CI log instead of a bare ctest timeout with nothing to
 * go on. Compiled into every test program by sinter_test (cmake/Sinter.cmake), which also arms a
 * process-wide deadline a little under the test's ctest TIMEOUT (SINTER_TEST_HANG_GUARD_S).
 */
#ifndef SINTER_HANGGUARD_H
#define SINTER_HANGGUARD_H

/* Arms the guard, or re-arms it if armed: `what` (a string the caller keeps alive, e.g. the case
 * name) must finish within `seconds`, or the guard prints "hang guard: <what> ..." and the
 * backtraces to stderr and calls abort(). Starts the guard's thread on the first call. Call it
 * at the start of each case (a cmocka setup function is the natural place). */
void sinter_test_hang_guard(unsigned seconds, const char *what);

/* Disarms the guard (nothing if it was never armed). */
void sinter_test_hang_guard_off(void);

#endif
