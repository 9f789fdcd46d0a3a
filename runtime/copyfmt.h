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
#include <stdint.h>

/* kinds[c]: 0 = decimal (double), 1 = integer. Returns bytes written, or 0
 * when `cap` is too small (give at least 32 bytes per value). */
size_t vx_copy_format(const double *vals, const unsigned char *kinds, int ncols, int nrows, char *out, size_t cap);

/* One double: the shortest fraction (up to 12 places) that reads back as
 * the same double, else the fewest significant digits that do. */
int vx_format_double(double v, char *out);

/* An integer count of 10^-scale units as a plain decimal without trailing
 * zeros (-1234500000 at scale 8 -> "-12.345"). Returns the length. */
int vx_format_scaled(int64_t v, int scale, char *out);

#endif
