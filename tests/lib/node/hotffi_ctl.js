// hotffi_ctl.js -- the ctl runtime of the tests, in JavaScript, for the
// cases every language runs (tests/lib/HotffiLangs.pm,
// tests/nginx/450-languages.t); the same commands as sdk/go/internal/ctl,
// sdk/rust/ctl and tests/lib/python/hotffi_ctl.py:
//
//     echo:S          answers S
//     fail:RC:MSG     fails with rc RC and payload MSG
//     error:MSG       fails with rc 1 and payload MSG
//     null            answers nothing (nil)
//     empty           answers ""
//     sleep:MS        answers "slept" after MS ms, or "cancelled" as soon as
//                     its caller gave up
//     cancelled       how many sleeps saw their caller give up
//     cfg             the configuration (nil without one)
//     log:LEVEL:N:TEXT  writes N lines "TEXT I" (I = 1..N) at LEVEL
//                     (nginx's) with hotffi.log(); answers "logged N"
//     anything else   fails with rc 3, "unknown command"
//
// "/path/to/tests/lib/node/hotffi_ctl,init,CFG"; the calls are served on
// the runtime's event loop, so a sleep holds no thread.
'use strict';

const hotffi = require('hotffi');

exports.init = (cfg, tq) => {
    let cancelled = 0;

    async function sleep(task, ms) {
        const deadline = Date.now() + ms;
        while (Date.now() < deadline) {
            if (task.cancelled) {
                cancelled++;
                return 'cancelled';
            }
            await new Promise((r) => setTimeout(r,
                Math.min(5, Math.max(0, deadline - Date.now()))));
        }
        return 'slept';
    }

    hotffi.serve(tq, async (req, task) => {
        const s = req.toString('latin1');
        const i = s.indexOf(':');
        const cmd = i < 0 ? s : s.slice(0, i);
        const arg = i < 0 ? '' : s.slice(i + 1);
        switch (cmd) {
        case 'echo': return req.subarray(i + 1);
        case 'fail': {
            const j = arg.indexOf(':');
            throw new hotffi.Error(Number(arg.slice(0, j)),
                                   Buffer.from(arg.slice(j + 1), 'latin1'));
        }
        case 'error': throw new hotffi.Error(1, req.subarray(i + 1));
        case 'null': return null;
        case 'empty': return '';
        case 'sleep': return sleep(task, Number(arg));
        case 'cancelled': return String(cancelled);
        case 'cfg': return cfg === '' ? null : cfg;
        case 'log': {
            const [level, n, ...text] = arg.split(':');
            for (let k = 1; k <= Number(n); k++) {
                hotffi.log(Number(level), `${text.join(':')} ${k}`);
            }
            return `logged ${Number(n)}`;
        }
        default: throw new hotffi.Error(3, 'unknown command');
        }
    });
    return 0;
};
