/*
 * fswatch.h — watch a directory for changed files, debounced.
 *
 * Directories, not files, are watched: editors save by writing a temporary
 * file and renaming it over the original, which ends a watch on the file
 * itself. Events are collected for debounce_ms after the first one and then
 * delivered once, as a de-duplicated list of names, so a save that touches a
 * file three times is one reload.
 */
#ifndef VX_FSWATCH_H
#define VX_FSWATCH_H

#include <stddef.h>

#include "vx.h"

typedef struct vx_fswatch vx_fswatch;
typedef void (*vx_fswatch_fn)(vx_fswatch *w, void *ud, char **names, int n);

vx_fswatch *vx_fswatch_start(vx_runtime *rt, const char *dir, unsigned debounce_ms,
                             vx_fswatch_fn fn, void *ud, char *err, size_t errlen);
/* Stop watching; the memory is released once libuv has closed the handles. */
void vx_fswatch_stop(vx_fswatch *w);
void vx_fswatch_ref(vx_fswatch *w, int ref);
const char *vx_fswatch_dir(const vx_fswatch *w);

#endif
