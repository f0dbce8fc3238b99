/* A PostgreSQL server with max_prepared_transactions = 0 (the fixture "pg_noprep"): the XA layer
 * must refuse it when the resource is registered, with a message naming the setting and the
 * fix, not fail later inside a branch.
 *
 * usage: test_xa_noprep CONNINFO_FILE */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sinter/error.h"
#include "sinter/xa.h"

static char conninfo[1024];

static int fake_register(void *arg, const struct sinter_xid *xid, const char *rid,
                         uint64_t local_xid, uint64_t *b)
{
    (void)arg;
    (void)xid;
    (void)rid;
    (void)local_xid;
    *b = 1;
    return SINTER_OK;
}

static int fake_status(void *arg, const struct sinter_xid *xid, uint32_t *gs)
{
    (void)arg;
    (void)xid;
    *gs = 1;
    return SINTER_OK;
}

static void t_check_server_names_the_setting(void **state)
{
    (void)state;
    PGconn *c = PQconnectdb(conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    char err[512] = "unset";
    assert_int_equal(sinter_xa_check_server(c, err, sizeof err), SINTER_ENOPREPARED);
    printf("message: %s\n", err);
    assert_non_null(strstr(err, "max_prepared_transactions"));
    assert_non_null(strstr(err, "postgresql.conf"));
    assert_non_null(strstr(err, "restart"));
    assert_string_equal(sinter_xa_errmsg(), err);
    /* A NULL buffer is fine; the thread's message still has it. */
    assert_int_equal(sinter_xa_check_server(c, NULL, 0), SINTER_ENOPREPARED);
    assert_non_null(strstr(sinter_xa_errmsg(), "max_prepared_transactions"));

    /* Registration refuses the resource with the same message. */
    struct sinter_xa_config cfg = {
        .ns = "noprep", .hooks = {.register_branch = fake_register, .global_status = fake_status}};
    struct sinter_xa_resource *res = (void *)&cfg; /* must be reset to NULL */
    char err2[512] = "";
    assert_int_equal(sinter_xa_resource_open(&cfg, c, &res, err2, sizeof err2), SINTER_ENOPREPARED);
    assert_null(res);
    assert_non_null(strstr(err2, "max_prepared_transactions"));
    /* Nothing was started on the connection. */
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
    PQfinish(c);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONNINFO_FILE\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (f == NULL) {
        fprintf(stderr, "cannot read %s: is the pg_noprep fixture running?\n", argv[1]);
        return 1;
    }
    if (fgets(conninfo, sizeof conninfo, f) == NULL)
        conninfo[0] = '\0';
    fclose(f);
    conninfo[strcspn(conninfo, "\n")] = '\0';
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_check_server_names_the_setting)};
    return cmocka_run_group_tests_name("xa_noprep", tests, NULL, NULL);
}
