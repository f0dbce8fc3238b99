/*
 * Term, vote and commit hint: two alternating fixed-size slot files (meta.0, meta.1), each holding
 * one CRC-protected record with a sequence number. A durable update writes the slot that does not
 * hold the newest durable record and fdatasyncs it, so a torn write can only damage the record
 * being written, never the one a crash must fall back to (the scheme canonical/raft uses for its
 * metadata1/metadata2 files). Load takes the valid record with the higher sequence.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "sinter/crc32c.h"

static const char *const slot_name[2] = {"meta.0", "meta.1"};

static void meta_encode(uint8_t *b, uint64_t seq, const struct sinter_raft_hard_state *hs)
{
    memset(b, 0, STORE_META_REC);
    memcpy(b, "SNMT", 4);
    store_put16(b + 4, STORE_VERSION);
    store_put64(b + 8, seq);
    store_put64(b + 16, hs->term);
    store_put64(b + 24, hs->vote);
    store_put64(b + 32, hs->commit);
    store_put32(b + 44, sinter_crc32c(0, b, 44));
}

static bool meta_decode(const uint8_t *b, uint64_t *seq, struct sinter_raft_hard_state *hs)
{
    if (memcmp(b, "SNMT", 4) != 0 || store_get16(b + 4) != STORE_VERSION ||
        store_get32(b + 44) != sinter_crc32c(0, b, 44)) {
        return false;
    }
    *seq = store_get64(b + 8);
    hs->term = store_get64(b + 16);
    hs->vote = store_get64(b + 24);
    hs->commit = store_get64(b + 32);
    return true;
}

/* Creates slot file `slot` holding `rec` (or zeros) through a temporary name, so a file named
 * meta.N always has its full, synced content. */
static int meta_create(struct sinter_store *s, int slot, const uint8_t *rec)
{
    char tmp[STORE_PATH_MAX];
    char path[STORE_PATH_MAX];
    char name[32];
    uint8_t buf[STORE_META_SIZE];
    memset(buf, 0, sizeof buf);
    if (rec != NULL) {
        memcpy(buf, rec, STORE_META_REC);
    }
    snprintf(name, sizeof name, "%s.tmp", slot_name[slot]);
    sinter_rs_path(s, tmp, name);
    sinter_rs_path(s, path, slot_name[slot]);
    int fd = -1;
    int e = s->io->open(s->ctx, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644, &fd);
    if (e != 0) {
        return sinter_rs_ioerr(s, e, "create %s", tmp);
    }
    e = sinter_rs_pwrite_full(s, fd, buf, sizeof buf, 0);
    if (e == 0) {
        e = s->io->fsync(s->ctx, fd);
    }
    s->io->close(s->ctx, fd);
    if (e == 0) {
        e = s->io->rename(s->ctx, tmp, path);
    }
    if (e == 0) {
        e = s->io->syncdir(s->ctx, s->dir);
    }
    if (e != 0) {
        s->io->unlink(s->ctx, tmp);
        return sinter_rs_ioerr(s, e, "create %s", path);
    }
    return SINTER_OK;
}

int sinter_rs_meta_open(struct sinter_store *s, bool fresh)
{
    char path[STORE_PATH_MAX];
    if (fresh) {
        /* A new store: slot 0 holds sequence 0 (term 0, no vote), so from now on there is always
         * a valid slot and two invalid ones mean damage, never "new". */
        uint8_t rec[STORE_META_REC];
        struct sinter_raft_hard_state zero = {0, 0, 0};
        meta_encode(rec, 0, &zero);
        int rc = meta_create(s, 0, rec);
        if (rc == SINTER_OK) {
            rc = meta_create(s, 1, NULL);
        }
        if (rc != SINTER_OK) {
            return rc;
        }
    }
    bool valid[2] = {false, false};
    uint64_t seq[2] = {0, 0};
    struct sinter_raft_hard_state hs[2];
    for (int i = 0; i < 2; i++) {
        sinter_rs_path(s, path, slot_name[i]);
        int e = s->io->open(s->ctx, path, O_RDWR, 0, &s->meta_fd[i]);
        if (e == ENOENT) {
            /* A crash while creating the pair: recreate the missing slot empty, below. */
            s->meta_fd[i] = -1;
            continue;
        }
        if (e != 0) {
            s->meta_fd[i] = -1;
            return sinter_rs_ioerr(s, e, "open %s", path);
        }
        /* What we read may still be only in the page cache (a killed process wrote it, the machine
         * did not crash): make it durable before trusting it, or a later write to the other slot
         * could leave no durable slot at all. */
        e = s->io->fdatasync(s->ctx, s->meta_fd[i]);
        uint8_t b[STORE_META_REC];
        size_t got = 0;
        if (e == 0) {
            e = sinter_rs_pread_full(s, s->meta_fd[i], b, sizeof b, 0, &got);
        }
        if (e != 0) {
            return sinter_rs_ioerr(s, e, "read %s", path);
        }
        valid[i] = got == sizeof b && meta_decode(b, &seq[i], &hs[i]);
        if (valid[i] && (seq[i] & 1u) != (uint64_t)i) {
            valid[i] = false; /* a record in the wrong slot is not one we wrote */
        }
    }
    if (!valid[0] && !valid[1]) {
        return sinter_rs_err(
            s, SINTER_ECORRUPT,
            "raft store %s: both metadata slots (meta.0, meta.1) are missing or fail "
            "their CRC: term and vote are lost, refusing to start",
            s->dir);
    }
    int best = valid[0] && (!valid[1] || seq[0] > seq[1]) ? 0 : 1;
    s->durable_slot = best;
    s->meta_seq = seq[best];
    s->hs = hs[best];
    s->hs_dur = hs[best];
    for (int i = 0; i < 2; i++) {
        if (s->meta_fd[i] < 0) {
            int rc = meta_create(s, i, NULL);
            if (rc != SINTER_OK) {
                return rc;
            }
            sinter_rs_path(s, path, slot_name[i]);
            int e = s->io->open(s->ctx, path, O_RDWR, 0, &s->meta_fd[i]);
            if (e != 0) {
                s->meta_fd[i] = -1;
                return sinter_rs_ioerr(s, e, "open %s", path);
            }
        }
    }
    return SINTER_OK;
}

void sinter_rs_meta_close(struct sinter_store *s)
{
    for (int i = 0; i < 2; i++) {
        if (s->meta_fd[i] >= 0) {
            s->io->close(s->ctx, s->meta_fd[i]);
            s->meta_fd[i] = -1;
        }
    }
}

int sinter_store_save_hard_state(struct sinter_store *s, const struct sinter_raft_hard_state *hs)
{
    int rc = sinter_rs_check_failed(s);
    if (rc != SINTER_OK) {
        return rc;
    }
    /* Terms never go back and a vote is never changed within a term (Raft paper figure 2); a
     * caller asking for either has a bug that would break election safety: refuse it. */
    if (hs->term < s->hs_dur.term ||
        (hs->term == s->hs_dur.term && s->hs_dur.vote != 0 && hs->vote != s->hs_dur.vote)) {
        return sinter_rs_err(s, SINTER_EINVAL,
                             "raft store %s: hard state (term %" PRIu64 ", vote %" PRIu64
                             ") would undo durable (term %" PRIu64 ", vote %" PRIu64 ")",
                             s->dir, hs->term, hs->vote, s->hs_dur.term, s->hs_dur.vote);
    }
    bool durable = hs->term != s->hs_dur.term || hs->vote != s->hs_dur.vote;
    if (!durable && hs->commit == s->hs.commit) {
        return SINTER_OK;
    }
    /* Either way the slot written is the one NOT holding the newest durable record. */
    int slot = 1 - s->durable_slot;
    uint64_t seq = s->meta_seq + 1;
    if ((seq & 1u) != (uint64_t)slot) {
        seq++; /* keep slot == seq & 1 so a record is only valid in the slot it was meant for */
    }
    uint8_t b[STORE_META_REC];
    meta_encode(b, seq, hs);
    int e = sinter_rs_pwrite_full(s, s->meta_fd[slot], b, sizeof b, 0);
    if (e == 0 && durable) {
        e = s->io->fdatasync(s->ctx, s->meta_fd[slot]);
    }
    if (e != 0) {
        rc = sinter_rs_ioerr(s, e, "write %s/%s (term %" PRIu64 ", vote %" PRIu64 ")", s->dir,
                             slot_name[slot], hs->term, hs->vote);
        /* A lost commit hint is harmless, but the disk is misbehaving and the slot is now in an
         * unknown state; refuse further writes either way. */
        return sinter_rs_fail(s, rc);
    }
    s->meta_seq = seq;
    s->hs = *hs;
    if (durable) {
        s->durable_slot = slot;
        s->hs_dur = *hs;
    }
    return SINTER_OK;
}

void sinter_store_hard_state(const struct sinter_store *s, struct sinter_raft_hard_state *hs)
{
    *hs = s->hs;
}
