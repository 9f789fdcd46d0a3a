/*
 * lwsctx.c — see lwsctx.h.
 */
#include "lwsctx.h"

#include <stdlib.h>
#include <string.h>

typedef struct handle_set {
    uv_handle_t **h;
    size_t n, cap;
} handle_set;

static void collect_handle(uv_handle_t *h, void *arg) {
    handle_set *s = arg;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        uv_handle_t **p = realloc(s->h, cap * sizeof *p);
        if (!p) return;
        s->h = p;
        s->cap = cap;
    }
    s->h[s->n++] = h;
}

static void unref_new_handle(uv_handle_t *h, void *arg) {
    handle_set *before = arg;
    for (size_t i = 0; i < before->n; i++)
        if (before->h[i] == h) return;
    uv_unref(h);
}

struct lws_context *vx_lws_context_new(vx_runtime *rt, struct lws_context_creation_info *info) {
    void *loops[1] = {&rt->loop};
    info->options |= LWS_SERVER_OPTION_LIBUV;
    info->foreign_loops = loops; /* read during creation only */
    handle_set before = {0};
    uv_walk(&rt->loop, collect_handle, &before);
    struct lws_context *ctx = lws_create_context(info);
    if (ctx) uv_walk(&rt->loop, unref_new_handle, &before);
    free(before.h);
    info->foreign_loops = NULL;
    return ctx;
}

int vx_lws_queue_push(vx_lws_queue *q, const void *p, size_t n, int binary) {
    vx_lws_msg *m = malloc(sizeof *m + LWS_PRE + n);
    if (!m) return -1;
    m->next = NULL;
    m->len = n;
    m->binary = binary;
    memcpy(m->buf + LWS_PRE, p, n);
    if (q->tail) q->tail->next = m;
    else q->head = m;
    q->tail = m;
    q->bytes += n;
    return 0;
}

int vx_lws_queue_write(vx_lws_queue *q, struct lws *wsi) {
    vx_lws_msg *m = q->head;
    if (!m) return 0;
    int n = lws_write(wsi, m->buf + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    if (n < (int)m->len) return -1;
    q->head = m->next;
    if (!q->head) q->tail = NULL;
    q->bytes -= m->len;
    free(m);
    return q->head ? 1 : 0;
}

void vx_lws_queue_clear(vx_lws_queue *q) {
    for (vx_lws_msg *m = q->head, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    q->head = q->tail = NULL;
    q->bytes = 0;
}
