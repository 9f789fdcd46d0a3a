/* test_task.c — the loop and the scheduler, driven through Lua chunks. */
#include "unit.h"

static void run(const char *code, const char *expect) {
    vx_runtime *rt = unit_runtime();
    {
        lua_State *L = rt->L;
        if (luaL_dostring(L, "require('vibex.core.log').configure{console='none', dir='/tmp/vx-unit-logs'}") != 0) fail_msg("%s", lua_tostring(L, -1));
    }
    char out[1024];
    unit_run_lua(rt, code, out, sizeof out);
    assert_string_equal(out, expect);
    vx_runtime_free(rt);
}

static void test_sleep_order(void **state) {
    (void)state;
    run("local task = require 'vibex.task'\n"
        "local order = {}\n"
        "for _, ms in ipairs{30, 10, 20, 0} do\n"
        "  task.spawn(function() task.sleep(ms); order[#order+1] = ms end)\n"
        "end\n"
        "task.sleep(50)\n"
        "result = table.concat(order, ',')",
        "0,10,20,30");
}

static void test_join_and_results(void **state) {
    (void)state;
    run("local task = require 'vibex.task'\n"
        "local t = task.spawn(function(a, b) task.sleep(5); return a + b, 'x' end, 2, 3)\n"
        "local ok, s, x = t:join()\n"
        "local ok2, s2 = t:join()  -- joining a finished task\n"
        "result = tostring(ok)..s..x..tostring(ok2)..s2..t:status()",
        "true5xtrue5done");
}

static void test_error_kills_only_that_task(void **state) {
    (void)state;
    run("local task = require 'vibex.task'\n"
        "local bad = task.spawn(function() task.sleep(1); error('boom') end)\n"
        "local good = task.spawn(function() task.sleep(10); return 'alive' end)\n"
        "local ok, msg = bad:join()\n"
        "local ok2, v = good:join()\n"
        "result = tostring(ok)..'|'..(msg:match('boom') or '?')..'|'..v..'|'..bad:status()",
        "false|boom|alive|failed");
}

static void test_cancel_waiting_and_ready(void **state) {
    (void)state;
    run("local task = require 'vibex.task'\n"
        "local cleaned = false\n"
        "local t = task.spawn(function()\n"
        "  local ok, err = pcall(task.sleep, 10000)\n"
        "  cleaned = not ok and task.is_cancelled(err)\n"
        "  error(err, 0)\n"
        "end)\n"
        "task.sleep(5)\n"
        "t:cancel()\n"
        "local ok, msg = t:join()\n"
        "local never = task.spawn(function() result = 'ran' end)\n"
        "never:cancel()\n"
        "task.sleep(1)\n"
        "result = tostring(ok)..'|'..msg..'|'..tostring(cleaned)..'|'..t:status()..'|'..never:status()",
        "false|task cancelled|true|cancelled|cancelled");
}

static void test_timeout_nested(void **state) {
    (void)state;
    run("local task = require 'vibex.task'\n"
        "local a, err = task.timeout(20, task.sleep, 1000)\n"
        "local b = task.timeout(1000, function() task.sleep(1); return 'fast' end)\n"
        "local inner_err\n"
        "local c, cerr = task.timeout(10, function()\n"
        "  local x, e = task.timeout(1000, task.sleep, 500)  -- outer fires first\n"
        "  inner_err = e\n"
        "  return 'not reached'\n"
        "end)\n"
        "result = tostring(a)..'|'..err.message..'|'..b..'|'..tostring(c)..'|'..cerr.message..'|'..tostring(inner_err)",
        "nil|timeout after 20 ms|fast|nil|timeout after 10 ms|nil");
}

static void test_every_and_yield(void **state) {
    (void)state;
    run("local task = require 'vibex.task'\n"
        "local n = 0\n"
        "local t = task.every(5, function() n = n + 1; if n == 2 then error('tick error') end end)\n"
        "while n < 4 do task.sleep(5) end\n"
        "t:cancel()\n"
        "local seen = {}\n"
        "local a = task.spawn(function() for i = 1, 3 do seen[#seen+1] = 'a'..i; task.yield() end end)\n"
        "local b = task.spawn(function() for i = 1, 3 do seen[#seen+1] = 'b'..i; task.yield() end end)\n"
        "a:join(); b:join()\n"
        "result = (n >= 4 and 'every' or 'no')..'|'..table.concat(seen, ',')",
        "every|a1,b1,a2,b2,a3,b3");
}

static void test_wait_outside_task_is_an_error(void **state) {
    (void)state;
    run("local task = require 'vibex.task'\n"
        "local co = coroutine.wrap(function() return pcall(task.sleep, 1) end)\n"
        "local ok, err = co()\n"
        "result = tostring(ok)..'|'..(err:match('can only wait inside a task') and 'clear' or err)",
        "false|clear");
}

/* hold_gc stops the collector only until its task waits or dies, and never
 * takes over a collector someone else stopped. */
static void test_hold_gc_ends_at_the_first_wait(void **state) {
    (void)state;
    run("local task = require 'vibex.task'\n"
        "local r = {}\n"
        "r[1] = tostring(task.hold_gc()) .. tostring(collectgarbage('isrunning'))\n"
        "task.yield()\n"
        "r[2] = tostring(collectgarbage('isrunning'))\n"
        "local t = task.spawn(function() task.hold_gc(); error('boom') end)\n"
        "t:join()\n"
        "r[3] = tostring(collectgarbage('isrunning'))\n"
        "local other = task.spawn(function() return collectgarbage('isrunning') end)\n"
        "task.hold_gc()\n"
        "local _, seen = other:join()  -- a wait: released before the other task runs\n"
        "r[4] = tostring(seen)\n"
        "collectgarbage('stop')\n"
        "r[5] = tostring(task.hold_gc())\n"
        "task.yield()\n"
        "r[6] = tostring(collectgarbage('isrunning'))\n"
        "collectgarbage('restart')\n"
        "task.hold_gc(); task.release_gc()\n"
        "r[7] = tostring(collectgarbage('isrunning'))\n"
        "result = table.concat(r, ',')",
        "truefalse,true,true,true,false,false,true");
}

static void test_many_tasks(void **state) {
    (void)state;
    run("local task = require 'vibex.task'\n"
        "local done = 0\n"
        "for i = 1, 20000 do task.spawn(function() task.yield(); done = done + 1 end) end\n"
        "while done < 20000 do task.sleep(1) end\n"
        "result = tostring(done)..'|'..task.alive()",
        "20000|1");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sleep_order),
        cmocka_unit_test(test_join_and_results),
        cmocka_unit_test(test_error_kills_only_that_task),
        cmocka_unit_test(test_cancel_waiting_and_ready),
        cmocka_unit_test(test_timeout_nested),
        cmocka_unit_test(test_every_and_yield),
        cmocka_unit_test(test_wait_outside_task_is_an_error),
        cmocka_unit_test(test_many_tasks),
        cmocka_unit_test(test_hold_gc_ends_at_the_first_wait),
    };
    return cmocka_run_group_tests_name("task", tests, NULL, NULL);
}
