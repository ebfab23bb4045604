/*
 * unit_rt.h -- what the test runtimes (tests/unit/rt_*.c) tell the test
 * program that loaded them.
 *
 * The hooks are weak: a program that does not define them is not told.  A
 * program that does defines them with default visibility (unit_helpers.h),
 * and the programs are linked with -rdynamic, so the runtime's reference
 * resolves to them at dlopen() time, like ngx_http_lua_ffi_task_poll.
 */

#ifndef UNIT_RT_H
#define UNIT_RT_H


/* thread: init.  First thing libffi_init() does; cfg as it got it. */
void unit_rt_init_hook(const char *rt, char *cfg, void *tq)
    __attribute__((weak));

/* thread: reaper.  Last thing libffi_fini() does, after its joins. */
void unit_rt_fini_hook(const char *rt, void *tq) __attribute__((weak));

/* thread: rt_direct's peer.  0: hold the answers (a slow helper). */
int unit_rt_direct_gate(void) __attribute__((weak));


#define UNIT_RT_INIT(rt, cfg, tq)                                             \
    do {                                                                      \
        if (unit_rt_init_hook) {                                              \
            unit_rt_init_hook(rt, cfg, tq);                                   \
        }                                                                     \
    } while (0)

#define UNIT_RT_FINI(rt, tq)                                                  \
    do {                                                                      \
        if (unit_rt_fini_hook) {                                              \
            unit_rt_fini_hook(rt, tq);                                        \
        }                                                                     \
    } while (0)


#endif /* UNIT_RT_H */
