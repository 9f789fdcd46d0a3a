/*
 * metrics.c — the metrics registry.
 *
 * Families are kept in registration order; each has a chained hash table of
 * series keyed by its label values. Lookups happen once per call site (the
 * caller keeps the series pointer); updates are a field write. Histograms
 * store per-bucket counts and make them cumulative only when rendered.
 */
#include "metrics.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define MAX_LABELS 16

static const double default_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10,
                                         30,     60,    120};

struct vx_family {
    char *name;
    char *help;
    vx_metric_type type;
    int nlabels;
    char *label_names[MAX_LABELS];
    double *bounds;
    int nbounds;
    vx_series **table;
    size_t table_size;
    size_t nseries;
    vx_series *first, *last;
    struct vx_family *next;
};

struct vx_metrics {
    vx_family *first, *last;
};

vx_metrics *vx_metrics_new(void) { return calloc(1, sizeof(vx_metrics)); }

static void free_series(vx_family *f, vx_series *s) {
    for (int i = 0; i < f->nlabels; i++) free(s->label_values ? s->label_values[i] : NULL);
    free(s->label_values);
    free(s->buckets);
    free(s->key);
    free(s);
}

static void free_family(vx_family *f) {
    vx_series *s = f->first;
    while (s) {
        vx_series *n = s->next_all;
        free_series(f, s);
        s = n;
    }
    for (int i = 0; i < f->nlabels; i++) free(f->label_names[i]);
    free(f->table);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f);
}

void vx_metrics_free(vx_metrics *m) {
    if (!m) return;
    vx_family *f = m->first;
    while (f) {
        vx_family *n = f->next;
        free_family(f);
        f = n;
    }
    free(m);
}

static int valid_name(const char *s, int allow_colon) {
    if (!s || !*s) return 0;
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_' || (allow_colon && s[0] == ':'))) return 0;
    for (const char *p = s + 1; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || (allow_colon && *p == ':'))) return 0;
    return 1;
}

vx_family *vx_metrics_find(vx_metrics *m, const char *name) {
    for (vx_family *f = m->first; f; f = f->next)
        if (strcmp(f->name, name) == 0) return f;
    return NULL;
}

static int same_shape(const vx_family *f, vx_metric_type type, int nlabels,
                      const char *const *label_names) {
    if (f->type != type || f->nlabels != nlabels) return 0;
    for (int i = 0; i < nlabels; i++)
        if (strcmp(f->label_names[i], label_names[i]) != 0) return 0;
    return 1;
}

static int check_labels(int nlabels, const char *const *label_names, char *err, size_t errlen) {
    if (nlabels < 0 || nlabels > MAX_LABELS) {
        snprintf(err, errlen, "a metric may have at most %d labels", MAX_LABELS);
        return -1;
    }
    for (int i = 0; i < nlabels; i++) {
        if (!valid_name(label_names[i], 0) || strncmp(label_names[i], "__", 2) == 0 ||
            strcmp(label_names[i], "le") == 0) {
            snprintf(err, errlen, "invalid label name '%s'", label_names[i] ? label_names[i] : "");
            return -1;
        }
    }
    return 0;
}

static int set_bounds(vx_family *f, const double *buckets, int nbuckets, char *err, size_t errlen) {
    if (!buckets) {
        buckets = default_buckets;
        nbuckets = (int)(sizeof default_buckets / sizeof default_buckets[0]);
    }
    if (nbuckets < 1 || nbuckets > 64) {
        snprintf(err, errlen, "a histogram needs between 1 and 64 buckets");
        return -1;
    }
    for (int i = 0; i < nbuckets; i++) {
        if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
            snprintf(err, errlen, "histogram buckets must be finite and strictly ascending");
            return -1;
        }
    }
    f->bounds = malloc(sizeof(double) * (size_t)nbuckets);
    if (!f->bounds) return -1;
    memcpy(f->bounds, buckets, sizeof(double) * (size_t)nbuckets);
    f->nbounds = nbuckets;
    return 0;
}

vx_family *vx_metrics_family(vx_metrics *m, const char *name, const char *help,
                             vx_metric_type type, int nlabels, const char *const *label_names,
                             const double *buckets, int nbuckets, char *err, size_t errlen) {
    if (!valid_name(name, 1)) {
        snprintf(err, errlen, "invalid metric name '%s' (use [a-zA-Z_:][a-zA-Z0-9_:]*)",
                 name ? name : "");
        return NULL;
    }
    if (check_labels(nlabels, label_names, err, errlen) != 0) return NULL;
    vx_family *f = vx_metrics_find(m, name);
    if (f) {
        if (same_shape(f, type, nlabels, label_names)) return f;
        snprintf(err, errlen, "metric '%s' is already registered with another type or labels",
                 name);
        return NULL;
    }
    f = calloc(1, sizeof *f);
    if (!f) goto oom;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->type = type;
    f->table_size = 16;
    f->table = calloc(f->table_size, sizeof(vx_series *));
    if (!f->name || !f->help || !f->table) goto oom;
    for (int i = 0; i < nlabels; i++) {
        f->label_names[i] = strdup(label_names[i]);
        if (!f->label_names[i]) goto oom;
        f->nlabels = i + 1;
    }
    if (type == VX_HISTOGRAM && set_bounds(f, buckets, nbuckets, err, errlen) != 0) {
        free_family(f);
        return NULL;
    }
    if (m->last) m->last->next = f;
    else m->first = f;
    m->last = f;
    return f;
oom:
    if (f) free_family(f);
    snprintf(err, errlen, "out of memory");
    return NULL;
}

int vx_family_nlabels(const vx_family *f) { return f->nlabels; }
vx_metric_type vx_family_type(const vx_family *f) { return f->type; }

static uint64_t hash_key(const char *s) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static char *join_key(int n, const char *const *values) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(values[i]) + 1;
    char *key = malloc(len), *p = key;
    if (!key) return NULL;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(values[i]);
        memcpy(p, values[i], l);
        p += l;
        if (i + 1 < n) *p++ = '\x1f';
    }
    *p = '\0';
    return key;
}

static void grow_table(vx_family *f) {
    size_t size = f->table_size * 2;
    vx_series **t = calloc(size, sizeof *t);
    if (!t) return; /* keep the old table: longer chains, still correct */
    for (vx_series *s = f->first; s; s = s->next_all) {
        size_t i = hash_key(s->key) & (size - 1);
        s->next = t[i];
        t[i] = s;
    }
    free(f->table);
    f->table = t;
    f->table_size = size;
}

static vx_series *new_series(vx_family *f, const char *const *values, char *key) {
    vx_series *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->family = f;
    s->key = key;
    if (f->nlabels) {
        s->label_values = calloc((size_t)f->nlabels, sizeof(char *));
        if (!s->label_values) goto fail;
        for (int i = 0; i < f->nlabels; i++)
            if (!(s->label_values[i] = strdup(values[i]))) goto fail;
    }
    if (f->type == VX_HISTOGRAM) {
        s->buckets = calloc((size_t)f->nbounds, sizeof(uint64_t));
        if (!s->buckets) goto fail;
    }
    return s;
fail:
    s->key = NULL;
    free_series(f, s);
    return NULL;
}

vx_series *vx_family_series(vx_family *f, const char *const *label_values) {
    static const char *const none[1] = {""};
    if (f->nlabels == 0) label_values = none;
    char *key = join_key(f->nlabels, label_values);
    if (!key) return NULL;
    size_t i = hash_key(key) & (f->table_size - 1);
    for (vx_series *s = f->table[i]; s; s = s->next) {
        if (strcmp(s->key, key) == 0) {
            free(key);
            return s;
        }
    }
    vx_series *s = new_series(f, label_values, key);
    if (!s) {
        free(key);
        return NULL;
    }
    s->next = f->table[i];
    f->table[i] = s;
    if (f->last) f->last->next_all = s;
    else f->first = s;
    f->last = s;
    if (++f->nseries > f->table_size) grow_table(f);
    return s;
}

void vx_series_observe(vx_series *s, double v) {
    const vx_family *f = s->family;
    s->sum += v;
    s->count++;
    for (int i = 0; i < f->nbounds; i++) {
        if (v <= f->bounds[i]) {
            s->buckets[i]++;
            return;
        }
    }
    /* above the last bound: counted only in +Inf (count) */
}

void vx_metric_add(vx_series *s, double v) { s->value += v; }
void vx_metric_set(vx_series *s, double v) { s->value = v; }
void vx_metric_observe(vx_series *s, double v) { vx_series_observe(s, v); }

/* ---- exposition --------------------------------------------------------- */

static void add_escaped(vx_buf *b, const char *s, int in_label) {
    for (; *s; s++) {
        if (*s == '\\') vx_buf_adds(b, "\\\\");
        else if (*s == '\n') vx_buf_adds(b, "\\n");
        else if (*s == '"' && in_label) vx_buf_adds(b, "\\\"");
        else vx_buf_addc(b, *s);
    }
}

static void add_labels(vx_buf *b, const vx_family *f, const vx_series *s, const char *le) {
    if (f->nlabels == 0 && !le) return;
    vx_buf_addc(b, '{');
    for (int i = 0; i < f->nlabels; i++) {
        if (i) vx_buf_addc(b, ',');
        vx_buf_adds(b, f->label_names[i]);
        vx_buf_adds(b, "=\"");
        add_escaped(b, s->label_values[i], 1);
        vx_buf_addc(b, '"');
    }
    if (le) {
        if (f->nlabels) vx_buf_addc(b, ',');
        vx_buf_adds(b, "le=\"");
        vx_buf_adds(b, le);
        vx_buf_addc(b, '"');
    }
    vx_buf_addc(b, '}');
}

static void add_value(vx_buf *b, double v) {
    vx_buf_addc(b, ' ');
    vx_buf_add_number(b, v, "NaN", "+Inf", "-Inf");
    vx_buf_addc(b, '\n');
}

static void render_histogram(vx_buf *b, const vx_family *f, const vx_series *s) {
    uint64_t cum = 0;
    for (int i = 0; i < f->nbounds; i++) {
        vx_buf le;
        vx_buf_init(&le);
        vx_buf_add_number(&le, f->bounds[i], "NaN", "+Inf", "-Inf");
        cum += s->buckets[i];
        vx_buf_adds(b, f->name);
        vx_buf_adds(b, "_bucket");
        add_labels(b, f, s, vx_buf_cstr(&le));
        add_value(b, (double)cum);
        vx_buf_free(&le);
    }
    vx_buf_adds(b, f->name);
    vx_buf_adds(b, "_bucket");
    add_labels(b, f, s, "+Inf");
    add_value(b, (double)s->count);
    vx_buf_adds(b, f->name);
    vx_buf_adds(b, "_sum");
    add_labels(b, f, s, NULL);
    add_value(b, s->sum);
    vx_buf_adds(b, f->name);
    vx_buf_adds(b, "_count");
    add_labels(b, f, s, NULL);
    add_value(b, (double)s->count);
}

char *vx_metrics_render(vx_metrics *m, size_t *len) {
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    vx_buf b;
    vx_buf_init(&b);
    for (const vx_family *f = m->first; f; f = f->next) {
        vx_buf_adds(&b, "# HELP ");
        vx_buf_adds(&b, f->name);
        vx_buf_addc(&b, ' ');
        add_escaped(&b, f->help, 0);
        vx_buf_addf(&b, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        for (const vx_series *s = f->first; s; s = s->next_all) {
            if (f->type == VX_HISTOGRAM) {
                render_histogram(&b, f, s);
                continue;
            }
            vx_buf_adds(&b, f->name);
            add_labels(&b, f, s, NULL);
            add_value(&b, s->value);
        }
    }
    if (b.oom) {
        vx_buf_free(&b);
        return NULL;
    }
    vx_buf_cstr(&b);
    if (len) *len = b.len;
    return b.p ? b.p : strdup("");
}
