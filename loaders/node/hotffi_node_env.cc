/*
 * hotffi_node_env.cc -- Node.js inside an nginx worker: the per-process
 * set-up, and the env thread that runs one runtime version's Environment.
 *
 * DESIGN
 * Per process (once, on the first load's init thread, whose signals hotffi
 * blocked: V8's platform threads inherit that mask):
 * node::InitializeOncePerProcess() with
 *   kNoDefaultSignalHandling  no SIGINT/SIGTERM handlers, and nginx's own
 *                             handlers are not reset to SIG_DFL;
 *   kNoStdioInitialization    fds 0-2 and the terminal stay as nginx set them;
 *   kNoAdjustResourceLimits   RLIMIT_NOFILE stays worker_rlimit_nofile's;
 *   kNoUseLargePages, kNoPrintHelpOrVersionOutput,
 *   kDisableNodeOptionsEnv, kDisableCLIOptions, kNoParseGlobalDebugVariables
 *                             nothing from the environment or a command line.
 * Per version, on its env thread: node::CommonEnvironmentSetup with
 * EnvironmentFlags kNoCreateInspector and neither kOwnsProcessState nor
 * kOwnsInspector (so no inspector on SIGUSR1, nginx's log reopen, and no
 * process.chdir()/setuid()), a process-exit handler that node::Stop()s the
 * Environment instead of exit(), then LoadEnvironment() with the boot script
 * (hotffi_node_boot.js), which gets the native binding below, and
 * node::SpinEventLoop() until the version ends.
 *
 * Calls reach JavaScript through rt->wake (a uv_async_t) and
 * node::MakeCallback(), so ticks and microtasks run after each batch.
 */

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include <node.h>
#include <node_buffer.h>
#include <uv.h>

#include "hotffi.h"
#include "hotffi_node.hh"
#include "hotffi_node_js.h"     /* generated: the boot script and the SDK */


using v8::Array;
using v8::Context;
using v8::External;
using v8::Function;
using v8::FunctionCallbackInfo;
using v8::FunctionTemplate;
using v8::Global;
using v8::HandleScope;
using v8::Isolate;
using v8::Local;
using v8::Locker;
using v8::MaybeLocal;
using v8::Number;
using v8::Object;
using v8::Script;
using v8::String;
using v8::Value;


static pthread_mutex_t  hotffi_node_proc_mtx = PTHREAD_MUTEX_INITIALIZER;
static int              hotffi_node_proc_state;    /* 0, 1 ok, -1 failed */
static std::string      hotffi_node_proc_err;
/* owner: the process (Node's platform lives as long as the worker) */
static node::MultiIsolatePlatform  *hotffi_node_platform;
/* owner: the process; released, never destroyed by a static destructor
   (hotffi_node_process_end() tears Node down first) */
static node::InitializationResult  *hotffi_node_init_result;


/* per env thread: what the binding and the wake callback need */
typedef struct {
    hotffi_node_rt_t        *rt;
    Isolate                 *isolate;
    node::Environment       *env;
    Global<Context>          context;
    Global<Object>           api;       /* the boot script's {dispatch,stop} */
} hotffi_node_env_t;


int
hotffi_node_process_start(std::string *err)
{
    int  rc;

    (void) pthread_mutex_lock(&hotffi_node_proc_mtx);

    if (hotffi_node_proc_state == 0) {
        uint64_t  flags =
            node::ProcessInitializationFlags::kNoDefaultSignalHandling
            | node::ProcessInitializationFlags::kNoStdioInitialization
            | node::ProcessInitializationFlags::kNoAdjustResourceLimits
            | node::ProcessInitializationFlags::kNoUseLargePages
            | node::ProcessInitializationFlags::kNoPrintHelpOrVersionOutput
            | node::ProcessInitializationFlags::kDisableNodeOptionsEnv
            | node::ProcessInitializationFlags::kDisableCLIOptions
            | node::ProcessInitializationFlags::kNoParseGlobalDebugVariables;

        hotffi_node_init_result = node::InitializeOncePerProcess(
            {"nginx-hotffi"},
            static_cast<node::ProcessInitializationFlags::Flags>(flags))
            .release();

        if (hotffi_node_init_result->early_return()
            || hotffi_node_init_result->platform() == nullptr)
        {
            hotffi_node_proc_err = "Node.js did not initialise:";
            for (const std::string &e : hotffi_node_init_result->errors()) {
                hotffi_node_proc_err += " " + e;
            }
            hotffi_node_proc_state = -1;

        } else {
            hotffi_node_platform = hotffi_node_init_result->platform();
            hotffi_node_proc_state = 1;
        }
    }

    rc = hotffi_node_proc_state == 1 ? 0 : -1;
    if (rc != 0) {
        *err = hotffi_node_proc_err;
    }

    (void) pthread_mutex_unlock(&hotffi_node_proc_mtx);

    return rc;
}


/*
 * thread: the worker's, in exit() (on_exit), once every runtime was
 * unloaded (hotffi joins them on the worker's way out).  libnode's exit
 * handlers and static destructors race V8's platform threads, which never
 * stop, and crash (TearDownOncePerProcess() there too): a worker that
 * started Node ends here, stdio flushed, with the exit status it asked for.
 */
void
hotffi_node_process_end(int status)
{
    if (hotffi_node_proc_state == 1) {
        (void) fflush(NULL);
        _exit(status);
    }
}


void
hotffi_node_log(hotffi_node_rt_t *rt, int level, const std::string &s)
{
    if (hotffi_node_host.log != nullptr) {
        hotffi_node_host.log(rt->tq, level, s.data(), (int) s.size());
    }
}


void
hotffi_node_respond(void *task, int rc, const char *data, size_t len)
{
    char  *p = nullptr;

    if (data != nullptr) {
        /* owner: hotffi once respond() has it; NUL-terminated, because
           respond() reads a length of 0 as strlen() (lua-resty-ffi's rule),
           which makes an empty answer "" */
        p = (char *) malloc(len + 1);
        if (p == nullptr) {
            rc = HOTFFI_NODE_RC_EXCEPTION;
            len = 0;
        } else {
            memcpy(p, data, len);
            p[len] = '\0';
        }
    }

    ngx_http_lua_ffi_respond(task, rc, p, (int) len);
}


static void
hotffi_node_init_finish(hotffi_node_rt_t *rt, int rc, const std::string &err)
{
    (void) pthread_mutex_lock(&rt->mtx);
    if (!rt->init_done) {
        rt->init_done = 1;
        rt->init_rc = rc;
        rt->init_err = err;
        (void) pthread_cond_broadcast(&rt->cond);
    }
    (void) pthread_mutex_unlock(&rt->mtx);
}


/* ---- the binding: functions the boot script calls (env thread) ------ */

static hotffi_node_env_t *
hotffi_node_self(const FunctionCallbackInfo<Value> &args)
{
    return static_cast<hotffi_node_env_t *>(
        args.Data().As<External>()->Value());
}


static void *
hotffi_node_task_of(hotffi_node_env_t *e, Local<Value> v)
{
    void  *task;

    if (!v->IsNumber()) {
        return nullptr;
    }

    task = (void *) (uintptr_t) v.As<Number>()->Value();

    return e->rt->taken.count(task) ? task : nullptr;
}


/* respond(id, rc, data): data a Buffer/Uint8Array, a string, or nothing */
static void
hotffi_node_b_respond(const FunctionCallbackInfo<Value> &args)
{
    hotffi_node_env_t  *e = hotffi_node_self(args);
    Isolate            *iso = args.GetIsolate();
    void               *task;
    int                 rc;

    task = hotffi_node_task_of(e, args[0]);
    if (task == nullptr) {
        args.GetReturnValue().Set(false);
        return;
    }

    rc = args[1]->IsInt32() ? args[1].As<v8::Int32>()->Value() : 0;

    e->rt->taken.erase(task);

    if (args[2]->IsArrayBufferView()) {
        Local<v8::ArrayBufferView>  view = args[2].As<v8::ArrayBufferView>();
        size_t                      len = view->ByteLength();
        /* owner: hotffi once respond() has it; NUL-terminated, as in
           hotffi_node_respond(): an empty answer is "", not nil */
        char                       *p = (char *) malloc(len + 1);

        if (p == nullptr) {
            hotffi_node_respond(task, HOTFFI_NODE_RC_EXCEPTION, nullptr, 0);
        } else {
            /* one copy, out of V8's heap straight into the answer */
            (void) view->CopyContents(p, len);
            p[len] = '\0';
            ngx_http_lua_ffi_respond(task, rc, p, (int) len);
        }

    } else if (args[2]->IsString()) {
        String::Utf8Value  s(iso, args[2]);
        hotffi_node_respond(task, rc, *s, s.length());

    } else {
        hotffi_node_respond(task, rc, nullptr, 0);
    }

    args.GetReturnValue().Set(true);
}


static void
hotffi_node_b_cancelled(const FunctionCallbackInfo<Value> &args)
{
    hotffi_node_env_t  *e = hotffi_node_self(args);
    void               *task = hotffi_node_task_of(e, args[0]);

    args.GetReturnValue().Set(task != nullptr
                              && hotffi_node_host.task_cancelled != nullptr
                              && hotffi_node_host.task_cancelled(task) == 1);
}


static void
hotffi_node_b_log(const FunctionCallbackInfo<Value> &args)
{
    hotffi_node_env_t  *e = hotffi_node_self(args);
    String::Utf8Value   s(args.GetIsolate(), args[1]);
    int                 level;

    level = args[0]->IsInt32() ? args[0].As<v8::Int32>()->Value()
                               : HOTFFI_LEVEL_INFO;
    hotffi_node_log(e->rt, level, std::string(*s, s.length()));
}


/* initDone(rc, message, file, source) */
static void
hotffi_node_b_init_done(const FunctionCallbackInfo<Value> &args)
{
    hotffi_node_env_t  *e = hotffi_node_self(args);
    Isolate            *iso = args.GetIsolate();
    String::Utf8Value   msg(iso, args[1]);
    int                 rc;

    rc = args[0]->IsInt32() ? args[0].As<v8::Int32>()->Value()
                            : HOTFFI_NODE_EINIT;

    if (rc == 0 && args[2]->IsString() && args[3]->IsString()) {
        String::Utf8Value  file(iso, args[2]);
        String::Utf8Value  src(iso, args[3]);

        e->rt->loaded_file.assign(*file, file.length());
        e->rt->loaded_src.assign(*src, src.length());
    }

    hotffi_node_init_finish(e->rt, rc,
                            rc ? std::string(*msg, msg.length()) : "");
}


/* retired(rc, state or message) */
static void
hotffi_node_b_retired(const FunctionCallbackInfo<Value> &args)
{
    hotffi_node_env_t  *e = hotffi_node_self(args);
    hotffi_node_rt_t   *rt = e->rt;
    Isolate            *iso = args.GetIsolate();

    (void) pthread_mutex_lock(&rt->mtx);

    rt->retire_rc = args[0]->IsInt32() ? args[0].As<v8::Int32>()->Value()
                                       : HOTFFI_NODE_ERETIRE;

    if (rt->retire_rc != 0) {
        String::Utf8Value  s(iso, args[1]);
        rt->retire_err.assign(*s, s.length());

    } else if (args[1]->IsArrayBufferView()) {
        Local<v8::ArrayBufferView>  view = args[1].As<v8::ArrayBufferView>();

        rt->state_out.resize(view->ByteLength());
        view->CopyContents(&rt->state_out[0], rt->state_out.size());
        rt->has_state_out = 1;

    } else if (args[1]->IsString()) {
        String::Utf8Value  s(iso, args[1]);
        rt->state_out.assign(*s, s.length());
        rt->has_state_out = 1;
    }

    (void) pthread_mutex_unlock(&rt->mtx);
}


/* finished(): JavaScript drained; the Environment is stopped after it */
static void
hotffi_node_b_finished(const FunctionCallbackInfo<Value> &args)
{
    hotffi_node_env_t  *e = hotffi_node_self(args);

    e->rt->finished = 1;
    (void) pthread_mutex_lock(&e->rt->mtx);
    hotffi_node_wake_locked(e->rt);
    (void) pthread_mutex_unlock(&e->rt->mtx);
}


static void
hotffi_node_set(Isolate *iso, Local<Context> ctx, Local<Object> obj,
    const char *name, v8::FunctionCallback fn, Local<Value> data)
{
    Local<Function>  f = FunctionTemplate::New(iso, fn, data)
                             ->GetFunction(ctx).ToLocalChecked();

    obj->Set(ctx, String::NewFromUtf8(iso, name).ToLocalChecked(), f).Check();
}


static Local<String>
hotffi_node_str(Isolate *iso, const std::string &s)
{
    return String::NewFromUtf8(iso, s.data(), v8::NewStringType::kNormal,
                               (int) s.size()).ToLocalChecked();
}


/*
 * LoadEnvironment()'s callback: compiles the boot script, a function of
 * (process, require, binding, sdkSource, start) and runs it; it returns
 * the object whose dispatch() and stop() the wake callback calls.
 */
static MaybeLocal<Value>
hotffi_node_boot(hotffi_node_env_t *e,
    const node::StartExecutionCallbackInfo &info)
{
    Isolate           *iso = e->isolate;
    Local<Context>     ctx = iso->GetCurrentContext();
    Local<Object>      binding = Object::New(iso);
    Local<Object>      start = Object::New(iso);
    Local<Value>       data = External::New(iso, e);
    Local<Script>      script;
    Local<Value>       fn, ret;
    hotffi_node_rt_t  *rt = e->rt;

    hotffi_node_set(iso, ctx, binding, "respond", hotffi_node_b_respond, data);
    hotffi_node_set(iso, ctx, binding, "cancelled", hotffi_node_b_cancelled,
                    data);
    hotffi_node_set(iso, ctx, binding, "log", hotffi_node_b_log, data);
    hotffi_node_set(iso, ctx, binding, "initDone", hotffi_node_b_init_done,
                    data);
    hotffi_node_set(iso, ctx, binding, "retired", hotffi_node_b_retired, data);
    hotffi_node_set(iso, ctx, binding, "finished", hotffi_node_b_finished,
                    data);

    /* what libffi_init() was given: cfg, tq, state, the rollback's source */
    start->Set(ctx, hotffi_node_str(iso, "cfg"),
               hotffi_node_str(iso, rt->cfg)).Check();
    start->Set(ctx, hotffi_node_str(iso, "tq"),
               Number::New(iso, (double) (uintptr_t) rt->tq)).Check();
    if (rt->has_state) {
        start->Set(ctx, hotffi_node_str(iso, "state"),
                   node::Buffer::Copy(iso, rt->state_in.data(),
                                      rt->state_in.size())
                       .ToLocalChecked()).Check();
    }
    if (!rt->rollback_src.empty()) {
        start->Set(ctx, hotffi_node_str(iso, "rollbackSource"),
                   hotffi_node_str(iso, rt->rollback_src)).Check();
    }

    if (!Script::Compile(ctx, hotffi_node_str(iso, hotffi_node_boot_js))
             .ToLocal(&script)
        || !script->Run(ctx).ToLocal(&fn) || !fn->IsFunction())
    {
        return MaybeLocal<Value>();
    }

    Local<Value>  argv[] = {
        info.process_object, info.native_require, binding,
        hotffi_node_str(iso, hotffi_node_sdk_js), start
    };

    if (!fn.As<Function>()->Call(ctx, ctx->Global(), 5, argv).ToLocal(&ret)
        || !ret->IsObject())
    {
        return MaybeLocal<Value>();
    }

    e->api.Reset(iso, ret.As<Object>());

    return ret;
}


static void
hotffi_node_call_api(hotffi_node_env_t *e, const char *name, int argc,
    Local<Value> *argv)
{
    Isolate         *iso = e->isolate;
    Local<Context>   ctx = e->context.Get(iso);
    Local<Object>    api = e->api.Get(iso);
    Local<Value>     fn;

    if (!api->Get(ctx, hotffi_node_str(iso, name)).ToLocal(&fn)
        || !fn->IsFunction())
    {
        return;
    }

    (void) node::MakeCallback(iso, api, fn.As<Function>(), argc, argv,
                              {0, 0});
}


/* thread: env.  rt->wake fired: hand the inbox to JavaScript. */
static void
hotffi_node_wake_cb(uv_async_t *a)
{
    hotffi_node_env_t   *e = static_cast<hotffi_node_env_t *>(a->data);
    hotffi_node_rt_t    *rt = e->rt;
    Isolate             *iso = e->isolate;
    std::deque<void *>   tasks;
    int                  done, len;
    uint32_t             i;
    char                *req;

    if (rt->finished || e->api.IsEmpty()) {
        /* drained, or the boot script failed: end the Environment */
        node::Stop(e->env);
        return;
    }

    (void) pthread_mutex_lock(&rt->mtx);
    tasks.swap(rt->inbox);
    done = rt->poll_done && rt->end_asked;
    (void) pthread_mutex_unlock(&rt->mtx);

    HandleScope      hs(iso);
    Local<Context>   ctx = e->context.Get(iso);
    Context::Scope   cs(ctx);

    if (!tasks.empty()) {
        Local<Array>  list = Array::New(iso, (int) tasks.size() * 2);

        i = 0;
        for (void *task : tasks) {
            rt->taken.insert(task);
            req = ngx_http_lua_ffi_get_req(task, &len);
            list->Set(ctx, i++, Number::New(iso, (double) (uintptr_t) task))
                .Check();
            list->Set(ctx, i++,
                      node::Buffer::Copy(iso, req ? req : "",
                                         req ? (size_t) len : 0)
                          .ToLocalChecked()).Check();
        }

        Local<Value>  argv[] = { list };
        hotffi_node_call_api(e, "dispatch", 1, argv);
    }

    if (done && !rt->stop_asked) {
        rt->stop_asked = 1;
        Local<Value>  argv[] = { v8::Boolean::New(iso, rt->stop_state) };
        hotffi_node_call_api(e, "stop", 1, argv);
    }
}


/* thread: env.  The Environment ended: every task still held fails. */
static void
hotffi_node_env_dead(hotffi_node_rt_t *rt, const std::string &why)
{
    std::deque<void *>  tasks;

    (void) pthread_mutex_lock(&rt->mtx);
    rt->alive = 0;
    rt->dead = 1;
    rt->dead_why = why;
    tasks.swap(rt->inbox);
    (void) pthread_cond_broadcast(&rt->cond);
    (void) pthread_mutex_unlock(&rt->mtx);

    for (void *task : rt->taken) {
        tasks.push_back(task);
    }
    rt->taken.clear();

    for (void *task : tasks) {
        hotffi_node_respond(task, HOTFFI_NODE_RC_ENDED, why.data(),
                            why.size());
    }
}


static void *
hotffi_node_env_thread(void *arg)
{
    hotffi_node_rt_t                                *rt;
    hotffi_node_env_t                                e;
    std::vector<std::string>                         errors;
    std::unique_ptr<node::CommonEnvironmentSetup>    setup;
    std::string                                      why;
    int                                              booted = 0;

    rt = static_cast<hotffi_node_rt_t *>(arg);
    e.rt = rt;

    setup = node::CommonEnvironmentSetup::Create(
        hotffi_node_platform, &errors,
        std::vector<std::string>{"nginx-hotffi"}, std::vector<std::string>{},
        static_cast<node::EnvironmentFlags::Flags>(
            node::EnvironmentFlags::kNoCreateInspector));

    if (!setup) {
        why = "the Node.js Environment was not created:";
        for (const std::string &s : errors) {
            why += " " + s;
        }
        hotffi_node_init_finish(rt, HOTFFI_NODE_ENODE, why);
        hotffi_node_env_dead(rt, why);
        return nullptr;
    }

    e.isolate = setup->isolate();
    e.env = setup->env();
    rt->env = e.env;

    {
        Locker           locker(e.isolate);
        Isolate::Scope   is(e.isolate);
        HandleScope      hs(e.isolate);
        Context::Scope   cs(setup->context());

        e.context.Reset(e.isolate, setup->context());

        /* process.exit() and an exit after an uncaught error: this
           version ends, never the worker */
        node::SetProcessExitHandler(e.env,
            [rt](node::Environment *env, int code) {
                rt->exit_code = code;
                node::Stop(env);
            });

        (void) uv_async_init(setup->event_loop(), &rt->wake,
                             hotffi_node_wake_cb);
        rt->wake.data = &e;

        (void) pthread_mutex_lock(&rt->mtx);
        rt->alive = 1;
        (void) pthread_mutex_unlock(&rt->mtx);

        /* empty: the boot script failed, or init called process.exit() */
        if (!node::LoadEnvironment(e.env,
                 [&e](const node::StartExecutionCallbackInfo &info) {
                     return hotffi_node_boot(&e, info);
                 }).IsEmpty())
        {
            (void) node::SpinEventLoop(e.env);
        }

        (void) pthread_mutex_lock(&rt->mtx);
        rt->alive = 0;
        (void) pthread_mutex_unlock(&rt->mtx);

        uv_close(reinterpret_cast<uv_handle_t *>(&rt->wake), nullptr);

        booted = !e.api.IsEmpty();
        e.api.Reset();
        e.context.Reset();
    }

    if (rt->exit_code >= 0) {
        why = "the Node.js runtime ended: process.exit(" +
              std::to_string(rt->exit_code) + ") was called";
    } else if (rt->finished) {
        why = "the Node.js runtime was unloaded";
    } else if (!booted) {
        why = "the hotffi boot script failed";
    } else {
        why = "the Node.js runtime ended";
    }

    hotffi_node_init_finish(rt, HOTFFI_NODE_EINIT, why);

    if (!rt->finished && rt->init_rc == 0) {
        hotffi_node_log(rt, HOTFFI_LEVEL_ERR, why
                        + ": its calls fail until it is unloaded or reloaded");
    }

    rt->env = nullptr;
    hotffi_node_env_dead(rt, why);

    /* frees the Environment (every handle it opened) and the isolate */
    setup.reset();

    return nullptr;
}


int
hotffi_node_env_start(hotffi_node_rt_t *rt, std::string *err)
{
    pthread_attr_t  attr;
    int             rc;

    (void) pthread_attr_init(&attr);
    /* V8 sizes its stack guard from the thread's stack: give it the usual
       8 MiB whatever RLIMIT_STACK nginx was started with */
    (void) pthread_attr_setstacksize(&attr, 8 * 1024 * 1024);
    rc = pthread_create(&rt->env_tid, &attr, hotffi_node_env_thread, rt);
    (void) pthread_attr_destroy(&attr);

    if (rc != 0) {
        *err = std::string("cannot start the Node.js thread: ")
               + strerror(rc);
        return -1;
    }

    return 0;
}
