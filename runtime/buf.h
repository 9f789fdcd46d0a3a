/*
 * buf.h — a growable byte buffer, the one string builder the runtime uses
 * (log lines, metrics exposition, JSON fragments, HTTP bodies).
 */
#ifndef VX_BUF_H
#define VX_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct vx_buf {
    char *p;
    size_t len;
    size_t cap;
    int oom; /* set once an allocation failed; later appends are dropped */
} vx_buf;

void vx_buf_init(vx_buf *b);
void vx_buf_free(vx_buf *b);
void vx_buf_reset(vx_buf *b);
int vx_buf_reserve(vx_buf *b, size_t extra);
void vx_buf_add(vx_buf *b, const void *p, size_t n);
void vx_buf_adds(vx_buf *b, const char *s);
void vx_buf_addc(vx_buf *b, char c);
void vx_buf_addf(vx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s as the body of a JSON string (without the quotes). */
void vx_buf_add_json_escaped(vx_buf *b, const char *s, size_t n);
/* Append a double the way JSON and Prometheus want it: integers without
 * exponent or fraction, NaN/Inf as the given words. */
void vx_buf_add_number(vx_buf *b, double v, const char *nan, const char *pinf, const char *ninf);
/* NUL-terminate and return the data (the buffer keeps ownership). */
const char *vx_buf_cstr(vx_buf *b);

#endif
