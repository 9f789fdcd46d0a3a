/*
 * fswatch.c — debounced directory watching on uv_fs_event (inotify).
 */
#include "fswatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PENDING 256

struct vx_fswatch {
    uv_fs_event_t event;
    uv_timer_t timer;
    vx_runtime *rt;
    vx_fswatch_fn fn;
    void *ud;
    unsigned debounce_ms;
    char *names[MAX_PENDING];
    int npending;
    int overflow;  /* more names than MAX_PENDING: deliver "*" */
    int closing;
    int open_handles;
    char *dir;
};

static void clear_pending(vx_fswatch *w) {
    for (int i = 0; i < w->npending; i++) free(w->names[i]);
    w->npending = 0;
    w->overflow = 0;
}

static void deliver(uv_timer_t *t) {
    vx_fswatch *w = t->data;
    if (w->closing) return;
    if (w->overflow) {
        clear_pending(w);
        w->names[0] = strdup("*");
        w->npending = w->names[0] ? 1 : 0;
    }
    int n = w->npending;
    char *names[MAX_PENDING];
    memcpy(names, w->names, sizeof(char *) * (size_t)n);
    w->npending = 0;
    w->fn(w, w->ud, names, n); /* may stop the watcher: w is valid until the closes run */
    for (int i = 0; i < n; i++) free(names[i]);
}

static void add_name(vx_fswatch *w, const char *name) {
    if (!name) name = "*";
    for (int i = 0; i < w->npending; i++)
        if (strcmp(w->names[i], name) == 0) return;
    if (w->npending == MAX_PENDING) {
        w->overflow = 1;
        return;
    }
    char *copy = strdup(name);
    if (!copy) {
        w->overflow = 1;
        return;
    }
    w->names[w->npending++] = copy;
}

static void on_event(uv_fs_event_t *h, const char *filename, int events, int status) {
    (void)events;
    vx_fswatch *w = h->data;
    if (w->closing) return;
    if (status < 0) {
        add_name(w, "*"); /* the watch itself had a problem: ask for a full rescan */
    } else {
        add_name(w, filename);
    }
    if (!uv_is_active((uv_handle_t *)&w->timer))
        uv_timer_start(&w->timer, deliver, w->debounce_ms, 0);
}

vx_fswatch *vx_fswatch_start(vx_runtime *rt, const char *dir, unsigned debounce_ms,
                             vx_fswatch_fn fn, void *ud, char *err, size_t errlen) {
    vx_fswatch *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->rt = rt;
    w->fn = fn;
    w->ud = ud;
    w->debounce_ms = debounce_ms;
    uv_fs_event_init(&rt->loop, &w->event);
    uv_timer_init(&rt->loop, &w->timer);
    w->event.data = w->timer.data = w;
    w->open_handles = 2;
    int rc = uv_fs_event_start(&w->event, on_event, dir, 0);
    if (rc != 0) {
        snprintf(err, errlen, "cannot watch %s: %s", dir, uv_strerror(rc));
        vx_fswatch_stop(w);
        return NULL;
    }
    return w;
}

static void on_closed(uv_handle_t *h) {
    vx_fswatch *w = h->data;
    if (--w->open_handles > 0) return;
    clear_pending(w);
    free(w->dir);
    free(w);
}

void vx_fswatch_stop(vx_fswatch *w) {
    if (w->closing) return;
    w->closing = 1;
    uv_fs_event_stop(&w->event);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->event, on_closed);
    uv_close((uv_handle_t *)&w->timer, on_closed);
}

void vx_fswatch_ref(vx_fswatch *w, int ref) {
    if (ref) {
        uv_ref((uv_handle_t *)&w->event);
        uv_ref((uv_handle_t *)&w->timer);
    } else {
        uv_unref((uv_handle_t *)&w->event);
        uv_unref((uv_handle_t *)&w->timer);
    }
}

const char *vx_fswatch_dir(const vx_fswatch *w) { return w->dir; }
