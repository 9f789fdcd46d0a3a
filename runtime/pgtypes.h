/*
 * pgtypes.h — PostgreSQL text-format values the Lua layer converts through
 * FFI: timestamps to epoch milliseconds. The connection sets TimeZone=UTC,
 * so timestamptz arrives as "2026-11-24 14:50:00.123456+00".
 */
#ifndef VX_PGTYPES_H
#define VX_PGTYPES_H

#include <stdint.h>

/* Epoch milliseconds (microseconds kept as the fraction) of a date,
 * timestamp or timestamptz in ISO text form; "infinity"/"-infinity" give
 * ±HUGE_VAL. *ok = 0 when the text is not of that form (the caller keeps the
 * string). */
double vx_pg_timestamp_ms(const char *s, int *ok);

/* Days since 1970-01-01 of a proleptic Gregorian date (no time zone): the
 * one civil-date conversion of vibex (vibex.time reaches it through FFI). */
int64_t vx_days_from_civil(int64_t y, int m, int d);

#endif
