// counter.js -- a runtime with state that reloads in place: it counts its
// calls, and rt:__reload() hands the count to the next version (retire()
// gives it, hotffi.state() reads it), so editing this file and reloading
// never resets the count.
//
//   local rt = hotffi.load("hotffi_node", "/path/to/examples/node/counter?,init")
//   rt:count()          --> true, "1" ...
//   rt:__reload()       -- this file read again; the count goes on
'use strict';

const hotffi = require('hotffi');

let count = 0;

exports.init = (cfg, tq) => {
    const state = hotffi.state(tq);       // null on a first load
    count = state === null ? 0 : Number(state.toString());
    hotffi.serve(tq, () => String(++count));
    return 0;
};

// the old version's last word: every call it took is answered by now
exports.retire = (tq) => String(count);
