"""hotffi_ctl.py -- the ctl runtime of the tests, in Python, for the cases
every language runs (tests/lib/HotffiLangs.pm, tests/nginx/450-languages.t);
the same commands as sdk/go/internal/ctl and sdk/rust/ctl where Python has
them, on the loader's low-level API (hotffi.poll, task.respond):

    echo:S          answers S
    fail:RC:MSG     fails with rc RC and payload MSG
    error:MSG       fails with rc 1 and payload MSG
    null            answers nothing (nil)
    empty           answers ""
    sleep:MS        answers "slept" after MS ms, or "cancelled" as soon as
                    its caller gave up
    cancelled       how many sleeps saw their caller give up
    cfg             the configuration
    log:LEVEL:N:TEXT  writes N lines "TEXT I" (I = 1..N) at LEVEL (nginx's)
                    through the logging module and hotffi.LogHandler;
                    answers "logged N"
    dict:NAME       the shared dict scenario of 450-languages.t on the
                    lua_shared_dict NAME, through hotffi.shared_dict();
                    answers its findings, space-separated
    anything else   fails with rc 3, "unknown command"

The configuration is the number of threads serving calls (default 4):
"/path/to/tests/lib/python/hotffi_ctl,init,1".
"""

import logging
import threading
import time

import hotffi

# One handler for every runtime of this module: LogHandler() with no tq
# names the runtime of the thread that logs.
log = logging.getLogger("hotffi_ctl")
if not log.handlers:
    log.addHandler(hotffi.LogHandler())
log.setLevel(logging.DEBUG)
log.propagate = False

# nginx's levels (the log command's) as logging's
LEVELS = {4: logging.ERROR, 5: logging.WARNING, 6: 25, 7: logging.INFO,
          8: logging.DEBUG}


def num(x):
    """A Lua number as Lua's tostring() writes the ones of the tests."""
    return "%.14g" % x


def show(got):
    """name=value/flags[/stale] of a get()'s answer, values as Lua's."""
    value = got[0]
    if value is None:
        text = "nil"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = num(value)
    else:
        text = value.decode()
    return "/".join([text, str(got[1])]
                    + (["true" if got[2] else "false"] if len(got) > 2
                       else []))


def dict_scenario(name):
    """The findings of 450-languages.t's shared dict case."""
    out = []
    try:
        hotffi.shared_dict("nope")
        out.append("nope=found")
    except KeyError:
        out.append("nope=missing")
    d = hotffi.shared_dict(name)
    # first: a get() may evict expired items, as in Lua
    out.append("stale=" + show(d.get_stale("old")))
    for key in ("s", "n", "t", "f", "none", "old"):
        out.append("%s=%s" % (key, show(d.get(key))))
    d.set("rs", "from-rt", flags=9)
    d.set(b"rn", -12.5)
    d.set("rb", False)
    out.append("add-s=%s" % str(d.add("s", "x")).lower())
    out.append("add-new=%s" % str(d.add("new", b"x")).lower())
    out.append("replace-absent=%s" % str(d.replace("absent", 1)).lower())
    out.append("replace-new=%s" % str(d.replace("new", "y")).lower())
    out.append("incr-c=" + num(d.incr("c", 2, init=10)))
    out.append("incr-c=" + num(d.incr("c", -0.5)))
    try:
        d.incr("absent", 1)
        out.append("incr-absent=found")
    except KeyError:
        out.append("incr-absent=notfound")
    d.delete("n")
    d.set("e", "x", 100)
    ttl = d.ttl("e")
    out.append("ttl-e=" + ("ok" if 0 < ttl <= 100 else repr(ttl)))
    out.append("ttl-rs=" + num(d.ttl("rs")))
    out.append("ttl-absent=" + ("none" if d.ttl("absent") is None
                                else "some"))
    return " ".join(out)


def init(cfg, tq):
    cfg = str(cfg)
    threads = int(cfg or 4)
    lock = threading.Lock()
    seen = {"cancelled": 0}

    def sleep(task, ms):
        deadline = time.monotonic() + ms / 1000
        while time.monotonic() < deadline:
            if task.cancelled:
                with lock:
                    seen["cancelled"] += 1
                return b"cancelled"
            time.sleep(min(0.005, max(0, deadline - time.monotonic())))
        return b"slept"

    def serve():
        while True:
            task = hotffi.poll(tq)
            if task is None:
                return
            cmd, _, arg = task.req.partition(b":")
            if cmd == b"echo":
                task.respond(0, arg)
            elif cmd == b"fail":
                rc, _, msg = arg.partition(b":")
                task.respond(int(rc), msg)
            elif cmd == b"error":
                task.respond(1, arg)
            elif cmd == b"null":
                task.respond()
            elif cmd == b"empty":
                task.respond(0, b"")
            elif cmd == b"sleep":
                task.respond(0, sleep(task, int(arg)))
            elif cmd == b"cancelled":
                with lock:
                    task.respond(0, str(seen["cancelled"]))
            elif cmd == b"cfg":
                task.respond(0, cfg)
            elif cmd == b"log":
                level, _, rest = arg.partition(b":")
                n, _, text = rest.partition(b":")
                for i in range(1, int(n) + 1):
                    log.log(LEVELS[int(level)], "%s %d", text.decode(), i)
                task.respond(0, "logged %d" % int(n))
            elif cmd == b"dict":
                try:
                    task.respond(0, dict_scenario(arg.decode()))
                except Exception as e:
                    task.respond(1, "%s: %s" % (type(e).__name__, e))
            else:
                task.respond(3, b"unknown command")

    for _ in range(threads):
        threading.Thread(target=serve, daemon=True).start()
    return 0
