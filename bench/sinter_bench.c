/*
 * sinter-bench: dispatches to the subcommand named by argv[1] (table in sinter_bench.h).
 */
#include <stdio.h>
#include <string.h>

#include "sinter_bench.h"

static const struct sinter_bench_cmd cmds[] = {SINTER_BENCH_COMMANDS};

int main(int argc, char **argv)
{
    for (size_t i = 0; argc > 1 && i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(argv[1], cmds[i].name) == 0) {
            return cmds[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "usage: %s SUBCOMMAND [options]   (SUBCOMMAND --help for its options)\n",
            argv[0]);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        fprintf(stderr, "  %-6s %s\n", cmds[i].name, cmds[i].summary);
    }
    return 2;
}
