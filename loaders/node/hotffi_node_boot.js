// hotffi_node_boot.js -- the JavaScript half of libhotffi_node.so: run
// once in each runtime version's own Node.js Environment, before its
// module.  Compiled into the loader (loaders/node/node.mk), called by
// hotffi_node_env.cc with the bootstrap's process and builtin require,
// the native binding, the SDK's source (sdk/node/hotffi.js) and what
// libffi_init() was given.  Returns {dispatch, stop} for the env thread.
//
// It makes the Environment nginx-safe where Node's flags cannot:
// console goes to nginx's error log, signal listeners, process.kill() of
// the worker and process.abort() are refused, and an uncaught exception is
// logged rather than ending the version.  Then it loads the module (from
// the source the loader keeps, on a rollback), calls its init function,
// and hands every call to the handler hotffi.serve() registered.
(function (process, nativeRequire, binding, sdkSource, start) {
    'use strict';

    const Module = nativeRequire('module');
    const path = nativeRequire('path');
    const fs = nativeRequire('fs');
    const util = nativeRequire('util');
    const os = nativeRequire('os');

    const ERR = 4, WARN = 5, INFO = 7, DEBUG = 8;

    function stackOf(e) {
        if (e instanceof Error && typeof e.stack === 'string') {
            return e.stack;
        }
        return 'non-Error thrown: ' + util.inspect(e);
    }

    function log(level, text) {
        binding.log(level, String(text));
    }

    for (const [name, level] of [['log', INFO], ['info', INFO],
                                 ['warn', WARN], ['error', ERR],
                                 ['debug', DEBUG], ['trace', DEBUG]]) {
        console[name] = (...args) => log(level, util.format(...args));
    }

    process.on('uncaughtException', (e, origin) => {
        log(ERR, `${origin === 'unhandledRejection' ? 'unhandled rejection'
                  : 'uncaught exception'}: ${stackOf(e)}`);
    });

    const signals = new Set(Object.keys(os.constants.signals));
    for (const m of ['on', 'addListener', 'once', 'prependListener',
                     'prependOnceListener']) {
        const orig = process[m];
        process[m] = function (ev, ...rest) {
            if (typeof ev === 'string' && signals.has(ev)) {
                throw new Error(`hotffi: process.${m}("${ev}") refused: `
                                + 'signals belong to nginx');
            }
            return orig.call(this, ev, ...rest);
        };
    }
    const kill = process.kill;
    process.kill = function (pid, sig) {
        if (Number(pid) === process.pid || Number(pid) === 0
            || Number(pid) === -process.pid || Number(pid) === process.ppid)
        {
            throw new Error('hotffi: process.kill() of nginx refused');
        }
        return kill.call(this, pid, sig);
    };
    process.abort = function () {
        throw new Error('hotffi: process.abort() refused: it would end the '
                        + 'nginx worker');
    };

    // this version's runtime
    const rt = {
        tq: start.tq,
        handler: null,
        inflight: 0,
        stopping: false,
        drained: null,
        exports: null,
        state: start.state === undefined ? null : start.state,
        rollback: start.rollbackSource !== undefined,
    };

    // the SDK: require('hotffi') from any module of this Environment
    const internal = {
        tq: rt.tq,
        setHandler(h) { rt.handler = h; },
        state() { return rt.state === null ? null : Buffer.from(rt.state); },
        rollback() { return rt.rollback; },
        log,
        cancelled(id) { return binding.cancelled(id); },
    };
    const sdk = new Module('hotffi', null);
    sdk.filename = 'hotffi';
    sdk.paths = [];
    sdk.hotffiInternal = internal;
    sdk._compile(sdkSource, 'hotffi');
    delete sdk.hotffiInternal;
    sdk.loaded = true;
    Module._cache.hotffi = sdk;
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function (request, ...rest) {
        return request === 'hotffi' ? 'hotffi'
                                    : resolve.call(this, request, ...rest);
    };
    const HotffiError = sdk.exports.Error;

    // ---- calls ----------------------------------------------------------

    function finish(id, rc, data) {
        binding.respond(id, rc, data);
        rt.inflight--;
        if (rt.stopping && rt.inflight === 0 && rt.drained) {
            rt.drained();
        }
    }

    function failed(id, e) {
        if (e instanceof HotffiError) {
            finish(id, e.rc, e.data);
            return;
        }
        const s = stackOf(e);
        log(ERR, `serve() handler threw: ${s}`);
        finish(id, 1, s);
    }

    function answered(id, v) {
        if (v === undefined || v === null || typeof v === 'string'
            || ArrayBuffer.isView(v))
        {
            finish(id, 0, v);
        } else if (v instanceof ArrayBuffer) {
            finish(id, 0, Buffer.from(v));
        } else {
            failed(id, new TypeError(`serve() handler gave ${typeof v}, `
                                     + 'expected a Buffer, a string or '
                                     + 'nothing'));
        }
    }

    class Task {
        constructor(id, req) {
            this.id = id;
            this.req = req;
        }
        // true once the caller gave up (timeout, request ended): stop early
        get cancelled() {
            return binding.cancelled(this.id);
        }
    }

    function run(id, req) {
        rt.inflight++;
        if (rt.handler === null) {
            finish(id, 1, 'no handler: the module did not call '
                          + 'hotffi.serve(tq, handler)');
            return;
        }
        let r;
        try {
            r = rt.handler(req, new Task(id, req));
        } catch (e) {
            failed(id, e);
            return;
        }
        if (r !== null && typeof r === 'object' && typeof r.then === 'function') {
            r.then((v) => answered(id, v), (e) => failed(id, e));
        } else {
            answered(id, r);
        }
    }

    function dispatch(list) {
        for (let i = 0; i < list.length; i += 2) {
            run(list[i], list[i + 1]);
        }
    }

    // The queue stopped: answer what is held, then retire() for the state
    // (a reload) and let the env thread end the Environment.
    function stop(wantState) {
        rt.stopping = true;
        const drained = rt.inflight === 0 ? Promise.resolve()
                        : new Promise((r) => { rt.drained = r; });
        drained.then(async () => {
            if (wantState) {
                try {
                    const f = rt.exports && rt.exports.retire;
                    let s = typeof f === 'function' ? await f(rt.tq) : null;
                    if (s !== undefined && s !== null && typeof s !== 'string'
                        && !ArrayBuffer.isView(s))
                    {
                        throw new TypeError(`retire() gave ${typeof s}, `
                                            + 'expected a Buffer, a string '
                                            + 'or nothing');
                    }
                    binding.retired(0, s === undefined ? null : s);
                } catch (e) {
                    binding.retired(5, stackOf(e));
                }
            }
            binding.finished();
        });
    }

    // ---- the module -----------------------------------------------------

    function parse(text) {
        const c1 = text.indexOf(',');
        const first = c1 < 0 ? text : text.slice(0, c1);
        let fn = 'init';
        let cfg = '';
        if (c1 >= 0) {
            const rest = text.slice(c1 + 1);
            const c2 = rest.indexOf(',');
            fn = (c2 < 0 ? rest : rest.slice(0, c2)) || 'init';
            cfg = c2 < 0 ? '' : rest.slice(c2 + 1);
        }
        const mod = first.endsWith('?') ? first.slice(0, -1) : first;
        return { mod, fn, cfg, name: `${first},${fn}` };
    }

    function locate(spec) {
        const req = Module.createRequire(path.join(process.cwd(), '/'));
        if (path.isAbsolute(spec) || spec.startsWith('.')) {
            return req.resolve(spec);
        }
        // "dir/mod" and "mod": from the worker's directory first, as
        // lua-resty-ffi's "demo/http2"; then node_modules and NODE_PATH
        try {
            return req.resolve('./' + spec);
        } catch (e) {
            return req.resolve(spec);
        }
    }

    function load(c) {
        const file = locate(c.mod);
        if (!/\.c?js$/.test(file) && path.extname(file) !== '') {
            return { file, source: null,
                     exports: Module.createRequire(file)(file) };
        }
        const source = start.rollbackSource !== undefined
                       ? start.rollbackSource : fs.readFileSync(file, 'utf8');
        const m = new Module(file, null);
        m.filename = file;
        m.paths = Module._nodeModulePaths(path.dirname(file));
        Module._cache[file] = m;
        try {
            m._compile(source, file);
        } catch (e) {
            delete Module._cache[file];
            throw e;
        }
        m.loaded = true;
        return { file, source, exports: m.exports };
    }

    function init() {
        const c = parse(start.cfg);
        let mod;
        try {
            if (c.mod === '') {
                throw new Error('no module: "[dir/]module[?],function,cfg" '
                                + 'expected');
            }
            mod = load(c);
        } catch (e) {
            binding.initDone(3, `${c.name}: ${stackOf(e)}`);
            return;
        }
        rt.exports = mod.exports;
        const fn = mod.exports && mod.exports[c.fn];
        if (typeof fn !== 'function') {
            binding.initDone(3, `${c.name}: module ${mod.file} exports no `
                                + `function "${c.fn}"`);
            return;
        }
        let r;
        try {
            r = fn(c.cfg, rt.tq);
        } catch (e) {
            binding.initDone(4, `${c.name}: ${stackOf(e)}`);
            return;
        }
        Promise.resolve(r).then((v) => {
            if (v === undefined || v === null) {
                v = 0;
            }
            if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
                binding.initDone(4, `${c.name}: ${c.fn}() gave `
                                    + `${util.inspect(v)}, expected an int `
                                    + '(0 = ok)');
            } else if (v !== 0) {
                binding.initDone(v, `${c.name}: ${c.fn}() returned ${v}`);
            } else {
                binding.initDone(0, '', mod.file,
                                 mod.source === null ? '' : mod.source);
            }
        }, (e) => binding.initDone(4, `${c.name}: ${stackOf(e)}`));
    }

    init();

    return { dispatch, stop };
})
