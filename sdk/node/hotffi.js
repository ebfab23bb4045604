// hotffi.js -- hotffi's JavaScript SDK: what a Node.js runtime module
// loaded by libhotffi_node.so gets from require('hotffi').  Plain
// CommonJS, nothing from a package registry: the loader compiles this file
// into itself and gives each runtime version its own copy (docs/node.md).
//
//   const hotffi = require('hotffi');
//   exports.init = (cfg, tq) => {
//       hotffi.serve(tq, async (req, task) => Buffer.concat([req, req]));
//       return 0;
//   };
'use strict';

// the loader's side, given to this module only while it is compiled
const internal = module.hotffiInternal;

// nginx's error_log levels, as hotffi_log() takes them
const LEVEL = Object.freeze({
    emerg: 1, alert: 2, crit: 3, error: 4, warn: 5, notice: 6, info: 7,
    debug: 8,
});

// Thrown (or rejected) by a handler: fails the call with rc and data
// (a Buffer or a string), which Lua gets as false, rc, data.
class HotffiError extends Error {
    constructor(rc, data) {
        super(typeof data === 'string' ? data : `hotffi.Error(${rc})`);
        this.name = 'hotffi.Error';
        this.rc = rc | 0;
        this.data = data === undefined ? null : data;
    }
}

function checkTq(tq) {
    if (internal === undefined) {
        throw new Error('hotffi: only inside a runtime of libhotffi_node.so');
    }
    if (tq !== internal.tq) {
        throw new TypeError('hotffi: tq is not this runtime\'s queue: pass '
                            + 'the tq init(cfg, tq) was given');
    }
}

// serve(tq, handler): every call is handler(req, task) on this
// Environment's event loop; req is a Buffer, task.cancelled says the caller
// gave up.  Answer a Buffer, a string, nothing, or a Promise of one; a
// throw or a rejection fails the call (rc 1 and the stack, or a
// hotffi.Error's rc and data).  A later serve() replaces the handler.
function serve(tq, handler) {
    checkTq(tq);
    if (typeof handler !== 'function') {
        throw new TypeError('hotffi.serve: handler is not a function');
    }
    internal.setHandler(handler);
}

// The state the previous version's retire() handed over (a Buffer), or
// null: a first load, a reload without state.
function state(tq) {
    checkTq(tq);
    return internal.state();
}

// true when this init starts the previous version again after a reload
// that failed (its code as it ran, its state)
function isRollback(tq) {
    checkTq(tq);
    return internal.rollback();
}

// log(level, ...args): one line in nginx's error log, prefixed with the
// runtime's name; level is a LEVEL name or number.  console.* also log.
function log(level, ...args) {
    const n = typeof level === 'number' ? level : LEVEL[level];
    if (!Number.isInteger(n) || n < 1 || n > 8) {
        throw new TypeError(`hotffi.log: bad level ${String(level)}`);
    }
    internal.log(n, require('util').format(...args));
}

module.exports = {
    serve, state, isRollback, log, LEVEL,
    Error: HotffiError,
    RC_EXCEPTION: 1,    // a handler threw or rejected
    RC_ENDED: 4,        // the version ended (process.exit()): until unload
};
