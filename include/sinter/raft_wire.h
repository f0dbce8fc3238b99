/*
 * sinter/raft_wire.h — the node-to-node Raft frame: a versioned, CRC32C-checked binary encoding
 * of the pure core's messages (sinter/raft.h) for raft/transport/. This is NOT the client
 * protocol (sinter/proto.h, magic "SNTR"): raft frames start with "SRFT" so a client that dials a
 * raft port, or a raft node that dials a client port, is refused on the first four bytes.
 *
 * Every integer is little-endian, fixed width, no padding.
 *
 * Header (SINTER_RAFT_WIRE_HEADER_SIZE = 24 bytes):
 *   offset size field
 *        0    4 magic     "SRFT" (bytes 'S','R','F','T'; SINTER_RAFT_WIRE_MAGIC as a LE u32)
 *        4    1 version   SINTER_RAFT_WIRE_VERSION (1)
 *        5    1 type      enum sinter_raft_wire_type
 *        6    2 flags     reserved, 0 in version 1
 *        8    8 sender    node id of the sender, non-zero (the same id in every raft group: a
 *                         node is one server of every group it hosts)
 *       16    4 body_len  bytes of body that follow, <= SINTER_RAFT_WIRE_MAX_BODY
 *       20    4 crc       CRC32C over header bytes [0, 20) followed by the body
 *
 * Message record (inside BATCH and SNAP_CHUNK), 84 fixed bytes then a variable tail:
 *        0    4 group       raft group id
 *        4    1 type        enum sinter_raft_msg_type (1..SINTER_RAFT_MSG_TYPE_MAX)
 *        5    1 reject      0 or 1
 *        6    2 reserved    0
 *        8    8 from       16 8 to       24 8 term      32 8 log_term   40 8 index
 *       48    8 commit     56 8 reject_hint            64 8 hint_term  72 8 context
 *       80    4 n_entries   0 unless type is APPEND, <= SINTER_RAFT_WIRE_MAX_ENTRIES
 *   tail, APPEND:   n_entries x { term u64, index u64, type u32 (1..3), len u32, len bytes }
 *   tail, SNAPSHOT: index u64, term u64, config_index u64, then the configuration:
 *                   version u8 (1), n u8 (<= SINTER_RAFT_MAX_SERVERS), n x { id u64, suffrage u8 }
 *                   (ids non-zero and strictly increasing, suffrage 0 or 1: the invariants of
 *                   struct sinter_raft_config, checked so a decoded config is usable as is)
 *   other types: no tail.
 *
 * Bodies by frame type:
 *   BATCH (1):          n_msgs u32 (<= SINTER_RAFT_WIRE_MAX_MSGS), n_msgs message records. The
 *                       messages of every group bound for one peer share a frame: one write, one
 *                       CRC, one wake-up on the receiver for a whole ready batch of all groups.
 *   HEARTBEAT (2),
 *   HEARTBEAT_RESP (3): n u32 (<= SINTER_RAFT_WIRE_MAX_BEATS), n x 32-byte beats
 *                       { group u32, flags u32 (bit 0 = reject, others 0), term u64, commit u64,
 *                       context u64 }. One frame carries the beat of every group the sender
 *                       leads (resp: follows) on this peer, as CockroachDB's coalesced heartbeats
 *                       do: with G groups, one frame per peer per heartbeat round instead of G.
 *   SNAP_CHUNK (4):     flags u32 (bit 0 = last, others 0), total u64, offset u64, len u32
 *                       (<= SINTER_RAFT_WIRE_MAX_CHUNK), one message record of type SNAPSHOT
 *                       (the message the core emitted, with its snapshot meta, repeated in every
 *                       chunk so each chunk is self-describing), then len bytes of snapshot data.
 *                       offset + len <= total; last is set exactly when offset + len == total.
 *   SNAP_ACK (5):       group u32, status u32 (a sinter error code; 0 = chunk stored), index u64,
 *                       term u64 (the snapshot being acknowledged), next_offset u64 (bytes stored).
 *
 * The encoding is canonical (bools 0/1, reserved bits 0, no trailing bytes), so decode followed by
 * encode reproduces the input exactly; the fuzz target (tests/fuzz/raft_wire) checks that.
 *
 * Decode errors: SINTER_ETRUNCATED (fewer bytes than the header or body_len announce),
 * SINTER_EBADMAGIC, SINTER_EBADVERSION (frame or configuration version), SINTER_EUNKNOWNMSG (frame
 * type or raft message type), SINTER_ETOOBIG (body_len or a count above its hard limit),
 * SINTER_EBADLEN (a count or length inside the body disagrees with the body's size, or bytes left
 * over), SINTER_EBADVALUE (reserved bits, bools, enums, sender 0, bad config, chunk bounds),
 * SINTER_ECRC. Every count is checked against its limit and against the bytes present before
 * anything is allocated, so the decoder allocates at most a small multiple of the frame's size.
 */
#ifndef SINTER_RAFT_WIRE_H
#define SINTER_RAFT_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/error.h"
#include "sinter/raft.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SINTER_RAFT_WIRE_MAGIC       0x54465253u /* "SRFT" read as a little-endian u32 */
#define SINTER_RAFT_WIRE_VERSION     1u
#define SINTER_RAFT_WIRE_HEADER_SIZE 24u

/* Hard limits, checked on both encode and decode. */
#define SINTER_RAFT_WIRE_MAX_BODY    (32u << 20) /* 32 MiB: a full APPEND is ~1 MiB by default */
#define SINTER_RAFT_WIRE_MAX_MSGS    8192u       /* messages per BATCH */
#define SINTER_RAFT_WIRE_MAX_ENTRIES 8192u       /* entries per APPEND (core default cap: 256) */
#define SINTER_RAFT_WIRE_MAX_BEATS   65536u      /* groups per coalesced heartbeat */
#define SINTER_RAFT_WIRE_MAX_CHUNK   (8u << 20)  /* snapshot bytes per SNAP_CHUNK */

/* Encoded sizes, for callers that size buffers. */
#define SINTER_RAFT_WIRE_MSG_FIXED   84u
#define SINTER_RAFT_WIRE_ENTRY_FIXED 24u
#define SINTER_RAFT_WIRE_BEAT_SIZE   32u
#define SINTER_RAFT_WIRE_ACK_SIZE    32u

enum sinter_raft_wire_type {
    SINTER_RAFT_WIRE_BATCH = 1,
    SINTER_RAFT_WIRE_HEARTBEAT = 2,
    SINTER_RAFT_WIRE_HEARTBEAT_RESP = 3,
    SINTER_RAFT_WIRE_SNAP_CHUNK = 4,
    SINTER_RAFT_WIRE_SNAP_ACK = 5,
};
#define SINTER_RAFT_WIRE_TYPE_MAX 5

/* One group's beat in a coalesced heartbeat (or its response). Expanded on receipt into a
 * SINTER_RAFT_MSG_HEARTBEAT(_RESP) from the frame's sender. */
struct sinter_raft_wire_beat {
    uint32_t group;
    bool reject;
    uint64_t term;
    uint64_t commit;  /* HEARTBEAT: leader's commit for this follower */
    uint64_t context; /* read-index round */
};

/* One chunk of a streamed install-snapshot. */
struct sinter_raft_wire_chunk {
    uint32_t group;
    bool last;
    uint64_t total;             /* size of the whole snapshot in bytes */
    uint64_t offset;            /* of data within the snapshot */
    uint32_t len;               /* bytes at data */
    const uint8_t *data;        /* decode: points into the decoded buffer */
    struct sinter_raft_msg msg; /* type SINTER_RAFT_MSG_SNAPSHOT, no entries */
};

/* Acknowledgement of one chunk; status != 0 means the receiver refused the stream. */
struct sinter_raft_wire_snap_ack {
    uint32_t group;
    uint32_t status;      /* a sinter error code, SINTER_OK when the chunk was stored */
    uint64_t index;       /* snapshot meta index ... */
    uint64_t term;        /* ... and term: which snapshot this acknowledges */
    uint64_t next_offset; /* bytes of the snapshot stored so far */
};

/* The fixed header, decoded alone so a stream reader can size the body before reading it. */
struct sinter_raft_wire_header {
    uint8_t type;
    uint64_t sender;
    uint32_t body_len;
    uint32_t crc;
};

/* A decoded frame. Which members are filled depends on type:
 *   BATCH:               n_msgs, groups[], msgs[] (APPEND entries' data point into the buffer).
 *   HEARTBEAT(_RESP):    n_beats, beats[], and the expansion n_msgs, groups[], msgs[]: one
 *                        SINTER_RAFT_MSG_HEARTBEAT(_RESP) per beat with from = sender and to = 0
 *                        (the frame does not carry it: it is the receiver; the transport fills it).
 *   SNAP_CHUNK:          chunk (chunk.data points into the buffer).
 *   SNAP_ACK:            ack.
 * Arrays live in one block at mem, released by sinter_raft_wire_frame_release(). */
struct sinter_raft_wire_frame {
    uint8_t type; /* enum sinter_raft_wire_type */
    uint64_t sender;
    size_t n_msgs;
    uint32_t *groups;
    struct sinter_raft_msg *msgs;
    size_t n_beats;
    struct sinter_raft_wire_beat *beats;
    struct sinter_raft_wire_chunk chunk;
    struct sinter_raft_wire_snap_ack ack;
    void *mem;
};

/* Decodes and validates the 24-byte header at buf (magic, version, type, flags, sender, body_len
 * against SINTER_RAFT_WIRE_MAX_BODY); the CRC is only checked by sinter_raft_wire_decode().
 * Ownership: reads buf only, writes *h. Errors: SINTER_ETRUNCATED (len < 24), SINTER_EBADMAGIC,
 * SINTER_EBADVERSION, SINTER_EUNKNOWNMSG, SINTER_EBADVALUE (flags, sender 0), SINTER_ETOOBIG. */
int sinter_raft_wire_header_decode(const uint8_t *buf, size_t len,
                                   struct sinter_raft_wire_header *h);

/* Decodes exactly one whole frame (header and body, len bytes, no more, no less).
 * Ownership: *f is written; its arrays are allocated in one block owned by *f and released by
 * sinter_raft_wire_frame_release(). Entry data and chunk data point INTO buf (zero-copy): buf must
 * outlive every use of *f. On error *f is left empty (nothing to release, release is harmless).
 * Errors: see the top of this file, and SINTER_ENOMEM. */
int sinter_raft_wire_decode(const uint8_t *buf, size_t len, struct sinter_raft_wire_frame *f);

/* Frees what sinter_raft_wire_decode() allocated and empties *f. Does not touch the buffer. */
void sinter_raft_wire_frame_release(struct sinter_raft_wire_frame *f);

/* ---------------------------------------------------------------------------------------------
 * Encoding. Frames are built in a growable buffer the caller owns and reuses, so a sender builds
 * every frame without a per-message allocation: begin, add messages (or beats), seal.
 */
struct sinter_raft_wire_buf {
    uint8_t *data; /* the frame after seal: data[0, len) */
    size_t len;
    size_t cap;
    uint32_t count; /* messages or beats added since begin */
    uint8_t type;   /* frame type being built, 0 = none */
    bool sealed;
};

/* Initialises an empty buffer (no allocation). */
void sinter_raft_wire_buf_init(struct sinter_raft_wire_buf *b);
/* Frees b->data and empties *b. */
void sinter_raft_wire_buf_free(struct sinter_raft_wire_buf *b);

/* Starts a BATCH, HEARTBEAT or HEARTBEAT_RESP frame in b (previous content discarded, capacity
 * kept). Errors: SINTER_EINVAL (other type), SINTER_ENOMEM. */
int sinter_raft_wire_begin(struct sinter_raft_wire_buf *b, uint8_t type);

/* Bytes a message record takes in a frame (fixed part plus entries or snapshot meta). */
size_t sinter_raft_wire_msg_size(const struct sinter_raft_msg *m);

/* Appends one message of `group` to a BATCH being built. m is copied (entries' data too).
 * On any error b is unchanged. Errors: SINTER_EINVAL (b is not an open BATCH; unknown msg type;
 * reject not 0/1; entries on a non-APPEND; entry type outside 1..3; entry len > 0 with NULL data;
 * invalid snapshot config), SINTER_ETOOBIG (n_entries > MAX_ENTRIES, or the frame would exceed
 * MAX_MSGS or MAX_BODY: seal and start a new frame), SINTER_ENOMEM. */
int sinter_raft_wire_add_msg(struct sinter_raft_wire_buf *b, uint32_t group,
                             const struct sinter_raft_msg *m);

/* Appends one beat to a HEARTBEAT(_RESP) being built. Errors: SINTER_EINVAL (not an open
 * heartbeat frame), SINTER_ETOOBIG (MAX_BEATS reached), SINTER_ENOMEM. */
int sinter_raft_wire_add_beat(struct sinter_raft_wire_buf *b,
                              const struct sinter_raft_wire_beat *beat);

/* Finishes the frame: writes the count, the header and the CRC. The frame is then
 * b->data[0, b->len). Errors: SINTER_EINVAL (nothing begun, already sealed, sender 0). */
int sinter_raft_wire_seal(struct sinter_raft_wire_buf *b, uint64_t sender);

/* Encodes a whole SNAP_CHUNK frame into b (sealed). c->data is copied.
 * Errors: SINTER_EINVAL (sender 0, msg not a valid SNAPSHOT, offset + len > total, last flag not
 * matching, data NULL with len > 0), SINTER_ETOOBIG (len > MAX_CHUNK), SINTER_ENOMEM. */
int sinter_raft_wire_encode_chunk(struct sinter_raft_wire_buf *b, uint64_t sender,
                                  const struct sinter_raft_wire_chunk *c);

/* Encodes a whole SNAP_ACK frame into b (sealed). Errors: SINTER_EINVAL (sender 0, status not a
 * sinter error code), SINTER_ENOMEM. */
int sinter_raft_wire_encode_snap_ack(struct sinter_raft_wire_buf *b, uint64_t sender,
                                     const struct sinter_raft_wire_snap_ack *a);

/* Convenience: a whole BATCH frame of n messages (groups[i] goes with msgs[i]) into b, sealed.
 * Errors: those of begin/add_msg/seal. */
int sinter_raft_wire_encode_batch(struct sinter_raft_wire_buf *b, uint64_t sender,
                                  const uint32_t *groups, const struct sinter_raft_msg *msgs,
                                  size_t n);

/* Convenience: a whole HEARTBEAT (resp false) or HEARTBEAT_RESP (resp true) frame, sealed. */
int sinter_raft_wire_encode_beats(struct sinter_raft_wire_buf *b, uint64_t sender, bool resp,
                                  const struct sinter_raft_wire_beat *beats, size_t n);

/* Name of a frame type, static string ("BATCH", ..., "?"). */
const char *sinter_raft_wire_type_name(uint32_t type);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_RAFT_WIRE_H */
