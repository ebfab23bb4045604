/*
 * test_runtime.c -- runtimes loaded the real way, through dlopen(): the
 * ways a load fails, the configuration libffi_init() gets, the names a
 * library is found by, and a runtime's end: unload, the reaper, libffi_fini(),
 * the REAPED task, dlclose(), and the references that keep it until then.
 *
 * The test runtimes (rt_*.c) report libffi_init() and libffi_fini() through
 * the hooks below.  Libraries are checked for being mapped with
 * dlopen(RTLD_NOLOAD), which returns NULL for a library not in the process.
 */

#define _GNU_SOURCE

#include <dlfcn.h>
#include <malloc.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "unit_helpers.h"


/* ---- what the runtimes report */

#define HOOK_MAX  16

typedef struct {
    atomic_int   inits;
    atomic_int   finis;
    void        *init_tq[HOOK_MAX];
    void        *fini_tq[HOOK_MAX];
    char         init_rt[HOOK_MAX][16];
    char         fini_rt[HOOK_MAX][16];

    /* the configuration the last libffi_init() got */
    char        *cfg;                /* the pointer, only to compare */
    size_t       cfg_size;           /* its allocation */
    char         cfg_bytes[64];      /* its first cfg_size bytes */
} hooks_t;

static hooks_t  hooks;


/* thread: event loop */
UNIT_EXPORT void
unit_rt_init_hook(const char *rt, char *cfg, void *tq)
{
    int  i;

    i = atomic_fetch_add(&hooks.inits, 1);

    if (i < HOOK_MAX) {
        hooks.init_tq[i] = tq;
        (void) snprintf(hooks.init_rt[i], sizeof(hooks.init_rt[i]), "%s", rt);
    }

    hooks.cfg = cfg;
    hooks.cfg_size = 0;
    memset(hooks.cfg_bytes, 0x7f, sizeof(hooks.cfg_bytes));

    if (cfg) {
        /* the sanitizers' malloc_usable_size() is the size asked for */
        hooks.cfg_size = malloc_usable_size(cfg);
        memcpy(hooks.cfg_bytes, cfg,
               hooks.cfg_size < sizeof(hooks.cfg_bytes)
               ? hooks.cfg_size : sizeof(hooks.cfg_bytes));
    }
}


/* thread: reaper; read by the event loop after the REAPED task, which the
 * hub's mutex orders after this */
UNIT_EXPORT void
unit_rt_fini_hook(const char *rt, void *tq)
{
    int  i;

    i = atomic_fetch_add(&hooks.finis, 1);

    if (i < HOOK_MAX) {
        hooks.fini_tq[i] = tq;
        (void) snprintf(hooks.fini_rt[i], sizeof(hooks.fini_rt[i]), "%s", rt);
    }
}


/* ---- fixture */

typedef struct {
    hotffi_hub_t  *hub;
    int            threads;
    char           err[512];
} fixture_t;


static int
setup(void **state)
{
    fixture_t  *f;

    f = calloc(1, sizeof(fixture_t));
    assert_non_null(f);

    memset(&hooks, 0, sizeof(hooks));
    f->threads = unit_threads();
    f->hub = unit_hub_create();

    *state = f;
    return 0;
}


static int
teardown(void **state)
{
    fixture_t  *f = *state;

    assert_int_equal(f->hub->tasks.live, 0);

    /* no runtime or reaper thread may touch the hub once it is gone */
    unit_wait_threads(f->threads);
    hotffi_hub_destroy(f->hub);

    free(f);
    return 0;
}


/* ---- helpers */

static hotffi_runtime_t *
load(fixture_t *f, const char *lib, const char *cfg, size_t cfg_len,
    int unpin)
{
    hotffi_runtime_opts_t  opts;

    memset(&opts, 0, sizeof(opts));
    opts.unpin = unpin;

    f->err[0] = '\0';

    return unit_load(f->hub, lib, cfg, cfg_len, &opts, NULL, f->err,
                               sizeof(f->err));
}


/* 1 when the library at path is mapped in this process */
static int
mapped(const char *path)
{
    void  *h;

    h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL) {
        return 0;
    }

    /* NOLOAD still counts a reference: give it back */
    (void) dlclose(h);
    return 1;
}


static int
unit_has_kept(void *data)
{
    return !hotffi_list_empty(&((hotffi_runtime_t *) data)->kept);
}


static int
woken(void *data)
{
    return ((unit_waiter_t *) data)->woken != 0;
}


/* A call of an echo runtime, from post to finish. */
static void
echo_call(fixture_t *f, hotffi_runtime_t *rt, const char *req, size_t len)
{
    char            err[256];
    size_t          rlen;
    const char     *rsp;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    t = hotffi_call_post(rt, NULL, req, len, &w, NULL, err, sizeof(err));
    if (t == NULL) {
        fail_msg("post: %s", err);
    }

    unit_drain_until(f->hub, woken, &w);

    assert_int_equal(hotffi_call_result(t, &rsp, &rlen), 0);
    assert_int_equal(rlen, len);
    assert_memory_equal(rsp, req, len);

    hotffi_call_finish(t);
    assert_int_equal(w.released, 1);
}


/* ---- loading */

static void
test_echo_lifecycle(void **state)
{
    fixture_t         *f = *state;
    char               path[PATH_MAX], name[PATH_MAX + 32];
    void              *tq_a, *tq_b;
    hotffi_runtime_t  *a, *b;

    unit_lib(path, sizeof(path), "rt_echo");

    /* two runtimes of one library: one dlopen() handle, two queues */
    a = load(f, path, "threads=2", 9, 1);
    if (a == NULL) {
        fail_msg("load: %s", f->err);
    }

    b = load(f, path, "threads=1", 9, 1);
    if (b == NULL) {
        fail_msg("load: %s", f->err);
    }

    tq_a = &a->current->port;
    tq_b = &b->current->port;

    assert_int_equal(atomic_load(&hooks.inits), 2);
    assert_ptr_equal(hooks.init_tq[0], tq_a);
    assert_ptr_equal(hooks.init_tq[1], tq_b);
    assert_string_equal(hooks.init_rt[0], "rt_echo");
    assert_int_equal(unit_threads(), f->threads + 3);

    (void) snprintf(name, sizeof(name), "%s&threads=2", path);
    assert_string_equal(a->name, name);
    assert_int_equal(a->refs, 2);
    assert_false(a->unloaded);
    assert_false(a->closed);

    echo_call(f, a, "ping", 4);
    echo_call(f, b, "p\0ng", 4);
    echo_call(f, a, "", 0);

    /* nothing ends before the unload */
    assert_int_equal(atomic_load(&hooks.finis), 0);

    hotffi_runtime_unload(a);
    hotffi_runtime_unload(a);
    unit_drain_until(f->hub, unit_is_closed, a);

    /* libffi_fini() ran once, with a's queue, before the REAPED came back */
    assert_int_equal(atomic_load(&hooks.finis), 1);
    assert_ptr_equal(hooks.fini_tq[0], tq_a);
    assert_string_equal(hooks.fini_rt[0], "rt_echo");
    assert_null(a->queue);
    assert_int_equal(a->refs, 1);

    /* b still works */
    echo_call(f, b, "pong", 4);

    hotffi_runtime_unref(a);
    assert_ptr_equal(unit_first_runtime(f->hub), b);

    unit_close(f->hub, b);
    assert_int_equal(atomic_load(&hooks.finis), 2);
    assert_ptr_equal(hooks.fini_tq[1], tq_b);
    assert_true(hotffi_list_empty(&f->hub->runtimes));

    /* an unload never ran a second reaper */
    unit_wait_threads(f->threads);
    assert_int_equal(atomic_load(&hooks.finis), 2);
}


static void
test_unpin_closes_library(void **state)
{
    fixture_t         *f = *state;
    char               path[PATH_MAX];
    hotffi_runtime_t  *rt;

    unit_lib(path, sizeof(path), "rt_echo");

    /* no other handle keeps it: the check below is about this runtime */
    assert_false(mapped(path));

    rt = load(f, path, NULL, 0, 1);
    if (rt == NULL) {
        fail_msg("load: %s", f->err);
    }

    assert_true(mapped(path));
    echo_call(f, rt, "x", 1);

    hotffi_runtime_unload(rt);
    unit_drain_until(f->hub, unit_is_closed, rt);

    assert_int_equal(atomic_load(&hooks.finis), 1);
    assert_null(rt->current);
    assert_false(mapped(path));

    hotffi_runtime_unref(rt);
    assert_true(hotffi_list_empty(&f->hub->runtimes));
}


/* rt_pin is loaded by no other test, so nothing else keeps it mapped. */
static void
test_pinned_library_stays(void **state)
{
    fixture_t         *f = *state;
    char               path[PATH_MAX];
    hotffi_runtime_t  *rt;

    unit_lib(path, sizeof(path), "rt_pin");
    assert_false(mapped(path));

    rt = load(f, path, NULL, 0, 0);
    if (rt == NULL) {
        fail_msg("load: %s", f->err);
    }

    unit_close(f->hub, rt);

    assert_int_equal(atomic_load(&hooks.finis), 1);
    assert_string_equal(hooks.fini_rt[0], "rt_pin");
    assert_true(hotffi_list_empty(&f->hub->runtimes));

    /* pinned: mapped for the rest of the process, like lua-resty-ffi's */
    assert_true(mapped(path));
}


/*
 * A failed libffi_init(): the load fails with its rc, and the runtime is
 * discarded properly -- the thread it started gets the stop, libffi_fini()
 * joins it, the runtime retires and its library is closed.
 */
static void
test_init_fails(void **state)
{
    fixture_t         *f = *state;
    char               path[PATH_MAX];
    hotffi_runtime_t  *rt;

    unit_lib(path, sizeof(path), "rt_fail");

    rt = load(f, path, "rc=42", 5, 1);

    assert_null(rt);
    assert_non_null(strstr(f->err, "failed: 42"));
    assert_non_null(strstr(f->err, "rt_fail"));
    assert_int_equal(atomic_load(&hooks.inits), 1);

    /* nobody holds it, but it has yet to retire */
    unit_drain_until(f->hub, unit_no_runtimes, f->hub);

    assert_int_equal(atomic_load(&hooks.finis), 1);
    assert_ptr_equal(hooks.fini_tq[0], hooks.init_tq[0]);
    assert_false(mapped(path));
}


static void
test_init_fails_rc_from_idle(void **state)
{
    fixture_t         *f = *state;
    char               path[PATH_MAX];

    unit_lib(path, sizeof(path), "rt_idle");

    assert_null(load(f, path, "fail", 4, 1));
    assert_non_null(strstr(f->err, "failed: 9"));

    unit_drain_until(f->hub, unit_no_runtimes, f->hub);
    assert_int_equal(atomic_load(&hooks.finis), 1);
}


static void
test_no_libffi_init(void **state)
{
    fixture_t  *f = *state;
    char        path[PATH_MAX];

    unit_lib(path, sizeof(path), "rt_noinit");

    assert_null(load(f, path, NULL, 0, 1));
    assert_non_null(strstr(f->err, "libffi_init"));
    assert_non_null(strstr(f->err, "rt_noinit"));

    /* never linked, and closed again */
    assert_true(hotffi_list_empty(&f->hub->runtimes));
    assert_false(mapped(path));
}


static void
test_missing_library(void **state)
{
    fixture_t  *f = *state;
    char        path[PATH_MAX];

    unit_lib(path, sizeof(path), "rt_missing");

    assert_null(load(f, path, NULL, 0, 1));
    assert_non_null(strstr(f->err, "cannot open shared object file"));
    assert_non_null(strstr(f->err, path));
    assert_null(strstr(f->err, "searched"));
    assert_true(hotffi_list_empty(&f->hub->runtimes));

    /* a short name is looked for as lib<name>.so, and the error says where */
    assert_null(load(f, "rt_missing", NULL, 0, 1));
    assert_non_null(strstr(f->err, "\"librt_missing.so\""));
    assert_non_null(strstr(f->err, "cannot open shared object file"));
    assert_non_null(strstr(f->err, "(searched: /"));
    assert_non_null(strstr(f->err, "the ldconfig cache)"));
    assert_non_null(strstr(f->err, "\"/path/to/librt_missing.so\""));

    /* a file name (it has ".so") is taken as it is */
    assert_null(load(f, "rt_missing.so", NULL, 0, 1));
    assert_non_null(strstr(f->err, "\"rt_missing.so\""));

    assert_int_equal(atomic_load(&hooks.inits), 0);
}


/* ---- configuration */

/*
 * Loads rt_idle with cfg and checks what libffi_init() got: a private copy
 * of exactly cfg_len bytes and a NUL, whatever follows in the caller's
 * buffer; and the runtime's name.
 */
static void
check_cfg(fixture_t *f, const char *cfg, size_t cfg_len, const char *name_cfg)
{
    char               path[PATH_MAX], name[PATH_MAX + 64];
    hotffi_runtime_t  *rt;

    memset(&hooks, 0, sizeof(hooks));

    unit_lib(path, sizeof(path), "rt_idle");

    rt = load(f, path, cfg, cfg_len, 1);
    if (rt == NULL) {
        fail_msg("load: %s", f->err);
    }

    assert_int_equal(atomic_load(&hooks.inits), 1);

    if (cfg == NULL) {
        assert_null(hooks.cfg);
        (void) snprintf(name, sizeof(name), "%s", path);

    } else {
        assert_non_null(hooks.cfg);
        assert_true(hooks.cfg != cfg);
        assert_int_equal(hooks.cfg_size, cfg_len + 1);
        assert_memory_equal(hooks.cfg_bytes, cfg, cfg_len);
        assert_int_equal(hooks.cfg_bytes[cfg_len], '\0');
        (void) snprintf(name, sizeof(name), "%s&%s", path, name_cfg);
    }

    assert_string_equal(rt->name, name);

    unit_close(f->hub, rt);
    assert_true(hotffi_list_empty(&f->hub->runtimes));
}


static void
test_cfg_null(void **state)
{
    check_cfg(*state, NULL, 0, NULL);
}


static void
test_cfg_empty(void **state)
{
    check_cfg(*state, "", 0, "");
}


static void
test_cfg_prefix_of_buffer(void **state)
{
    /* only cfg_len bytes count: the rest of the buffer is not the cfg */
    check_cfg(*state, "abcdef", 3, "abc");
}


static void
test_cfg_nul_at_end_of_len(void **state)
{
    /* a Lua string may end in NUL: it is kept, and one more is added */
    check_cfg(*state, "ab\0", 3, "ab");
    assert_int_equal(strlen(hooks.cfg_bytes), 2);
    assert_int_equal(hooks.cfg_bytes[2], '\0');
    assert_int_equal(hooks.cfg_bytes[3], '\0');
}


static void
test_cfg_nul_inside(void **state)
{
    check_cfg(*state, "k=v\0w", 5, "k=v");
    assert_memory_equal(hooks.cfg_bytes, "k=v\0w\0", 6);
}


/* ---- names */

/*
 * A short name ("rt_idle") and a file name ("librt_idle.so") are found by
 * the dynamic linker's search, which reads LD_LIBRARY_PATH only when the
 * process starts: this program runs itself again with it set, in the mode
 * below, and checks that both names found the test library.
 */
static int
short_name_child(void)
{
    int                     i, threads;
    char                    err[512], want[PATH_MAX];
    int64_t                 end;
    Dl_info                 info;
    const char             *e;
    hotffi_hub_t           *hub;
    hotffi_host_t           host;
    hotffi_runtime_t       *rt;
    hotffi_runtime_opts_t   opts;

    static const char  *names[] = { "rt_idle", "librt_idle.so" };

    unit_init();
    threads = unit_threads();

    memset(&host, 0, sizeof(host));
    memset(&opts, 0, sizeof(opts));
    opts.unpin = 1;

    unit_lib(want, sizeof(want), "rt_idle");

    for (i = 0; i < 2; i++) {
        hub = hotffi_hub_create(&host, &e);
        if (hub == NULL) {
            fprintf(stderr, "child: hub: %s\n", e);
            return 1;
        }

        rt = unit_load(hub, names[i], NULL, 0, &opts, NULL, err,
                                 sizeof(err));
        if (rt == NULL) {
            fprintf(stderr, "child: %s: %s\n", names[i], err);
            hotffi_hub_destroy(hub);
            return 1;
        }

        /* and it is the library in the test directory */
        if (dladdr(*(void **) &rt->current->lib.init, &info) == 0
            || strcmp(info.dli_fname, want) != 0)
        {
            fprintf(stderr, "child: %s was found as %s, not %s\n", names[i],
                    info.dli_fname, want);
            return 1;
        }

        hotffi_runtime_unload(rt);
        end = unit_now_ms() + UNIT_WAIT_MS;

        while (!rt->closed) {
            if (unit_now_ms() > end) {
                fprintf(stderr, "child: %s did not retire\n", names[i]);
                return 1;
            }

            (void) unit_readable(hotffi_hub_fd(hub), 50);
            (void) hotffi_hub_drain(hub);
        }

        hotffi_runtime_unref(rt);

        /* the reaper must be gone before the hub is */
        while (unit_threads() != threads) {
            if (unit_now_ms() > end) {
                fprintf(stderr, "child: a thread is left\n");
                return 1;
            }

            unit_sleep_ms(1);
        }

        hotffi_hub_destroy(hub);
    }

    return 0;
}


static void
test_short_and_file_names(void **state)
{
    int           status, n;
    char          self[PATH_MAX], ldpath[PATH_MAX + 32];
    char         *argv[3];
    char        **envp, **ep;
    pid_t         pid;

    n = 0;

    while (environ[n]) {
        n++;
    }

    envp = calloc(n + 2, sizeof(char *));
    assert_non_null(envp);

    (void) snprintf(ldpath, sizeof(ldpath), "LD_LIBRARY_PATH=%s",
                    unit_libdir());

    envp[0] = ldpath;
    n = 1;

    for (ep = environ; *ep; ep++) {
        if (strncmp(*ep, "LD_LIBRARY_PATH=", 16) != 0) {
            envp[n++] = *ep;
        }
    }

    envp[n] = NULL;

    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    assert_true(n > 0);
    self[n] = '\0';

    argv[0] = self;
    argv[1] = "--short-name";
    argv[2] = NULL;

    pid = fork();
    assert_true(pid != -1);

    if (pid == 0) {
        (void) execve(self, argv, envp);
        _exit(127);
    }

    free(envp);

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}


/* ---- references */

/* Retired first, then the caller's reference, then the task's: the runtime
 * goes with the last one. */
static void
test_retired_then_released(void **state)
{
    fixture_t         *f = *state;
    char               path[PATH_MAX], err[256];
    unit_waiter_t      w = { 0, 0 };
    hotffi_task_t     *t;
    hotffi_runtime_t  *rt;

    rt = load(f, unit_lib(path, sizeof(path), "rt_echo"), NULL, 0, 1);
    assert_non_null(rt);

    t = hotffi_call_post(rt, NULL, "x", 1, &w, NULL, err, sizeof(err));
    assert_non_null(t);
    assert_int_equal(rt->refs, 3);

    unit_drain_until(f->hub, woken, &w);

    hotffi_runtime_unload(rt);
    unit_drain_until(f->hub, unit_is_closed, rt);
    assert_int_equal(rt->refs, 2);

    hotffi_runtime_unref(rt);
    assert_int_equal(rt->refs, 1);
    assert_ptr_equal(unit_first_runtime(f->hub), rt);

    /* the task still reads its runtime's answer after the retirement */
    hotffi_call_finish(t);
    assert_true(hotffi_list_empty(&f->hub->runtimes));
}


/* The caller's reference goes first, while a task is in flight: the runtime
 * stays until the task is finished and the REAPED has come back. */
static void
test_released_then_retired(void **state)
{
    fixture_t         *f = *state;
    char               path[PATH_MAX], err[256];
    unit_waiter_t      w = { 0, 0 };
    hotffi_task_t     *t;
    hotffi_runtime_t  *rt;

    rt = load(f, unit_lib(path, sizeof(path), "rt_echo"), NULL, 0, 1);
    assert_non_null(rt);

    t = hotffi_call_post(rt, NULL, "x", 1, &w, NULL, err, sizeof(err));
    assert_non_null(t);

    hotffi_runtime_unload(rt);
    hotffi_runtime_unref(rt);
    assert_ptr_equal(unit_first_runtime(f->hub), rt);

    /* queued before the unload: still answered */
    unit_drain_until(f->hub, woken, &w);
    hotffi_call_finish(t);

    /* what is left is the REAPED's reference: it frees the runtime */
    unit_drain_until(f->hub, unit_no_runtimes, f->hub);
    assert_int_equal(atomic_load(&hooks.finis), 1);
}


/* Tasks queued before the unload are answered before the runtime retires:
 * the REAPED comes back after the last of them. */
static void
test_unload_with_queued_tasks(void **state)
{
    fixture_t         *f = *state;
    int                i;
    char               path[PATH_MAX], err[256], req[16], reqs[32][16];
    unit_waiter_t      w[32];
    hotffi_task_t     *t[32];
    hotffi_runtime_t  *rt;

    memset(w, 0, sizeof(w));

    rt = load(f, unit_lib(path, sizeof(path), "rt_echo"), "threads=2", 9, 1);
    assert_non_null(rt);

    for (i = 0; i < 32; i++) {
        /* one buffer each: a request is read in place, not copied */
        (void) snprintf(reqs[i], sizeof(reqs[i]), "req %d", i);
        t[i] = hotffi_call_post(rt, NULL, reqs[i], strlen(reqs[i]), &w[i], NULL,
                                err, sizeof(err));
        assert_non_null(t[i]);
    }

    hotffi_runtime_unload(rt);
    unit_drain_until(f->hub, unit_is_closed, rt);

    for (i = 0; i < 32; i++) {
        const char  *rsp;
        size_t       rlen;

        assert_int_equal(w[i].woken, 1);
        (void) snprintf(req, sizeof(req), "req %d", i);
        assert_int_equal(hotffi_call_result(t[i], &rsp, &rlen), 0);
        assert_int_equal(rlen, strlen(req));
        assert_memory_equal(rsp, req, rlen);
        hotffi_call_finish(t[i]);
    }

    hotffi_runtime_unref(rt);
    assert_true(hotffi_list_empty(&f->hub->runtimes));
}


/*
 * Without libffi_fini() and without unpin nothing asks for the runtime's
 * threads to be proved gone: it never retires, its library stays mapped,
 * and only tearing the hub down frees it (the leak checker sees to that).
 */
static void
test_no_fini_never_retires(void **state)
{
    fixture_t         *f = *state;
    char               path[PATH_MAX];
    int64_t            end;
    hotffi_runtime_t  *rt;

    unit_lib(path, sizeof(path), "rt_nofini");

    rt = load(f, path, NULL, 0, 0);
    if (rt == NULL) {
        fail_msg("load: %s", f->err);
    }

    assert_null(rt->current->lib.fini);
    echo_call(f, rt, "hello", 5);

    hotffi_runtime_unload(rt);

    /* its thread gets the stop and ends */
    unit_wait_threads(f->threads);

    /* and the event loop runs for a while: no REAPED comes */
    end = unit_now_ms() + 100;

    while (unit_now_ms() < end) {
        (void) unit_readable(hotffi_hub_fd(f->hub), 10);
        assert_int_equal(hotffi_hub_drain(f->hub), 0);
    }

    assert_false(rt->closed);
    assert_non_null(rt->queue);
    assert_int_equal(hotffi_queue_depth(rt->queue), 0);
    assert_true(mapped(path));

    hotffi_runtime_unref(rt);
    assert_ptr_equal(unit_first_runtime(f->hub), rt);

    /* the teardown's hotffi_hub_destroy() frees it */
}


/*
 * With unpin, a runtime without libffi_fini() retires once the kernel shows
 * the thread its init started gone, and its library is closed.
 */
static void
test_no_fini_unpin_proved_gone(void **state)
{
    fixture_t         *f = *state;
    char               path[PATH_MAX];
    hotffi_runtime_t  *rt;

    unit_lib(path, sizeof(path), "rt_nofini");
    assert_false(mapped(path));

    rt = load(f, path, NULL, 0, 1);
    if (rt == NULL) {
        fail_msg("load: %s", f->err);
    }

    echo_call(f, rt, "hello", 5);

    hotffi_runtime_unload(rt);
    unit_drain_until(f->hub, unit_is_closed, rt);

    assert_null(rt->current);
    assert_true(hotffi_list_empty(&rt->kept));
    assert_false(mapped(path));
    assert_int_equal(unit_host_state.logs, 0);

    hotffi_runtime_unref(rt);
    assert_true(hotffi_list_empty(&f->hub->runtimes));
}


/*
 * A thread that outlives the grace period keeps the library mapped, and
 * says so once; nothing is freed under it.
 */
static void
test_no_fini_unpin_thread_lingers(void **state)
{
    fixture_t         *f = *state;
    char               path[PATH_MAX];
    const char        *cfg = "linger=1500";
    hotffi_runtime_t  *rt;
    hotffi_version_t  *v;

    assert_int_equal(setenv("HOTFFI_UNPIN_GRACE_MS", "200", 1), 0);

    unit_lib(path, sizeof(path), "rt_nofini");

    rt = load(f, path, cfg, strlen(cfg), 1);
    if (rt == NULL) {
        fail_msg("load: %s", f->err);
    }

    echo_call(f, rt, "hello", 5);

    hotffi_runtime_unload(rt);
    unit_drain_until(f->hub, unit_has_kept, rt);

    assert_false(rt->closed);
    assert_true(mapped(path));
    assert_int_equal(unit_host_state.logs, 1);
    assert_int_equal(unit_host_state.log_level, HOTFFI_LOG_WARN);
    assert_non_null(strstr(unit_host_state.log, "stays mapped"));

    assert_int_equal(unsetenv("HOTFFI_UNPIN_GRACE_MS"), 0);

    /*
     * The thread ends on its own; the teardown frees what was kept.  Its
     * last touch of the port was counting its stop (release): the acquire
     * here orders that before the free, as the reaper's proof does.
     */
    unit_wait_threads(f->threads);
    v = hotffi_list_data(hotffi_list_first(&rt->kept), hotffi_version_t,
                         kept_link);
    (void) atomic_load_explicit(&v->port.pollers.stops, memory_order_acquire);
    hotffi_runtime_unref(rt);
}


#define RT_TEST(name)                                                         \
    cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(int argc, char **argv)
{
    const struct CMUnitTest  tests[] = {
        RT_TEST(test_echo_lifecycle),
        RT_TEST(test_unpin_closes_library),
        RT_TEST(test_no_fini_unpin_proved_gone),
        RT_TEST(test_no_fini_unpin_thread_lingers),
        RT_TEST(test_pinned_library_stays),
        RT_TEST(test_init_fails),
        RT_TEST(test_init_fails_rc_from_idle),
        RT_TEST(test_no_libffi_init),
        RT_TEST(test_missing_library),
        RT_TEST(test_cfg_null),
        RT_TEST(test_cfg_empty),
        RT_TEST(test_cfg_prefix_of_buffer),
        RT_TEST(test_cfg_nul_at_end_of_len),
        RT_TEST(test_cfg_nul_inside),
        RT_TEST(test_short_and_file_names),
        RT_TEST(test_retired_then_released),
        RT_TEST(test_released_then_retired),
        RT_TEST(test_unload_with_queued_tasks),
        RT_TEST(test_no_fini_never_retires),
    };

    if (argc == 2 && strcmp(argv[1], "--short-name") == 0) {
        return short_name_child();
    }

    unit_init();

    return cmocka_run_group_tests_name("runtime", tests, NULL, NULL);
}
