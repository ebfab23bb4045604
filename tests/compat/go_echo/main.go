// Command ffi_go_echo is a runtime written the way lua-resty-ffi runtimes
// are, from its ABI description alone: the three functions are declared
// here, nothing comes from hotffi (build/lib/libffi_go_echo.so).  It checks
// that such libraries work on hotffi unmodified (tests/nginx/420-compat.t).
//
// Requests: "cfg" answers the configuration (or "<nil>"), "fail:TEXT"
// fails with rc 1 and TEXT, anything else is echoed back.
package main

/*
#include <stdlib.h>
#include <string.h>

void *ngx_http_lua_ffi_task_poll(void *tq);
char *ngx_http_lua_ffi_get_req(void *tsk, int *len);
void ngx_http_lua_ffi_respond(void *tsk, int rc, char *rsp, int rsp_len);
*/
import "C"

import (
	"bytes"
	"unsafe"
)

// respond copies b into malloc()'ed memory, which the host frees.  The
// spare NUL keeps an empty answer "" (rsp_len 0 means NUL-terminated).
func respond(task unsafe.Pointer, rc int, b []byte) {
	rsp := C.malloc(C.size_t(len(b) + 1))
	buf := unsafe.Slice((*byte)(rsp), len(b)+1)
	copy(buf, b)
	buf[len(b)] = 0
	C.ngx_http_lua_ffi_respond(task, C.int(rc), (*C.char)(rsp), C.int(len(b)))
}

func handle(task unsafe.Pointer, cfg *string) {
	var n C.int
	p := C.ngx_http_lua_ffi_get_req(task, &n)
	// The request belongs to the task: copy it before answering.
	req := C.GoBytes(unsafe.Pointer(p), n)

	switch {
	case string(req) == "cfg":
		if cfg == nil {
			respond(task, 0, []byte("<nil>"))
		} else {
			respond(task, 0, []byte(*cfg))
		}
	case bytes.HasPrefix(req, []byte("fail:")):
		respond(task, 1, req[5:])
	default:
		respond(task, 0, req)
	}
}

//export libffi_init
func libffi_init(cfg *C.char, tq unsafe.Pointer) C.int {
	// cfg is freed by the host once we return: keep a copy.
	var conf *string
	if cfg != nil {
		s := C.GoString(cfg)
		conf = &s
	}

	go func() {
		for {
			task := C.ngx_http_lua_ffi_task_poll(tq)
			if task == nil {
				// unloaded: never touch tq again
				return
			}
			go handle(task, conf)
		}
	}()
	return 0
}

func main() {}
