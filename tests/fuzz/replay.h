/*
 * The corpus replay driver shared by the fuzz targets' *_replay programs (tests/fuzz/CMakeLists.txt
 * conventions): in builds without libFuzzer, every file of the committed seed corpus goes through
 * the target's LLVMFuzzerTestOneInput, so each ctest run checks what fuzzing once found.
 */
#ifndef SINTER_FUZZ_REPLAY_H
#define SINTER_FUZZ_REPLAY_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes dir/name with len bytes of data; exits with a message when it cannot. */
void sinter_fuzz_write_seed(const char *dir, const char *name, const uint8_t *data, size_t len);

/* The whole program:
 *   PROG DIR|FILE...     run every file of each DIR (or the FILE itself) through the target
 *   PROG --seeds DIR     (re)write the seed corpus with make_seeds(DIR)
 * Returns main's exit status: 0 when at least one input ran and none crashed. `target` names
 * the target in the summary line. */
int sinter_fuzz_replay_main(int argc, char **argv, const char *target,
                            int (*make_seeds)(const char *dir));

#endif /* SINTER_FUZZ_REPLAY_H */
