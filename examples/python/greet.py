"""greet.py -- a Python runtime that uses a package from its own
virtualenv and logs into nginx's error log: every call is answered with
"greeting <version>: <request>", and logged at info.

    local rt = hotffi.load("hotffi_python",
        "venv=/srv/venvs/a;/path/to/examples/python/greet,init")
    local ok, res = rt:hi("hello")      --> true, "greeting 2.0: hello"

With venv=, the runtime runs in a sub-interpreter of its own whose
sys.path is that virtualenv's (docs/python.md): two runtimes with two
venvs see two versions of `greeting` in one worker.  The demo makes a
venv with a `greeting` package of its own.
"""

import logging

import greeting
import hotffi

log = logging.getLogger("greet")
if not log.handlers:                  # a "module?" reload runs this again
    log.addHandler(hotffi.LogHandler())
log.setLevel(logging.INFO)


def answer(req):
    text = bytes(req or b"").decode("utf-8", "replace")
    log.info("greeting %s greets %r", greeting.__version__, text)
    return "greeting %s: %s" % (greeting.__version__, text)


def init(cfg, tq):
    hotffi.serve(tq, answer)
    return 0
