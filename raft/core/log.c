/*
 * The in-memory log: every entry since the last compaction, as canonical/raft keeps it. The host
 * bounds its size by taking snapshots (sinter_raft_compact).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

uint8_t *raft__buf_alloc(uint32_t len)
{
    if (len == 0) {
        return NULL;
    }
    struct raft__buf *b = malloc(sizeof *b + len);
    if (b == NULL) {
        return NULL;
    }
    b->next = NULL;
    return (uint8_t *)(b + 1);
}

static struct raft__buf *buf_hdr(uint8_t *data)
{
    return (struct raft__buf *)(void *)data - 1;
}

void raft__buf_free(uint8_t *data)
{
    if (data != NULL) {
        free(buf_hdr(data));
    }
}

void raft__buf_trash(struct sinter_raft *r, uint8_t *data)
{
    if (data == NULL) {
        return;
    }
    /* A ready or a queued message may still point at it: defer (see internal.h). */
    struct raft__buf *b = buf_hdr(data);
    b->next = r->trash_new;
    r->trash_new = b;
}

void raft__buf_free_list(struct raft__buf *b)
{
    while (b != NULL) {
        struct raft__buf *next = b->next;
        free(b);
        b = next;
    }
}

uint64_t raft__log_last_index(const struct raft__log *l)
{
    return l->base + l->n;
}

uint64_t raft__log_last_term(const struct raft__log *l)
{
    return l->n > 0 ? l->e[l->n - 1].term : l->base_term;
}

bool raft__log_term(const struct raft__log *l, uint64_t index, uint64_t *term)
{
    if (index == l->base) {
        *term = l->base_term;
        return true;
    }
    if (index < l->base || index > raft__log_last_index(l)) {
        return false;
    }
    *term = l->e[index - l->base - 1].term;
    return true;
}

struct sinter_raft_entry *raft__log_get(const struct raft__log *l, uint64_t index)
{
    if (index <= l->base || index > raft__log_last_index(l)) {
        return NULL;
    }
    return &l->e[index - l->base - 1];
}

int raft__log_reserve(struct raft__log *l, size_t n)
{
    if (l->n + n <= l->cap) {
        return SINTER_OK;
    }
    size_t cap = l->cap ? l->cap : 64;
    while (cap < l->n + n) {
        cap *= 2;
    }
    struct sinter_raft_entry *e = realloc(l->e, cap * sizeof *e);
    if (e == NULL) {
        return SINTER_ENOMEM;
    }
    l->e = e;
    l->cap = cap;
    return SINTER_OK;
}

void raft__log_push(struct raft__log *l, const struct sinter_raft_entry *e)
{
    l->e[l->n++] = *e;
}

void raft__log_truncate(struct sinter_raft *r, uint64_t from)
{
    struct raft__log *l = &r->log;
    if (from <= l->base) {
        from = l->base + 1;
    }
    while (raft__log_last_index(l) >= from && l->n > 0) {
        raft__buf_trash(r, l->e[l->n - 1].data);
        l->n--;
    }
    /* Whatever was persisted or handed out at or above `from` is no longer ours: the next ready
     * rewrites the suffix from here (rd.entries[0].index replaces what the host has). */
    if (r->unstable_from > from) {
        r->unstable_from = from;
    }
    if (r->persisted >= from) {
        r->persisted = from - 1;
    }
    if (r->ready_last >= from) {
        r->ready_last = from - 1;
    }
    /* Acknowledgements not yet handed out that cover dropped entries would be sent after the
     * next ready is durable, and that ready no longer holds what they acknowledge: a leader
     * counting them would commit on a replica that does not exist. Drop them (as the network
     * might); the leader learns the truth from the next answer. Those already in the outstanding
     * ready are sent once that ready, which still holds the entries, is durable: true then. */
    struct raft__msgq *q = &r->msgs_after;
    size_t w = 0;
    for (size_t i = 0; i < q->n; i++) {
        const struct sinter_raft_msg *m = &q->v[i];
        if (m->type == SINTER_RAFT_MSG_APPEND_RESP && !m->reject && m->index >= from) {
            continue; /* APPEND_RESP carries no entries: nothing to free */
        }
        q->v[w++] = q->v[i];
    }
    q->n = w;
}

void raft__log_compact(struct sinter_raft *r, uint64_t upto)
{
    struct raft__log *l = &r->log;
    if (upto <= l->base) {
        return;
    }
    if (upto > raft__log_last_index(l)) {
        upto = raft__log_last_index(l);
    }
    struct sinter_raft_config cfg;
    uint64_t cfg_index;
    uint64_t term = 0;
    raft__log_config_at(l, upto, &cfg, &cfg_index);
    raft__log_term(l, upto, &term);
    size_t drop = (size_t)(upto - l->base);
    for (size_t i = 0; i < drop; i++) {
        raft__buf_trash(r, l->e[i].data);
    }
    memmove(l->e, l->e + drop, (l->n - drop) * sizeof *l->e);
    l->n -= drop;
    l->base = upto;
    l->base_term = term;
    l->base_cfg = cfg;
    l->base_cfg_index = cfg_index;
}

uint64_t raft__log_find_conflict_by_term(const struct raft__log *l, uint64_t index, uint64_t term)
{
    if (index > raft__log_last_index(l)) {
        index = raft__log_last_index(l);
    }
    while (index > l->base) {
        uint64_t t = l->e[index - l->base - 1].term;
        if (t <= term) {
            break;
        }
        index--;
    }
    return index;
}

bool raft__log_up_to_date(const struct raft__log *l, uint64_t index, uint64_t term)
{
    uint64_t lt = raft__log_last_term(l);
    return term > lt || (term == lt && index >= raft__log_last_index(l));
}

void raft__log_config_at(const struct raft__log *l, uint64_t index, struct sinter_raft_config *cfg,
                         uint64_t *cfg_index)
{
    if (index > raft__log_last_index(l)) {
        index = raft__log_last_index(l);
    }
    for (uint64_t i = index; i > l->base; i--) {
        const struct sinter_raft_entry *e = &l->e[i - l->base - 1];
        /* CONFIG entries were validated on the way in (step/propose/restore). */
        if (e->type == SINTER_RAFT_ENTRY_CONFIG &&
            sinter_raft_config_decode(cfg, e->data, e->len) == SINTER_OK) {
            *cfg_index = i;
            return;
        }
    }
    *cfg = l->base_cfg;
    *cfg_index = l->base_cfg_index;
}

/* Deep-copies n entries' payloads into fresh buffers (dst gets the structs). All or nothing. */
int raft__entries_copy(struct sinter_raft_entry *dst, const struct sinter_raft_entry *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dst[i] = src[i];
        dst[i].data = NULL;
        if (src[i].len > 0) {
            dst[i].data = raft__buf_alloc(src[i].len);
            if (dst[i].data == NULL) {
                for (size_t j = 0; j < i; j++) {
                    raft__buf_free(dst[j].data);
                }
                return SINTER_ENOMEM;
            }
            memcpy(dst[i].data, src[i].data, src[i].len);
        }
    }
    return SINTER_OK;
}
