/* test_log.c — JSON lines, channels, errors.log, rotation, redaction. */
#include <sys/stat.h>

#include "unit.h"
#include "log.h"

static char dir[256];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/vx-test-log-%d", getpid());
    return 0;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static vx_log *new_log(size_t max_bytes) {
    vx_log *log = vx_log_new();
    vx_log_config c;
    vx_log_get_config(log, &c);
    c.dir = dir;
    c.level = VX_DEBUG;
    c.console = VX_CONSOLE_NONE;
    c.max_bytes = max_bytes;
    c.keep = 2;
    char err[128];
    assert_int_equal(vx_log_configure(log, &c, err, sizeof err), 0);
    return log;
}

static void test_json_line_and_channels(void **state) {
    (void)state;
    vx_log *log = new_log(1 << 20);
    vx_field f[] = {
        {.key = "symbol", .type = VX_F_STR, .s = "BTCUSDT", .slen = 7},
        {.key = "qty", .type = VX_F_NUM, .n = 0.25},
        {.key = "ok", .type = VX_F_BOOL, .i = 1},
    };
    vx_log_write(log, VX_INFO, VX_CH_TRADING, "order \"placed\"", f, 3);
    vx_log_write(log, VX_ERROR, VX_CH_LLM, "model failed", NULL, 0);
    vx_log_flush(log);
    char path[512];
    snprintf(path, sizeof path, "%s/trading.log", dir);
    char *t = slurp(path);
    assert_non_null(t);
    assert_non_null(strstr(t, "\"level\":\"info\",\"channel\":\"trading\",\"msg\":\"order \\\"placed\\\"\""));
    assert_non_null(strstr(t, "\"symbol\":\"BTCUSDT\",\"qty\":0.25,\"ok\":true}\n"));
    snprintf(path, sizeof path, "%s/errors.log", dir);
    t = slurp(path);
    assert_non_null(t);
    assert_non_null(strstr(t, "\"channel\":\"llm\",\"msg\":\"model failed\""));
    snprintf(path, sizeof path, "%s/llm.log", dir);
    assert_non_null(slurp(path));
    vx_log_free(log);
}

static void test_redaction(void **state) {
    (void)state;
    vx_log *log = new_log(1 << 20);
    const char *secret = "s3cr3t-VALUE-xyz";
    vx_log_add_secret(log, secret, strlen(secret));
    vx_field f[] = {
        {.key = "api_key", .type = VX_F_STR, .s = "AKIA1234", .slen = 8},
        {.key = "note", .type = VX_F_STR, .s = "key is s3cr3t-VALUE-xyz!", .slen = 24},
        {.key = "max_tokens", .type = VX_F_NUM, .n = 512},
    };
    vx_log_write(log, VX_WARN, VX_CH_APP,
                 "GET /fapi/v1/order?symbol=X&signature=abcdef0123&timestamp=1 {\"secret\":\"zzz\"}", f, 3);
    vx_log_flush(log);
    char path[512];
    snprintf(path, sizeof path, "%s/app.log", dir);
    char *t = slurp(path);
    assert_non_null(t);
    assert_null(strstr(t, "AKIA1234"));
    assert_null(strstr(t, "s3cr3t-VALUE-xyz"));
    assert_null(strstr(t, "abcdef0123"));
    assert_null(strstr(t, "zzz"));
    assert_non_null(strstr(t, "signature=***&timestamp=1"));
    assert_non_null(strstr(t, "\"api_key\":\"***\""));
    assert_non_null(strstr(t, "key is ***!"));
    assert_non_null(strstr(t, "\"max_tokens\":512"));
    size_t n;
    char *r = vx_log_redact(log, "Authorization: Bearer abc.def", 29, &n);
    assert_string_equal(r, "Authorization: ***");
    free(r);
    vx_log_free(log);
}

static void test_rotation(void **state) {
    (void)state;
    vx_log *log = new_log(4096);
    char msg[200];
    memset(msg, 'a', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    for (int i = 0; i < 200; i++) {
        vx_log_write(log, VX_INFO, VX_CH_MARKET_DATA, msg, NULL, 0);
        vx_log_flush(log);
    }
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/market_data.log", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size <= 4096);
    snprintf(path, sizeof path, "%s/market_data.log.1", dir);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof path, "%s/market_data.log.2", dir);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof path, "%s/market_data.log.3", dir);
    assert_int_not_equal(stat(path, &st), 0); /* keep = 2 */
    vx_log_free(log);
}

static void test_levels_and_bad_config(void **state) {
    (void)state;
    vx_log *log = new_log(1 << 20);
    vx_log_config c;
    vx_log_get_config(log, &c);
    c.level = VX_WARN;
    char err[128];
    assert_int_equal(vx_log_configure(log, &c, err, sizeof err), 0);
    vx_log_write(log, VX_INFO, VX_CH_APP, "dropped", NULL, 0);
    assert_int_equal(vx_log_count(log, VX_INFO), 0);
    c.max_bytes = 10;
    assert_int_equal(vx_log_configure(log, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "max_bytes"));
    assert_int_equal(vx_log_level_from_name("warning"), VX_WARN);
    assert_int_equal(vx_log_channel_from_name("nope"), -1);
    vx_log_free(log);
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_line_and_channels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels_and_bad_config, setup, teardown),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
