/* Unit tests for the state machine's write path through its own VFS (tc/fsm_vfs.c, which gathers
 * a commit's WAL frames into one write): commits far larger than one gathered run keep every
 * byte, are visible to another connection (the default VFS, as the snapshot's reader and an
 * operator's sqlite3 use) as soon as apply returns, and survive a restart; and a process killed
 * (SIGKILL) in the middle of applying restarts at its last_applied_index and, re-applying exactly
 * the entries after it, reaches the digest of a replica that never stopped. */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <sqlite3.h>

#include "sinter/error.h"
#include "sinter/types.h"
#include "tc/command.h"
#include "tc/fsm.h"
#include "tc/fsm_vfs.h"

#define GROUP 2
#define T0    1700000000000ull

struct h {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct h *h = calloc(1, sizeof *h);
    assert_non_null(h);
    strcpy(h->dir, "/tmp/sinter-tc-vfs-XXXXXX");
    assert_non_null(mkdtemp(h->dir));
    snprintf(h->path, sizeof h->path, "%s/state.db", h->dir);
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    struct h *h = *state;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", h->dir);
    assert_int_equal(system(cmd), 0);
    free(h);
    return 0;
}

static uint32_t digest(struct sinter_tc_fsm *f)
{
    uint32_t d = 0;
    assert_int_equal(sinter_tc_fsm_digest(f, &d), SINTER_OK);
    return d;
}

/* The byte at position k of entry i's app data: every byte of every blob is checkable. */
static uint8_t pattern(uint64_t i, size_t k)
{
    return (uint8_t)((i * 131u + k * 7u + (k >> 8)) & 0xffu);
}

static uint8_t g_blob[SINTER_TC_MAX_APP_DATA];

/* Entry i of a deterministic log of 2-phase TCC work, one global per 4 entries: BEGIN (client
 * "tm", app data of a size that varies with i), REGISTER_BRANCH ("rm"), DECIDE Committing, the
 * branch's BRANCH_RESULT. blob_len overrides the BEGIN's app data size when non-zero. Returns
 * the malloc'ed encoding. */
static uint8_t *entry(uint64_t i, size_t blob_len, size_t *len)
{
    struct sinter_tc_cmd c;
    memset(&c, 0, sizeof c);
    c.now_ms = T0 + i;
    uint64_t x = i - (i - 1) % 4; /* the BEGIN of this global */
    switch ((i - 1) % 4) {
    case 0: {
        size_t n = blob_len != 0 ? blob_len : (size_t)(i * 37 % 3000);
        for (size_t k = 0; k < n; k++) {
            g_blob[k] = pattern(i, k);
        }
        c.type = SINTER_TC_CMD_BEGIN;
        c.client_id = (struct sinter_tc_bytes){(const uint8_t *)"tm", 2};
        c.seq = i;
        c.u.begin.app_id = (struct sinter_tc_bytes){(const uint8_t *)"vfs-test", 8};
        c.u.begin.timeout_ms = 60000;
        c.u.begin.app_data = (struct sinter_tc_bytes){g_blob, (uint32_t)n};
        break;
    }
    case 1:
        c.type = SINTER_TC_CMD_REGISTER_BRANCH;
        c.client_id = (struct sinter_tc_bytes){(const uint8_t *)"rm", 2};
        c.seq = i;
        c.u.reg.xid = (struct sinter_xid){GROUP, x};
        c.u.reg.branch_type = SINTER_BT_TCC;
        c.u.reg.resource_id = (struct sinter_tc_bytes){(const uint8_t *)"res", 3};
        break;
    case 2:
        c.type = SINTER_TC_CMD_DECIDE;
        c.client_id = (struct sinter_tc_bytes){(const uint8_t *)"tm", 2};
        c.seq = i;
        c.u.decide.xid = (struct sinter_xid){GROUP, x};
        c.u.decide.target = SINTER_GS_COMMITTING;
        break;
    default:
        c.type = SINTER_TC_CMD_BRANCH_RESULT;
        c.u.result =
            (struct sinter_tc_cmd_branch_result){{GROUP, x}, x + 1, SINTER_BS_PHASE2_COMMITTED, 0};
        break;
    }
    uint8_t *buf = malloc(SINTER_TC_CMD_MAX_BYTES);
    assert_non_null(buf);
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, SINTER_TC_CMD_MAX_BYTES, len), SINTER_OK);
    return buf;
}

/* Applies entries [from, to] in batches of b; every command must be accepted. blob_len as in
 * entry(). Returns the apply_batch error, SINTER_OK when all went in. */
static int apply_range(struct sinter_tc_fsm *f, uint64_t from, uint64_t to, size_t b,
                       size_t blob_len)
{
    struct sinter_tc_entry *e = calloc(b, sizeof *e);
    struct sinter_tc_result *r = calloc(b, sizeof *r);
    uint8_t **bufs = calloc(b, sizeof *bufs);
    assert_true(e != NULL && r != NULL && bufs != NULL);
    int rc = SINTER_OK;
    for (uint64_t i = from; i <= to && rc == SINTER_OK;) {
        size_t n = 0;
        for (; n < b && i <= to; n++, i++) {
            size_t len;
            bufs[n] = entry(i, blob_len, &len);
            e[n] = (struct sinter_tc_entry){i, 1, bufs[n], len};
        }
        rc = sinter_tc_fsm_apply_batch(f, e, n, r);
        for (size_t k = 0; k < n; k++) {
            if (rc == SINTER_OK) {
                assert_int_equal(r[k].rc, SINTER_OK);
            }
            free(bufs[k]);
        }
    }
    free(e);
    free(r);
    free(bufs);
    return rc;
}

/* Reads through a connection of its own with the default VFS: count(*) of globals, the sum of
 * their app data sizes, and last_applied_index. */
static void read_other(const char *path, int64_t *globals, int64_t *bytes, int64_t *applied)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT count(*) FROM globals), "
                                        "(SELECT total(length(app_data)) FROM globals), "
                                        "(SELECT value FROM meta WHERE key = 'last_applied_index')",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    *globals = sqlite3_column_int64(s, 0);
    *bytes = sqlite3_column_int64(s, 1);
    *applied = sqlite3_column_int64(s, 2);
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* One batch of 64 globals with 60 KiB of app data each (about 1,000 WAL frames, over 30 runs of
 * the VFS's buffer): another connection sees all of it once apply returns, every byte reads back
 * as written, and after a restart the state and its digest are the same. */
static void large_commits_visible_and_intact(void **state)
{
    struct h *h = *state;
    struct sinter_tc_fsm *f = NULL;
    assert_int_equal(sinter_tc_fsm_open(&f, h->path, GROUP), SINTER_OK);
    const size_t big = 60 * 1024;
    assert_int_equal(apply_range(f, 1, 256, 256, big), SINTER_OK);
    int64_t n = 0, bytes = 0, applied = 0;
    read_other(h->path, &n, &bytes, &applied);
    assert_true(n == 64 && bytes == (int64_t)(64 * big) && applied == 256);
    /* Small commits after the big one: each visible at once too. */
    for (uint64_t i = 257; i <= 320; i += 4) {
        assert_int_equal(apply_range(f, i, i + 3, 4, 0), SINTER_OK);
        read_other(h->path, &n, &bytes, &applied);
        assert_true(n == (int64_t)(i + 3) / 4 && applied == (int64_t)(i + 3));
    }
    uint32_t d = digest(f);
    sinter_tc_fsm_close(f);
    f = NULL;
    assert_int_equal(sinter_tc_fsm_open(&f, h->path, GROUP), SINTER_OK);
    assert_true(sinter_tc_fsm_last_applied(f) == 320);
    assert_int_equal(digest(f), d);
    for (uint64_t x = 1; x <= 320; x += 4) {
        struct sinter_tc_global g;
        size_t want = x <= 256 ? big : (size_t)(x * 37 % 3000);
        assert_int_equal(sinter_tc_fsm_get_global(f, x, &g, NULL, NULL), SINTER_OK);
        assert_int_equal(g.status, SINTER_GS_COMMITTED);
        assert_int_equal(g.app_data_len, want);
        for (size_t k = 0; k < want; k++) {
            if (g.app_data[k] != pattern(x, k)) {
                fail_msg("global %" PRIu64 " app data byte %zu differs", x, k);
            }
        }
        sinter_tc_global_free(&g);
    }
    sinter_tc_fsm_close(f);
}

/* The VFS alone, one commit size after the other: transactions that rewrite exactly k pages
 * (k = 1..80, one row per page), so every position of the commit frame within the VFS's gathered
 * runs (a run holds ~30 frames) is hit, including a commit frame whose header is the last thing
 * that fits in a run. After each commit a new connection with the default VFS must read every
 * rewritten row as written. */
static void every_commit_size_visible(void **state)
{
    struct h *h = *state;
    const char *vfs = sinter_tc_fsm_vfs();
    assert_non_null(vfs);
    char path[160];
    snprintf(path, sizeof path, "%s/raw.db", h->dir);
    sqlite3 *w = NULL;
    assert_int_equal(sqlite3_open_v2(path, &w, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(w,
                                  "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                                  "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB NOT NULL)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    enum { ROWS = 80, ROW_BYTES = 3000 }; /* one row per 4 KiB page, no overflow page */
    static uint8_t blob[ROW_BYTES];
    sqlite3_stmt *up = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(w, "INSERT OR REPLACE INTO t(id, b) VALUES(?1, ?2)", -1, &up, NULL),
        SQLITE_OK);
    for (int k = 0; k <= ROWS; k++) {
        /* Round k (0: create the rows) rewrites rows 1..max(k, 1) with bytes of value k + 1. */
        int n = k == 0 ? ROWS : k;
        memset(blob, k + 1, sizeof blob);
        assert_int_equal(sqlite3_exec(w, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
        for (int id = 1; id <= n; id++) {
            sqlite3_reset(up);
            assert_int_equal(sqlite3_bind_int(up, 1, id), SQLITE_OK);
            assert_int_equal(sqlite3_bind_blob(up, 2, blob, sizeof blob, SQLITE_STATIC), SQLITE_OK);
            assert_int_equal(sqlite3_step(up), SQLITE_DONE);
        }
        assert_int_equal(sqlite3_exec(w, "COMMIT", NULL, NULL, NULL), SQLITE_OK);

        sqlite3 *r = NULL;
        sqlite3_stmt *q = NULL;
        assert_int_equal(sqlite3_open_v2(path, &r, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(
            sqlite3_prepare_v2(r, "SELECT count(*) FROM t WHERE id <= ?1 AND b = ?2", -1, &q, NULL),
            SQLITE_OK);
        assert_int_equal(sqlite3_bind_int(q, 1, n), SQLITE_OK);
        assert_int_equal(sqlite3_bind_blob(q, 2, blob, sizeof blob, SQLITE_STATIC), SQLITE_OK);
        int src = sqlite3_step(q);
        if (src != SQLITE_ROW) {
            fail_msg("commit of %d rows: another connection cannot read them: %s", n,
                     sqlite3_errmsg(r));
        }
        if (sqlite3_column_int(q, 0) != n) {
            fail_msg("commit of %d rows: another connection reads %d of them as written", n,
                     sqlite3_column_int(q, 0));
        }
        sqlite3_finalize(q);
        assert_int_equal(sqlite3_close(r), SQLITE_OK);
    }
    sqlite3_finalize(up);
    assert_int_equal(sqlite3_close(w), SQLITE_OK);
}

/* Reads exactly n bytes from fd; false at end of file. */
static bool read_full(int fd, void *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t r = read(fd, (char *)p + off, n - off);
        if (r <= 0) {
            return false;
        }
        off += (size_t)r;
    }
    return true;
}

#define KILL_N     6000 /* entries in the log (1,500 globals; client seqs pass the window) */
#define KILL_AFTER 1500 /* the child is killed once it reported this index applied */

/* A child process applies the log in batches of 7 and reports each applied batch's last index on
 * a pipe; it is killed with SIGKILL in the middle (mid-batch, mid-commit or mid-checkpoint,
 * wherever it is). Reopened, the state's last_applied_index is at least the last index reported
 * (apply returned: the commit reached the file), and re-applying the whole log from the start
 * skips exactly the entries up to it and applies the rest: the digest equals that of a replica
 * that applied the log in one go. */
static void killed_during_apply_resumes_after_last_applied(void **state)
{
    struct h *h = *state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        struct sinter_tc_fsm *f = NULL;
        if (sinter_tc_fsm_open(&f, h->path, GROUP) != SINTER_OK) {
            _exit(2);
        }
        for (uint64_t i = 1; i <= KILL_N; i += 7) {
            uint64_t to = i + 6 <= KILL_N ? i + 6 : KILL_N;
            if (apply_range(f, i, to, 7, 0) != SINTER_OK) {
                _exit(3);
            }
            if (write(fds[1], &to, sizeof to) != (ssize_t)sizeof to) {
                _exit(4);
            }
        }
        for (;;) {
            pause(); /* done before the kill (a very fast machine): wait for it anyway */
        }
    }
    close(fds[1]);
    uint64_t reported = 0;
    uint64_t v;
    while (reported < KILL_AFTER && read_full(fds[0], &v, sizeof v)) {
        reported = v;
    }
    assert_true(reported >= KILL_AFTER);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    while (read_full(fds[0], &v, sizeof v)) {
        reported = v; /* batches reported between the last read and the kill */
    }
    close(fds[0]);

    struct sinter_tc_fsm *f = NULL;
    assert_int_equal(sinter_tc_fsm_open(&f, h->path, GROUP), SINTER_OK);
    uint64_t last = sinter_tc_fsm_last_applied(f);
    assert_true(last >= reported && last <= KILL_N);
    /* The host replays its log from an older point: entries up to last are skipped. */
    struct sinter_tc_entry e[2];
    struct sinter_tc_result r[2];
    size_t l1, l2;
    uint8_t *b1 = entry(1, 0, &l1);
    uint8_t *b2 = entry(last, 0, &l2);
    e[0] = (struct sinter_tc_entry){1, 1, b1, l1};
    e[1] = (struct sinter_tc_entry){last, 1, b2, l2};
    assert_int_equal(sinter_tc_fsm_apply_batch(f, e, 2, r), SINTER_OK);
    assert_true(r[0].skipped && r[1].skipped);
    free(b1);
    free(b2);
    assert_int_equal(apply_range(f, last + 1, KILL_N, 7, 0), SINTER_OK);
    assert_true(sinter_tc_fsm_last_applied(f) == KILL_N);

    char ref_path[160];
    snprintf(ref_path, sizeof ref_path, "%s/reference.db", h->dir);
    struct sinter_tc_fsm *ref = NULL;
    assert_int_equal(sinter_tc_fsm_open(&ref, ref_path, GROUP), SINTER_OK);
    assert_int_equal(apply_range(ref, 1, KILL_N, 13, 0), SINTER_OK);
    assert_int_equal(digest(f), digest(ref));

    /* A snapshot of the resumed replica installs into a fresh one with the same digest. */
    char snap[160], p3[160];
    snprintf(snap, sizeof snap, "%s/resumed.snap", h->dir);
    snprintf(p3, sizeof p3, "%s/third.db", h->dir);
    uint64_t sidx = 0;
    assert_int_equal(sinter_tc_fsm_snapshot_to(f, snap, &sidx, NULL, NULL, NULL), SINTER_OK);
    assert_true(sidx == KILL_N);
    struct sinter_tc_fsm *f3 = NULL;
    assert_int_equal(sinter_tc_fsm_open(&f3, p3, GROUP), SINTER_OK);
    assert_int_equal(sinter_tc_fsm_install_from(f3, snap), SINTER_OK);
    assert_int_equal(digest(f3), digest(ref));
    sinter_tc_fsm_close(f3);
    sinter_tc_fsm_close(ref);
    sinter_tc_fsm_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(every_commit_size_visible, setup, teardown),
        cmocka_unit_test_setup_teardown(large_commits_visible_and_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(killed_during_apply_resumes_after_last_applied, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
