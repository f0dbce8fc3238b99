/*
 * Cluster configurations and their versioned encoding (the data of CONFIG entries).
 *
 * Encoding, version 1 (little endian):
 *   byte 0      version (1)
 *   bytes 1-3   zero (reserved; a decoder refuses anything else so they can carry meaning later)
 *   bytes 4-7   n, number of servers (<= SINTER_RAFT_MAX_SERVERS)
 *   n times     id (8 bytes), suffrage (1 byte)
 * Servers are sorted by id, ids unique and non-zero; nothing follows the last server.
 */
#include <string.h>

#include "internal.h"

#define CONFIG_VERSION 1

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

size_t sinter_raft_config_encode(const struct sinter_raft_config *cfg, uint8_t *buf)
{
    uint32_t n = cfg->n <= SINTER_RAFT_MAX_SERVERS ? cfg->n : SINTER_RAFT_MAX_SERVERS;
    buf[0] = CONFIG_VERSION;
    buf[1] = buf[2] = buf[3] = 0;
    for (int i = 0; i < 4; i++) {
        buf[4 + i] = (uint8_t)(n >> (8 * i));
    }
    size_t off = 8;
    for (uint32_t i = 0; i < n; i++) {
        put_u64(buf + off, cfg->servers[i].id);
        buf[off + 8] = cfg->servers[i].suffrage;
        off += 9;
    }
    return off;
}

int sinter_raft_config_decode(struct sinter_raft_config *cfg, const uint8_t *buf, size_t len)
{
    if (buf == NULL || len < 8) {
        return SINTER_ETRUNCATED;
    }
    if (buf[0] != CONFIG_VERSION) {
        return SINTER_EBADVERSION;
    }
    if (buf[1] != 0 || buf[2] != 0 || buf[3] != 0) {
        return SINTER_EINVAL;
    }
    uint32_t n =
        (uint32_t)buf[4] | (uint32_t)buf[5] << 8 | (uint32_t)buf[6] << 16 | (uint32_t)buf[7] << 24;
    if (n > SINTER_RAFT_MAX_SERVERS) {
        return SINTER_EINVAL;
    }
    if (len < 8 + (size_t)n * 9) {
        return SINTER_ETRUNCATED;
    }
    if (len > 8 + (size_t)n * 9) {
        return SINTER_EINVAL;
    }
    struct sinter_raft_config c;
    memset(&c, 0, sizeof c);
    c.n = n;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p = buf + 8 + (size_t)i * 9;
        c.servers[i].id = get_u64(p);
        c.servers[i].suffrage = p[8];
    }
    if (!raft__config_valid(&c)) {
        return SINTER_EINVAL;
    }
    *cfg = c;
    return SINTER_OK;
}

/* Sorted, unique, non-zero ids and known suffrages. An empty configuration is valid here (a
 * server that was never configured); callers that need voters check for them. */
bool raft__config_valid(const struct sinter_raft_config *cfg)
{
    if (cfg->n > SINTER_RAFT_MAX_SERVERS) {
        return false;
    }
    for (uint32_t i = 0; i < cfg->n; i++) {
        if (cfg->servers[i].id == 0 || cfg->servers[i].suffrage > SINTER_RAFT_LEARNER) {
            return false;
        }
        if (i > 0 && cfg->servers[i - 1].id >= cfg->servers[i].id) {
            return false;
        }
    }
    return true;
}

int sinter_raft_config_find(const struct sinter_raft_config *cfg, sinter_raft_id id)
{
    for (uint32_t i = 0; i < cfg->n && i < SINTER_RAFT_MAX_SERVERS; i++) {
        if (cfg->servers[i].id == id) {
            return (int)i;
        }
    }
    return -1;
}

int sinter_raft_config_add(struct sinter_raft_config *cfg, sinter_raft_id id, uint8_t suffrage)
{
    if (id == 0 || suffrage > SINTER_RAFT_LEARNER || cfg->n > SINTER_RAFT_MAX_SERVERS) {
        return SINTER_EINVAL;
    }
    int at = sinter_raft_config_find(cfg, id);
    if (at >= 0) {
        cfg->servers[at].suffrage = suffrage;
        return SINTER_OK;
    }
    if (cfg->n == SINTER_RAFT_MAX_SERVERS) {
        return SINTER_ETOOBIG;
    }
    uint32_t i = cfg->n;
    while (i > 0 && cfg->servers[i - 1].id > id) {
        cfg->servers[i] = cfg->servers[i - 1];
        i--;
    }
    cfg->servers[i].id = id;
    cfg->servers[i].suffrage = suffrage;
    cfg->n++;
    return SINTER_OK;
}

int sinter_raft_config_remove(struct sinter_raft_config *cfg, sinter_raft_id id)
{
    int at = sinter_raft_config_find(cfg, id);
    if (at < 0) {
        return SINTER_ENOTFOUND;
    }
    for (uint32_t i = (uint32_t)at; i + 1 < cfg->n; i++) {
        cfg->servers[i] = cfg->servers[i + 1];
    }
    cfg->n--;
    memset(&cfg->servers[cfg->n], 0, sizeof cfg->servers[cfg->n]);
    return SINTER_OK;
}

uint32_t sinter_raft_config_voters(const struct sinter_raft_config *cfg)
{
    uint32_t v = 0;
    for (uint32_t i = 0; i < cfg->n && i < SINTER_RAFT_MAX_SERVERS; i++) {
        if (cfg->servers[i].suffrage == SINTER_RAFT_VOTER) {
            v++;
        }
    }
    return v;
}
