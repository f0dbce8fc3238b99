/*
 * Node-to-node Raft frame codec: see include/sinter/raft_wire.h for the byte layout.
 *
 * The decoder is two-pass over one CRC-checked buffer: pass 1 validates every field and counts
 * messages and entries without allocating; pass 2 fills one allocation sized from those counts.
 * So a hostile count can never make us allocate more than the bytes it actually sent justify
 * (every record has a non-zero fixed size, and each count is checked against the bytes left
 * before it is believed), and a frame is either wholly accepted or wholly refused.
 */
#include <stdlib.h>
#include <string.h>

#include "sinter/crc32c.h"
#include "sinter/raft_wire.h"

#define HDR SINTER_RAFT_WIRE_HEADER_SIZE

/* ---------------------------------------------------------------------------------------------
 * Little-endian helpers. Byte-wise so they are alignment- and host-endianness-independent.
 */
static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)(p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* A read cursor over a CRC-valid body. Running past its end means a length inside the body lies
 * about the body's size: SINTER_EBADLEN (truncation of the frame itself is caught earlier, by
 * body_len, as SINTER_ETRUNCATED). */
struct cur {
    const uint8_t *p;
    size_t left;
};

static const uint8_t *take(struct cur *c, size_t n)
{
    if (c->left < n) {
        return NULL;
    }
    const uint8_t *p = c->p;
    c->p += n;
    c->left -= n;
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * Decoding
 */
int sinter_raft_wire_header_decode(const uint8_t *buf, size_t len,
                                   struct sinter_raft_wire_header *h)
{
    if (buf == NULL || len < HDR) {
        return SINTER_ETRUNCATED;
    }
    if (get_u32(buf) != SINTER_RAFT_WIRE_MAGIC) {
        return SINTER_EBADMAGIC;
    }
    if (buf[4] != SINTER_RAFT_WIRE_VERSION) {
        return SINTER_EBADVERSION;
    }
    if (buf[5] == 0 || buf[5] > SINTER_RAFT_WIRE_TYPE_MAX) {
        return SINTER_EUNKNOWNMSG;
    }
    if (get_u16(buf + 6) != 0) {
        return SINTER_EBADVALUE;
    }
    uint64_t sender = get_u64(buf + 8);
    if (sender == 0) {
        return SINTER_EBADVALUE;
    }
    uint32_t body_len = get_u32(buf + 16);
    if (body_len > SINTER_RAFT_WIRE_MAX_BODY) {
        return SINTER_ETOOBIG;
    }
    h->type = buf[5];
    h->sender = sender;
    h->body_len = body_len;
    h->crc = get_u32(buf + 20);
    return SINTER_OK;
}

/* Validates (and when m != NULL fills) one configuration: version 1, the invariants of struct
 * sinter_raft_config. */
static int parse_config(struct cur *c, struct sinter_raft_config *cfg)
{
    const uint8_t *p = take(c, 2);
    if (p == NULL) {
        return SINTER_EBADLEN;
    }
    if (p[0] != 1) {
        return SINTER_EBADVERSION;
    }
    uint32_t n = p[1];
    if (n > SINTER_RAFT_MAX_SERVERS) {
        return SINTER_ETOOBIG;
    }
    if (c->left < (size_t)n * 9) {
        return SINTER_EBADLEN;
    }
    uint64_t prev = 0;
    for (uint32_t i = 0; i < n; i++) {
        p = take(c, 9);
        uint64_t id = get_u64(p);
        if (id <= prev || p[8] > SINTER_RAFT_LEARNER) {
            return SINTER_EBADVALUE; /* 0, unsorted or duplicate id; unknown suffrage */
        }
        prev = id;
        if (cfg != NULL) {
            cfg->servers[i].id = id;
            cfg->servers[i].suffrage = p[8];
        }
    }
    if (cfg != NULL) {
        cfg->n = n;
    }
    return SINTER_OK;
}

/* Parses one message record. Pass 1 (m == NULL) validates and adds its entry count to *n_ents;
 * pass 2 fills *group, *m and ents[0, n_entries). */
static int parse_msg(struct cur *c, uint32_t *group, struct sinter_raft_msg *m,
                     struct sinter_raft_entry *ents, size_t *n_ents)
{
    const uint8_t *p = take(c, SINTER_RAFT_WIRE_MSG_FIXED);
    if (p == NULL) {
        return SINTER_EBADLEN;
    }
    uint8_t type = p[4];
    if (type == 0 || type > SINTER_RAFT_MSG_TYPE_MAX) {
        return SINTER_EUNKNOWNMSG;
    }
    if (p[5] > 1 || get_u16(p + 6) != 0) {
        return SINTER_EBADVALUE;
    }
    uint32_t n_entries = get_u32(p + 80);
    if (n_entries != 0 && type != SINTER_RAFT_MSG_APPEND) {
        return SINTER_EBADVALUE;
    }
    if (n_entries > SINTER_RAFT_WIRE_MAX_ENTRIES) {
        return SINTER_ETOOBIG;
    }
    if (c->left / SINTER_RAFT_WIRE_ENTRY_FIXED < n_entries) {
        return SINTER_EBADLEN;
    }
    if (m != NULL) {
        memset(m, 0, sizeof(*m));
        *group = get_u32(p);
        m->type = type;
        m->reject = p[5] != 0;
        m->from = get_u64(p + 8);
        m->to = get_u64(p + 16);
        m->term = get_u64(p + 24);
        m->log_term = get_u64(p + 32);
        m->index = get_u64(p + 40);
        m->commit = get_u64(p + 48);
        m->reject_hint = get_u64(p + 56);
        m->hint_term = get_u64(p + 64);
        m->context = get_u64(p + 72);
        m->n_entries = n_entries;
        m->entries = n_entries != 0 ? ents : NULL;
    }
    for (uint32_t i = 0; i < n_entries; i++) {
        const uint8_t *e = take(c, SINTER_RAFT_WIRE_ENTRY_FIXED);
        if (e == NULL) {
            return SINTER_EBADLEN;
        }
        uint32_t etype = get_u32(e + 16);
        uint32_t elen = get_u32(e + 20);
        if (etype < SINTER_RAFT_ENTRY_NORMAL || etype > SINTER_RAFT_ENTRY_NOOP) {
            return SINTER_EBADVALUE;
        }
        const uint8_t *data = take(c, elen);
        if (data == NULL) {
            return SINTER_EBADLEN;
        }
        if (m != NULL) {
            ents[i].term = get_u64(e);
            ents[i].index = get_u64(e + 8);
            ents[i].type = etype;
            ents[i].len = elen;
            /* Zero-copy: the entry points into the caller's buffer (const dropped because
             * struct sinter_raft_entry is shared with the core, which never writes through it
             * when stepping: sinter_raft_step copies what it keeps). */
            ents[i].data = elen != 0 ? (uint8_t *)(uintptr_t)data : NULL;
        }
    }
    if (type == SINTER_RAFT_MSG_SNAPSHOT) {
        const uint8_t *s = take(c, 24);
        if (s == NULL) {
            return SINTER_EBADLEN;
        }
        int rc = parse_config(c, m != NULL ? &m->snapshot.config : NULL);
        if (rc != SINTER_OK) {
            return rc;
        }
        if (m != NULL) {
            m->snapshot.index = get_u64(s);
            m->snapshot.term = get_u64(s + 8);
            m->snapshot.config_index = get_u64(s + 16);
        }
    }
    if (m == NULL) {
        *n_ents += n_entries;
    }
    return SINTER_OK;
}

static int decode_batch(struct cur body, struct sinter_raft_wire_frame *f)
{
    struct cur c = body;
    const uint8_t *p = take(&c, 4);
    if (p == NULL) {
        return SINTER_EBADLEN;
    }
    uint32_t n = get_u32(p);
    if (n > SINTER_RAFT_WIRE_MAX_MSGS) {
        return SINTER_ETOOBIG;
    }
    if (c.left / SINTER_RAFT_WIRE_MSG_FIXED < n) {
        return SINTER_EBADLEN;
    }
    /* Pass 1: validate everything, count entries. */
    size_t n_ents = 0;
    struct cur v = c;
    for (uint32_t i = 0; i < n; i++) {
        int rc = parse_msg(&v, NULL, NULL, NULL, &n_ents);
        if (rc != SINTER_OK) {
            return rc;
        }
    }
    if (v.left != 0) {
        return SINTER_EBADLEN;
    }
    if (n == 0) {
        return SINTER_OK;
    }
    /* Pass 2: one block, msgs first (strictest alignment), then entries, then groups. n_ents is
     * bounded by body_len / 24, so this is a small multiple of the frame's size. */
    size_t sz_msgs = (size_t)n * sizeof(struct sinter_raft_msg);
    size_t sz_ents = n_ents * sizeof(struct sinter_raft_entry);
    uint8_t *mem = malloc(sz_msgs + sz_ents + (size_t)n * sizeof(uint32_t));
    if (mem == NULL) {
        return SINTER_ENOMEM;
    }
    f->mem = mem;
    f->msgs = (struct sinter_raft_msg *)(void *)mem;
    struct sinter_raft_entry *ents = (struct sinter_raft_entry *)(void *)(mem + sz_msgs);
    f->groups = (uint32_t *)(void *)(mem + sz_msgs + sz_ents);
    f->n_msgs = n;
    for (uint32_t i = 0; i < n; i++) {
        int rc = parse_msg(&c, &f->groups[i], &f->msgs[i], ents, NULL);
        if (rc != SINTER_OK) {
            return SINTER_EINTERNAL; /* pass 1 accepted the same bytes */
        }
        ents += f->msgs[i].n_entries;
    }
    return SINTER_OK;
}

static int decode_beats(struct cur c, struct sinter_raft_wire_frame *f)
{
    const uint8_t *p = take(&c, 4);
    if (p == NULL) {
        return SINTER_EBADLEN;
    }
    uint32_t n = get_u32(p);
    if (n > SINTER_RAFT_WIRE_MAX_BEATS) {
        return SINTER_ETOOBIG;
    }
    if (c.left / SINTER_RAFT_WIRE_BEAT_SIZE != n || c.left % SINTER_RAFT_WIRE_BEAT_SIZE != 0) {
        return SINTER_EBADLEN;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (get_u32(c.p + (size_t)i * SINTER_RAFT_WIRE_BEAT_SIZE + 4) > 1) {
            return SINTER_EBADVALUE;
        }
    }
    if (n == 0) {
        return SINTER_OK;
    }
    size_t sz_msgs = (size_t)n * sizeof(struct sinter_raft_msg);
    size_t sz_beats = (size_t)n * sizeof(struct sinter_raft_wire_beat);
    uint8_t *mem = malloc(sz_msgs + sz_beats + (size_t)n * sizeof(uint32_t));
    if (mem == NULL) {
        return SINTER_ENOMEM;
    }
    f->mem = mem;
    f->msgs = (struct sinter_raft_msg *)(void *)mem;
    f->beats = (struct sinter_raft_wire_beat *)(void *)(mem + sz_msgs);
    f->groups = (uint32_t *)(void *)(mem + sz_msgs + sz_beats);
    f->n_msgs = n;
    f->n_beats = n;
    uint32_t mtype = f->type == SINTER_RAFT_WIRE_HEARTBEAT ? SINTER_RAFT_MSG_HEARTBEAT
                                                           : SINTER_RAFT_MSG_HEARTBEAT_RESP;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *b = take(&c, SINTER_RAFT_WIRE_BEAT_SIZE);
        struct sinter_raft_wire_beat *bt = &f->beats[i];
        bt->group = get_u32(b);
        bt->reject = get_u32(b + 4) != 0;
        bt->term = get_u64(b + 8);
        bt->commit = get_u64(b + 16);
        bt->context = get_u64(b + 24);
        /* Expansion: the beat becomes the per-group message the core expects, as if the
         * leader's core had sent it alone (etcd raft's MsgHeartbeat carries the same fields). */
        struct sinter_raft_msg *m = &f->msgs[i];
        memset(m, 0, sizeof(*m));
        m->type = mtype;
        m->from = f->sender;
        m->to = 0;
        m->term = bt->term;
        m->commit = bt->commit;
        m->context = bt->context;
        m->reject = bt->reject;
        f->groups[i] = bt->group;
    }
    return SINTER_OK;
}

static int decode_chunk(struct cur c, struct sinter_raft_wire_frame *f)
{
    const uint8_t *p = take(&c, 24);
    if (p == NULL) {
        return SINTER_EBADLEN;
    }
    uint32_t flags = get_u32(p);
    uint64_t total = get_u64(p + 4);
    uint64_t offset = get_u64(p + 12);
    uint32_t len = get_u32(p + 20);
    if (flags > 1) {
        return SINTER_EBADVALUE;
    }
    if (len > SINTER_RAFT_WIRE_MAX_CHUNK) {
        return SINTER_ETOOBIG;
    }
    if (offset > total || total - offset < len) {
        return SINTER_EBADVALUE;
    }
    bool last = (flags & 1u) != 0;
    if (last != (total - offset == len)) {
        return SINTER_EBADVALUE;
    }
    struct sinter_raft_wire_chunk *ch = &f->chunk;
    struct cur v = c;
    int rc = parse_msg(&v, NULL, NULL, NULL, &(size_t){0});
    if (rc != SINTER_OK) {
        return rc;
    }
    if (c.p[4] != SINTER_RAFT_MSG_SNAPSHOT) {
        return SINTER_EBADVALUE; /* only a SNAPSHOT message travels with chunks */
    }
    rc = parse_msg(&c, &ch->group, &ch->msg, NULL, NULL);
    if (rc != SINTER_OK) {
        return rc;
    }
    if (c.left != len) {
        return SINTER_EBADLEN;
    }
    ch->last = last;
    ch->total = total;
    ch->offset = offset;
    ch->len = len;
    ch->data = len != 0 ? c.p : NULL;
    return SINTER_OK;
}

static int decode_ack(struct cur c, struct sinter_raft_wire_frame *f)
{
    if (c.left != SINTER_RAFT_WIRE_ACK_SIZE) {
        return SINTER_EBADLEN;
    }
    const uint8_t *p = c.p;
    uint32_t status = get_u32(p + 4);
    if (status >= SINTER_ERROR_COUNT) {
        return SINTER_EBADVALUE;
    }
    f->ack.group = get_u32(p);
    f->ack.status = status;
    f->ack.index = get_u64(p + 8);
    f->ack.term = get_u64(p + 16);
    f->ack.next_offset = get_u64(p + 24);
    return SINTER_OK;
}

int sinter_raft_wire_decode(const uint8_t *buf, size_t len, struct sinter_raft_wire_frame *f)
{
    memset(f, 0, sizeof(*f));
    struct sinter_raft_wire_header h;
    int rc = sinter_raft_wire_header_decode(buf, len, &h);
    if (rc != SINTER_OK) {
        return rc;
    }
    if (len - HDR < h.body_len) {
        return SINTER_ETRUNCATED;
    }
    if (len - HDR > h.body_len) {
        return SINTER_EBADLEN;
    }
    uint32_t crc = sinter_crc32c(0, buf, 20);
    crc = sinter_crc32c(crc, buf + HDR, h.body_len);
    if (crc != h.crc) {
        return SINTER_ECRC;
    }
    f->type = h.type;
    f->sender = h.sender;
    struct cur body = {buf + HDR, h.body_len};
    switch (h.type) {
    case SINTER_RAFT_WIRE_BATCH:
        rc = decode_batch(body, f);
        break;
    case SINTER_RAFT_WIRE_HEARTBEAT:
    case SINTER_RAFT_WIRE_HEARTBEAT_RESP:
        rc = decode_beats(body, f);
        break;
    case SINTER_RAFT_WIRE_SNAP_CHUNK:
        rc = decode_chunk(body, f);
        break;
    default:
        rc = decode_ack(body, f);
        break;
    }
    if (rc != SINTER_OK) {
        sinter_raft_wire_frame_release(f);
    }
    return rc;
}

void sinter_raft_wire_frame_release(struct sinter_raft_wire_frame *f)
{
    if (f == NULL) {
        return;
    }
    free(f->mem);
    memset(f, 0, sizeof(*f));
}

/* ---------------------------------------------------------------------------------------------
 * Encoding
 */
void sinter_raft_wire_buf_init(struct sinter_raft_wire_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void sinter_raft_wire_buf_free(struct sinter_raft_wire_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* Makes room for `extra` more bytes, doubling so a frame built message by message costs
 * O(log n) reallocations, and none once the caller's reused buffer has grown. */
static int reserve(struct sinter_raft_wire_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) {
        return SINTER_OK;
    }
    size_t need = b->len + extra;
    size_t cap = b->cap != 0 ? b->cap : 256;
    while (cap < need) {
        cap *= 2;
    }
    uint8_t *d = realloc(b->data, cap);
    if (d == NULL) {
        return SINTER_ENOMEM;
    }
    b->data = d;
    b->cap = cap;
    return SINTER_OK;
}

static int start(struct sinter_raft_wire_buf *b, uint8_t type, size_t prefix)
{
    b->len = 0;
    b->count = 0;
    b->type = 0;
    b->sealed = false;
    int rc = reserve(b, HDR + prefix);
    if (rc != SINTER_OK) {
        return rc;
    }
    memset(b->data, 0, HDR + prefix);
    b->len = HDR + prefix;
    b->type = type;
    return SINTER_OK;
}

int sinter_raft_wire_begin(struct sinter_raft_wire_buf *b, uint8_t type)
{
    if (type != SINTER_RAFT_WIRE_BATCH && type != SINTER_RAFT_WIRE_HEARTBEAT &&
        type != SINTER_RAFT_WIRE_HEARTBEAT_RESP) {
        return SINTER_EINVAL;
    }
    return start(b, type, 4);
}

static bool config_valid(const struct sinter_raft_config *cfg)
{
    if (cfg->n > SINTER_RAFT_MAX_SERVERS) {
        return false;
    }
    uint64_t prev = 0;
    for (uint32_t i = 0; i < cfg->n; i++) {
        if (cfg->servers[i].id <= prev || cfg->servers[i].suffrage > SINTER_RAFT_LEARNER) {
            return false;
        }
        prev = cfg->servers[i].id;
    }
    return true;
}

size_t sinter_raft_wire_msg_size(const struct sinter_raft_msg *m)
{
    size_t n = SINTER_RAFT_WIRE_MSG_FIXED;
    if (m->type == SINTER_RAFT_MSG_APPEND && m->entries != NULL) {
        for (uint32_t i = 0; i < m->n_entries; i++) {
            n += SINTER_RAFT_WIRE_ENTRY_FIXED + m->entries[i].len;
        }
    } else if (m->type == SINTER_RAFT_MSG_SNAPSHOT) {
        uint32_t servers = m->snapshot.config.n;
        if (servers > SINTER_RAFT_MAX_SERVERS) {
            servers = SINTER_RAFT_MAX_SERVERS;
        }
        n += 24 + 2 + (size_t)servers * 9;
    }
    return n;
}

static int validate_msg(const struct sinter_raft_msg *m)
{
    if (m->type == 0 || m->type > SINTER_RAFT_MSG_TYPE_MAX) {
        return SINTER_EINVAL;
    }
    if (m->n_entries != 0 && (m->type != SINTER_RAFT_MSG_APPEND || m->entries == NULL)) {
        return SINTER_EINVAL;
    }
    if (m->n_entries > SINTER_RAFT_WIRE_MAX_ENTRIES) {
        return SINTER_ETOOBIG;
    }
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct sinter_raft_entry *e = &m->entries[i];
        if (e->type < SINTER_RAFT_ENTRY_NORMAL || e->type > SINTER_RAFT_ENTRY_NOOP ||
            (e->len != 0 && e->data == NULL)) {
            return SINTER_EINVAL;
        }
    }
    if (m->type == SINTER_RAFT_MSG_SNAPSHOT && !config_valid(&m->snapshot.config)) {
        return SINTER_EINVAL;
    }
    return SINTER_OK;
}

/* Writes one message record at p (sinter_raft_wire_msg_size(m) bytes, already validated). */
static uint8_t *put_msg(uint8_t *p, uint32_t group, const struct sinter_raft_msg *m)
{
    put_u32(p, group);
    p[4] = (uint8_t)m->type;
    p[5] = m->reject ? 1 : 0;
    put_u16(p + 6, 0);
    put_u64(p + 8, m->from);
    put_u64(p + 16, m->to);
    put_u64(p + 24, m->term);
    put_u64(p + 32, m->log_term);
    put_u64(p + 40, m->index);
    put_u64(p + 48, m->commit);
    put_u64(p + 56, m->reject_hint);
    put_u64(p + 64, m->hint_term);
    put_u64(p + 72, m->context);
    put_u32(p + 80, m->n_entries);
    p += SINTER_RAFT_WIRE_MSG_FIXED;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct sinter_raft_entry *e = &m->entries[i];
        put_u64(p, e->term);
        put_u64(p + 8, e->index);
        put_u32(p + 16, e->type);
        put_u32(p + 20, e->len);
        p += SINTER_RAFT_WIRE_ENTRY_FIXED;
        if (e->len != 0) {
            memcpy(p, e->data, e->len);
            p += e->len;
        }
    }
    if (m->type == SINTER_RAFT_MSG_SNAPSHOT) {
        const struct sinter_raft_snapshot_meta *s = &m->snapshot;
        put_u64(p, s->index);
        put_u64(p + 8, s->term);
        put_u64(p + 16, s->config_index);
        p[24] = 1;
        p[25] = (uint8_t)s->config.n;
        p += 26;
        for (uint32_t i = 0; i < s->config.n; i++) {
            put_u64(p, s->config.servers[i].id);
            p[8] = s->config.servers[i].suffrage;
            p += 9;
        }
    }
    return p;
}

int sinter_raft_wire_add_msg(struct sinter_raft_wire_buf *b, uint32_t group,
                             const struct sinter_raft_msg *m)
{
    if (b->type != SINTER_RAFT_WIRE_BATCH || b->sealed || m == NULL) {
        return SINTER_EINVAL;
    }
    int rc = validate_msg(m);
    if (rc != SINTER_OK) {
        return rc;
    }
    size_t sz = sinter_raft_wire_msg_size(m);
    if (b->count >= SINTER_RAFT_WIRE_MAX_MSGS || sz > SINTER_RAFT_WIRE_MAX_BODY ||
        b->len - HDR > SINTER_RAFT_WIRE_MAX_BODY - sz) {
        return SINTER_ETOOBIG;
    }
    rc = reserve(b, sz);
    if (rc != SINTER_OK) {
        return rc;
    }
    put_msg(b->data + b->len, group, m);
    b->len += sz;
    b->count++;
    return SINTER_OK;
}

int sinter_raft_wire_add_beat(struct sinter_raft_wire_buf *b,
                              const struct sinter_raft_wire_beat *beat)
{
    if ((b->type != SINTER_RAFT_WIRE_HEARTBEAT && b->type != SINTER_RAFT_WIRE_HEARTBEAT_RESP) ||
        b->sealed || beat == NULL) {
        return SINTER_EINVAL;
    }
    if (b->count >= SINTER_RAFT_WIRE_MAX_BEATS) {
        return SINTER_ETOOBIG;
    }
    int rc = reserve(b, SINTER_RAFT_WIRE_BEAT_SIZE);
    if (rc != SINTER_OK) {
        return rc;
    }
    uint8_t *p = b->data + b->len;
    put_u32(p, beat->group);
    put_u32(p + 4, beat->reject ? 1u : 0u);
    put_u64(p + 8, beat->term);
    put_u64(p + 16, beat->commit);
    put_u64(p + 24, beat->context);
    b->len += SINTER_RAFT_WIRE_BEAT_SIZE;
    b->count++;
    return SINTER_OK;
}

/* Header and CRC over a body already in place. */
static void finish(struct sinter_raft_wire_buf *b, uint64_t sender)
{
    uint8_t *h = b->data;
    uint32_t body_len = (uint32_t)(b->len - HDR);
    put_u32(h, SINTER_RAFT_WIRE_MAGIC);
    h[4] = SINTER_RAFT_WIRE_VERSION;
    h[5] = b->type;
    put_u16(h + 6, 0);
    put_u64(h + 8, sender);
    put_u32(h + 16, body_len);
    uint32_t crc = sinter_crc32c(0, h, 20);
    crc = sinter_crc32c(crc, h + HDR, body_len);
    put_u32(h + 20, crc);
    b->sealed = true;
}

int sinter_raft_wire_seal(struct sinter_raft_wire_buf *b, uint64_t sender)
{
    if (b->type == 0 || b->sealed || sender == 0 || b->type > SINTER_RAFT_WIRE_HEARTBEAT_RESP) {
        return SINTER_EINVAL;
    }
    put_u32(b->data + HDR, b->count);
    finish(b, sender);
    return SINTER_OK;
}

int sinter_raft_wire_encode_chunk(struct sinter_raft_wire_buf *b, uint64_t sender,
                                  const struct sinter_raft_wire_chunk *c)
{
    if (sender == 0 || c == NULL || c->msg.type != SINTER_RAFT_MSG_SNAPSHOT ||
        c->msg.n_entries != 0 || (c->len != 0 && c->data == NULL) || c->offset > c->total ||
        c->total - c->offset < c->len || c->last != (c->total - c->offset == c->len)) {
        return SINTER_EINVAL;
    }
    if (c->len > SINTER_RAFT_WIRE_MAX_CHUNK) {
        return SINTER_ETOOBIG;
    }
    int rc = validate_msg(&c->msg);
    if (rc != SINTER_OK) {
        return rc;
    }
    size_t msz = sinter_raft_wire_msg_size(&c->msg);
    rc = start(b, SINTER_RAFT_WIRE_SNAP_CHUNK, 24 + msz + c->len);
    if (rc != SINTER_OK) {
        return rc;
    }
    uint8_t *p = b->data + HDR;
    put_u32(p, c->last ? 1u : 0u);
    put_u64(p + 4, c->total);
    put_u64(p + 12, c->offset);
    put_u32(p + 20, c->len);
    p = put_msg(p + 24, c->group, &c->msg);
    if (c->len != 0) {
        memcpy(p, c->data, c->len);
    }
    finish(b, sender);
    return SINTER_OK;
}

int sinter_raft_wire_encode_snap_ack(struct sinter_raft_wire_buf *b, uint64_t sender,
                                     const struct sinter_raft_wire_snap_ack *a)
{
    if (sender == 0 || a == NULL || a->status >= SINTER_ERROR_COUNT) {
        return SINTER_EINVAL;
    }
    int rc = start(b, SINTER_RAFT_WIRE_SNAP_ACK, SINTER_RAFT_WIRE_ACK_SIZE);
    if (rc != SINTER_OK) {
        return rc;
    }
    uint8_t *p = b->data + HDR;
    put_u32(p, a->group);
    put_u32(p + 4, a->status);
    put_u64(p + 8, a->index);
    put_u64(p + 16, a->term);
    put_u64(p + 24, a->next_offset);
    finish(b, sender);
    return SINTER_OK;
}

int sinter_raft_wire_encode_batch(struct sinter_raft_wire_buf *b, uint64_t sender,
                                  const uint32_t *groups, const struct sinter_raft_msg *msgs,
                                  size_t n)
{
    int rc = sinter_raft_wire_begin(b, SINTER_RAFT_WIRE_BATCH);
    for (size_t i = 0; rc == SINTER_OK && i < n; i++) {
        rc = sinter_raft_wire_add_msg(b, groups[i], &msgs[i]);
    }
    return rc != SINTER_OK ? rc : sinter_raft_wire_seal(b, sender);
}

int sinter_raft_wire_encode_beats(struct sinter_raft_wire_buf *b, uint64_t sender, bool resp,
                                  const struct sinter_raft_wire_beat *beats, size_t n)
{
    int rc = sinter_raft_wire_begin(b, resp ? SINTER_RAFT_WIRE_HEARTBEAT_RESP
                                            : SINTER_RAFT_WIRE_HEARTBEAT);
    for (size_t i = 0; rc == SINTER_OK && i < n; i++) {
        rc = sinter_raft_wire_add_beat(b, &beats[i]);
    }
    return rc != SINTER_OK ? rc : sinter_raft_wire_seal(b, sender);
}

const char *sinter_raft_wire_type_name(uint32_t type)
{
    switch (type) {
    case SINTER_RAFT_WIRE_BATCH:
        return "BATCH";
    case SINTER_RAFT_WIRE_HEARTBEAT:
        return "HEARTBEAT";
    case SINTER_RAFT_WIRE_HEARTBEAT_RESP:
        return "HEARTBEAT_RESP";
    case SINTER_RAFT_WIRE_SNAP_CHUNK:
        return "SNAP_CHUNK";
    case SINTER_RAFT_WIRE_SNAP_ACK:
        return "SNAP_ACK";
    default:
        return "?";
    }
}
