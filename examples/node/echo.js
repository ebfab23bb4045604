// echo.js -- the smallest Node.js runtime: answers each request with
// itself, bytes for bytes.  Also the benchmarks' Node.js runtime.
//
//   hotffi.load("hotffi_node", "/path/to/examples/node/echo,init")
'use strict';

const hotffi = require('hotffi');

exports.init = (cfg, tq) => {
    hotffi.serve(tq, (req) => req);
    return 0;
};
