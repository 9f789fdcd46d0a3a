/*
 * metrics.h — counters, gauges and histograms with labels, rendered in the
 * Prometheus text exposition format.
 *
 * A series is a plain struct whose first field is its value, so Lua (through
 * LuaJIT FFI) and C both update it with one add on a pointer they looked up
 * once: the cost of a counter increment on a hot path is a memory add.
 */
#ifndef VX_METRICS_H
#define VX_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { VX_COUNTER = 0, VX_GAUGE, VX_HISTOGRAM } vx_metric_type;

typedef struct vx_family vx_family;

typedef struct vx_series {
    double value;       /* counter / gauge value; histogram: unused */
    double sum;         /* histogram: sum of observations */
    uint64_t count;     /* histogram: number of observations */
    uint64_t *buckets;  /* histogram: per-bucket (non-cumulative) counts */
    vx_family *family;
    char **label_values;
    char *key;          /* label values joined by \x1f, for lookup */
    struct vx_series *next;      /* hash chain */
    struct vx_series *next_all;  /* registration order, for rendering */
} vx_series;

typedef struct vx_metrics vx_metrics;

vx_metrics *vx_metrics_new(void);
void vx_metrics_free(vx_metrics *m);

/* Find or register a family. Registering an existing name again with the
 * same type and labels returns it (scripts are reloaded); anything else is an
 * error in err. buckets: ascending upper bounds for histograms (NULL: the
 * default latency buckets in seconds). */
vx_family *vx_metrics_family(vx_metrics *m, const char *name, const char *help,
                             vx_metric_type type, int nlabels, const char *const *label_names,
                             const double *buckets, int nbuckets, char *err, size_t errlen);

vx_family *vx_metrics_find(vx_metrics *m, const char *name);
int vx_family_nlabels(const vx_family *f);
vx_metric_type vx_family_type(const vx_family *f);

/* Find or create the series for these label values (nlabels of them). */
vx_series *vx_family_series(vx_family *f, const char *const *label_values);

static inline void vx_series_add(vx_series *s, double v) { s->value += v; }
static inline void vx_series_set(vx_series *s, double v) { s->value = v; }
void vx_series_observe(vx_series *s, double v);

/* The whole registry in Prometheus text format; malloc'd, caller frees. */
char *vx_metrics_render(vx_metrics *m, size_t *len);

/* Exported for FFI (the inline forms above are for C callers). */
void vx_metric_add(vx_series *s, double v);
void vx_metric_set(vx_series *s, double v);
void vx_metric_observe(vx_series *s, double v);

#endif
