/*
 * The client core (sinter/client.h) through libsinter-tm, against fake coordinator nodes
 * (fake_tc.h) on loopback:
 *   - a lost reply: the begin is retried after the attempt timeout with the SAME (client id,
 *     seq), and the retry's answer is returned;
 *   - a not-leader redirect to a node the TM was not given: followed with the same seq, the
 *     node registered on the way, and the group's next request goes straight to the leader;
 *   - a node that forgot its registrations (restart): SINTER_EAUTH, RegisterTM again, the same
 *     request resent with the same seq;
 *   - a wrong secret: SINTER_EAUTH to the caller, no retry loop;
 *   - nobody listening: SINTER_ETIMEOUT once the deadline passed;
 *   - commit with a phase-2 wait: polls the status until it is final; a status read that fails
 *     after the decision was acknowledged returns SINTER_OK with the last status (the outcome is
 *     guaranteed); an ERROR reply to a commit yields status 0, not its error fields;
 *   - the first given node down at startup: ClusterMeta is learnt from the next node on the
 *     first call, and asked only once;
 *   - local saturation (all 64 transport contexts to the leader in flight): the call waits and
 *     goes to the same node, which stays the leader;
 *   - many threads on one handle: every seq distinct.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fake_tc.h"
#include "sinter/client.h"
#include "sinter/error.h"
#include "sinter/tm.h"
#include "sinter/types.h"
#include "testproc.h"

#define SECRET "unit-secret"

static struct sinter_tm *open_tm(const char *url, uint32_t attempt_ms, uint32_t deadline_ms,
                                 const char *secret)
{
    const char *addrs[1] = {url};
    struct sinter_tm_opts o;
    sinter_tm_opts_default(&o);
    o.addresses = addrs;
    o.n_addresses = 1;
    o.secret = secret;
    o.application_id = "unit";
    o.attempt_timeout_ms = attempt_ms;
    o.deadline_ms = deadline_ms;
    struct sinter_tm *tm = NULL;
    assert_int_equal(sinter_tm_open(&tm, &o), SINTER_OK);
    return tm;
}

static void lost_reply_retried_with_same_seq(void **state)
{
    (void)state;
    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    f.drop_begins = 1;
    f.begin_group = 0;
    f.next_index = 42;
    struct sinter_tm *tm = open_tm(f.url, 300, 20000, SECRET);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(tm, "lost-reply", 60000, xid), SINTER_OK);
    assert_string_equal(xid, "0:42");
    assert_int_equal(fake_tc_count(&f, SINTER_MSG_GLOBAL_BEGIN), 2);
    struct fake_req a = fake_tc_nth(&f, SINTER_MSG_GLOBAL_BEGIN, 0);
    struct fake_req b = fake_tc_nth(&f, SINTER_MSG_GLOBAL_BEGIN, 1);
    assert_int_equal(a.client_id, sinter_tm_client_id(tm));
    assert_int_equal(a.client_id, b.client_id);
    assert_int_equal(a.seq, b.seq); /* the TC deduplicates on this pair */
    /* The next logical begin gets a fresh seq. */
    assert_int_equal(sinter_tm_begin(tm, "next", 60000, xid), SINTER_OK);
    assert_true(fake_tc_nth(&f, SINTER_MSG_GLOBAL_BEGIN, -1).seq > a.seq);
    sinter_tm_close(tm);
    fake_tc_stop(&f);
}

static void redirect_followed(void **state)
{
    (void)state;
    struct fake_tc a, b;
    assert_int_equal(fake_tc_start(&a, SECRET), SINTER_OK);
    assert_int_equal(fake_tc_start(&b, SECRET), SINTER_OK);
    a.redirect = true;
    snprintf(a.redirect_url, sizeof a.redirect_url, "%s", b.url);
    a.redirect_group = 1;
    b.begin_group = 1;
    b.next_index = 7;
    struct sinter_tm *tm = open_tm(a.url, 2000, 20000, SECRET); /* only A is known */
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(tm, "redirected", 0, xid), SINTER_OK);
    assert_string_equal(xid, "1:7");
    assert_int_equal(fake_tc_count(&a, SINTER_MSG_GLOBAL_BEGIN), 1);
    assert_int_equal(fake_tc_count(&b, SINTER_MSG_GLOBAL_BEGIN), 1);
    assert_int_equal(fake_tc_nth(&a, SINTER_MSG_GLOBAL_BEGIN, 0).seq,
                     fake_tc_nth(&b, SINTER_MSG_GLOBAL_BEGIN, 0).seq);
    assert_int_equal(fake_tc_count(&b, SINTER_MSG_REGISTER_TM), 1);
    /* Group 1's leader is cached: status goes straight to B. */
    uint32_t st = 0;
    assert_int_equal(sinter_tm_status(tm, xid, 0, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_BEGIN);
    assert_int_equal(fake_tc_count(&a, SINTER_MSG_GLOBAL_STATUS), 0);
    assert_int_equal(fake_tc_count(&b, SINTER_MSG_GLOBAL_STATUS), 1);
    sinter_tm_close(tm);
    fake_tc_stop(&a);
    fake_tc_stop(&b);
}

static void reregisters_after_eauth(void **state)
{
    (void)state;
    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    struct sinter_tm *tm = open_tm(f.url, 2000, 20000, SECRET);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(tm, "one", 0, xid), SINTER_OK);
    assert_int_equal(f.n_register_calls, 1);
    fake_tc_forget(&f); /* the node restarted */
    assert_int_equal(sinter_tm_begin(tm, "two", 0, xid), SINTER_OK);
    assert_int_equal(f.n_register_calls, 2);
    assert_int_equal(fake_tc_count(&f, SINTER_MSG_GLOBAL_BEGIN), 3);
    assert_int_equal(fake_tc_nth(&f, SINTER_MSG_GLOBAL_BEGIN, 1).seq,
                     fake_tc_nth(&f, SINTER_MSG_GLOBAL_BEGIN, 2).seq);
    sinter_tm_close(tm);
    fake_tc_stop(&f);
}

static void wrong_secret(void **state)
{
    (void)state;
    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    struct sinter_tm *tm = open_tm(f.url, 2000, 20000, "not-the-secret");
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(tm, "x", 0, xid), SINTER_EAUTH);
    assert_non_null(strstr(sinter_tm_errmsg(), "secret"));
    assert_int_equal(fake_tc_count(&f, SINTER_MSG_GLOBAL_BEGIN), 0);
    sinter_tm_close(tm);
    fake_tc_stop(&f);
}

static void deadline_without_cluster(void **state)
{
    (void)state;
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", sinter_test_free_port());
    struct sinter_tm *tm = open_tm(url, 200, 1500, SECRET);
    char xid[SINTER_XID_STRLEN];
    uint64_t t0 = sinter_test_now_ms();
    assert_int_equal(sinter_tm_begin(tm, "x", 0, xid), SINTER_ETIMEOUT);
    /* Bounded by the deadline (generously: a loaded machine may be slow to wake us). */
    assert_true(sinter_test_now_ms() - t0 < 1500 + 10000);
    assert_non_null(strstr(sinter_tm_errmsg(), "outcome unknown"));
    sinter_tm_close(tm);
}

static void commit_waits_for_phase2(void **state)
{
    (void)state;
    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    f.end_status = SINTER_GS_COMMITTING;
    f.status_value = SINTER_GS_COMMITTING;
    f.status_until = 3;
    f.status_final = SINTER_GS_COMMITTED;
    struct sinter_tm *tm = open_tm(f.url, 2000, 20000, SECRET);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(tm, "0:5", 0, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTING); /* no wait: the durable decision */
    assert_int_equal(sinter_tm_commit(tm, "0:5", 60000, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_int_equal(fake_tc_count(&f, SINTER_MSG_GLOBAL_STATUS), 3);
    assert_int_equal(sinter_tm_commit(tm, "not-an-xid", 0, &st), SINTER_EINVAL);
    sinter_tm_close(tm);
    fake_tc_stop(&f);
}

/* Once the decision reply was OK the outcome is guaranteed: a status read that fails during the
 * phase-2 wait must not turn that into an error ("outcome unknown"). */
static void commit_ok_despite_failed_status_read(void **state)
{
    (void)state;
    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    f.end_status = SINTER_GS_COMMITTING;
    f.status_error = SINTER_EDB;
    struct sinter_tm *tm = open_tm(f.url, 2000, 20000, SECRET);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(tm, "0:6", 5000, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTING); /* the last status known */
    assert_true(fake_tc_count(&f, SINTER_MSG_GLOBAL_STATUS) >= 1);
    /* sinter_tm_status itself still reports the failure. */
    assert_int_equal(sinter_tm_status(tm, "0:6", 0, &st), SINTER_EDB);
    /* An ERROR reply to the commit carries no status: *status is 0, not the error's fields. */
    f.status_error = 0;
    f.end_error = SINTER_ESTATE;
    st = 99;
    assert_int_equal(sinter_tm_commit(tm, "0:6", 0, &st), SINTER_ESTATE);
    assert_int_equal(st, 0);
    sinter_tm_close(tm);
    fake_tc_stop(&f);
}

/* The first given node is down at startup: the ClusterMeta round gives it only its share of the
 * budget and asks the next node, so the members are learnt on the first call and later calls
 * neither ask again nor go to the dead node first. */
static void first_node_down_at_startup(void **state)
{
    (void)state;
    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    char dead[64];
    snprintf(dead, sizeof dead, "tcp://127.0.0.1:%u", sinter_test_free_port());
    const char *addrs[2] = {dead, f.url};
    struct sinter_tm_opts o;
    sinter_tm_opts_default(&o);
    o.addresses = addrs;
    o.n_addresses = 2;
    o.secret = SECRET;
    o.attempt_timeout_ms = 2000;
    o.deadline_ms = 30000;
    struct sinter_tm *tm = NULL;
    assert_int_equal(sinter_tm_open(&tm, &o), SINTER_OK);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(tm, "a", 0, xid), SINTER_OK);
    assert_int_equal(fake_tc_count(&f, SINTER_MSG_CLUSTER_META), 1);
    assert_int_equal(sinter_tm_begin(tm, "b", 0, xid), SINTER_OK);
    assert_int_equal(sinter_tm_begin(tm, "c", 0, xid), SINTER_OK);
    assert_int_equal(fake_tc_count(&f, SINTER_MSG_CLUSTER_META), 1); /* learnt once */
    assert_int_equal(fake_tc_count(&f, SINTER_MSG_GLOBAL_BEGIN), 3);
    sinter_tm_close(tm);
    fake_tc_stop(&f);
}

struct held_call {
    struct sinter_client *c;
    int rc;
};

static void *held_begin(void *arg)
{
    struct held_call *h = arg;
    struct sinter_proto_msg m;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_GLOBAL_BEGIN;
    m.rq.client_id = sinter_client_id(h->c);
    m.rq.seq = sinter_client_next_seq(h->c);
    struct sinter_transport_reply_msg *r = NULL;
    h->rc = sinter_client_call_node(h->c, 0, &m, 60000, &r);
    sinter_transport_reply_free(r);
    return NULL;
}

static void *status_call(void *arg)
{
    struct held_call *h = arg;
    struct sinter_proto_msg m;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_GLOBAL_STATUS;
    m.u.global_status.xid = (struct sinter_xid){0, 9};
    struct sinter_transport_reply_msg *r = NULL;
    h->rc = sinter_client_call(h->c, &m, 0, 60000, &r);
    if (h->rc == SINTER_OK) {
        h->rc = sinter_client_result(r);
    }
    sinter_transport_reply_free(r);
    return NULL;
}

/* Local saturation (every transport context to the leader in flight): the call waits for a
 * context and goes to the same node; it neither gives up with "outcome unknown" nor forgets the
 * leader and moves to another node. */
static void saturation_keeps_the_leader(void **state)
{
    (void)state;
    enum { N = 64 }; /* the transport client's contexts per node */
    struct fake_tc a, b;
    assert_int_equal(fake_tc_start(&a, SECRET), SINTER_OK);
    assert_int_equal(fake_tc_start(&b, SECRET), SINTER_OK);
    a.drop_begins = N;
    const char *urls[2] = {a.url, b.url};
    struct sinter_client_opts o;
    sinter_client_opts_default(&o);
    o.urls = urls;
    o.n_urls = 2;
    o.secret = SECRET;
    o.attempt_timeout_ms = 60000;
    o.deadline_ms = 60000;
    struct sinter_client *c = NULL;
    assert_int_equal(sinter_client_open(&c, &o), SINTER_OK);
    /* A first call learns node 0 (a) as the leader of group 0. */
    struct held_call first = {c, -1};
    status_call(&first);
    assert_int_equal(first.rc, SINTER_OK);
    assert_int_equal(sinter_client_leader(c, 0), 0);
    /* N begins held by a: every context to a is in flight. */
    pthread_t th[N];
    struct held_call hc[N];
    for (int i = 0; i < N; i++) {
        hc[i] = (struct held_call){c, -1};
        assert_int_equal(pthread_create(&th[i], NULL, held_begin, &hc[i]), 0);
    }
    uint64_t end = sinter_test_now_ms() + 60000;
    while (fake_tc_count(&a, SINTER_MSG_GLOBAL_BEGIN) < N && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(10);
    }
    assert_int_equal(fake_tc_count(&a, SINTER_MSG_GLOBAL_BEGIN), N);
    /* The next call for group 0 finds no free context; it keeps trying a ... */
    struct held_call st = {c, -1};
    pthread_t sth;
    assert_int_equal(pthread_create(&sth, NULL, status_call, &st), 0);
    sinter_test_sleep_ms(500);
    /* ... and gets through once contexts are free again. */
    fake_tc_release(&a);
    pthread_join(sth, NULL);
    assert_int_equal(st.rc, SINTER_OK);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(hc[i].rc, SINTER_OK);
    }
    assert_int_equal(fake_tc_count(&a, SINTER_MSG_GLOBAL_STATUS), 2);
    assert_int_equal(fake_tc_count(&b, SINTER_MSG_GLOBAL_STATUS), 0);
    assert_int_equal(sinter_client_leader(c, 0), 0);
    sinter_client_close(c);
    fake_tc_stop(&a);
    fake_tc_stop(&b);
}

struct thr {
    struct sinter_tm *tm;
    int ok;
};

static void *begin_many(void *arg)
{
    struct thr *t = arg;
    for (int i = 0; i < 25; i++) {
        char xid[SINTER_XID_STRLEN];
        t->ok += sinter_tm_begin(t->tm, "threads", 0, xid) == SINTER_OK;
    }
    return NULL;
}

static void threads_share_a_handle(void **state)
{
    (void)state;
    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    struct sinter_tm *tm = open_tm(f.url, 5000, 30000, SECRET);
    pthread_t th[4];
    struct thr t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (struct thr){tm, 0};
        assert_int_equal(pthread_create(&th[i], NULL, begin_many, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].ok, 25);
    }
    int n = fake_tc_count(&f, SINTER_MSG_GLOBAL_BEGIN);
    assert_int_equal(n, 100);
    for (int i = 0; i < n; i++) {
        for (int k = i + 1; k < n; k++) {
            assert_true(fake_tc_nth(&f, SINTER_MSG_GLOBAL_BEGIN, i).seq !=
                        fake_tc_nth(&f, SINTER_MSG_GLOBAL_BEGIN, k).seq);
        }
    }
    sinter_tm_close(tm);
    fake_tc_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lost_reply_retried_with_same_seq),
        cmocka_unit_test(redirect_followed),
        cmocka_unit_test(reregisters_after_eauth),
        cmocka_unit_test(wrong_secret),
        cmocka_unit_test(deadline_without_cluster),
        cmocka_unit_test(commit_waits_for_phase2),
        cmocka_unit_test(commit_ok_despite_failed_status_read),
        cmocka_unit_test(first_node_down_at_startup),
        cmocka_unit_test(saturation_keeps_the_leader),
        cmocka_unit_test(threads_share_a_handle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
