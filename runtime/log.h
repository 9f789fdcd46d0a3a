/*
 * log.h — structured logging: JSON lines per channel, rotated by size,
 * with secrets redacted before a byte is written anywhere.
 */
#ifndef VX_LOG_H
#define VX_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { VX_DEBUG = 0, VX_INFO, VX_WARN, VX_ERROR, VX_OFF } vx_level;

enum {
    VX_CH_APP = 0,
    VX_CH_TRADING,
    VX_CH_MARKET_DATA,
    VX_CH_LLM,
    VX_CH_ERRORS,
    VX_CH_COUNT
};

typedef enum { VX_F_STR, VX_F_NUM, VX_F_INT, VX_F_BOOL, VX_F_RAW } vx_field_type;

/* One key/value of a log line. VX_F_RAW is already-encoded JSON. */
typedef struct vx_field {
    const char *key;
    vx_field_type type;
    const char *s;
    size_t slen;
    double n;
    int64_t i;
} vx_field;

typedef enum { VX_CONSOLE_AUTO, VX_CONSOLE_TEXT, VX_CONSOLE_JSON, VX_CONSOLE_NONE } vx_console_format;

typedef struct vx_log_config {
    const char *dir;            /* NULL: keep the current one */
    vx_level level;             /* lines below this are dropped everywhere */
    vx_level console_level;     /* lines below this do not reach stderr */
    vx_console_format console;
    int color;                  /* -1 auto (TTY), 0 off, 1 on */
    size_t max_bytes;           /* rotate a channel file past this size */
    int keep;                   /* rotated files kept: <ch>.log.1 … .keep */
} vx_log_config;

typedef struct vx_log vx_log;

vx_log *vx_log_new(void);
void vx_log_free(vx_log *log);

/* Apply a configuration. Returns 0, or -1 with a message in err. */
int vx_log_configure(vx_log *log, const vx_log_config *cfg, char *err, size_t errlen);
void vx_log_get_config(const vx_log *log, vx_log_config *out);

void vx_log_write(vx_log *log, vx_level level, int channel, const char *msg,
                  const vx_field *fields, int nfields);
void vx_logf(vx_log *log, vx_level level, int channel, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Write buffered lines to their files. */
void vx_log_flush(vx_log *log);

/* Register a secret value: it is replaced by *** wherever it appears. */
int vx_log_add_secret(vx_log *log, const char *value, size_t len);

/* Redact a string the way log lines are redacted. Returns a malloc'd copy. */
char *vx_log_redact(const vx_log *log, const char *s, size_t len, size_t *outlen);
/* Only the registered secret values, masked as *** wherever they appear
 * (data written to the database and files: the key=value rules of log
 * redaction would change structured text such as JSON). */
int vx_log_has_secret(const vx_log *log, const char *s, size_t len);
char *vx_log_mask_secrets(const vx_log *log, const char *s, size_t len, size_t *outlen);

/* 1 when a field of this name holds a secret (api_key, signature, …). */
int vx_log_is_secret_key(const char *key);

int vx_log_channel_from_name(const char *name);
const char *vx_log_channel_name(int channel);
int vx_log_level_from_name(const char *name);
const char *vx_log_level_name(vx_level level);

/* Lines written since start, per level (for tests and metrics). */
uint64_t vx_log_count(const vx_log *log, vx_level level);

#endif
