"""echo.py -- the smallest Python runtime: every call is answered with its
own request bytes.

    local rt = hotffi.load("hotffi_python", "/path/to/examples/python/echo,init")
    local ok, res = rt:echo("hello")            --> true, "hello"

The configuration, if any, is the number of serving threads (default 1):
"/path/to/examples/python/echo,init,4".  It is also the Python runtime the
benchmarks use.
"""

import hotffi


def init(cfg, tq):
    # cfg is a str; int(cfg) would be its C address (lua-resty-ffi's
    # convention), so the number is read from the text
    threads = int(str(cfg) or 1)
    hotffi.serve(tq, lambda req: req, threads=threads)
    return 0
