/*
 * log.c — structured logging.
 *
 * Every line is one JSON object: {"ts","level","channel","msg", fields…}.
 * Each channel (app, trading, market_data, llm, errors) has its own file
 * <dir>/<channel>.log, opened lazily on its first line, so a one-off
 * `vibex -e` creates nothing. Error lines of any channel are copied to
 * errors.log. Files rotate by size (<ch>.log → <ch>.log.1 → … .keep).
 *
 * Lines are buffered per channel and written by vx_log_flush (called by a
 * loop timer, at shutdown, and at once for warnings and errors), so a burst
 * of debug lines costs one write() per channel rather than one per line.
 *
 * Redaction happens while a line is built, before it reaches any buffer:
 * registered secret values are replaced by ***, as are the values of fields
 * whose names mark them as secret (api_key, signature, …) and key=value /
 * "key":"value" pairs of such names inside free text.
 */

#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

#define FLUSH_THRESHOLD (64 * 1024)
#define MAX_SECRETS 256
#define MIN_SECRET_LEN 4

static const char *const channel_names[VX_CH_COUNT] = {"app", "trading", "market_data", "llm",
                                                       "errors"};
static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

typedef struct channel {
    int fd;
    size_t size;     /* bytes in the current file */
    vx_buf pending;  /* lines not yet written */
    int open_failed; /* report a failed open once, not per line */
} channel;

struct vx_log {
    char *dir;
    vx_level level;
    vx_level console_level;
    vx_console_format console;
    int color;
    size_t max_bytes;
    int keep;
    channel ch[VX_CH_COUNT];
    char *secrets[MAX_SECRETS];
    size_t secret_len[MAX_SECRETS];
    int nsecrets;
    uint64_t counts[VX_OFF];
    vx_buf line;     /* scratch: the JSON line being built */
    vx_buf text;     /* scratch: the console line */
};

vx_log *vx_log_new(void) {
    vx_log *log = calloc(1, sizeof *log);
    if (!log) return NULL;
    log->dir = strdup("logs");
    if (!log->dir) {
        free(log);
        return NULL;
    }
    log->level = VX_INFO;
    log->console_level = isatty(2) ? VX_INFO : VX_WARN;
    log->console = VX_CONSOLE_AUTO;
    log->color = -1;
    log->max_bytes = 10u * 1024 * 1024;
    log->keep = 5;
    for (int i = 0; i < VX_CH_COUNT; i++) log->ch[i].fd = -1;
    return log;
}

static void close_channels(vx_log *log) {
    for (int i = 0; i < VX_CH_COUNT; i++) {
        if (log->ch[i].fd >= 0) close(log->ch[i].fd);
        log->ch[i].fd = -1;
        log->ch[i].open_failed = 0;
    }
}

void vx_log_free(vx_log *log) {
    if (!log) return;
    vx_log_flush(log);
    close_channels(log);
    for (int i = 0; i < VX_CH_COUNT; i++) vx_buf_free(&log->ch[i].pending);
    for (int i = 0; i < log->nsecrets; i++) {
        explicit_bzero(log->secrets[i], log->secret_len[i]);
        free(log->secrets[i]);
    }
    vx_buf_free(&log->line);
    vx_buf_free(&log->text);
    free(log->dir);
    free(log);
}

int vx_log_configure(vx_log *log, const vx_log_config *cfg, char *err, size_t errlen) {
    if (cfg->level > VX_OFF || cfg->console_level > VX_OFF) {
        snprintf(err, errlen, "log level out of range");
        return -1;
    }
    if (cfg->keep < 0 || cfg->keep > 100) {
        snprintf(err, errlen, "log keep must be between 0 and 100, got %d", cfg->keep);
        return -1;
    }
    if (cfg->max_bytes < 4096) {
        snprintf(err, errlen, "log max_bytes must be at least 4096, got %zu", cfg->max_bytes);
        return -1;
    }
    if (cfg->dir && strcmp(cfg->dir, log->dir) != 0) {
        char *dir = strdup(cfg->dir);
        if (!dir) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        vx_log_flush(log);
        close_channels(log);
        free(log->dir);
        log->dir = dir;
    }
    log->level = cfg->level;
    log->console_level = cfg->console_level;
    log->console = cfg->console;
    log->color = cfg->color;
    log->max_bytes = cfg->max_bytes;
    log->keep = cfg->keep;
    return 0;
}

void vx_log_get_config(const vx_log *log, vx_log_config *out) {
    out->dir = log->dir;
    out->level = log->level;
    out->console_level = log->console_level;
    out->console = log->console;
    out->color = log->color;
    out->max_bytes = log->max_bytes;
    out->keep = log->keep;
}

/* ---- redaction ---------------------------------------------------------- */

int vx_log_is_secret_key(const char *key) {
    static const char *const parts[] = {"secret",     "password",   "passwd",        "private_key",
                                        "privatekey", "signature",  "api_key",       "apikey",
                                        "authorization", "credential", "listenkey", "listen_key",
                                        "passphrase", "mnemonic"};
    char low[64];
    size_t n = 0;
    for (; key[n] && n < sizeof low - 1; n++) low[n] = (char)tolower((unsigned char)key[n]);
    low[n] = '\0';
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (strstr(low, parts[i])) return 1;
    /* access_token, api_token, token — but not max_tokens or tokens_in */
    return n >= 5 && strcmp(low + n - 5, "token") == 0;
}

int vx_log_add_secret(vx_log *log, const char *value, size_t len) {
    if (len < MIN_SECRET_LEN) return 0; /* too short to mask without mangling text */
    for (int i = 0; i < log->nsecrets; i++)
        if (log->secret_len[i] == len && memcmp(log->secrets[i], value, len) == 0) return 0;
    if (log->nsecrets == MAX_SECRETS) return -1;
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, value, len);
    copy[len] = '\0';
    log->secrets[log->nsecrets] = copy;
    log->secret_len[log->nsecrets] = len;
    log->nsecrets++;
    return 0;
}

static int is_ident_char(char c) {
    return isalnum((unsigned char)c) || c == '_' || c == '-';
}

static int is_value_end(char c) {
    return c == '&' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '"' || c == '\'' ||
           c == ',' || c == ';' || c == ')' || c == '}' || c == ']';
}

/* If s[i] is the '=' or ':' after a secret key name, return where that key's
 * value starts and set *quoted; otherwise return 0. */
static size_t secret_value_start(const char *s, size_t n, size_t i, int *quoted) {
    size_t end = i, start;
    int json = 0;
    if (s[i] == ':' && end > 0 && s[end - 1] == '"') {
        json = 1;
        end--;
    }
    start = end;
    while (start > 0 && is_ident_char(s[start - 1])) start--;
    if (start == end || end - start > 63) return 0;
    if (json && (start == 0 || s[start - 1] != '"')) return 0;
    char key[64];
    memcpy(key, s + start, end - start);
    key[end - start] = '\0';
    if (!vx_log_is_secret_key(key)) return 0;
    size_t v = i + 1;
    while (v < n && s[v] == ' ') v++;
    *quoted = v < n && s[v] == '"';
    if (*quoted) v++;
    return v;
}

/* Redact into out: secret values, then key=value pairs of secret names. */
static void redact_into(const vx_log *log, vx_buf *out, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int matched = 0;
        for (int k = 0; log && k < log->nsecrets; k++) {
            size_t L = log->secret_len[k];
            if (L <= n - i && s[i] == log->secrets[k][0] && memcmp(s + i, log->secrets[k], L) == 0) {
                vx_buf_add(out, "***", 3);
                i += L;
                matched = 1;
                break;
            }
        }
        if (matched) continue;
        char c = s[i];
        vx_buf_addc(out, c);
        i++;
        if (c != '=' && c != ':') continue;
        int quoted = 0;
        size_t v = secret_value_start(s, n, i - 1, &quoted);
        if (!v) continue;
        vx_buf_add(out, s + i, v - i); /* spaces and opening quote */
        i = v;
        size_t e = i;
        if (quoted) {
            while (e < n && s[e] != '"') e += (s[e] == '\\' && e + 1 < n) ? 2 : 1;
        } else if (c == ':') { /* "Name: value" header style: the rest of the line */
            while (e < n && s[e] != '\n' && s[e] != '\r') e++;
        } else {
            while (e < n && !is_value_end(s[e])) e++;
        }
        if (e > i) vx_buf_add(out, "***", 3);
        i = e;
    }
}

/* The buffer's text, handed to the caller (free it), or NULL when it ran out of memory. */
static char *buf_release(vx_buf *b, size_t *outlen) {
    if (b->oom) {
        vx_buf_free(b);
        return NULL;
    }
    vx_buf_cstr(b);
    if (outlen) *outlen = b->len;
    if (!b->p) return strdup("");
    return b->p;
}

/* The first registered secret at or after s[from], or -1; *which gets its index. */
static long find_secret(const vx_log *log, const char *s, size_t n, size_t from, int *which) {
    long best = -1;
    for (int k = 0; log && k < log->nsecrets; k++) {
        size_t L = log->secret_len[k];
        if (from >= n || L > n - from) continue;
        const char *hit = memmem(s + from, n - from, log->secrets[k], L);
        if (hit && (best < 0 || hit - s < best)) {
            best = hit - s;
            *which = k;
        }
    }
    return best;
}

int vx_log_has_secret(const vx_log *log, const char *s, size_t len) {
    int k;
    return find_secret(log, s, len, 0, &k) >= 0;
}

char *vx_log_mask_secrets(const vx_log *log, const char *s, size_t len, size_t *outlen) {
    vx_buf b;
    vx_buf_init(&b);
    size_t i = 0;
    int k = 0;
    long at;
    while ((at = find_secret(log, s, len, i, &k)) >= 0) {
        vx_buf_add(&b, s + i, (size_t)at - i);
        vx_buf_add(&b, "***", 3);
        i = (size_t)at + log->secret_len[k];
    }
    vx_buf_add(&b, s + i, len - i);
    return buf_release(&b, outlen);
}

char *vx_log_redact(const vx_log *log, const char *s, size_t len, size_t *outlen) {
    vx_buf b;
    vx_buf_init(&b);
    redact_into(log, &b, s, len);
    return buf_release(&b, outlen);
}

/* ---- files -------------------------------------------------------------- */

static int mkdir_p(const char *dir) {
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) return -1;
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) return -1;
        path[i] = saved;
    }
    return 0;
}

static void channel_path(const vx_log *log, int c, int gen, char *out, size_t len) {
    if (gen == 0)
        snprintf(out, len, "%s/%s.log", log->dir, channel_names[c]);
    else
        snprintf(out, len, "%s/%s.log.%d", log->dir, channel_names[c], gen);
}

static int open_channel(vx_log *log, int c) {
    channel *ch = &log->ch[c];
    char path[4200];
    if (mkdir_p(log->dir) != 0) goto fail;
    channel_path(log, c, 0, path, sizeof path);
    ch->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (ch->fd < 0) goto fail;
    struct stat st;
    ch->size = fstat(ch->fd, &st) == 0 ? (size_t)st.st_size : 0;
    ch->open_failed = 0;
    return 0;
fail:
    if (!ch->open_failed)
        fprintf(stderr, "vibex: cannot open log file %s/%s.log: %s\n", log->dir, channel_names[c],
                strerror(errno));
    ch->open_failed = 1;
    return -1;
}

static void rotate_channel(vx_log *log, int c) {
    char from[4200], to[4200];
    close(log->ch[c].fd);
    log->ch[c].fd = -1;
    for (int g = log->keep; g >= 1; g--) {
        channel_path(log, c, g - 1, from, sizeof from);
        channel_path(log, c, g, to, sizeof to);
        rename(from, to); /* a missing older file is not an error */
    }
    if (log->keep == 0) {
        channel_path(log, c, 0, from, sizeof from);
        unlink(from);
    }
}

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void flush_channel(vx_log *log, int c) {
    channel *ch = &log->ch[c];
    if (ch->pending.len == 0) return;
    if (ch->fd < 0 && open_channel(log, c) != 0) {
        vx_buf_reset(&ch->pending);
        return;
    }
    if (ch->size > 0 && ch->size + ch->pending.len > log->max_bytes) {
        rotate_channel(log, c);
        if (open_channel(log, c) != 0) {
            vx_buf_reset(&ch->pending);
            return;
        }
    }
    write_all(ch->fd, ch->pending.p, ch->pending.len);
    ch->size += ch->pending.len;
    vx_buf_reset(&ch->pending);
}

void vx_log_flush(vx_log *log) {
    for (int c = 0; c < VX_CH_COUNT; c++) flush_channel(log, c);
}

/* ---- formatting --------------------------------------------------------- */

static void format_time(char *iso, size_t isolen, char *clock, size_t clocklen) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int ms = (int)(ts.tv_nsec / 1000000);
    snprintf(iso, isolen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    snprintf(clock, clocklen, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

static void add_json_string(const vx_log *log, vx_buf *b, const char *s, size_t n) {
    vx_buf red;
    vx_buf_init(&red);
    redact_into(log, &red, s, n);
    vx_buf_addc(b, '"');
    vx_buf_add_json_escaped(b, red.p ? red.p : "", red.len);
    vx_buf_addc(b, '"');
    vx_buf_free(&red);
}

static void add_field_value(const vx_log *log, vx_buf *b, const vx_field *f) {
    if (vx_log_is_secret_key(f->key)) {
        vx_buf_adds(b, "\"***\"");
        return;
    }
    switch (f->type) {
    case VX_F_STR: add_json_string(log, b, f->s, f->slen); break;
    case VX_F_NUM: vx_buf_add_number(b, f->n, "null", "null", "null"); break;
    case VX_F_INT: vx_buf_addf(b, "%lld", (long long)f->i); break;
    case VX_F_BOOL: vx_buf_adds(b, f->i ? "true" : "false"); break;
    case VX_F_RAW: {
        vx_buf red;
        vx_buf_init(&red);
        redact_into(log, &red, f->s, f->slen);
        vx_buf_add(b, red.p, red.len);
        vx_buf_free(&red);
        break;
    }
    }
}

static void build_json(vx_log *log, vx_buf *b, const char *iso, vx_level level, int channel,
                       const char *msg, const vx_field *fields, int nfields) {
    vx_buf_adds(b, "{\"ts\":\"");
    vx_buf_adds(b, iso);
    vx_buf_adds(b, "\",\"level\":\"");
    vx_buf_adds(b, level_names[level]);
    vx_buf_adds(b, "\",\"channel\":\"");
    vx_buf_adds(b, channel_names[channel]);
    vx_buf_adds(b, "\",\"msg\":");
    add_json_string(log, b, msg, strlen(msg));
    for (int i = 0; i < nfields; i++) {
        const char *k = fields[i].key;
        if (!strcmp(k, "ts") || !strcmp(k, "level") || !strcmp(k, "channel") || !strcmp(k, "msg"))
            continue; /* the envelope's own keys win */
        vx_buf_addc(b, ',');
        add_json_string(NULL, b, k, strlen(k));
        vx_buf_addc(b, ':');
        add_field_value(log, b, &fields[i]);
    }
    vx_buf_adds(b, "}\n");
}

static int use_color(const vx_log *log) {
    if (log->color >= 0) return log->color;
    return isatty(2) && !getenv("NO_COLOR");
}

static void build_text(vx_log *log, vx_buf *b, const char *clock, vx_level level, int channel,
                       const char *msg, const vx_field *fields, int nfields) {
    static const char *const colors[] = {"\x1b[90m", "\x1b[32m", "\x1b[33m", "\x1b[31;1m"};
    static const char *const tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    int color = use_color(log);
    vx_buf_adds(b, clock);
    vx_buf_addc(b, ' ');
    if (color) vx_buf_adds(b, colors[level]);
    vx_buf_adds(b, tags[level]);
    if (color) vx_buf_adds(b, "\x1b[0m");
    vx_buf_addf(b, " %-11s ", channel_names[channel]);
    redact_into(log, b, msg, strlen(msg));
    for (int i = 0; i < nfields; i++) {
        vx_buf_addc(b, ' ');
        if (color) vx_buf_adds(b, "\x1b[36m");
        vx_buf_adds(b, fields[i].key);
        if (color) vx_buf_adds(b, "\x1b[0m");
        vx_buf_addc(b, '=');
        if (fields[i].type == VX_F_STR && !vx_log_is_secret_key(fields[i].key))
            redact_into(log, b, fields[i].s, fields[i].slen);
        else
            add_field_value(log, b, &fields[i]);
    }
    vx_buf_addc(b, '\n');
}

void vx_log_write(vx_log *log, vx_level level, int channel, const char *msg,
                  const vx_field *fields, int nfields) {
    if (level >= VX_OFF) return;
    if (channel < 0 || channel >= VX_CH_COUNT) channel = VX_CH_APP;
    int to_files = level >= log->level;
    int to_console = level >= log->console_level && log->console != VX_CONSOLE_NONE;
    if (!to_files && !to_console) return;
    log->counts[level]++;
    char iso[96], clock[64];
    format_time(iso, sizeof iso, clock, sizeof clock);
    vx_buf_reset(&log->line);
    build_json(log, &log->line, iso, level, channel, msg, fields, nfields);
    if (log->line.oom) return;
    if (to_files) {
        vx_buf_add(&log->ch[channel].pending, log->line.p, log->line.len);
        if (level >= VX_ERROR && channel != VX_CH_ERRORS)
            vx_buf_add(&log->ch[VX_CH_ERRORS].pending, log->line.p, log->line.len);
    }
    if (to_console) {
        int json = log->console == VX_CONSOLE_JSON;
        if (json) {
            write_all(2, log->line.p, log->line.len);
        } else {
            vx_buf_reset(&log->text);
            build_text(log, &log->text, clock, level, channel, msg, fields, nfields);
            if (!log->text.oom) write_all(2, log->text.p, log->text.len);
        }
    }
    if (level >= VX_WARN || log->ch[channel].pending.len > FLUSH_THRESHOLD) {
        flush_channel(log, channel);
        if (level >= VX_ERROR) flush_channel(log, VX_CH_ERRORS);
    }
}

void vx_logf(vx_log *log, vx_level level, int channel, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vx_log_write(log, level, channel, msg, NULL, 0);
}

int vx_log_channel_from_name(const char *name) {
    for (int i = 0; i < VX_CH_COUNT; i++)
        if (strcmp(name, channel_names[i]) == 0) return i;
    return -1;
}

const char *vx_log_channel_name(int channel) {
    return channel >= 0 && channel < VX_CH_COUNT ? channel_names[channel] : "?";
}

int vx_log_level_from_name(const char *name) {
    for (int i = 0; i <= VX_OFF; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    if (strcmp(name, "warning") == 0) return VX_WARN;
    return -1;
}

const char *vx_log_level_name(vx_level level) { return level <= VX_OFF ? level_names[level] : "?"; }

uint64_t vx_log_count(const vx_log *log, vx_level level) {
    return level < VX_OFF ? log->counts[level] : 0;
}
