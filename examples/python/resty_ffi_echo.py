"""resty_ffi_echo.py -- a runtime written the lua-resty-ffi way, which
hotffi's Python loader runs unmodified: no `hotffi` module, only the C ABI,
reached through ctypes (cffi's ffi.dlopen(None) works the same way).

    local rt = hotffi.load("hotffi_python",
                           "/path/to/examples/python/resty_ffi_echo,init,> ",
                           { is_global = true })
    local ok, res = rt:echo("hello")            --> true, "> hello"

As in lua-resty-ffi, init gets cfg and tq as C addresses (int(cfg) is the
address of the configuration text, valid while init runs), starts a thread
that polls, and that thread stops at the first NULL task.
"""

import ctypes
import threading

# dlopen(NULL): the ngx_http_lua_ffi_* functions are in nginx's global
# namespace, exported by hotffi's module
C = ctypes.CDLL(None)

C.ngx_http_lua_ffi_task_poll.restype = ctypes.c_void_p
C.ngx_http_lua_ffi_task_poll.argtypes = [ctypes.c_void_p]

# void *, not char *: a request may contain NUL bytes
C.ngx_http_lua_ffi_get_req.restype = ctypes.c_void_p
C.ngx_http_lua_ffi_get_req.argtypes = [ctypes.c_void_p,
                                       ctypes.POINTER(ctypes.c_int)]

C.ngx_http_lua_ffi_respond.restype = None
C.ngx_http_lua_ffi_respond.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                       ctypes.c_void_p, ctypes.c_int]

C.malloc.restype = ctypes.c_void_p
C.malloc.argtypes = [ctypes.c_size_t]


def poll(tq, prefix):
    n = ctypes.c_int()
    while True:
        # ctypes lets the GIL go during the call: other threads run
        task = C.ngx_http_lua_ffi_task_poll(tq)
        if not task:
            break
        req = C.ngx_http_lua_ffi_get_req(task, ctypes.byref(n))
        size = len(prefix) + n.value
        # the answer is malloc()'ed: hotffi free()s it.  One spare byte for
        # a NUL, since a length of 0 means a NUL-terminated string
        rsp = C.malloc(size + 1)
        ctypes.memmove(rsp, prefix, len(prefix))
        ctypes.memmove(rsp + len(prefix), req, n.value)
        ctypes.memset(rsp + size, 0, 1)
        C.ngx_http_lua_ffi_respond(task, 0, rsp, size)


def init(cfg, tq):
    prefix = ctypes.string_at(int(cfg)) if int(cfg) else b""
    t = threading.Thread(target=poll, args=(tq, prefix), daemon=True)
    t.start()
    return 0
