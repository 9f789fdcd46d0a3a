/* test_metrics.c — the metrics registry and its Prometheus rendering. */
#include "unit.h"
#include "metrics.h"

static void test_counter_and_labels(void **state) {
    (void)state;
    vx_metrics *m = vx_metrics_new();
    char err[128];
    const char *labels[] = {"venue", "side"};
    vx_family *f = vx_metrics_family(m, "orders_total", "Orders sent", VX_COUNTER, 2, labels, NULL, 0,
                                     err, sizeof err);
    assert_non_null(f);
    const char *a[] = {"aster", "BUY"}, *b[] = {"aster", "SELL"}, *a2[] = {"aster", "BUY"};
    vx_series *sa = vx_family_series(f, a), *sb = vx_family_series(f, b);
    assert_ptr_equal(sa, vx_family_series(f, a2));
    vx_series_add(sa, 2);
    vx_series_add(sb, 1);
    vx_series_add(sa, 1);
    size_t len;
    char *text = vx_metrics_render(m, &len);
    assert_non_null(strstr(text, "# HELP orders_total Orders sent\n# TYPE orders_total counter\n"));
    assert_non_null(strstr(text, "orders_total{venue=\"aster\",side=\"BUY\"} 3\n"));
    assert_non_null(strstr(text, "orders_total{venue=\"aster\",side=\"SELL\"} 1\n"));
    free(text);
    vx_metrics_free(m);
}

static void test_reregister_and_conflicts(void **state) {
    (void)state;
    vx_metrics *m = vx_metrics_new();
    char err[128];
    vx_family *f1 = vx_metrics_family(m, "x", "", VX_GAUGE, 0, NULL, NULL, 0, err, sizeof err);
    vx_family *f2 = vx_metrics_family(m, "x", "", VX_GAUGE, 0, NULL, NULL, 0, err, sizeof err);
    assert_ptr_equal(f1, f2);
    assert_null(vx_metrics_family(m, "x", "", VX_COUNTER, 0, NULL, NULL, 0, err, sizeof err));
    assert_non_null(strstr(err, "already registered"));
    assert_null(vx_metrics_family(m, "bad name", "", VX_COUNTER, 0, NULL, NULL, 0, err, sizeof err));
    assert_non_null(strstr(err, "invalid metric name"));
    const char *le[] = {"le"};
    assert_null(vx_metrics_family(m, "h", "", VX_HISTOGRAM, 1, le, NULL, 0, err, sizeof err));
    vx_metrics_free(m);
}

static void test_histogram(void **state) {
    (void)state;
    vx_metrics *m = vx_metrics_new();
    char err[128];
    double b[] = {0.1, 1, 10};
    vx_family *f = vx_metrics_family(m, "lat_seconds", "Latency", VX_HISTOGRAM, 0, NULL, b, 3, err,
                                     sizeof err);
    vx_series *s = vx_family_series(f, NULL);
    vx_series_observe(s, 0.05);
    vx_series_observe(s, 0.5);
    vx_series_observe(s, 0.5);
    vx_series_observe(s, 100);
    char *text = vx_metrics_render(m, NULL);
    assert_non_null(strstr(text, "lat_seconds_bucket{le=\"0.1\"} 1\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{le=\"1\"} 3\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{le=\"10\"} 3\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(text, "lat_seconds_sum 101.05\n"));
    assert_non_null(strstr(text, "lat_seconds_count 4\n"));
    free(text);
    double bad[] = {1, 1};
    assert_null(vx_metrics_family(m, "h2", "", VX_HISTOGRAM, 0, NULL, bad, 2, err, sizeof err));
    vx_metrics_free(m);
}

static void test_label_escaping_and_many_series(void **state) {
    (void)state;
    vx_metrics *m = vx_metrics_new();
    char err[128];
    const char *labels[] = {"k"};
    vx_family *f = vx_metrics_family(m, "g", "help with \\ and\nnewline", VX_GAUGE, 1, labels, NULL,
                                     0, err, sizeof err);
    const char *v[] = {"a\"b\\c\nd"};
    vx_series_set(vx_family_series(f, v), -1.5);
    for (int i = 0; i < 5000; i++) { /* forces the table to grow several times */
        char name[32];
        snprintf(name, sizeof name, "s%d", i);
        const char *vv[] = {name};
        vx_series_add(vx_family_series(f, vv), i);
    }
    const char *probe[] = {"s4321"};
    assert_true(vx_family_series(f, probe)->value == 4321);
    char *text = vx_metrics_render(m, NULL);
    assert_non_null(strstr(text, "# HELP g help with \\\\ and\\nnewline\n"));
    assert_non_null(strstr(text, "g{k=\"a\\\"b\\\\c\\nd\"} -1.5\n"));
    free(text);
    vx_metrics_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_labels),
        cmocka_unit_test(test_reregister_and_conflicts),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_label_escaping_and_many_series),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
