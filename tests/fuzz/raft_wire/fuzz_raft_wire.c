/*
 * libFuzzer target for the node-to-node Raft frame decoder (sinter/raft_wire.h).
 *
 * Any input must be either refused with an error code, or decoded into a frame that re-encodes
 * to exactly the input bytes (the encoding is canonical). The header-only decoder must agree with
 * the full decoder on every header error. ASan/UBSan catch any read past the input.
 *
 * Random mutations almost never carry a valid CRC32C, which would keep the fuzzer at the CRC
 * check; so every input is also tried a second time with its CRC recomputed, which sends the
 * mutated bodies through the body parsers.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sinter/crc32c.h"
#include "sinter/raft_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(const uint8_t *data, size_t size, bool fix_crc)
{
    /* Decode from an exact-size heap copy so ASan flags any overread. */
    uint8_t *buf = malloc(size != 0 ? size : 1);
    if (buf == NULL) {
        return;
    }
    if (size != 0) {
        memcpy(buf, data, size);
    }
    if (fix_crc) {
        uint32_t crc = sinter_crc32c(0, buf, 20);
        crc = sinter_crc32c(crc, buf + SINTER_RAFT_WIRE_HEADER_SIZE,
                            size - SINTER_RAFT_WIRE_HEADER_SIZE);
        for (int i = 0; i < 4; i++) {
            buf[20 + i] = (uint8_t)(crc >> (8 * i));
        }
    }
    struct sinter_raft_wire_header h;
    int hrc = sinter_raft_wire_header_decode(buf, size, &h);
    struct sinter_raft_wire_frame f;
    int rc = sinter_raft_wire_decode(buf, size, &f);
    if (hrc != SINTER_OK && rc != hrc) {
        abort(); /* the stream reader and the decoder must refuse a header alike */
    }
    if (rc == SINTER_OK) {
        struct sinter_raft_wire_buf out;
        sinter_raft_wire_buf_init(&out);
        int erc;
        switch (f.type) {
        case SINTER_RAFT_WIRE_BATCH:
            erc = sinter_raft_wire_encode_batch(&out, f.sender, f.groups, f.msgs, f.n_msgs);
            break;
        case SINTER_RAFT_WIRE_HEARTBEAT:
        case SINTER_RAFT_WIRE_HEARTBEAT_RESP:
            erc = sinter_raft_wire_encode_beats(
                &out, f.sender, f.type == SINTER_RAFT_WIRE_HEARTBEAT_RESP, f.beats, f.n_beats);
            for (size_t i = 0; i < f.n_msgs; i++) {
                if (f.groups[i] != f.beats[i].group || f.msgs[i].commit != f.beats[i].commit) {
                    abort(); /* expansion must mirror the beats */
                }
            }
            break;
        case SINTER_RAFT_WIRE_SNAP_CHUNK:
            erc = sinter_raft_wire_encode_chunk(&out, f.sender, &f.chunk);
            break;
        case SINTER_RAFT_WIRE_SNAP_ACK:
            erc = sinter_raft_wire_encode_snap_ack(&out, f.sender, &f.ack);
            break;
        default:
            abort();
        }
        if (erc != SINTER_OK || out.len != size || memcmp(out.data, buf, size) != 0) {
            abort(); /* accepted input must re-encode byte for byte */
        }
        sinter_raft_wire_buf_free(&out);
        sinter_raft_wire_frame_release(&f);
    } else if (rc <= SINTER_OK || rc >= SINTER_ERROR_COUNT) {
        abort();
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(data, size, false);
    if (size >= SINTER_RAFT_WIRE_HEADER_SIZE) {
        one(data, size, true);
    }
    return 0;
}
