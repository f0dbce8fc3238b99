/* A program outside the tree that uses the installed headers and libraries. */
#include <stdio.h>
#include <string.h>

#include <sinter/crc32c.h>
#include <sinter/error.h>

int main(void)
{
    if (strcmp(sinter_strerror(SINTER_ENOTLEADER), "not the leader") != 0) {
        return 1;
    }
    if (sinter_crc32c(0, "123456789", 9) != 0xE3069283u) {
        return 2;
    }
    puts("consumer: installed sinter-proto works");
    return 0;
}
