/* Unit tests for the state machine's write path through its own VFS (tc/fsm_vfs.c, which gathers
 * a commit's WAL frames into one write): commits far larger than one gathered run keep every
 * byte, are visible to another connection (the default VFS, as the snapshot's reader and an
 * operator's sqlite3 use) as soon as apply returns, and survive a restart; and a process killed
 * (SIGKILL) in the middle of applying restarts at its last_applied_index and, re-applying exactly
 * the entries after it, reaches the digest of a replica that never stopped. At the VFS level: a
 * commit that spilled and rewrote pages survives a SIGKILL right after COMMIT returns (also after
 * another connection checkpointed it), and a real write error (EFBIG) fails COMMIT and loses no
 * reported commit. */
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
#include <sys/resource.h>
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

/* Runs sql on db; fails the test (or, in a child, exits with code 9) with SQLite's message. */
static void exec_or_die(sqlite3 *db, const char *sql, bool child)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        if (child) {
            _exit(9);
        }
        fail_msg("%s: %s", sql, err != NULL ? err : "?");
    }
}

/* Forks a child that writes path through the VFS as the fsm does (WAL, synchronous=NORMAL, no
 * auto-checkpoint: nothing after a commit touches the WAL unless the test does). Returns the pid
 * in the parent; in the child returns 0 with *db open and fds[0] closed (any failure: _exit). */
static pid_t fork_vfs_child(const char *path, int fds[2], sqlite3 **db)
{
    const char *vfs = sinter_tc_fsm_vfs();
    assert_non_null(vfs);
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid != 0) {
        return pid;
    }
    close(fds[0]);
    *db = NULL;
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) != SQLITE_OK) {
        _exit(8);
    }
    exec_or_die(*db,
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0",
                true);
    return 0;
}

/* The first column of the first row of sql on db, as text, into out (SQLite's message if the
 * query fails). */
static const char *query_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
        snprintf(out, cap, "%s", sqlite3_errmsg(db));
        return out;
    }
    if (sqlite3_step(q) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(q, 0);
        snprintf(out, cap, "%s", t != NULL ? (const char *)t : "NULL");
    } else {
        snprintf(out, cap, "%s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(q);
    return out;
}

/* A child opens path with the VFS (WAL, synchronous=NORMAL as the fsm; no auto-checkpoint, so
 * nothing after the commit writes, reads or syncs the WAL before the kill), fills 2,000 indexed
 * rows and commits a small update (so the WAL holds older versions of pages the next
 * transaction changes, which recovery would put back), then with a 20-page cache commits one
 * transaction that rewrites every third row, then
 * every seventh, and adds a marker row: the cache spills (frames of the open transaction go to
 * the WAL) and pages already spilled are dirtied again, so at COMMIT SQLite overwrites them in the
 * WAL and rewrites the frame checksums from the first of them on, the commit frame's header last
 * (wal.c sqlite3WalFrames, walRewriteChecksums). The child reports COMMIT's success on a pipe and
 * then waits; when checkpoint is set another connection (the default VFS, as an operator's
 * sqlite3) checkpoints the WAL into the database file; then the child is killed with SIGKILL.
 * Reopened (recovery from the WAL), the committed transaction must be there in full and the file
 * must pass integrity_check: SQLite with the default VFS never loses a commit to a process kill. */
static void spilled_commit_then_kill(struct h *h, bool checkpoint)
{
    char path[160];
    snprintf(path, sizeof path, "%s/spill.db", h->dir);
    int fds[2];
    sqlite3 *db = NULL;
    pid_t pid = fork_vfs_child(path, fds, &db);
    if (pid == 0) {
        exec_or_die(
            db,
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL); "
            "CREATE INDEX tv ON t(v); "
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000) "
            "INSERT INTO t SELECT x, printf('a%050d', x * 7919 % 2003) FROM c; "
            "PRAGMA wal_checkpoint(TRUNCATE); UPDATE t SET v = 'm' WHERE id = 3; "
            "PRAGMA cache_size=20",
            true);
        exec_or_die(db,
                    "BEGIN; "
                    "UPDATE t SET v = printf('b%050d', id * 104729 % 4001) WHERE id % 3 = 0; "
                    "UPDATE t SET v = 'x' || v WHERE id % 7 = 0; "
                    "INSERT INTO t VALUES(100000, 'marker'); COMMIT",
                    true);
        if (write(fds[1], "c", 1) != 1) {
            _exit(4);
        }
        for (;;) {
            pause();
        }
    }
    close(fds[1]);
    char c = 0;
    bool committed = read_full(fds[0], &c, 1);
    close(fds[0]);
    char out[256];
    if (committed && checkpoint) {
        sqlite3 *o = NULL;
        assert_int_equal(sqlite3_open_v2(path, &o, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        sqlite3_busy_timeout(o, 5000);
        /* busy = 0: the checkpoint ran (the child holds no lock after COMMIT). */
        assert_string_equal(query_text(o, "PRAGMA wal_checkpoint(PASSIVE)", out, sizeof out), "0");
        assert_int_equal(sqlite3_close(o), SQLITE_OK);
    }
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!committed) {
        fail_msg("the child's spilled COMMIT failed (exit status %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    db = NULL; /* the parent's own connection to the reopened file */
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_string_equal(query_text(db, "PRAGMA integrity_check", out, sizeof out), "ok");
    assert_string_equal(
        query_text(db, "SELECT count(*) FROM t WHERE v = 'marker'", out, sizeof out), "1");
    /* Every row as the transaction left it, read through the table and through the index. */
    assert_string_equal(
        query_text(db,
                   "SELECT count(*) FROM t WHERE id <= 2000 AND v = "
                   "(CASE WHEN id % 7 = 0 THEN 'x' ELSE '' END) || "
                   "(CASE WHEN id % 3 = 0 THEN printf('b%050d', id * 104729 % 4001) "
                   "ELSE printf('a%050d', id * 7919 % 2003) END)",
                   out, sizeof out),
        "2000");
    assert_string_equal(
        query_text(db, "SELECT count(*) FROM t INDEXED BY tv WHERE v >= 'x'", out, sizeof out),
        "285");
    assert_string_equal(
        query_text(db, "SELECT count(*) FROM t INDEXED BY tv WHERE v > ''", out, sizeof out),
        "2001");
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void spilled_commit_survives_kill(void **state)
{
    spilled_commit_then_kill(*state, false);
}

static void spilled_commit_survives_checkpoint_and_kill(void **state)
{
    spilled_commit_then_kill(*state, true);
}

#define EFBIG_ROWS 12 /* rows of 3,000 bytes per commit: 12 pages, with the b-tree ~13 frames */

/* A write error for real: a child limits its file size (RLIMIT_FSIZE, SIGXFSZ ignored, so a
 * pwrite past the limit fails with EFBIG) and commits transactions of EFBIG_ROWS rows through the
 * VFS until the WAL reaches the limit. Each commit's frames are gathered and written at the
 * commit frame, so that write fails: COMMIT must return the error, never success. The child
 * reports each commit COMMIT returned success for, tries a few more after the first failure (all
 * must fail the same way or succeed and be reported), then is killed. Reopened, the database
 * holds exactly the reported commits: none lost, none that failed. */
static void write_error_fails_commit(void **state)
{
    struct h *h = *state;
    char path[160];
    snprintf(path, sizeof path, "%s/efbig.db", h->dir);
    int fds[2];
    sqlite3 *db = NULL;
    pid_t pid = fork_vfs_child(path, fds, &db);
    if (pid == 0) {
        exec_or_die(db,
                    "CREATE TABLE t(id INTEGER PRIMARY KEY, batch INT NOT NULL, b BLOB NOT NULL); "
                    "PRAGMA wal_checkpoint(TRUNCATE)",
                    true);
        /* Room for a few commits of ~13 frames (4,120 bytes each) in the WAL, the limit inside
         * a frame so the failing write is a partial one. */
        struct rlimit rl = {.rlim_cur = 300000, .rlim_max = RLIM_INFINITY};
        if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR || setrlimit(RLIMIT_FSIZE, &rl) != 0) {
            _exit(7);
        }
        sqlite3_stmt *ins = NULL;
        if (sqlite3_prepare_v2(db, "INSERT INTO t(batch, b) VALUES(?1, zeroblob(3000))", -1, &ins,
                               NULL) != SQLITE_OK) {
            _exit(6);
        }
        int failures = 0;
        for (int32_t batch = 1; batch <= 1000 && failures < 4; batch++) {
            int rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
            for (int k = 0; k < EFBIG_ROWS && rc == SQLITE_OK; k++) {
                sqlite3_reset(ins);
                sqlite3_bind_int(ins, 1, batch);
                rc = sqlite3_step(ins) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
            }
            if (rc != SQLITE_OK) {
                _exit(5); /* the rows fit in the cache: only COMMIT writes */
            }
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
            int32_t msg[2] = {batch, rc};
            if (write(fds[1], msg, sizeof msg) != (ssize_t)sizeof msg) {
                _exit(4);
            }
            if (rc != SQLITE_OK) {
                failures++;
                if (!sqlite3_get_autocommit(db)) {
                    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                }
            }
        }
        int32_t done[2] = {0, 0};
        if (write(fds[1], done, sizeof done) != (ssize_t)sizeof done) {
            _exit(4);
        }
        for (;;) {
            pause();
        }
    }
    close(fds[1]);
    int32_t msg[2];
    int32_t ok_batches[1000];
    size_t n_ok = 0;
    int failures = 0;
    bool done = false;
    while (read_full(fds[0], msg, sizeof msg)) {
        if (msg[0] == 0) {
            done = true;
            break;
        }
        if (msg[1] == SQLITE_OK) {
            assert_true(n_ok < 1000);
            ok_batches[n_ok++] = msg[0];
        } else {
            /* A full file or an I/O error, as SQLite maps EFBIG (os_unix.c unixWrite). */
            assert_true((msg[1] & 0xff) == SQLITE_FULL || (msg[1] & 0xff) == SQLITE_IOERR);
            failures++;
        }
    }
    close(fds[0]);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!done) {
        fail_msg("the child stopped early (exit status %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    if (n_ok < 2 || failures != 4) {
        fail_msg("%zu commits reported, %d failed (want >= 2 and 4)", n_ok, failures);
    }

    db = NULL; /* the parent's own connection to the reopened file */
    char out[256];
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_string_equal(query_text(db, "PRAGMA integrity_check", out, sizeof out), "ok");
    sqlite3_stmt *q = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT batch, count(*) FROM t GROUP BY batch ORDER BY batch", -1,
                           &q, NULL),
        SQLITE_OK);
    size_t i = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        int32_t batch = sqlite3_column_int(q, 0);
        if (i >= n_ok || batch != ok_batches[i]) {
            fail_msg("batch %d is in the database but its COMMIT was not reported", batch);
        }
        assert_int_equal(sqlite3_column_int(q, 1), EFBIG_ROWS);
        i++;
    }
    sqlite3_finalize(q);
    if (i != n_ok) {
        fail_msg("%zu commits reported, %zu in the database", n_ok, i);
    }
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(every_commit_size_visible, setup, teardown),
        cmocka_unit_test_setup_teardown(large_commits_visible_and_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(killed_during_apply_resumes_after_last_applied, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(spilled_commit_survives_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(spilled_commit_survives_checkpoint_and_kill, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(write_error_fails_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
