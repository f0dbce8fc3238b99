/*
 * Replays the seed corpus through the fuzz target in normal (non-libFuzzer) builds, so ctest -L
 * fuzz exercises the target on every machine (the driver is tests/fuzz/replay.c):
 *   fuzz_raft_wire_replay DIR...        run every file in each DIR (or a single file)
 *   fuzz_raft_wire_replay --seeds DIR   (re)write the seed corpus: one valid frame of each type
 *                                       and a few near-misses
 */
#include <stdio.h>
#include <string.h>

#include "replay.h"
#include "sinter/raft_wire.h"

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
    sinter_fuzz_write_seed(dir, "batch_all_types", b.data, b.len);
    sinter_fuzz_write_seed(dir, "batch_truncated", b.data, b.len / 2);
    sinter_raft_wire_encode_batch(&b, 1, g, m, 1);
    sinter_fuzz_write_seed(dir, "batch_one_append", b.data, b.len);
    sinter_raft_wire_encode_batch(&b, 1, NULL, NULL, 0);
    sinter_fuzz_write_seed(dir, "batch_empty", b.data, b.len);
    struct sinter_raft_wire_beat beats[4] = {{.group = 0, .term = 2, .commit = 9},
                                             {.group = 1, .term = 2, .commit = 8, .context = 5},
                                             {.group = 2, .term = 3, .commit = 7},
                                             {.group = 9, .reject = true, .term = 4}};
    sinter_raft_wire_encode_beats(&b, 1, false, beats, 4);
    sinter_fuzz_write_seed(dir, "heartbeat", b.data, b.len);
    sinter_raft_wire_encode_beats(&b, 2, true, beats, 4);
    sinter_fuzz_write_seed(dir, "heartbeat_resp", b.data, b.len);
    struct sinter_raft_wire_chunk c = {.group = 1,
                                       .total = 100,
                                       .offset = 60,
                                       .len = 40,
                                       .last = true,
                                       .data = payload,
                                       .msg = m[8]};
    sinter_raft_wire_encode_chunk(&b, 1, &c);
    sinter_fuzz_write_seed(dir, "snap_chunk_last", b.data, b.len);
    c.offset = 0;
    c.last = false;
    sinter_raft_wire_encode_chunk(&b, 1, &c);
    sinter_fuzz_write_seed(dir, "snap_chunk_first", b.data, b.len);
    struct sinter_raft_wire_snap_ack a = {.group = 1, .index = 10, .term = 2, .next_offset = 40};
    sinter_raft_wire_encode_snap_ack(&b, 2, &a);
    sinter_fuzz_write_seed(dir, "snap_ack", b.data, b.len);
    a.status = SINTER_ESTATE;
    sinter_raft_wire_encode_snap_ack(&b, 2, &a);
    b.data[b.len - 1] ^= 0x40; /* CRC mismatch */
    sinter_fuzz_write_seed(dir, "snap_ack_bad_crc", b.data, b.len);
    sinter_fuzz_write_seed(dir, "client_magic", (const uint8_t *)"SNTR\x01\0\0\0", 8);
    sinter_raft_wire_buf_free(&b);
    return 0;
}

int main(int argc, char **argv)
{
    return sinter_fuzz_replay_main(argc, argv, "fuzz_raft_wire", make_seeds);
}
