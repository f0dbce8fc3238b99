/*
 * Fuzz target for the frame + body decoder (sinter_proto_decode).
 *
 * Properties checked on every input:
 *   - decoding never crashes, reads out of bounds or hits undefined behaviour (ASan/UBSan);
 *   - when a decode succeeds, encoding the result reproduces the input bytes exactly (the
 *     encoding is canonical), which also proves the decoded struct holds every field.
 * Every input is tried twice: as is, and with the header's body length and CRC fixed up to match
 * the input, because random mutations almost never carry a valid CRC32C and the body parser
 * would otherwise stay unexplored.
 *
 * Built two ways: with -DSINTER_LIBFUZZER as a libFuzzer target (SINTER_FUZZ=ON, clang), and
 * without it as a plain program whose main() replays files and directories given on the command
 * line (the committed corpus) plus the built-in samples, so every build runs the corpus.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_samples.h"
#include "sinter/crc32c.h"
#include "sinter/proto.h"

#define REENCODE_MAX ((1u << 20) + 64)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, int rc)
{
    fprintf(stderr, "fuzz_proto_decode: %s (rc %d %s)\n", what, rc, sinter_errname(rc));
    abort();
}

static void check_one(const uint8_t *buf, size_t len)
{
    static struct sinter_proto_msg m;
    static uint8_t again[REENCODE_MAX];
    struct sinter_proto_header h;
    int hrc = sinter_proto_decode_header(buf, len, NULL, &h);
    int rc = sinter_proto_decode(buf, len, NULL, &m);
    if (rc < 0 || rc >= SINTER_ERROR_COUNT) {
        fail("decode returned a value outside the error codes", rc);
    }
    if (hrc != SINTER_OK && rc != hrc) {
        fail("decode disagrees with decode_header", rc);
    }
    if (rc != SINTER_OK) {
        return;
    }
    size_t n = 0;
    int erc = sinter_proto_encode(&m, NULL, again, sizeof again, &n);
    if (erc != SINTER_OK) {
        fail("a decoded message does not re-encode", erc);
    }
    if (n != len || memcmp(again, buf, len) != 0) {
        fail("re-encoding differs from the input", 0);
    }
    if (sinter_proto_encoded_size(&m, NULL) != len) {
        fail("encoded_size disagrees", 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_one(data, size);
    if (size >= SINTER_PROTO_HEADER_SIZE && size <= REENCODE_MAX) {
        /* An exact-size heap copy, so ASan sees any read past its end. */
        uint8_t *p = malloc(size);
        if (p == NULL) {
            return 0;
        }
        memcpy(p, data, size);
        uint32_t body = (uint32_t)(size - SINTER_PROTO_HEADER_SIZE);
        for (int i = 0; i < 4; i++) {
            p[16 + i] = (uint8_t)(body >> (8 * i));
        }
        uint32_t crc = sinter_crc32c(0, p, 20);
        crc = sinter_crc32c(crc, p + SINTER_PROTO_HEADER_SIZE, body);
        for (int i = 0; i < 4; i++) {
            p[20 + i] = (uint8_t)(crc >> (8 * i));
        }
        check_one(p, size);
        free(p);
    }
    return 0;
}

#ifndef SINTER_LIBFUZZER
/* Replay driver: each argument is a file or a directory of files. */

static size_t replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    uint8_t *buf = malloc(REENCODE_MAX + 1);
    size_t n = fread(buf, 1, REENCODE_MAX + 1, f);
    fclose(f);
    /* An exact-size copy so over-reads are caught under ASan here too. */
    uint8_t *exact = malloc(n == 0 ? 1 : n);
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 1;
}

static size_t replay_path(const char *path)
{
    DIR *d = opendir(path);
    size_t count = 0;
    if (d == NULL) {
        return replay_file(path);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        count += replay_file(full);
    }
    closedir(d);
    return count;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        count += replay_path(argv[i]);
    }
    /* The built-in samples as well, each whole and cut at every point near both ends. */
    static struct sinter_proto_msg m;
    static uint8_t buf[REENCODE_MAX];
    for (size_t i = 0; i < proto_sample_count(); i++) {
        size_t len;
        proto_sample(i, &m);
        if (sinter_proto_encode(&m, NULL, buf, sizeof buf, &len) != SINTER_OK) {
            fail("a sample does not encode", 0);
        }
        for (size_t cut = 0; cut <= len; cut += (cut > 256 && cut + 256 < len) ? 61 : 1) {
            LLVMFuzzerTestOneInput(buf, cut);
        }
        count++;
    }
    if (argc > 1 && count <= proto_sample_count()) {
        fprintf(stderr, "fuzz_proto_decode: no corpus files found\n");
        return 1;
    }
    printf("fuzz_proto_decode: replayed %zu inputs cleanly\n", count);
    return 0;
}
#endif
