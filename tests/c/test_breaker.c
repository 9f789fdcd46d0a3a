/* test_breaker.c — closed → open → half-open → closed, window and probes. */
#include "unit.h"
#include "breaker.h"

static void on_timer(uv_timer_t *t) { uv_timer_stop(t); }

static void wait_ms(vx_runtime *rt, uint64_t ms) {
    uv_timer_t t;
    uv_timer_init(&rt->loop, &t);
    uv_timer_start(&t, on_timer, ms, 0);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&rt->loop, UV_RUN_NOWAIT);
}

static vx_breaker *make(vx_runtime *rt, const char *name, int threshold, double cooldown) {
    vx_breaker_opts o = {.failure_threshold = threshold, .window_ms = 10000, .cooldown_ms = cooldown,
                         .half_open_max = 1, .success_threshold = 2};
    char err[128];
    vx_breaker *b = vx_breaker_new(rt, name, &o, err, sizeof err);
    assert_non_null(b);
    return b;
}

static void test_opens_at_threshold(void **state) {
    (void)state;
    vx_runtime *rt = unit_runtime();
    vx_breaker *b = make(rt, "t1", 3, 50);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(vx_breaker_allow(b), 1);
        vx_breaker_record(b, 1, 0);
    }
    assert_int_equal(vx_breaker_allow(b), 1);
    vx_breaker_record(b, 1, 1); /* a success does not reset the count */
    assert_int_equal(vx_breaker_state(b), VX_BREAKER_CLOSED);
    assert_int_equal(vx_breaker_allow(b), 1);
    vx_breaker_record(b, 1, 0);
    assert_int_equal(vx_breaker_state(b), VX_BREAKER_OPEN);
    assert_int_equal(vx_breaker_allow(b), 0);
    assert_true(vx_breaker_retry_in(b) > 0);
    assert_int_equal((int)b->rejected, 1);
    vx_breaker_free(b);
    vx_runtime_free(rt);
}

static void test_half_open_probes(void **state) {
    (void)state;
    vx_runtime *rt = unit_runtime();
    vx_breaker *b = make(rt, "t2", 1, 30);
    assert_int_equal(vx_breaker_allow(b), 1);
    vx_breaker_record(b, 1, 0);
    assert_int_equal(vx_breaker_state(b), VX_BREAKER_OPEN);
    wait_ms(rt, 40);
    int p = vx_breaker_allow(b);
    assert_int_equal(p, 2);
    assert_int_equal(vx_breaker_state(b), VX_BREAKER_HALF_OPEN);
    assert_int_equal(vx_breaker_allow(b), 0); /* only one probe at a time */
    vx_breaker_record(b, p, 0);               /* failed probe: open again */
    assert_int_equal(vx_breaker_state(b), VX_BREAKER_OPEN);
    wait_ms(rt, 40);
    p = vx_breaker_allow(b);
    vx_breaker_record(b, p, 1);
    assert_int_equal(vx_breaker_state(b), VX_BREAKER_HALF_OPEN); /* needs 2 successes */
    p = vx_breaker_allow(b);
    vx_breaker_record(b, p, 1);
    assert_int_equal(vx_breaker_state(b), VX_BREAKER_CLOSED);
    uint32_t f, c;
    vx_breaker_window(b, &f, &c);
    assert_int_equal(f, 0);
    vx_breaker_free(b);
    vx_runtime_free(rt);
}

static void test_window_forgets(void **state) {
    (void)state;
    vx_runtime *rt = unit_runtime();
    vx_breaker_opts o = {.failure_threshold = 2, .window_ms = 50, .cooldown_ms = 1000};
    char err[128];
    vx_breaker *b = vx_breaker_new(rt, "t3", &o, err, sizeof err);
    vx_breaker_record(b, vx_breaker_allow(b), 0);
    wait_ms(rt, 80); /* the first failure leaves the window */
    vx_breaker_record(b, vx_breaker_allow(b), 0);
    assert_int_equal(vx_breaker_state(b), VX_BREAKER_CLOSED);
    vx_breaker_record(b, vx_breaker_allow(b), 0);
    assert_int_equal(vx_breaker_state(b), VX_BREAKER_OPEN);
    vx_breaker_reset(b);
    assert_int_equal(vx_breaker_state(b), VX_BREAKER_CLOSED);
    /* a reset of a closed breaker forgets its failures too */
    vx_breaker_record(b, vx_breaker_allow(b), 0);
    vx_breaker_reset(b);
    vx_breaker_record(b, vx_breaker_allow(b), 0);
    assert_int_equal(vx_breaker_state(b), VX_BREAKER_CLOSED);
    vx_breaker_free(b);
    vx_runtime_free(rt);
}

static void test_transitions_are_counted(void **state) {
    (void)state;
    vx_runtime *rt = unit_runtime();
    vx_breaker *b = make(rt, "t4", 1, 1000);
    vx_breaker_record(b, vx_breaker_allow(b), 0);
    vx_breaker_allow(b);
    char *text = vx_metrics_render(rt->metrics, NULL);
    assert_non_null(strstr(text, "vibex_breaker_state{breaker=\"t4\"} 1\n"));
    assert_non_null(strstr(text, "vibex_breaker_transitions_total{breaker=\"t4\",to=\"open\"} 1\n"));
    assert_non_null(strstr(text, "vibex_breaker_rejected_total{breaker=\"t4\"} 1\n"));
    free(text);
    char err[64];
    assert_null(vx_breaker_new(rt, "", NULL, err, sizeof err));
    vx_breaker_free(b);
    vx_runtime_free(rt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_at_threshold),
        cmocka_unit_test(test_half_open_probes),
        cmocka_unit_test(test_window_forgets),
        cmocka_unit_test(test_transitions_are_counted),
    };
    return cmocka_run_group_tests_name("breaker", tests, NULL, NULL);
}
