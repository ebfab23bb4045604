/*
 * hotffi_lua.h -- libhotffi_lua.so, the loader that runs Lua code as a
 * hotffi runtime (a "Lua service", docs/lua-services.md).
 *
 *   hotffi.load("hotffi_lua", "/srv/svc/thumbs?,init,cfg")
 *
 * DESIGN
 * A service (hotffi_lua_svc_t) is one version of a runtime: the code of
 * one module, and one LuaJIT VM per serving thread (hotffi_lua_vm_t).  The
 * VMs are LuaJIT states of their own (luaL_newstate(), the same
 * libluajit-5.1.so.2 that nginx's Lua module links), never a worker's:
 * nothing here runs on the event loop.  Each VM runs the module and its
 * init function on hotffi's init thread; init calls hotffi.serve(handler),
 * and once every VM is ready each gets its own thread, which polls the
 * queue and answers each task with its handler, one call at a time.  VMs
 * share nothing (a Lua state is single-threaded): state shared by the
 * threads of a service lives in a shared dict, or in a service of one
 * thread.
 *
 * Threads: a VM is touched by one thread at a time: the init thread while
 * libffi_init() runs, then its serving thread until that thread is joined
 * (libffi_fini(), libffi_retire()), then the reaper that closes it.  The
 * thread start and join order these hand-overs.
 *
 * Reload (hotffi_lua_keep.c): libffi_retire() joins the threads (the calls
 * they took are answered), calls the module's retire() in the first VM and
 * serialises what it returns with LuaJIT's string.buffer; the next
 * version's init receives it decoded.  A retire() that fails, or returns
 * what cannot cross, fails the reload: the VMs are kept, and hotffi's
 * rollback (libffi_init() with hotffi_rollback() = 1, same cfg) starts
 * their threads again, state untouched.  A rollback after a next version
 * that failed to start runs the code the old version ran (kept by cfg),
 * not the file on disk, in a fresh VM from the handed-over state.
 */

#ifndef HOTFFI_LUA_H
#define HOTFFI_LUA_H


#include <pthread.h>
#include <stddef.h>

#include <lua.h>


#define HOTFFI_LUA_OK        0
#define HOTFFI_LUA_ERROR    -1

/* libffi_init()'s and a call's rc values (docs/lua-services.md) */
#define HOTFFI_LUA_EBADCFG   1    /* the configuration is wrong */
#define HOTFFI_LUA_EHANDLER  2    /* a handler raised an error */
#define HOTFFI_LUA_ELOAD     3    /* the module cannot be read or compiled */
#define HOTFFI_LUA_EINIT     4    /* init raised, or did not serve */
#define HOTFFI_LUA_ERETIRE   5    /* retire() failed, or its state */
#define HOTFFI_LUA_ENOMEM    6    /* out of memory, or no thread */

#define HOTFFI_LUA_ERR_MAX   4096
#define HOTFFI_LUA_MAX_THREADS  256

/* the prefix of a state this loader serialised (string.buffer follows) */
#define HOTFFI_LUA_STATE_MAGIC      "hotffi-lua-state-1\n"
#define HOTFFI_LUA_STATE_MAGIC_LEN  (sizeof(HOTFFI_LUA_STATE_MAGIC) - 1)


typedef struct hotffi_lua_svc_s  hotffi_lua_svc_t;


/* the host's optional functions (dlsym()): NULL on lua-resty-ffi */
typedef struct {
    int          (*task_cancelled)(void *task);
    void         (*init_error)(void *tq, const char *msg);
    const char  *(*state)(void *tq, int *len);
    int          (*rollback)(void *tq);
    void         (*log)(void *tq, int level, const char *msg, int len);
} hotffi_lua_host_t;

extern hotffi_lua_host_t  hotffi_lua_host;


typedef struct {
    lua_State         *L;         /* ours: closed with the VM */
    hotffi_lua_svc_t  *svc;       /* borrowed: the service owns the VM */
    pthread_t          tid;
    int                started;   /* tid is a thread to join */
    int                index;     /* 1 .. svc->nvms */
    int                handler;   /* registry ref of serve()'s handler */
    int                module;    /* registry ref of the module's table */
    int                served;    /* serve() was called */
    int                threads;   /* serve()'s {threads = n} */
    long               budget;    /* serve()'s {budget = n}: 0 none */
    void              *task;      /* the task being served: this VM's
                                     thread owns it until respond() */
} hotffi_lua_vm_t;


struct hotffi_lua_svc_s {
    void              *tq;        /* borrowed from hotffi: this version's
                                     queue, set again by a revival */
    char              *cfg;       /* ours: the whole cfg text (the key) */
    char              *path;      /* ours: the module's file */
    char              *arg;       /* ours: the cfg init receives, or NULL */
    char              *function;  /* ours: init's name */
    char              *src;       /* ours: the code the VMs ran */
    size_t             src_len;
    int                nvms;
    hotffi_lua_vm_t   *vms;       /* ours: nvms of them */
};


/* hotffi_lua_config.c: "module[?][,function[,cfg]]" */
int hotffi_lua_config_parse(hotffi_lua_svc_t *svc, const char *cfg,
    int *reread, char *err, size_t errlen);

/* hotffi_lua_source.c: the code to run, read or remembered */
int hotffi_lua_source_get(hotffi_lua_svc_t *svc, int reread, int rollback,
    char *err, size_t errlen);
void hotffi_lua_source_remember(hotffi_lua_svc_t *svc, int reread);

/* hotffi_lua_vm.c: a VM that ran the module and its init */
int hotffi_lua_vm_open(hotffi_lua_vm_t *vm, const char *state,
    size_t state_len, char *err, size_t errlen);
void hotffi_lua_vm_close(hotffi_lua_vm_t *vm);
int hotffi_lua_traceback(lua_State *L);
size_t hotffi_lua_vms_alive(void);

/* hotffi_lua_module.c: the `hotffi` module a service requires */
int hotffi_lua_module_open(lua_State *L);

/* hotffi_lua_shdict.c: hotffi.shared(name) */
int hotffi_lua_shdict_open(lua_State *L);

/* hotffi_lua_serve.c: the serving threads */
int hotffi_lua_serve_start(hotffi_lua_svc_t *svc, char *err, size_t errlen);
void hotffi_lua_serve_join(hotffi_lua_svc_t *svc);

/* hotffi_lua_keep.c: state hand-over and kept services */
int hotffi_lua_keep_retire(hotffi_lua_svc_t *svc, char **state, int *len,
    char *err, size_t errlen);
void hotffi_lua_keep_put(hotffi_lua_svc_t *svc);
hotffi_lua_svc_t *hotffi_lua_keep_take(const char *cfg);

/* hotffi_lua_loader.c */
void hotffi_lua_svc_free(hotffi_lua_svc_t *svc);


#endif /* HOTFFI_LUA_H */
