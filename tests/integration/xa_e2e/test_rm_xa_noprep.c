/* The RM's XA registration (sinter_rm_xa_register) on a PostgreSQL server with
 * max_prepared_transactions = 0 (the fixture "pg_noprep", tests/integration/xa_pg): refused at
 * registration with SINTER_ENOPREPARED and a message naming the setting, before any branch.
 * The RM handle sends nothing until used, so no coordinator is needed for this.
 *
 * usage: test_rm_xa_noprep CONNINFO_FILE */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sinter/rm.h"
#include "sinter/rm_xa.h"

static char conninfo[1024];

static void t_register_names_the_setting(void **state)
{
    (void)state;
    static const char *const urls[] = {"tcp://127.0.0.1:9"};
    static const char *const res[] = {"noprep"};
    struct sinter_rm_opts o;
    sinter_rm_opts_default(&o);
    o.addresses = urls;
    o.n_addresses = 1;
    o.secret = "s";
    o.resources = res;
    o.n_resources = 1;
    struct sinter_rm *rm = NULL;
    assert_int_equal(sinter_rm_open(&rm, &o), SINTER_OK);
    struct sinter_rm_xa_opts xo = {.resource_id = "noprep", .ns = "noprep", .conninfo = conninfo};
    struct sinter_rm_xa *x = NULL;
    struct sinter_rm_xa_recovery rec;
    assert_int_equal(sinter_rm_xa_register(rm, &xo, &x, &rec), SINTER_ENOPREPARED);
    assert_null(x);
    fprintf(stderr, "message: %s\n", sinter_rm_errmsg());
    assert_non_null(strstr(sinter_rm_errmsg(), "max_prepared_transactions"));
    assert_non_null(strstr(sinter_rm_errmsg(), "noprep"));
    /* A wrong conninfo is a connection error at registration too, not later. */
    xo.conninfo = "host=127.0.0.1 port=9 connect_timeout=2";
    assert_int_equal(sinter_rm_xa_register(rm, &xo, &x, NULL), SINTER_EDB);
    sinter_rm_close(rm);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CONNINFO_FILE\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (f == NULL || fgets(conninfo, sizeof conninfo, f) == NULL) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    fclose(f);
    conninfo[strcspn(conninfo, "\r\n")] = '\0';
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_register_names_the_setting)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
