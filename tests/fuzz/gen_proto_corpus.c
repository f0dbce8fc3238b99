/*
 * Writes the seed corpus for fuzz_proto_decode into the directory given as argv[1]:
 * sample-NN.bin (one valid frame per sample message) and nasty-NN.bin (frames that must be
 * rejected: cut, bad magic, future version, unknown code, lengths over limits or over the body,
 * bad CRC, garbage). The committed tests/fuzz/corpus/proto/ was made with it:
 *   build/bin/gen_proto_corpus tests/fuzz/corpus/proto
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_samples.h"
#include "sinter/crc32c.h"
#include "sinter/proto.h"

static const char *dir;
static int nasty_no;

static void write_file(const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static void nasty(const uint8_t *p, size_t n)
{
    char name[64];
    snprintf(name, sizeof name, "nasty-%02d.bin", nasty_no++);
    write_file(name, p, n);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void reseal(uint8_t *f, size_t len)
{
    put32(f + 16, (uint32_t)(len - SINTER_PROTO_HEADER_SIZE));
    uint32_t crc = sinter_crc32c(0, f, 20);
    crc = sinter_crc32c(crc, f + SINTER_PROTO_HEADER_SIZE, len - SINTER_PROTO_HEADER_SIZE);
    put32(f + 20, crc);
}

int main(int argc, char **argv)
{
    static struct sinter_proto_msg m;
    static uint8_t buf[(1u << 20) + 64];
    uint8_t tmp[256];
    size_t len;
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    for (size_t i = 0; i < proto_sample_count(); i++) {
        char name[64];
        proto_sample(i, &m);
        if (sinter_proto_encode(&m, NULL, buf, sizeof buf, &len) != SINTER_OK) {
            fprintf(stderr, "sample %zu does not encode\n", i);
            return 1;
        }
        snprintf(name, sizeof name, "sample-%02zu.bin", i);
        write_file(name, buf, len);
    }

    /* Nasty inputs derived from GlobalBegin (sample 0). */
    proto_sample(0, &m);
    sinter_proto_encode(&m, NULL, buf, sizeof buf, &len);
    memcpy(tmp, buf, len);
    nasty(tmp, 3);                        /* shorter than the magic */
    nasty(tmp, SINTER_PROTO_HEADER_SIZE); /* header only, body missing */
    nasty(tmp, len - 1);                  /* last byte cut */
    tmp[0] = 'X';                         /* bad magic */
    nasty(tmp, len);
    memcpy(tmp, buf, len);
    tmp[4] = 2; /* future version */
    nasty(tmp, len);
    memcpy(tmp, buf, len);
    tmp[6] = 0xff; /* unknown code, valid CRC */
    reseal(tmp, len);
    nasty(tmp, len);
    memcpy(tmp, buf, len);
    put32(tmp + 16, 0xfffffff0u); /* body length far over max_frame */
    nasty(tmp, len);
    memcpy(tmp, buf, len);
    tmp[len - 1] ^= 0x55; /* CRC mismatch */
    nasty(tmp, len);
    memcpy(tmp, buf, len);
    tmp[SINTER_PROTO_HEADER_SIZE + 16] = 0xff; /* string length over the body and max_str */
    tmp[SINTER_PROTO_HEADER_SIZE + 17] = 0xff;
    reseal(tmp, len);
    nasty(tmp, len);
    memcpy(tmp, buf, len);
    tmp[SINTER_PROTO_HEADER_SIZE + 16] = 200; /* string length over the body only */
    reseal(tmp, len);
    nasty(tmp, len);
    memcpy(tmp, buf, len);
    tmp[len] = 0; /* trailing body byte */
    reseal(tmp, len + 1);
    nasty(tmp, len + 1);
    memcpy(tmp, buf, len);
    tmp[5] = 1; /* reserved flag */
    reseal(tmp, len);
    nasty(tmp, len);

    /* RegisterRM (sample 24) with an array count over the limit. */
    proto_sample(24, &m);
    sinter_proto_encode(&m, NULL, buf, sizeof buf, &len);
    if (len <= sizeof tmp) {
        memcpy(tmp, buf, len);
        /* count follows rq (16) and three strings: "sinter-rm 0.1.0", "stock-service", "" */
        size_t at = SINTER_PROTO_HEADER_SIZE + 16 + 2 + 15 + 2 + 13 + 2;
        tmp[at] = 0xff;
        tmp[at + 1] = 0xff;
        reseal(tmp, len);
        nasty(tmp, len);
    }

    /* Garbage: an SP-ish header, zeros, and bytes that look like HTTP. */
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    nasty((const uint8_t *)http, sizeof http - 1);
    memset(tmp, 0, sizeof tmp);
    nasty(tmp, sizeof tmp);
    memset(tmp, 0xff, 64);
    nasty(tmp, 64);
    printf("wrote %zu samples and %d nasty inputs to %s\n", proto_sample_count(), nasty_no, dir);
    return 0;
}
