// fetch.js -- a runtime that calls an HTTP server asynchronously, on its
// own event loop: each request is a path, each answer the body the server
// at cfg's base URL gave for it.  Many calls wait on the network at once,
// with no thread each; a non-2xx status fails the call with rc = status.
//
//   local rt = hotffi.load("hotffi_node",
//                          "/path/to/examples/node/fetch,init,http://127.0.0.1:8080")
//   local ok, body = rt:get("/hello")
'use strict';

const http = require('http');
const hotffi = require('hotffi');

exports.init = (cfg, tq) => {
    const base = new URL(cfg || 'http://127.0.0.1/');
    if (base.protocol !== 'http:') {
        throw new Error(`fetch: cfg must be an http:// URL, not "${cfg}"`);
    }
    // one pool of kept-alive connections for this runtime version
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

    hotffi.serve(tq, (req, task) => new Promise((resolve, reject) => {
        const url = new URL(req.toString() || '/', base);
        const r = http.get(url, { agent }, (res) => {
            const parts = [];
            res.on('data', (b) => parts.push(b));
            res.on('end', () => {
                const body = Buffer.concat(parts);
                if (res.statusCode >= 200 && res.statusCode < 300) {
                    resolve(body);
                } else {
                    reject(new hotffi.Error(res.statusCode, body));
                }
            });
            res.on('error', reject);
        });
        r.on('error', reject);
        // the caller gave up: give the request up too
        const check = setInterval(() => {
            if (task.cancelled) {
                r.destroy(new Error('the caller gave up'));
            }
        }, 50);
        r.on('close', () => clearInterval(check));
    }));
    return 0;
};
