// Command go_bare is the least a Go runtime can do per call over hotffi's
// ABI (build/lib/libgo_bare.so, bench only): one goroutine waits for tasks
// in a cgo call, and the C side of that same call takes up to 16 tasks and
// answers each as the C echo does (a malloc()'ed copy).  Go runs nothing
// per request, so whatever its threads cost above the C echo's thread is
// Go's own price for a goroutine that waits in cgo (sysmon, the P handed
// off, the M woken): the bound of the Go SDK's target (bench/README.md).
package main

/*
#include <stdlib.h>
#include <string.h>

int hotffi_task_poll_batch(void *tq, void **tasks, int max);
char *ngx_http_lua_ffi_get_req(void *tsk, int *len);
void ngx_http_lua_ffi_respond(void *tsk, int rc, char *rsp, int rsp_len);

// Blocks until tasks come, answers them; 0 once the runtime is unloaded.
// The host owns each request until its answer; an answer's buffer becomes
// the host's at ngx_http_lua_ffi_respond().
static int
bare_batch(void *tq)
{
    int    i, n, len;
    char  *req, *rsp;
    void  *tasks[16];

    n = hotffi_task_poll_batch(tq, tasks, 16);

    for (i = 0; i < n; i++) {
        req = ngx_http_lua_ffi_get_req(tasks[i], &len);
        rsp = malloc(len + 1);
        if (rsp == NULL) {
            ngx_http_lua_ffi_respond(tasks[i], 1, NULL, 0);
            continue;
        }
        memcpy(rsp, req, len);
        rsp[len] = '\0';
        ngx_http_lua_ffi_respond(tasks[i], 0, rsp, len);
    }

    return n;
}
*/
import "C"

import "unsafe"

// thread: the nginx event loop; starts the waiting goroutine and returns.
//
//export libffi_init
func libffi_init(cfg *C.char, tq unsafe.Pointer) C.int {
	go func() {
		// after 0, tq is not to be touched again
		for C.bare_batch(tq) > 0 {
		}
	}()
	return 0
}

func main() {}
