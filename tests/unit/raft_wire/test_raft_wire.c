/* Unit tests for the node-to-node Raft frame codec (sinter/raft_wire.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sinter/crc32c.h"
#include "sinter/raft_wire.h"

/* ---------------------------------------------------------------------------------------------
 * malloc is wrapped at link time so tests can count the decoder's allocations.
 */
void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
static size_t g_mallocs;
void *__wrap_malloc(size_t n)
{
    g_mallocs++;
    return __real_malloc(n);
}

/* ---------------------------------------------------------------------------------------------
 * Helpers
 */
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* Recomputes the CRC after a test edits a frame, so the edit reaches the body checks. */
static void fix_crc(uint8_t *buf, size_t len)
{
    uint32_t crc = sinter_crc32c(0, buf, 20);
    crc =
        sinter_crc32c(crc, buf + SINTER_RAFT_WIRE_HEADER_SIZE, len - SINTER_RAFT_WIRE_HEADER_SIZE);
    put32(buf + 20, crc);
}

static uint8_t data_a[] = "confirm xid 7:42";
static uint8_t data_c[300];

static struct sinter_raft_entry g_entries[3];

/* One message of every type, every field distinct and non-zero where the type allows. */
static size_t all_msgs(struct sinter_raft_msg *m, uint32_t *groups)
{
    memset(data_c, 0xA5, sizeof(data_c));
    g_entries[0] = (struct sinter_raft_entry){.term = 7,
                                              .index = 101,
                                              .type = SINTER_RAFT_ENTRY_NORMAL,
                                              .len = (uint32_t)sizeof(data_a),
                                              .data = data_a};
    g_entries[1] = (struct sinter_raft_entry){
        .term = 7, .index = 102, .type = SINTER_RAFT_ENTRY_NOOP, .len = 0, .data = NULL};
    g_entries[2] = (struct sinter_raft_entry){.term = 8,
                                              .index = 103,
                                              .type = SINTER_RAFT_ENTRY_CONFIG,
                                              .len = (uint32_t)sizeof(data_c),
                                              .data = data_c};
    size_t n = 0;
    for (uint32_t type = 1; type <= SINTER_RAFT_MSG_TYPE_MAX; type++) {
        struct sinter_raft_msg *x = &m[n];
        memset(x, 0, sizeof(*x));
        x->type = type;
        x->from = 0x1111111111111111ull;
        x->to = 2;
        x->term = 1000 + type;
        x->log_term = 2000 + type;
        x->index = 3000 + type;
        x->commit = 4000 + type;
        x->reject = (type % 2) == 0;
        x->reject_hint = 5000 + type;
        x->hint_term = 6000 + type;
        x->context = 0xFFFFFFFFFFFFFF00ull + type;
        if (type == SINTER_RAFT_MSG_APPEND) {
            x->n_entries = 3;
            x->entries = g_entries;
        }
        if (type == SINTER_RAFT_MSG_SNAPSHOT) {
            x->snapshot.index = 99;
            x->snapshot.term = 6;
            x->snapshot.config_index = 50;
            x->snapshot.config.n = SINTER_RAFT_MAX_SERVERS;
            for (uint32_t i = 0; i < SINTER_RAFT_MAX_SERVERS; i++) {
                x->snapshot.config.servers[i].id = 10 + 3 * (uint64_t)i;
                x->snapshot.config.servers[i].suffrage = (uint8_t)(i % 2);
            }
        }
        groups[n] = 7 * type;
        n++;
    }
    /* An APPEND with no entries (a probe / commit update). */
    memset(&m[n], 0, sizeof(m[n]));
    m[n].type = SINTER_RAFT_MSG_APPEND;
    m[n].from = 0x1111111111111111ull;
    m[n].to = 3;
    m[n].term = 5;
    groups[n] = 0xFFFFFFFFu;
    n++;
    return n;
}

static void assert_msg_equal(const struct sinter_raft_msg *a, const struct sinter_raft_msg *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->from, b->from);
    assert_int_equal(a->to, b->to);
    assert_int_equal(a->term, b->term);
    assert_int_equal(a->log_term, b->log_term);
    assert_int_equal(a->index, b->index);
    assert_int_equal(a->commit, b->commit);
    assert_int_equal(a->reject, b->reject);
    assert_int_equal(a->reject_hint, b->reject_hint);
    assert_int_equal(a->hint_term, b->hint_term);
    assert_int_equal(a->context, b->context);
    assert_int_equal(a->n_entries, b->n_entries);
    for (uint32_t i = 0; i < a->n_entries; i++) {
        const struct sinter_raft_entry *x = &a->entries[i], *y = &b->entries[i];
        assert_int_equal(x->term, y->term);
        assert_int_equal(x->index, y->index);
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->len, y->len);
        if (x->len == 0) {
            assert_null(y->data);
        } else {
            assert_memory_equal(x->data, y->data, x->len);
        }
    }
    if (a->type == SINTER_RAFT_MSG_SNAPSHOT) {
        assert_int_equal(a->snapshot.index, b->snapshot.index);
        assert_int_equal(a->snapshot.term, b->snapshot.term);
        assert_int_equal(a->snapshot.config_index, b->snapshot.config_index);
        assert_int_equal(a->snapshot.config.n, b->snapshot.config.n);
        for (uint32_t i = 0; i < a->snapshot.config.n; i++) {
            assert_int_equal(a->snapshot.config.servers[i].id, b->snapshot.config.servers[i].id);
            assert_int_equal(a->snapshot.config.servers[i].suffrage,
                             b->snapshot.config.servers[i].suffrage);
        }
    }
}

/* Builds one sample frame of each type into bufs[0..4]. */
static void sample_frames(struct sinter_raft_wire_buf b[5])
{
    struct sinter_raft_msg m[16];
    uint32_t g[16];
    size_t n = all_msgs(m, g);
    for (int i = 0; i < 5; i++) {
        sinter_raft_wire_buf_init(&b[i]);
    }
    assert_int_equal(sinter_raft_wire_encode_batch(&b[0], 0x1111111111111111ull, g, m, n),
                     SINTER_OK);
    struct sinter_raft_wire_beat beats[3] = {
        {.group = 1, .term = 5, .commit = 9, .context = 77},
        {.group = 2, .term = 6, .commit = 10, .context = 0},
        {.group = 3, .reject = true, .term = 7, .commit = 11, .context = 1},
    };
    assert_int_equal(sinter_raft_wire_encode_beats(&b[1], 9, false, beats, 3), SINTER_OK);
    assert_int_equal(sinter_raft_wire_encode_beats(&b[2], 9, true, beats, 3), SINTER_OK);
    struct sinter_raft_wire_chunk c = {.group = 4,
                                       .total = 1000,
                                       .offset = 700,
                                       .len = 300,
                                       .last = true,
                                       .data = data_c,
                                       .msg = m[8]};
    assert_int_equal(c.msg.type, SINTER_RAFT_MSG_SNAPSHOT);
    assert_int_equal(sinter_raft_wire_encode_chunk(&b[3], 9, &c), SINTER_OK);
    struct sinter_raft_wire_snap_ack a = {
        .group = 4, .status = SINTER_OK, .index = 99, .term = 6, .next_offset = 1000};
    assert_int_equal(sinter_raft_wire_encode_snap_ack(&b[4], 9, &a), SINTER_OK);
}

static void free_frames(struct sinter_raft_wire_buf b[5])
{
    for (int i = 0; i < 5; i++) {
        sinter_raft_wire_buf_free(&b[i]);
    }
}

/* Re-encodes a decoded frame: decode followed by encode must give the same bytes. */
static void reencode(const struct sinter_raft_wire_frame *f, struct sinter_raft_wire_buf *out)
{
    switch (f->type) {
    case SINTER_RAFT_WIRE_BATCH:
        assert_int_equal(
            sinter_raft_wire_encode_batch(out, f->sender, f->groups, f->msgs, f->n_msgs),
            SINTER_OK);
        break;
    case SINTER_RAFT_WIRE_HEARTBEAT:
    case SINTER_RAFT_WIRE_HEARTBEAT_RESP:
        assert_int_equal(sinter_raft_wire_encode_beats(out, f->sender,
                                                       f->type == SINTER_RAFT_WIRE_HEARTBEAT_RESP,
                                                       f->beats, f->n_beats),
                         SINTER_OK);
        break;
    case SINTER_RAFT_WIRE_SNAP_CHUNK:
        assert_int_equal(sinter_raft_wire_encode_chunk(out, f->sender, &f->chunk), SINTER_OK);
        break;
    default:
        assert_int_equal(sinter_raft_wire_encode_snap_ack(out, f->sender, &f->ack), SINTER_OK);
        break;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Round trips
 */
static void batch_round_trip_every_type(void **state)
{
    (void)state;
    struct sinter_raft_msg m[16];
    uint32_t g[16];
    size_t n = all_msgs(m, g);
    struct sinter_raft_wire_buf b;
    sinter_raft_wire_buf_init(&b);
    assert_int_equal(sinter_raft_wire_encode_batch(&b, 0x1111111111111111ull, g, m, n), SINTER_OK);
    size_t expect = SINTER_RAFT_WIRE_HEADER_SIZE + 4;
    for (size_t i = 0; i < n; i++) {
        expect += sinter_raft_wire_msg_size(&m[i]);
    }
    assert_int_equal(b.len, expect);

    struct sinter_raft_wire_frame f;
    size_t before = g_mallocs;
    assert_int_equal(sinter_raft_wire_decode(b.data, b.len, &f), SINTER_OK);
    assert_int_equal(g_mallocs - before, 1); /* one block for all arrays */
    assert_int_equal(f.type, SINTER_RAFT_WIRE_BATCH);
    assert_int_equal(f.sender, 0x1111111111111111ull);
    assert_int_equal(f.n_msgs, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(f.groups[i], g[i]);
        assert_msg_equal(&m[i], &f.msgs[i]);
    }
    /* Zero-copy: entry data points into the buffer. */
    const uint8_t *d = f.msgs[0].entries[0].data;
    assert_true(d > b.data && d < b.data + b.len);

    struct sinter_raft_wire_buf r;
    sinter_raft_wire_buf_init(&r);
    reencode(&f, &r);
    assert_int_equal(r.len, b.len);
    assert_memory_equal(r.data, b.data, b.len);
    sinter_raft_wire_frame_release(&f);
    sinter_raft_wire_frame_release(&f); /* harmless twice */
    sinter_raft_wire_buf_free(&r);
    sinter_raft_wire_buf_free(&b);
}

static void empty_batch_round_trips(void **state)
{
    (void)state;
    struct sinter_raft_wire_buf b;
    sinter_raft_wire_buf_init(&b);
    assert_int_equal(sinter_raft_wire_encode_batch(&b, 3, NULL, NULL, 0), SINTER_OK);
    assert_int_equal(b.len, SINTER_RAFT_WIRE_HEADER_SIZE + 4);
    struct sinter_raft_wire_frame f;
    size_t before = g_mallocs;
    assert_int_equal(sinter_raft_wire_decode(b.data, b.len, &f), SINTER_OK);
    assert_int_equal(g_mallocs, before);
    assert_int_equal(f.n_msgs, 0);
    assert_null(f.msgs);
    sinter_raft_wire_frame_release(&f);
    sinter_raft_wire_buf_free(&b);
}

static void every_frame_type_round_trips(void **state)
{
    (void)state;
    struct sinter_raft_wire_buf b[5];
    sample_frames(b);
    for (int i = 0; i < 5; i++) {
        struct sinter_raft_wire_frame f;
        assert_int_equal(sinter_raft_wire_decode(b[i].data, b[i].len, &f), SINTER_OK);
        assert_int_equal(f.type, i + 1);
        struct sinter_raft_wire_buf r;
        sinter_raft_wire_buf_init(&r);
        reencode(&f, &r);
        assert_int_equal(r.len, b[i].len);
        assert_memory_equal(r.data, b[i].data, b[i].len);
        sinter_raft_wire_buf_free(&r);
        sinter_raft_wire_frame_release(&f);
    }
    free_frames(b);
}

static void heartbeats_expand_per_group(void **state)
{
    (void)state;
    struct sinter_raft_wire_beat beats[64];
    for (uint32_t i = 0; i < 64; i++) {
        beats[i] = (struct sinter_raft_wire_beat){.group = 1000 + i,
                                                  .term = 3 + i,
                                                  .commit = 100 + i,
                                                  .context = i * 7,
                                                  .reject = i == 5};
    }
    for (int resp = 0; resp < 2; resp++) {
        struct sinter_raft_wire_buf b;
        sinter_raft_wire_buf_init(&b);
        assert_int_equal(sinter_raft_wire_encode_beats(&b, 42, resp != 0, beats, 64), SINTER_OK);
        assert_int_equal(b.len, SINTER_RAFT_WIRE_HEADER_SIZE + 4 + 64 * SINTER_RAFT_WIRE_BEAT_SIZE);
        struct sinter_raft_wire_frame f;
        assert_int_equal(sinter_raft_wire_decode(b.data, b.len, &f), SINTER_OK);
        assert_int_equal(f.type,
                         resp ? SINTER_RAFT_WIRE_HEARTBEAT_RESP : SINTER_RAFT_WIRE_HEARTBEAT);
        assert_int_equal(f.n_beats, 64);
        assert_int_equal(f.n_msgs, 64);
        for (uint32_t i = 0; i < 64; i++) {
            assert_int_equal(f.beats[i].group, beats[i].group);
            assert_int_equal(f.beats[i].reject, beats[i].reject);
            assert_int_equal(f.groups[i], 1000 + i);
            const struct sinter_raft_msg *m = &f.msgs[i];
            assert_int_equal(m->type,
                             resp ? SINTER_RAFT_MSG_HEARTBEAT_RESP : SINTER_RAFT_MSG_HEARTBEAT);
            assert_int_equal(m->from, 42);
            assert_int_equal(m->to, 0);
            assert_int_equal(m->term, 3 + i);
            assert_int_equal(m->commit, 100 + i);
            assert_int_equal(m->context, i * 7);
            assert_int_equal(m->reject, i == 5);
            assert_int_equal(m->n_entries, 0);
        }
        sinter_raft_wire_frame_release(&f);
        sinter_raft_wire_buf_free(&b);
    }
}

static void chunk_and_ack_fields(void **state)
{
    (void)state;
    struct sinter_raft_wire_buf b[5];
    sample_frames(b);
    struct sinter_raft_wire_frame f;
    assert_int_equal(sinter_raft_wire_decode(b[3].data, b[3].len, &f), SINTER_OK);
    assert_int_equal(f.chunk.group, 4);
    assert_true(f.chunk.last);
    assert_int_equal(f.chunk.total, 1000);
    assert_int_equal(f.chunk.offset, 700);
    assert_int_equal(f.chunk.len, 300);
    assert_memory_equal(f.chunk.data, data_c, 300);
    assert_int_equal(f.chunk.msg.snapshot.config.n, SINTER_RAFT_MAX_SERVERS);
    assert_int_equal(f.chunk.msg.snapshot.config.servers[15].id, 10 + 45);
    sinter_raft_wire_frame_release(&f);
    assert_int_equal(sinter_raft_wire_decode(b[4].data, b[4].len, &f), SINTER_OK);
    assert_int_equal(f.ack.group, 4);
    assert_int_equal(f.ack.index, 99);
    assert_int_equal(f.ack.term, 6);
    assert_int_equal(f.ack.next_offset, 1000);
    sinter_raft_wire_frame_release(&f);
    free_frames(b);
}

/* ---------------------------------------------------------------------------------------------
 * Rejections
 */
static void every_truncation_is_rejected(void **state)
{
    (void)state;
    struct sinter_raft_wire_buf b[5];
    sample_frames(b);
    for (int i = 0; i < 5; i++) {
        uint8_t *copy = malloc(b[i].len);
        for (size_t len = 0; len < b[i].len; len++) {
            /* A fresh copy of exactly len bytes, so ASan sees any read past it. */
            memcpy(copy, b[i].data, len);
            uint8_t *exact = malloc(len != 0 ? len : 1);
            memcpy(exact, copy, len);
            struct sinter_raft_wire_frame f;
            assert_int_equal(sinter_raft_wire_decode(exact, len, &f), SINTER_ETRUNCATED);
            free(exact);
        }
        free(copy);
    }
    free_frames(b);
    struct sinter_raft_wire_frame f;
    assert_int_equal(sinter_raft_wire_decode(NULL, 0, &f), SINTER_ETRUNCATED);
}

static int decode_rc(const uint8_t *buf, size_t len)
{
    struct sinter_raft_wire_frame f;
    int rc = sinter_raft_wire_decode(buf, len, &f);
    sinter_raft_wire_frame_release(&f);
    return rc;
}

static void header_corruptions_give_distinct_errors(void **state)
{
    (void)state;
    struct sinter_raft_wire_buf b[5];
    sample_frames(b);
    uint8_t *p = b[0].data;
    size_t len = b[0].len;

    p[0] ^= 0xFF;
    assert_int_equal(decode_rc(p, len), SINTER_EBADMAGIC);
    p[0] ^= 0xFF;
    p[4] = 2;
    assert_int_equal(decode_rc(p, len), SINTER_EBADVERSION);
    p[4] = 1;
    p[5] = 0;
    assert_int_equal(decode_rc(p, len), SINTER_EUNKNOWNMSG);
    p[5] = SINTER_RAFT_WIRE_TYPE_MAX + 1;
    assert_int_equal(decode_rc(p, len), SINTER_EUNKNOWNMSG);
    p[5] = SINTER_RAFT_WIRE_BATCH;
    p[6] = 1;
    assert_int_equal(decode_rc(p, len), SINTER_EBADVALUE);
    p[6] = 0;
    uint8_t sender[8];
    memcpy(sender, p + 8, 8);
    memset(p + 8, 0, 8);
    assert_int_equal(decode_rc(p, len), SINTER_EBADVALUE);
    memcpy(p + 8, sender, 8);
    uint8_t blen[4];
    memcpy(blen, p + 16, 4);
    put32(p + 16, SINTER_RAFT_WIRE_MAX_BODY + 1);
    assert_int_equal(decode_rc(p, len), SINTER_ETOOBIG);
    memcpy(p + 16, blen, 4);
    assert_int_equal(decode_rc(p, len), SINTER_OK);

    /* CRC: any flipped bit in header or body. */
    for (size_t i = SINTER_RAFT_WIRE_HEADER_SIZE; i < len; i++) {
        p[i] ^= 0x10;
        assert_int_equal(decode_rc(p, len), SINTER_ECRC);
        p[i] ^= 0x10;
    }
    p[20] ^= 1; /* the crc field itself */
    assert_int_equal(decode_rc(p, len), SINTER_ECRC);
    p[20] ^= 1;

    /* One byte more than body_len announces. */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, p, len);
    longer[len] = 0;
    assert_int_equal(decode_rc(longer, len + 1), SINTER_EBADLEN);
    free(longer);

    struct sinter_raft_wire_header h;
    assert_int_equal(sinter_raft_wire_header_decode(p, 23, &h), SINTER_ETRUNCATED);
    assert_int_equal(sinter_raft_wire_header_decode(p, 24, &h), SINTER_OK);
    assert_int_equal(h.type, SINTER_RAFT_WIRE_BATCH);
    assert_int_equal(h.body_len, len - 24);
    free_frames(b);
}

/* A one-message batch whose message record starts at body offset 4 (frame offset 28). */
static void one_msg(struct sinter_raft_wire_buf *b, const struct sinter_raft_msg *m)
{
    sinter_raft_wire_buf_init(b);
    assert_int_equal(sinter_raft_wire_encode_batch(b, 1, &(uint32_t){5}, m, 1), SINTER_OK);
}

#define MSG_AT 28u

static void body_corruptions_give_distinct_errors(void **state)
{
    (void)state;
    struct sinter_raft_msg m[16];
    uint32_t g[16];
    (void)all_msgs(m, g);
    for (int i = 0; i < 16; i++) {
        m[i].from = 1;
    }
    struct sinter_raft_wire_buf b;

    /* Unknown raft message type. */
    one_msg(&b, &m[2]);
    b.data[MSG_AT + 4] = SINTER_RAFT_MSG_TYPE_MAX + 1;
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EUNKNOWNMSG);
    b.data[MSG_AT + 4] = 0;
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EUNKNOWNMSG);
    /* reject must be 0/1, reserved 0. */
    b.data[MSG_AT + 4] = SINTER_RAFT_MSG_VOTE;
    b.data[MSG_AT + 5] = 2;
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EBADVALUE);
    b.data[MSG_AT + 5] = 0;
    b.data[MSG_AT + 7] = 1;
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EBADVALUE);
    b.data[MSG_AT + 7] = 0;
    /* Entries on a VOTE. */
    put32(b.data + MSG_AT + 80, 1);
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EBADVALUE);
    put32(b.data + MSG_AT + 80, 0);
    /* Message count vs body. */
    put32(b.data + 24, 2);
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EBADLEN);
    put32(b.data + 24, 0);
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EBADLEN); /* bytes left over */
    put32(b.data + 24, SINTER_RAFT_WIRE_MAX_MSGS + 1);
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_ETOOBIG);
    sinter_raft_wire_buf_free(&b);

    /* APPEND: entry count and entry lengths. */
    one_msg(&b, &m[0]);
    put32(b.data + MSG_AT + 80, SINTER_RAFT_WIRE_MAX_ENTRIES + 1);
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_ETOOBIG);
    put32(b.data + MSG_AT + 80, 4);
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EBADLEN);
    put32(b.data + MSG_AT + 80, 3);
    size_t e0 = MSG_AT + SINTER_RAFT_WIRE_MSG_FIXED;
    put32(b.data + e0 + 20, 0xFFFFFFF0u); /* entry 0's len */
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EBADLEN);
    put32(b.data + e0 + 20, (uint32_t)sizeof(data_a));
    put32(b.data + e0 + 16, 4); /* entry type */
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EBADVALUE);
    put32(b.data + e0 + 16, SINTER_RAFT_ENTRY_NORMAL);
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_OK);
    sinter_raft_wire_buf_free(&b);

    /* SNAPSHOT: configuration checks. */
    one_msg(&b, &m[8]);
    size_t cfg = MSG_AT + SINTER_RAFT_WIRE_MSG_FIXED + 24;
    b.data[cfg] = 2;
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EBADVERSION);
    b.data[cfg] = 1;
    b.data[cfg + 1] = SINTER_RAFT_MAX_SERVERS + 1;
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_ETOOBIG);
    b.data[cfg + 1] = SINTER_RAFT_MAX_SERVERS;
    b.data[cfg + 2 + 9] = 1; /* server 1's id below server 0's: unsorted */
    memset(b.data + cfg + 2 + 9 + 1, 0, 7);
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EBADVALUE);
    b.data[cfg + 2 + 9] = 13;
    b.data[cfg + 2 + 8] = 2; /* suffrage */
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_EBADVALUE);
    b.data[cfg + 2 + 8] = 0;
    fix_crc(b.data, b.len);
    assert_int_equal(decode_rc(b.data, b.len), SINTER_OK);
    sinter_raft_wire_buf_free(&b);

    /* Heartbeats, chunk and ack. */
    struct sinter_raft_wire_buf s[5];
    sample_frames(s);
    put32(s[1].data + 24, 4);
    fix_crc(s[1].data, s[1].len);
    assert_int_equal(decode_rc(s[1].data, s[1].len), SINTER_EBADLEN);
    put32(s[1].data + 24, SINTER_RAFT_WIRE_MAX_BEATS + 1);
    fix_crc(s[1].data, s[1].len);
    assert_int_equal(decode_rc(s[1].data, s[1].len), SINTER_ETOOBIG);
    put32(s[1].data + 24, 3);
    put32(s[1].data + 28 + 4, 2); /* beat flags */
    fix_crc(s[1].data, s[1].len);
    assert_int_equal(decode_rc(s[1].data, s[1].len), SINTER_EBADVALUE);

    uint8_t *c = s[3].data + 24;
    put32(c, 0); /* last flag cleared although offset + len == total */
    fix_crc(s[3].data, s[3].len);
    assert_int_equal(decode_rc(s[3].data, s[3].len), SINTER_EBADVALUE);
    put32(c, 1);
    put32(c + 20, SINTER_RAFT_WIRE_MAX_CHUNK + 1);
    fix_crc(s[3].data, s[3].len);
    assert_int_equal(decode_rc(s[3].data, s[3].len), SINTER_ETOOBIG);
    put32(c + 20, 300);
    c[24 + 4] = SINTER_RAFT_MSG_VOTE; /* chunk carrying a non-SNAPSHOT message */
    fix_crc(s[3].data, s[3].len);
    assert_int_equal(decode_rc(s[3].data, s[3].len), SINTER_EBADVALUE);

    put32(s[4].data + 24 + 4, SINTER_ERROR_COUNT);
    fix_crc(s[4].data, s[4].len);
    assert_int_equal(decode_rc(s[4].data, s[4].len), SINTER_EBADVALUE);
    free_frames(s);
}

/* A tiny frame claiming the maximum counts is refused without allocating anything. */
static void oversized_counts_refused_before_allocation(void **state)
{
    (void)state;
    uint8_t frame[24 + 4 + 84];
    memset(frame, 0, sizeof(frame));
    put32(frame, SINTER_RAFT_WIRE_MAGIC);
    frame[4] = SINTER_RAFT_WIRE_VERSION;
    frame[8] = 1;
    put32(frame + 16, sizeof(frame) - 24);
    struct {
        uint8_t type;
        uint32_t count;
        uint32_t n_entries;
        int rc;
    } cases[] = {
        {SINTER_RAFT_WIRE_BATCH, SINTER_RAFT_WIRE_MAX_MSGS, 0, SINTER_EBADLEN},
        {SINTER_RAFT_WIRE_BATCH, UINT32_MAX, 0, SINTER_ETOOBIG},
        {SINTER_RAFT_WIRE_BATCH, 1, SINTER_RAFT_WIRE_MAX_ENTRIES, SINTER_EBADLEN},
        {SINTER_RAFT_WIRE_BATCH, 1, UINT32_MAX, SINTER_ETOOBIG},
        {SINTER_RAFT_WIRE_HEARTBEAT, SINTER_RAFT_WIRE_MAX_BEATS, 0, SINTER_EBADLEN},
        {SINTER_RAFT_WIRE_HEARTBEAT_RESP, UINT32_MAX, 0, SINTER_ETOOBIG},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        frame[5] = cases[i].type;
        put32(frame + 24, cases[i].count);
        frame[28 + 4] = SINTER_RAFT_MSG_APPEND;
        put32(frame + 28 + 80, cases[i].n_entries);
        fix_crc(frame, sizeof(frame));
        size_t before = g_mallocs;
        assert_int_equal(decode_rc(frame, sizeof(frame)), cases[i].rc);
        assert_int_equal(g_mallocs, before);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Encoder refusals
 */
static void encoder_refuses_invalid_input(void **state)
{
    (void)state;
    struct sinter_raft_wire_buf b;
    sinter_raft_wire_buf_init(&b);
    struct sinter_raft_msg m = {.type = SINTER_RAFT_MSG_VOTE, .from = 1, .to = 2};
    assert_int_equal(sinter_raft_wire_add_msg(&b, 1, &m), SINTER_EINVAL); /* not begun */
    assert_int_equal(sinter_raft_wire_begin(&b, SINTER_RAFT_WIRE_SNAP_ACK), SINTER_EINVAL);
    assert_int_equal(sinter_raft_wire_begin(&b, SINTER_RAFT_WIRE_BATCH), SINTER_OK);
    m.type = 0;
    assert_int_equal(sinter_raft_wire_add_msg(&b, 1, &m), SINTER_EINVAL);
    m.type = SINTER_RAFT_MSG_TYPE_MAX + 1;
    assert_int_equal(sinter_raft_wire_add_msg(&b, 1, &m), SINTER_EINVAL);
    struct sinter_raft_entry e = {.term = 1, .index = 1, .type = SINTER_RAFT_ENTRY_NORMAL};
    m.type = SINTER_RAFT_MSG_VOTE;
    m.n_entries = 1;
    m.entries = &e;
    assert_int_equal(sinter_raft_wire_add_msg(&b, 1, &m), SINTER_EINVAL); /* entries on VOTE */
    m.type = SINTER_RAFT_MSG_APPEND;
    e.type = 9;
    assert_int_equal(sinter_raft_wire_add_msg(&b, 1, &m), SINTER_EINVAL);
    e.type = SINTER_RAFT_ENTRY_NORMAL;
    e.len = 3;
    assert_int_equal(sinter_raft_wire_add_msg(&b, 1, &m), SINTER_EINVAL); /* data NULL */
    e.len = 0;
    m.n_entries = SINTER_RAFT_WIRE_MAX_ENTRIES + 1;
    assert_int_equal(sinter_raft_wire_add_msg(&b, 1, &m), SINTER_ETOOBIG);
    m.n_entries = 0;
    m.type = SINTER_RAFT_MSG_SNAPSHOT;
    m.snapshot.config.n = 2;
    m.snapshot.config.servers[0].id = 5;
    m.snapshot.config.servers[1].id = 5; /* duplicate */
    assert_int_equal(sinter_raft_wire_add_msg(&b, 1, &m), SINTER_EINVAL);
    m.snapshot.config.servers[1].id = 6;
    assert_int_equal(sinter_raft_wire_add_msg(&b, 1, &m), SINTER_OK);
    assert_int_equal(b.count, 1);
    assert_int_equal(sinter_raft_wire_seal(&b, 0), SINTER_EINVAL);
    assert_int_equal(sinter_raft_wire_seal(&b, 1), SINTER_OK);
    assert_int_equal(sinter_raft_wire_seal(&b, 1), SINTER_EINVAL);
    assert_int_equal(sinter_raft_wire_add_msg(&b, 1, &m), SINTER_EINVAL); /* sealed */

    /* Message count limit: the (MAX+1)th message is refused and the frame stays valid. */
    struct sinter_raft_msg v = {.type = SINTER_RAFT_MSG_VOTE, .from = 1, .to = 2};
    assert_int_equal(sinter_raft_wire_begin(&b, SINTER_RAFT_WIRE_BATCH), SINTER_OK);
    for (uint32_t i = 0; i < SINTER_RAFT_WIRE_MAX_MSGS; i++) {
        assert_int_equal(sinter_raft_wire_add_msg(&b, i, &v), SINTER_OK);
    }
    size_t len = b.len;
    assert_int_equal(sinter_raft_wire_add_msg(&b, 1, &v), SINTER_ETOOBIG);
    assert_int_equal(b.len, len);
    assert_int_equal(sinter_raft_wire_seal(&b, 1), SINTER_OK);
    struct sinter_raft_wire_frame f;
    assert_int_equal(sinter_raft_wire_decode(b.data, b.len, &f), SINTER_OK);
    assert_int_equal(f.n_msgs, SINTER_RAFT_WIRE_MAX_MSGS);
    sinter_raft_wire_frame_release(&f);

    /* Body limit: an entry larger than the body cannot be encoded. */
    uint8_t *big = calloc(1, SINTER_RAFT_WIRE_MAX_BODY);
    e = (struct sinter_raft_entry){.term = 1,
                                   .index = 1,
                                   .type = SINTER_RAFT_ENTRY_NORMAL,
                                   .len = SINTER_RAFT_WIRE_MAX_BODY,
                                   .data = big};
    struct sinter_raft_msg a = {.type = SINTER_RAFT_MSG_APPEND, .n_entries = 1, .entries = &e};
    assert_int_equal(sinter_raft_wire_begin(&b, SINTER_RAFT_WIRE_BATCH), SINTER_OK);
    assert_int_equal(sinter_raft_wire_add_msg(&b, 1, &a), SINTER_ETOOBIG);
    free(big);

    /* Heartbeats and chunks. */
    struct sinter_raft_wire_beat beat = {.group = 1};
    assert_int_equal(sinter_raft_wire_add_beat(&b, &beat), SINTER_EINVAL); /* BATCH open */
    struct sinter_raft_wire_chunk c = {.total = 10, .offset = 5, .len = 6, .data = data_c};
    c.msg.type = SINTER_RAFT_MSG_SNAPSHOT;
    assert_int_equal(sinter_raft_wire_encode_chunk(&b, 1, &c), SINTER_EINVAL); /* past total */
    c.len = 5;
    assert_int_equal(sinter_raft_wire_encode_chunk(&b, 1, &c), SINTER_EINVAL); /* last unset */
    c.last = true;
    assert_int_equal(sinter_raft_wire_encode_chunk(&b, 1, &c), SINTER_OK);
    struct sinter_raft_wire_snap_ack ack = {.status = SINTER_ERROR_COUNT};
    assert_int_equal(sinter_raft_wire_encode_snap_ack(&b, 1, &ack), SINTER_EINVAL);
    assert_string_equal(sinter_raft_wire_type_name(SINTER_RAFT_WIRE_SNAP_ACK), "SNAP_ACK");
    assert_string_equal(sinter_raft_wire_type_name(0), "?");
    sinter_raft_wire_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batch_round_trip_every_type),
        cmocka_unit_test(empty_batch_round_trips),
        cmocka_unit_test(every_frame_type_round_trips),
        cmocka_unit_test(heartbeats_expand_per_group),
        cmocka_unit_test(chunk_and_ack_fields),
        cmocka_unit_test(every_truncation_is_rejected),
        cmocka_unit_test(header_corruptions_give_distinct_errors),
        cmocka_unit_test(body_corruptions_give_distinct_errors),
        cmocka_unit_test(oversized_counts_refused_before_allocation),
        cmocka_unit_test(encoder_refuses_invalid_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
