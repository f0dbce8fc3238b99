/*
 * tc/fsm_vfs.h — the SQLite VFS the state machine's own connection uses (tc/fsm_vfs.c): the
 * platform's default VFS ("unix") with the WAL frames of one commit handed to the kernel in one
 * write instead of two per frame.
 *
 * What it relies on (tc/fsm_vfs.c has the reasoning): a transaction's WAL frames are all in the
 * file before SQLite publishes it in the wal-index, because only appends are gathered, a commit
 * frame's page write flushes, and the database file's xShmBarrier (called right before a commit
 * is published) writes what the connection still holds. With the wal-index in shared memory (the
 * default) that holds for any synchronous setting and device. With locking_mode=EXCLUSIVE SQLite
 * keeps the wal-index in heap memory and calls no barrier; then the VFS assumes what the fsm's
 * connection has: synchronous=NORMAL or OFF, or a device with SQLITE_IOCAP_POWERSAFE_OVERWRITE
 * (the unix VFS reports it by default). Otherwise synchronous=FULL pads a commit to a sector
 * boundary and splits a frame's page at its sync point (wal.c walWriteToLog), and that frame's
 * tail could stay gathered. A write error the barrier cannot report stops the process (abort)
 * rather than publish a commit whose frames are not in the file; SQLite's recovery then rebuilds
 * the wal-index from the file, without that commit.
 */
#ifndef SINTER_TC_FSM_VFS_H
#define SINTER_TC_FSM_VFS_H

/* Registers the VFS on first use (thread-safe, once per process; never made the default, so no
 * other connection is affected) and returns its name for sqlite3_open_v2, or NULL when it could
 * not be registered (out of memory; no default VFS): the caller then opens with the default VFS,
 * which behaves the same with more system calls. Registering initializes SQLite
 * (sqlite3_initialize), so a program that wants sqlite3_config must call it before its first
 * sinter_tc_fsm_open, as SQLite requires of any first connection anyway. Ownership: the name is
 * static. */
const char *sinter_tc_fsm_vfs(void);

#endif /* SINTER_TC_FSM_VFS_H */
