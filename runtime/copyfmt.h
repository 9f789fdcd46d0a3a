/*
 * copyfmt.h — rows of numbers to PostgreSQL COPY text, fast and exact.
 *
 * Bulk ingest (candles) spends most of its time turning doubles into text.
 * Lua fills a flat array of doubles (row-major) and one FFI call formats a
 * whole batch: each double with the fewest fraction digits that read back
 * as the same double, integers as integers, NaN as \N (NULL).
 */
#ifndef VX_COPYFMT_H
#define VX_COPYFMT_H

#include <stddef.h>

/* kinds[c]: 0 = decimal (double), 1 = integer. Returns bytes written, or 0
 * when `cap` is too small (give at least 32 bytes per value). */
size_t vx_copy_format(const double *vals, const unsigned char *kinds, int ncols, int nrows, char *out, size_t cap);

/* One double: the shortest fraction (up to 12 places) that reads back as
 * the same double, else the fewest significant digits that do. */
int vx_format_double(double v, char *out);

#endif
