/* A program outside the tree that uses the installed headers and libraries. */
#include <stdio.h>
#include <string.h>

#include <sinter/crc32c.h>
#include <sinter/error.h>
#include <sinter/rm.h>
#include <sinter/tcc.h>
#include <sinter/tm.h>

int main(void)
{
    if (strcmp(sinter_strerror(SINTER_ENOTLEADER), "not the leader") != 0) {
        return 1;
    }
    if (sinter_crc32c(0, "123456789", 9) != 0xE3069283u) {
        return 2;
    }
    /* The client libraries link and open handles (nothing is sent before the first call). */
    const char *addr[1] = {"tcp://127.0.0.1:1"};
    struct sinter_tm_opts to;
    sinter_tm_opts_default(&to);
    to.addresses = addr;
    to.n_addresses = 1;
    to.secret = "s";
    struct sinter_tm *tm = NULL;
    if (sinter_tm_open(&tm, &to) != SINTER_OK) {
        return 3;
    }
    sinter_tm_close(tm);
    struct sinter_rm_opts ro;
    sinter_rm_opts_default(&ro);
    ro.addresses = addr;
    ro.n_addresses = 1;
    ro.secret = "s";
    struct sinter_rm *rm = NULL;
    if (sinter_rm_open(&rm, &ro) != SINTER_OK) {
        return 4;
    }
    struct sinter_tcc_action a = {0};
    if (sinter_tcc_register(rm, &a) != SINTER_EINVAL) { /* no name: refused */
        return 5;
    }
    sinter_rm_close(rm);
    puts("consumer: installed sinter-proto, sinter-tm and sinter-rm work");
    return 0;
}
