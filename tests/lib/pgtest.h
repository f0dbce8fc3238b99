/*
 * tests/lib/pgtest.h — a fresh database of its own on the ctest "pg" fixture's PostgreSQL server
 * (tests/lib/pg-server.sh), for the tests that talk to a real server.
 */
#ifndef SINTER_TEST_PGTEST_H
#define SINTER_TEST_PGTEST_H

#include <stddef.h>

#include <libpq-fe.h>

/* Reads the fixture's conninfo (the first line of file) into base. Returns 0, or -1 with a
 * message on stderr (the fixture is not running). */
int sinter_test_pg_conninfo(const char *file, char *base, size_t cap);

/* On the server of conninfo base: rolls back the prepared transactions an interrupted earlier run
 * left in database db (they would block the drop), drops db (WITH (FORCE)) and creates it empty.
 * Writes db's conninfo into out (cap bytes), with server notices quieted. db must be a plain
 * identifier. Returns 0, or -1 with a message on stderr. */
int sinter_test_pg_fresh_db(const char *base, const char *db, char *out, size_t cap);

/* A connection to database db on the server of conninfo base, or NULL with a message on stderr.
 * Ownership: the caller's, released with PQfinish. */
PGconn *sinter_test_pg_connect(const char *base, const char *db);

/* Runs sql (a command, or a query whose rows are dropped). Returns 0, or -1 with the server's
 * message on stderr. */
int sinter_test_pg_exec(PGconn *c, const char *sql);

/* The single value of sql (one row, one column) as an integer, from a connection of its own to
 * db. Returns 0 and *out, or -1 with a message on stderr. */
int sinter_test_pg_query_ll(const char *base, const char *db, const char *sql, long long *out);

#endif /* SINTER_TEST_PGTEST_H */
