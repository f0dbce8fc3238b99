/*
 * tc/fsm_vfs.h — the SQLite VFS the state machine's own connection uses (tc/fsm_vfs.c): the
 * platform's default VFS ("unix") with the WAL frames of one commit handed to the kernel in one
 * write instead of two per frame.
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
