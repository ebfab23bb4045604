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
            else:
                task.respond(3, b"unknown command")

    for _ in range(threads):
        threading.Thread(target=serve, daemon=True).start()
    return 0
