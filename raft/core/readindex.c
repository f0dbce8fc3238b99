/*
 * Linearizable reads without writing to the log: ReadIndex (dissertation 6.4).
 *   1. The leader must have committed an entry of its current term, so its commit index is at
 *      least that of any earlier leader; reads arriving before that wait.
 *   2. The read index is the commit index at that point.
 *   3. The leader confirms it is still leader by a heartbeat round: a majority of voters answer
 *      a heartbeat sent after the read arrived (rounds are numbered in `context`).
 *   4. The host serves the read once its applied index reaches the read index.
 * A read not confirmed within read_timeout_ticks fails with SINTER_ETIMEOUT; all pending reads
 * fail with SINTER_ENOTLEADER when the leader steps down. A leader cut off in a minority thus
 * never answers from its possibly stale state.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Room in reads_out for every read that could finish is reserved when a read starts, so
 * finishing one never allocates (and cannot lose an answer). */
static int reserve(struct sinter_raft *r)
{
    if (r->n_reads + 1 > r->cap_reads) {
        size_t cap = r->cap_reads ? r->cap_reads * 2 : 8;
        struct raft__read *v = realloc(r->reads, cap * sizeof *v);
        if (v == NULL) {
            return SINTER_ENOMEM;
        }
        r->reads = v;
        r->cap_reads = cap;
    }
    size_t need = r->n_reads_out + r->n_reads + 1;
    if (need > r->cap_reads_out) {
        size_t cap = r->cap_reads_out ? r->cap_reads_out : 8;
        while (cap < need) {
            cap *= 2;
        }
        struct sinter_raft_read_state *v = realloc(r->reads_out, cap * sizeof *v);
        if (v == NULL) {
            return SINTER_ENOMEM;
        }
        r->reads_out = v;
        r->cap_reads_out = cap;
    }
    return SINTER_OK;
}

static void emit(struct sinter_raft *r, const struct raft__read *rd, int rc)
{
    struct sinter_raft_read_state *o = &r->reads_out[r->n_reads_out++];
    o->ctx = rd->ctx;
    o->index = rc == SINTER_OK ? rd->index : 0;
    o->rc = rc;
}

static bool committed_in_term(const struct sinter_raft *r)
{
    uint64_t t = 0;
    return raft__log_term(&r->log, r->commit, &t) && t == r->term;
}

/* Gives every waiting read the current commit index and one new heartbeat round. */
static void start_waiting(struct sinter_raft *r)
{
    bool any = false;
    for (size_t i = 0; i < r->n_reads; i++) {
        if (r->reads[i].round == 0) {
            if (!any) {
                r->read_round++;
                any = true;
            }
            r->reads[i].round = r->read_round;
            r->reads[i].index = r->commit;
        }
    }
    if (any) {
        raft__bcast_heartbeat(r, r->read_round);
    }
}

int sinter_raft_read_index(struct sinter_raft *r, uint64_t ctx)
{
    if (r->role != SINTER_RAFT_LEADER) {
        return SINTER_ENOTLEADER;
    }
    int rc = reserve(r);
    if (rc != SINTER_OK) {
        return rc;
    }
    struct raft__read *rd = &r->reads[r->n_reads++];
    memset(rd, 0, sizeof *rd);
    rd->ctx = ctx;
    if (committed_in_term(r)) {
        start_waiting(r);
        raft__reads_on_ack(r); /* a single voter confirms on its own */
    }
    return SINTER_OK;
}

void raft__reads_on_commit(struct sinter_raft *r)
{
    if (r->role == SINTER_RAFT_LEADER && r->n_reads > 0 && committed_in_term(r)) {
        start_waiting(r);
        raft__reads_on_ack(r);
    }
}

static void pop_front(struct sinter_raft *r, size_t k)
{
    if (k == 0) {
        return;
    }
    memmove(r->reads, r->reads + k, (r->n_reads - k) * sizeof *r->reads);
    r->n_reads -= k;
}

void raft__reads_on_ack(struct sinter_raft *r)
{
    if (r->role != SINTER_RAFT_LEADER) {
        return;
    }
    size_t done = 0;
    while (done < r->n_reads && r->reads[done].round != 0) {
        uint64_t round = r->reads[done].round;
        uint32_t acks = 0;
        for (uint32_t i = 0; i < r->cfg.n; i++) {
            const struct sinter_raft_server *s = &r->cfg.servers[i];
            if (s->suffrage != SINTER_RAFT_VOTER) {
                continue;
            }
            if (s->id == r->id) {
                acks++;
                continue;
            }
            const struct raft__progress *p = raft__pr_cget(r, s->id);
            if (p != NULL && p->read_ack >= round) {
                acks++;
            }
        }
        if (acks < raft__quorum(r)) {
            break;
        }
        emit(r, &r->reads[done], SINTER_OK);
        done++;
    }
    pop_front(r, done);
}

void raft__reads_fail_all(struct sinter_raft *r, int rc)
{
    for (size_t i = 0; i < r->n_reads; i++) {
        emit(r, &r->reads[i], rc);
    }
    r->n_reads = 0;
}

void raft__reads_tick(struct sinter_raft *r)
{
    size_t w = 0;
    for (size_t i = 0; i < r->n_reads; i++) {
        if (++r->reads[i].elapsed >= r->o.read_timeout_ticks) {
            emit(r, &r->reads[i], SINTER_ETIMEOUT);
        } else {
            r->reads[w++] = r->reads[i];
        }
    }
    r->n_reads = w;
}
