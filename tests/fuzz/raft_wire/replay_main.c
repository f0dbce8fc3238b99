/*
 * Replays the seed corpus through the fuzz target in normal (non-libFuzzer) builds, so ctest -L
 * fuzz exercises the target on every machine:
 *   fuzz_raft_wire_replay DIR...        run every file in each DIR (or a single file)
 *   fuzz_raft_wire_replay --seeds DIR   (re)write the seed corpus: one valid frame of each type
 *                                       and a few near-misses
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sinter/raft_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        perror(path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap != 0 ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(fp);
                return -1;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, fp);
        if (n == 0) {
            break;
        }
        len += n;
    }
    fclose(fp);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

static void write_seed(const char *dir, const char *name, const uint8_t *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || fwrite(data, 1, len, fp) != len) {
        perror(path);
        exit(1);
    }
    fclose(fp);
}

static int make_seeds(const char *dir)
{
    static uint8_t payload[40] = "branch 1 of 7:42 try";
    struct sinter_raft_entry e[2] = {
        {.term = 2, .index = 11, .type = SINTER_RAFT_ENTRY_NORMAL, .len = 40, .data = payload},
        {.term = 2, .index = 12, .type = SINTER_RAFT_ENTRY_NOOP, .len = 0, .data = NULL},
    };
    struct sinter_raft_msg m[SINTER_RAFT_MSG_TYPE_MAX];
    uint32_t g[SINTER_RAFT_MSG_TYPE_MAX];
    for (uint32_t i = 0; i < SINTER_RAFT_MSG_TYPE_MAX; i++) {
        memset(&m[i], 0, sizeof(m[i]));
        m[i].type = i + 1;
        m[i].from = 1;
        m[i].to = 2;
        m[i].term = 2;
        m[i].index = 10 + i;
        m[i].commit = 9;
        m[i].context = i;
        g[i] = i % 3;
    }
    m[0].n_entries = 2;
    m[0].entries = e;
    m[8].snapshot = (struct sinter_raft_snapshot_meta){.index = 10, .term = 2, .config_index = 1};
    m[8].snapshot.config.n = 3;
    for (uint32_t i = 0; i < 3; i++) {
        m[8].snapshot.config.servers[i].id = i + 1;
    }
    m[8].snapshot.config.servers[2].suffrage = SINTER_RAFT_LEARNER;
    struct sinter_raft_wire_buf b;
    sinter_raft_wire_buf_init(&b);
    if (sinter_raft_wire_encode_batch(&b, 1, g, m, SINTER_RAFT_MSG_TYPE_MAX) != SINTER_OK) {
        return 1;
    }
    write_seed(dir, "batch_all_types", b.data, b.len);
    write_seed(dir, "batch_truncated", b.data, b.len / 2);
    sinter_raft_wire_encode_batch(&b, 1, g, m, 1);
    write_seed(dir, "batch_one_append", b.data, b.len);
    sinter_raft_wire_encode_batch(&b, 1, NULL, NULL, 0);
    write_seed(dir, "batch_empty", b.data, b.len);
    struct sinter_raft_wire_beat beats[4] = {{.group = 0, .term = 2, .commit = 9},
                                             {.group = 1, .term = 2, .commit = 8, .context = 5},
                                             {.group = 2, .term = 3, .commit = 7},
                                             {.group = 9, .reject = true, .term = 4}};
    sinter_raft_wire_encode_beats(&b, 1, false, beats, 4);
    write_seed(dir, "heartbeat", b.data, b.len);
    sinter_raft_wire_encode_beats(&b, 2, true, beats, 4);
    write_seed(dir, "heartbeat_resp", b.data, b.len);
    struct sinter_raft_wire_chunk c = {.group = 1,
                                       .total = 100,
                                       .offset = 60,
                                       .len = 40,
                                       .last = true,
                                       .data = payload,
                                       .msg = m[8]};
    sinter_raft_wire_encode_chunk(&b, 1, &c);
    write_seed(dir, "snap_chunk_last", b.data, b.len);
    c.offset = 0;
    c.last = false;
    sinter_raft_wire_encode_chunk(&b, 1, &c);
    write_seed(dir, "snap_chunk_first", b.data, b.len);
    struct sinter_raft_wire_snap_ack a = {.group = 1, .index = 10, .term = 2, .next_offset = 40};
    sinter_raft_wire_encode_snap_ack(&b, 2, &a);
    write_seed(dir, "snap_ack", b.data, b.len);
    a.status = SINTER_ESTATE;
    sinter_raft_wire_encode_snap_ack(&b, 2, &a);
    b.data[b.len - 1] ^= 0x40; /* CRC mismatch */
    write_seed(dir, "snap_ack_bad_crc", b.data, b.len);
    write_seed(dir, "client_magic", (const uint8_t *)"SNTR\x01\0\0\0", 8);
    sinter_raft_wire_buf_free(&b);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--seeds") == 0) {
        return make_seeds(argv[2]);
    }
    int files = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i]) != 0) {
                return 1;
            }
            files++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (d == NULL) {
            perror(argv[i]);
            return 1;
        }
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.') {
                continue;
            }
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
            if (run_file(path) != 0) {
                closedir(d);
                return 1;
            }
            files++;
        }
        closedir(d);
    }
    printf("replayed %d inputs through fuzz_raft_wire: no crash, every accepted frame "
           "re-encoded byte for byte\n",
           files);
    return files > 0 ? 0 : 1;
}
