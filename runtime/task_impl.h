/*
 * task_impl.h — the scheduler's data, shared by task.c (the scheduler) and
 * task_lua.c (its Lua binding). Nothing else includes this.
 */
#ifndef VX_TASK_IMPL_H
#define VX_TASK_IMPL_H

#include "metrics.h"
#include "task.h"

#define VX_MAX_DEADLINES 16

enum { T_READY = 0, T_RUNNING, T_WAITING, T_DONE };
enum { OUT_NONE = 0, OUT_OK, OUT_ERROR, OUT_CANCELLED };

struct vx_task {
    vx_sched *sched;
    uint64_t id;
    lua_State *co;
    int state;
    int outcome;
    int started;
    int cancel_requested;
    int anchor_ref;          /* registry ref: alive tasks are never collected */
    int nresume;             /* values pushed onto co for the next resume */
    vx_wait_cancel_fn wait_cancel;
    void *wait_op;
    int wait_kind;
    uint64_t deadlines[VX_MAX_DEADLINES]; /* absolute loop ms, by nesting level */
    uint64_t deadline_ms[VX_MAX_DEADLINES];
    int ndeadlines;
    uv_timer_t *deadline_timer;
    vx_task **joiners;
    int njoiners, capjoiners;
    vx_task *next_ready;
    vx_task *prev_alive, *next_alive;
    uint64_t run_ns;         /* time spent running, for `task.list()` */
    char name[48];
};

struct vx_sched {
    vx_runtime *rt;
    lua_State *L;
    uv_idle_t idle;
    uv_check_t check;
    int idle_active;
    vx_task *ready_head, *ready_tail;
    vx_task *alive_head;
    size_t nalive;
    vx_task *current;
    uint64_t next_id;
    int mt_ref;              /* task metatable */
    int interrupt_ref;       /* INTERRUPT sentinel */
    int cancelled_ref;       /* the error a cancelled task unwinds with */
    int timeout_mt_ref;      /* metatable of timeout errors */
    vx_series *m_spawned, *m_errors, *m_alive, *m_stalls, *m_resumes;
    vx_task *gc_held_by;     /* the collector is stopped until this task waits */
};

void vx_task_enqueue(vx_task *t);
void vx_task_push_results(vx_task *t, lua_State *to, int with_status);
int vx_task_push_interrupt(vx_task *t, int level);
void vx_task_join_cancel(vx_task *waiter, void *op);
int vx_task_add_joiner(vx_task *target, vx_task *waiter);

#endif
