/*
 * breaker.c — circuit breaker state machine (see breaker.h).
 *
 * The rolling window is VX_BREAKER_BUCKETS buckets of window_ms/BUCKETS
 * each; advancing time zeroes the buckets that fell out of the window, so
 * both recording and checking are O(BUCKETS) at worst and usually O(1).
 */
#include "breaker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static const char *const state_names[] = {"closed", "open", "half_open"};

static vx_series *series1(vx_runtime *rt, const char *fam_name, const char *help,
                          vx_metric_type type, int nlabels, const char *const *labels,
                          const char *const *values) {
    char err[128];
    vx_family *f =
        vx_metrics_family(rt->metrics, fam_name, help, type, nlabels, labels, NULL, 0, err, sizeof err);
    return f ? vx_family_series(f, values) : NULL;
}

static int setup_metrics(vx_breaker *b) {
    static const char *const l1[] = {"breaker"};
    static const char *const l2[] = {"breaker", "to"};
    const char *v1[] = {b->name};
    const char *vo[] = {b->name, "open"}, *vc[] = {b->name, "closed"}, *vh[] = {b->name, "half_open"};
    vx_runtime *rt = b->rt;
    b->m_state = series1(rt, "vibex_breaker_state", "Circuit breaker state (0 closed, 1 open, 2 half-open)",
                         VX_GAUGE, 1, l1, v1);
    b->m_rejected = series1(rt, "vibex_breaker_rejected_total", "Calls refused by an open breaker",
                            VX_COUNTER, 1, l1, v1);
    const char *th = "Circuit breaker state transitions";
    b->m_open = series1(rt, "vibex_breaker_transitions_total", th, VX_COUNTER, 2, l2, vo);
    b->m_close = series1(rt, "vibex_breaker_transitions_total", th, VX_COUNTER, 2, l2, vc);
    b->m_half = series1(rt, "vibex_breaker_transitions_total", th, VX_COUNTER, 2, l2, vh);
    return b->m_state && b->m_rejected && b->m_open && b->m_close && b->m_half ? 0 : -1;
}

static void apply_defaults(vx_breaker_opts *o) {
    if (o->failure_threshold <= 0) o->failure_threshold = 5;
    if (o->min_calls <= 0) o->min_calls = 1;
    if (o->window_ms <= 0) o->window_ms = 60000;
    if (o->cooldown_ms <= 0) o->cooldown_ms = 30000;
    if (o->half_open_max <= 0) o->half_open_max = 1;
    if (o->success_threshold <= 0) o->success_threshold = 1;
}

vx_breaker *vx_breaker_new(vx_runtime *rt, const char *name, const vx_breaker_opts *o,
                           char *err, int errlen) {
    if (!name || !*name || strlen(name) >= sizeof(((vx_breaker *)0)->name)) {
        snprintf(err, (size_t)errlen, "a breaker needs a name of 1 to 63 characters");
        return NULL;
    }
    vx_breaker *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, (size_t)errlen, "out of memory");
        return NULL;
    }
    b->rt = rt;
    snprintf(b->name, sizeof b->name, "%s", name);
    if (o) b->o = *o;
    apply_defaults(&b->o);
    b->bucket_ms = b->o.window_ms / VX_BREAKER_BUCKETS;
    b->bucket_epoch = (uint64_t)((double)vx_now_ms(rt) / b->bucket_ms);
    if (setup_metrics(b) != 0) {
        snprintf(err, (size_t)errlen, "could not register the breaker's metrics");
        free(b);
        return NULL;
    }
    vx_series_set(b->m_state, VX_BREAKER_CLOSED);
    return b;
}

void vx_breaker_free(vx_breaker *b) { free(b); }

static void advance(vx_breaker *b, uint64_t now) {
    uint64_t epoch = (uint64_t)((double)now / b->bucket_ms);
    if (epoch <= b->bucket_epoch) return;
    uint64_t steps = epoch - b->bucket_epoch;
    if (steps > VX_BREAKER_BUCKETS) steps = VX_BREAKER_BUCKETS;
    for (uint64_t i = 1; i <= steps; i++) {
        int k = (int)((b->bucket_epoch + i) % VX_BREAKER_BUCKETS);
        b->fails[k] = b->calls[k] = 0;
    }
    b->bucket_epoch = epoch;
}

void vx_breaker_window(vx_breaker *b, uint32_t *fails, uint32_t *calls) {
    advance(b, vx_now_ms(b->rt));
    uint32_t f = 0, c = 0;
    for (int i = 0; i < VX_BREAKER_BUCKETS; i++) {
        f += b->fails[i];
        c += b->calls[i];
    }
    *fails = f;
    *calls = c;
}

static void clear_window(vx_breaker *b) {
    memset(b->fails, 0, sizeof b->fails);
    memset(b->calls, 0, sizeof b->calls);
}

static void transition(vx_breaker *b, int to, const char *why) {
    int from = b->state;
    if (from == to) return;
    b->state = to;
    b->probes_in_flight = 0;
    b->probe_successes = 0;
    if (to == VX_BREAKER_OPEN) b->opened_at = vx_now_ms(b->rt);
    if (to == VX_BREAKER_CLOSED) clear_window(b);
    vx_series_set(b->m_state, to);
    vx_series_add(to == VX_BREAKER_OPEN ? b->m_open : to == VX_BREAKER_CLOSED ? b->m_close : b->m_half, 1);
    vx_field fields[3] = {
        {.key = "breaker", .type = VX_F_STR, .s = b->name, .slen = strlen(b->name)},
        {.key = "from", .type = VX_F_STR, .s = state_names[from], .slen = strlen(state_names[from])},
        {.key = "to", .type = VX_F_STR, .s = state_names[to], .slen = strlen(state_names[to])},
    };
    char msg[256];
    snprintf(msg, sizeof msg, "circuit breaker '%s' %s -> %s: %s", b->name, state_names[from],
             state_names[to], why);
    vx_log_write(b->rt->log, to == VX_BREAKER_OPEN ? VX_WARN : VX_INFO, VX_CH_APP, msg, fields, 3);
}

int vx_breaker_allow(vx_breaker *b) {
    if (b->state == VX_BREAKER_CLOSED) return 1;
    if (b->state == VX_BREAKER_OPEN) {
        if ((double)(vx_now_ms(b->rt) - b->opened_at) < b->o.cooldown_ms) goto refuse;
        transition(b, VX_BREAKER_HALF_OPEN, "cool-down over, probing");
    }
    if (b->probes_in_flight >= b->o.half_open_max) goto refuse;
    b->probes_in_flight++;
    return 2;
refuse:
    b->rejected++;
    vx_series_add(b->m_rejected, 1);
    return 0;
}

void vx_breaker_record(vx_breaker *b, int allowed, int ok) {
    if (allowed == 2) {
        if (b->state != VX_BREAKER_HALF_OPEN) return; /* reset meanwhile */
        if (b->probes_in_flight > 0) b->probes_in_flight--;
        if (!ok) {
            transition(b, VX_BREAKER_OPEN, "probe failed");
        } else if (++b->probe_successes >= b->o.success_threshold) {
            transition(b, VX_BREAKER_CLOSED, "probes succeeded");
        }
        return;
    }
    if (allowed != 1 || b->state != VX_BREAKER_CLOSED) return;
    uint64_t now = vx_now_ms(b->rt);
    advance(b, now);
    int k = (int)(b->bucket_epoch % VX_BREAKER_BUCKETS);
    b->calls[k]++;
    if (ok) return;
    b->fails[k]++;
    uint32_t fails, calls;
    vx_breaker_window(b, &fails, &calls);
    if ((int)fails >= b->o.failure_threshold && (int)calls >= b->o.min_calls) {
        char why[96];
        snprintf(why, sizeof why, "%u failures in %u calls within %.0f ms", fails, calls,
                 b->o.window_ms);
        transition(b, VX_BREAKER_OPEN, why);
    }
}

double vx_breaker_retry_in(vx_breaker *b) {
    if (b->state != VX_BREAKER_OPEN) return 0;
    double left = b->o.cooldown_ms - (double)(vx_now_ms(b->rt) - b->opened_at);
    return left > 0 ? left : 0;
}

void vx_breaker_reset(vx_breaker *b) {
    transition(b, VX_BREAKER_CLOSED, "reset by hand");
    clear_window(b); /* also when it was closed already: a reset forgets past failures */
}

int vx_breaker_state(const vx_breaker *b) { return b->state; }
