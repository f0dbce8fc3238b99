/* A fresh database on the pg fixture's server (see pgtest.h). */
#include "pgtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#define QUIET "options='-c client_min_messages=warning'"

int sinter_test_pg_conninfo(const char *file, char *base, size_t cap)
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        fprintf(stderr, "cannot read %s: is the pg fixture (pg_server_start) running?\n", file);
        return -1;
    }
    if (fgets(base, (int)cap, f) == NULL) {
        base[0] = '\0';
    }
    fclose(f);
    base[strcspn(base, "\n")] = '\0';
    if (base[0] == '\0') {
        fprintf(stderr, "%s is empty\n", file);
        return -1;
    }
    return 0;
}

int sinter_test_pg_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
    }
    PQclear(r);
    return ok ? 0 : -1;
}

static PGconn *connect_to(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "connect %s: %s", conninfo, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

int sinter_test_pg_fresh_db(const char *base, const char *db, char *out, size_t cap)
{
    char admin_ci[1100];
    snprintf(admin_ci, sizeof admin_ci, "%s " QUIET, base);
    if ((size_t)snprintf(out, cap, "%s dbname=%s " QUIET, base, db) >= cap) {
        fprintf(stderr, "conninfo of %s does not fit\n", db);
        return -1;
    }
    PGconn *admin = connect_to(admin_ci);
    if (admin == NULL) {
        return -1;
    }
    /* Prepared transactions survive their session and block DROP DATABASE even WITH (FORCE):
     * roll back those an interrupted run left in db, from a connection to db itself. */
    const char *params[1] = {db};
    PGresult *r = PQexecParams(admin, "SELECT gid FROM pg_prepared_xacts WHERE database = $1", 1,
                               NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
        PGconn *c = connect_to(out);
        for (int i = 0; c != NULL && i < PQntuples(r); i++) {
            const char *gid = PQgetvalue(r, i, 0);
            char *lit = PQescapeLiteral(c, gid, strlen(gid));
            char sql[512];
            snprintf(sql, sizeof sql, "ROLLBACK PREPARED %s", lit != NULL ? lit : "''");
            PQfreemem(lit);
            (void)sinter_test_pg_exec(c, sql);
        }
        PQfinish(c);
    }
    PQclear(r);
    char sql[300];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
    int rc = sinter_test_pg_exec(admin, sql);
    if (rc == 0) {
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
        rc = sinter_test_pg_exec(admin, sql);
    }
    PQfinish(admin);
    return rc;
}

PGconn *sinter_test_pg_connect(const char *base, const char *db)
{
    char ci[1024];
    snprintf(ci, sizeof ci, "%s dbname=%s", base, db);
    return connect_to(ci);
}

int sinter_test_pg_query_ll(const char *base, const char *db, const char *sql, long long *out)
{
    PGconn *c = sinter_test_pg_connect(base, db);
    if (c == NULL) {
        return -1;
    }
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 1;
    if (ok) {
        *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    } else {
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    }
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
}
