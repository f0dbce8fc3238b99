/*
 * raft/sim/trace.c — the simulator's PRNG, hashing, event ring and violation reporting.
 *
 * Events go into a fixed ring of small structs and are formatted only when printed (with --trace,
 * or as the tail after a violation), so recording every message costs a few stores.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sim_internal.h"

/* ---- PRNG ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void sinter_sim_rng_seed(struct sim_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t sinter_sim_rng_next(struct sim_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t sinter_sim_rng_below(struct sim_rng *r, uint64_t n)
{
    if (n == 0)
        return 0;
    /* Lemire's multiply-shift; the tiny bias is irrelevant for scheduling. */
    return (uint64_t)(((unsigned __int128)sinter_sim_rng_next(r) * n) >> 64);
}

bool sinter_sim_rng_chance(struct sim_rng *r, uint64_t num, uint64_t den)
{
    return sinter_sim_rng_below(r, den) < num;
}

/* ---- hashing ---- */

uint64_t sinter_sim_mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    return h;
}

uint64_t sinter_sim_hash_bytes(const void *p, size_t n, uint64_t h)
{
    const uint8_t *b = p;
    h ^= 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001B3ull;
    }
    return sinter_sim_mix(h, n);
}

uint64_t sinter_sim_entry_hash(const struct sinter_raft_entry *e)
{
    return sinter_sim_hash_bytes(e->data, e->len, e->type);
}

/* ---- events ---- */

static const char *msg_name(uint64_t t)
{
    return sinter_raft_msg_name((uint32_t)t);
}

void sinter_sim_print_ev(struct sim *s, const struct sim_ev *e)
{
    FILE *o = s->out;
    fprintf(o, "  [%6llu] ", (unsigned long long)e->step);
    if (e->node >= 0)
        fprintf(o, "n%d ", e->node + 1);
    unsigned long long a = e->a, b = e->b, c = e->c, d = e->d;
    switch (e->kind) {
    case EV_NOTE:
        fprintf(o, "note\n");
        break;
    case EV_RECV:
        fprintf(o, "<- n%u %s term=%llu idx=%llu/%llu n=%llu\n", e->x >> 8, msg_name(e->x & 0xff),
                a, b, c, d);
        break;
    case EV_DROP:
        fprintf(o, "drop from n%u %s term=%llu (%s)\n", e->x >> 8, msg_name(e->x & 0xff), a,
                b == 0   ? "loss"
                : b == 1 ? "partition"
                : b == 2 ? "down"
                         : "newer entries stripped");
        break;
    case EV_CRASH:
        fprintf(o, "CRASH (unsynced write %s, kept %llu of %llu units)\n", a ? "pending" : "none",
                b, c);
        break;
    case EV_RESTART:
        fprintf(o, "RESTART term=%llu vote=%llu snap=%llu last=%llu\n", a, b, c, d);
        break;
    case EV_PART:
        fprintf(o, "partition mask=%llx one_way=%llu\n", a, b);
        break;
    case EV_HEAL:
        fprintf(o, "heal network\n");
        break;
    case EV_PROPOSE:
        fprintf(o, "propose w%llu -> %s idx=%llu term=%llu\n", a, sinter_errname((int)b), c, d);
        break;
    case EV_READ:
        fprintf(o, "read ctx=%llu start -> %s need=%llu\n", a, sinter_errname((int)b), c);
        break;
    case EV_READ_DONE:
        if (e->x)
            fprintf(o, "read ctx=%llu failed: %s\n", a, sinter_errname((int)c));
        else
            fprintf(o, "read ctx=%llu served at applied=%llu (read index %llu, need %llu)\n", a, b,
                    c, d);
        break;
    case EV_CONF:
        fprintf(o, "change %s n%llu -> %s idx=%llu\n",
                e->x == SINTER_RAFT_ADD_LEARNER ? "add-learner"
                : e->x == SINTER_RAFT_ADD_VOTER ? "add-voter"
                                                : "remove",
                a, sinter_errname((int)b), c);
        break;
    case EV_TRANSFER:
        fprintf(o, "transfer to n%llu -> %s\n", a, sinter_errname((int)b));
        break;
    case EV_ROLE:
        fprintf(o, "role %s term=%llu last=%llu commit=%llu\n", sinter_raft_role_name(e->x), a, b,
                c);
        break;
    case EV_SNAP_TAKE:
        fprintf(o, "snapshot taken at %llu (term %llu), compact trailing %llu\n", a, b, c);
        break;
    case EV_SNAP_INSTALL:
        fprintf(o, "snapshot installed at %llu (term %llu)\n", a, b);
        break;
    case EV_CLOCK:
        fprintf(o, "clock %s %llu ticks\n", e->x ? "pause" : "jump", a);
        break;
    case EV_SYNC:
        fprintf(o, "sync: hs term=%llu vote=%llu, entries up to %llu, snap=%llu\n", a, b, c, d);
        break;
    case EV_COMMIT:
        fprintf(o, "apply %llu..%llu (term of last %llu)\n", a, b, c);
        break;
    case EV_PHASE:
        fprintf(o, "phase %s until step %llu\n", e->x ? "FAULT" : "HEAL", a);
        break;
    case EV_LINK:
        if (e->x == 2) {
            fprintf(o, "laggards [");
            for (int i = 0; i < SIM_MAX_NODES; i++)
                if (a >> i & 1u)
                    fprintf(o, " n%d", i + 1);
            fprintf(o, " ]: APPENDs to them lose the entries of the APPEND's own term\n");
            break;
        }
        if (e->x) {
            fprintf(o, "APPENDs to n%llu lose entries of the sender's term\n", a >> 32);
            break;
        }
        fprintf(o, "link -> n%llu loss=%llu dup=%llu delay=%llu..%llu\n", a >> 32,
                a & 0xffffffffull, b, c, d);
        break;
    default:
        fprintf(o, "event %u\n", e->kind);
    }
}

void sinter_sim_ev(struct sim *s, uint16_t kind, int node, uint32_t x, uint64_t a, uint64_t b,
                   uint64_t c, uint64_t d)
{
    struct sim_ev *e = &s->ring[s->n_ev % SIM_TRACE_RING];
    s->n_ev++;
    e->step = s->now;
    e->kind = kind;
    e->node = (int16_t)node;
    e->x = x;
    e->a = a;
    e->b = b;
    e->c = c;
    e->d = d;
    if (s->cfg.trace)
        sinter_sim_print_ev(s, e);
}

/* Notes are rare (scenario milestones); they are printed at once when tracing and otherwise kept
 * as a plain event whose text is lost, which is fine: the structured events carry the detail. */
void sinter_sim_note(struct sim *s, int node, const char *fmt, ...)
{
    if (!s->cfg.trace)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(s->out, "  [%6llu] ", (unsigned long long)s->now);
    if (node >= 0)
        fprintf(s->out, "n%d ", node + 1);
    vfprintf(s->out, fmt, ap);
    fputc('\n', s->out);
    va_end(ap);
}

static void vfail(struct sim *s, bool liveness, const char *fmt, va_list ap)
{
    if (s->failed)
        return;
    s->failed = true;
    s->liveness_failed = liveness;
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
}

void sinter_sim_fail(struct sim *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(s, false, fmt, ap);
    va_end(ap);
}

void sinter_sim_fail_liveness(struct sim *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(s, true, fmt, ap);
    va_end(ap);
}

void sinter_sim_print_tail(struct sim *s)
{
    uint64_t tail = s->cfg.tail ? s->cfg.tail : 40;
    if (tail > SIM_TRACE_RING)
        tail = SIM_TRACE_RING;
    uint64_t from = s->n_ev > tail ? s->n_ev - tail : 0;
    fprintf(s->out, "  trace (last %llu events):\n", (unsigned long long)(s->n_ev - from));
    for (uint64_t i = from; i < s->n_ev; i++)
        sinter_sim_print_ev(s, &s->ring[i % SIM_TRACE_RING]);
}
