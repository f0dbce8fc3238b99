/*
 * A fake coordinator node for the client-library unit tests: a real sinter transport server on
 * 127.0.0.1 (port picked by the kernel) in the test process, serving the messages the TM and RM
 * send, with knobs for the faults the clients must ride out (lost replies, not-leader
 * redirects, a node that forgot its registrations, a wrong secret) and the phase-2 side of
 * docs/phase2-protocol.md (held Phase2Polls answered with queued work items, Phase2Reports
 * recorded). Every request is logged with its (client id, seq) so tests can check that retries
 * reuse the seq.
 */
#ifndef SINTER_TEST_FAKE_TC_H
#define SINTER_TEST_FAKE_TC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "sinter/proto.h"
#include "sinter/transport.h"

#define FAKE_LOG_MAX     4096
#define FAKE_ITEMS_MAX   64
#define FAKE_BRANCH_MAX  64
#define FAKE_REPORTS_MAX 256
#define FAKE_HELD_MAX    80
#define FAKE_REG_MAX     64

struct fake_req {
    uint16_t code;
    uint64_t client_id, seq;
};

struct fake_item {
    uint16_t code; /* SINTER_MSG_BRANCH_COMMIT / _ROLLBACK */
    struct sinter_xid xid;
    uint64_t branch_id;
    uint32_t branch_type;
    char resource[64];
    uint8_t data[256];
    uint32_t data_len;
    uint64_t xa_local_xid;
    uint32_t attempt;
};

struct fake_branch {
    struct sinter_xid xid;
    uint64_t id;
    char resource[64];
    uint8_t data[256];
    uint32_t data_len;
    uint32_t phase1; /* last BranchReport status, 0 = none */
};

struct fake_report {
    uint16_t phase;
    struct sinter_xid xid;
    uint64_t branch_id;
    uint32_t status;
    uint64_t client_id;
};

struct fake_poll {
    struct sinter_transport_request *req;
    uint64_t deadline;
    uint32_t max_items;
};

struct fake_tc {
    struct sinter_transport_server *srv;
    char url[64];
    const char *secret;
    pthread_mutex_t mu;
    pthread_t timer;
    bool stop;

    uint64_t registered[FAKE_REG_MAX];
    int n_registered;
    int n_register_calls;

    struct fake_req log[FAKE_LOG_MAX];
    int n_log;

    /* Knobs (set under mu, or before the client starts). */
    int drop_begins; /* hold (never answer in time) this many GlobalBegins */
    bool redirect;   /* answer every command ENOTLEADER naming redirect_url */
    char redirect_url[64];
    uint32_t redirect_group;
    uint32_t begin_group;  /* group of the xids this node hands out */
    uint64_t next_index;   /* next xid index */
    uint32_t end_status;   /* GlobalCommit / GlobalRollback answer */
    uint32_t status_value; /* GlobalStatus answer ... */
    int status_until;      /* ... after this many more status calls it becomes status_final */
    uint32_t status_final;
    int report_result; /* Phase2Report result code (SINTER_OK normally) */
    int end_error;     /* non-zero: GlobalCommit / GlobalRollback answer an ERROR of this code */
    int status_error;  /* non-zero: GlobalStatus answers an ERROR of this code */

    struct sinter_transport_request *held[FAKE_HELD_MAX];
    int n_held;

    struct fake_item items[FAKE_ITEMS_MAX];
    int n_items;
    struct fake_poll polls[FAKE_HELD_MAX];
    int n_polls;
    int n_poll_calls;

    uint64_t next_branch;
    struct fake_branch branches[FAKE_BRANCH_MAX];
    int n_branches;

    struct fake_report reports[FAKE_REPORTS_MAX];
    int n_reports;
};

/* Starts a fake node; returns 0 or a sinter error. */
int fake_tc_start(struct fake_tc *f, const char *secret);
/* Answers everything still held and stops it. */
void fake_tc_stop(struct fake_tc *f);

/* Makes the node forget every registration (as a restarted node would). */
void fake_tc_forget(struct fake_tc *f);
/* Answers every held GlobalBegin now, with a fresh xid each. */
void fake_tc_release(struct fake_tc *f);
/* Queues a phase-2 work item for the next poll. */
void fake_tc_push(struct fake_tc *f, const struct fake_item *it);
/* Number of logged requests of code (0: all), and the i-th of them (-1: the last). */
int fake_tc_count(struct fake_tc *f, uint16_t code);
struct fake_req fake_tc_nth(struct fake_tc *f, uint16_t code, int i);
/* Waits up to ms for n reports; returns the number seen. */
int fake_tc_wait_reports(struct fake_tc *f, int n, unsigned ms);
/* Copy of the branch with id, false if unknown. */
bool fake_tc_branch(struct fake_tc *f, uint64_t id, struct fake_branch *out);

#endif
