// Package hotffi is the Go SDK for hotffi runtimes: shared libraries built
// with -buildmode=c-shared that answer calls made from nginx Lua.
//
// This file is the thin layer over include/hotffi.h: Poll, Task.Req,
// Task.Respond, Task.Cancelled.  serve.go builds a goroutine-per-task server
// on top of it.  See docs/go.md.
package hotffi

/*
#cgo CFLAGS: -I${SRCDIR}/../../../include

// The functions of hotffi.h are not defined at link time: they live in the
// nginx module, which nginx loads with RTLD_GLOBAL, and the dynamic linker
// binds them when hotffi dlopen()s the runtime.  A shared library may have
// undefined symbols; the flag below only stops cgo's preliminary link of a
// test executable (used to list dynamic imports) from failing on them.
#cgo LDFLAGS: -Wl,--unresolved-symbols=ignore-in-object-files

#include <stdlib.h>
#include <string.h>

#include "hotffi.h"

// The hotffi-only functions are weak: a library built with this SDK then
// also loads on lua-resty-ffi, where they do not exist and read as NULL.
// The four lua-resty-ffi functions stay strong, so a host that lacks them
// fails the dlopen() instead of crashing later.
#pragma weak hotffi_abi_version
#pragma weak hotffi_task_cancelled
#pragma weak hotffi_init_error
#pragma weak hotffi_state
#pragma weak hotffi_task_poll_batch

static int
sdk_abi_version(void)
{
    return hotffi_abi_version ? hotffi_abi_version() : 0;
}

static int
sdk_task_cancelled(void *task)
{
    return hotffi_task_cancelled ? hotffi_task_cancelled(task) : 0;
}

// The request by value: a Go pointer to len would move len to the heap on
// every call.
typedef struct {
    char  *p;
    int    len;
} sdk_req_t;

static sdk_req_t
sdk_get_req(void *task)
{
    sdk_req_t  r;

    r.p = ngx_http_lua_ffi_get_req(task, &r.len);
    return r;
}

// Several tasks at once; one at a time on a host without the batch poll.
static int
sdk_poll_batch(void *tq, void **tasks, int max)
{
    if (hotffi_task_poll_batch) {
        return hotffi_task_poll_batch(tq, tasks, max);
    }

    tasks[0] = ngx_http_lua_ffi_task_poll(tq);
    return tasks[0] != NULL;
}

static void
sdk_init_error(void *tq, const char *msg)
{
    if (hotffi_init_error) {
        hotffi_init_error(tq, msg);
    }
}

static const char *
sdk_state(void *tq, int *len)
{
    *len = 0;
    return hotffi_state ? hotffi_state(tq, len) : NULL;
}

// *state: malloc()'ed, hotffi's once libffi_retire() returns
static int
sdk_hand_over(char **state, int *len, const void *p, int n)
{
    char  *s;

    *state = NULL;
    *len = 0;

    s = malloc((size_t) n + 1);
    if (s == NULL) {
        return -1;
    }

    memcpy(s, p, (size_t) n);
    s[n] = '\0';

    *state = s;
    *len = n;

    return 0;
}
*/
import "C"

import (
	"math"
	"unsafe"
)

// ABIVersion is the version of include/hotffi.h this SDK was built against.
const ABIVersion = C.HOTFFI_ABI_VERSION

// rc values the SDK answers with on its own.  hotffi's own codes are
// negative (HOTFFI_TASK_CANCELLED), so positive ones never collide.
const (
	RCError = 1 // a handler returned an error that carries no rc
	RCPanic = 2 // a handler panicked
)

// Task is one call, taken from the queue by Poll.  It belongs to the
// runtime until Respond (or RespondNil) is called exactly once; after that
// it must not be used again, not even Cancelled.
type Task struct {
	p unsafe.Pointer // hotffi's task; ours until respond()
}

// Poll takes the next task of tq, blocking the calling goroutine (and its
// OS thread) until there is one.  ok is false once the runtime was unloaded
// and everything queued before was handed out: stop polling then; every
// later Poll returns false too.  tq is the pointer libffi_init received.
func Poll(tq unsafe.Pointer) (t Task, ok bool) {
	p := C.ngx_http_lua_ffi_task_poll(tq)
	return Task{p: p}, p != nil
}

// PollBatch takes up to len(buf) tasks of tq at once, oldest first,
// blocking the calling goroutine (and its OS thread) until there is at
// least one, and returns them in buf[:n].  n is 0 once the runtime was
// unloaded, as Poll's false.  Each task is answered on its own, as from
// Poll.  On a host without hotffi_task_poll_batch (lua-resty-ffi) it takes
// one task at a time.  buf must not be empty.
func PollBatch(tq unsafe.Pointer, buf []Task) []Task {
	max := len(buf)
	if max > math.MaxInt32 {
		max = math.MaxInt32
	}
	if max == 0 {
		return buf[:0]
	}
	// A Task is its one pointer, so buf is the array of task pointers
	// hotffi writes: Go memory holding no Go pointers, borrowed for the
	// call.  Each task written there is ours until its respond().
	n := int(C.sdk_poll_batch(tq, (*unsafe.Pointer)(unsafe.Pointer(&buf[0])), C.int(max)))
	return buf[:n]
}

// Req returns the request bytes without copying them: the slice points into
// hotffi's task and is valid only until Respond.  Copy what must outlive the
// answer (ReqCopy does).  A call made without a request (nil in Lua) gives
// an empty slice.
func (t Task) Req() []byte {
	r := C.sdk_get_req(t.p)
	if r.len <= 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(r.p)), int(r.len))
}

// ReqCopy returns the request bytes in Go memory, owned by the caller.
func (t Task) ReqCopy() []byte {
	req := t.Req()
	out := make([]byte, len(req))
	copy(out, req)
	return out
}

// Cancelled reports whether the caller gave up on the task (timeout, the
// request ended).  Long work may check it and answer early; Respond is still
// required.  Always false on lua-resty-ffi, which has no such flag.
func (t Task) Cancelled() bool {
	return C.sdk_task_cancelled(t.p) != 0
}

// Respond answers the task with rc (0 = success) and a copy of rsp.  A nil
// rsp sends no payload (Lua sees nil); an empty non-nil one sends "".
// Payloads that do not fit the ABI's int length fail the call instead.
func (t Task) Respond(rc int, rsp []byte) {
	if rsp == nil {
		t.RespondNil(rc)
		return
	}
	if len(rsp) > math.MaxInt32 {
		rc, rsp = RCError, []byte("hotffi: response larger than 2 GiB - 1")
	}

	// One spare byte for a NUL: rsp_len 0 means "NUL-terminated", so an
	// empty answer must be a real "".  C.malloc never returns NULL (cgo
	// aborts on out of memory).
	n := len(rsp)
	buf := C.malloc(C.size_t(n + 1))
	dst := unsafe.Slice((*byte)(buf), n+1)
	copy(dst, rsp)
	dst[n] = 0

	// buf: ownership passes to hotffi, which free()s it; the task too.
	C.ngx_http_lua_ffi_respond(t.p, C.int(rc), (*C.char)(buf), C.int(n))
}

// RespondNil answers the task with rc and no payload.
func (t Task) RespondNil(rc int) {
	// task: ownership passes to hotffi.
	C.ngx_http_lua_ffi_respond(t.p, C.int(rc), nil, 0)
}

// InitError says why libffi_init is about to fail: call it inside
// libffi_init before returning non-zero, and hotffi.load's error message
// ends with msg.  A no-op on lua-resty-ffi.
func InitError(tq unsafe.Pointer, msg string) {
	cmsg := C.CString(msg)
	defer C.free(unsafe.Pointer(cmsg))
	// cmsg: borrowed by hotffi, which copies it.
	C.sdk_init_error(tq, cmsg)
}

// HostABIVersion returns the ABI version of the hotffi that loaded this
// library, or 0 under a host without hotffi_abi_version (lua-resty-ffi).
func HostABIVersion() int {
	return int(C.sdk_abi_version())
}

// State returns a copy of the state the previous version handed over from
// its libffi_retire when rt:__reload() replaced it, or nil: a first load,
// a reload with state = false, nothing handed over, or a host without
// in-place reload (lua-resty-ffi).  Call it inside libffi_init only.
func State(tq unsafe.Pointer) []byte {
	var n C.int
	// p: hotffi's, borrowed until libffi_init returns: copied.
	p := C.sdk_state(tq, &n)
	if p == nil {
		return nil
	}
	return C.GoBytes(unsafe.Pointer(p), n)
}

// HandOver stores a copy of state (malloc()'ed, with a NUL after it) in
// the out-parameters of an exported libffi_retire(tq, state, len), for
// the next version's State.  Call it after Wait(tq), so that no handler
// still changes what state was made from.  It returns the rc for
// libffi_retire: 0, or RCError when state is 2 GiB or more or malloc
// fails, which fails the reload (the old version is started again).
//
//	//export libffi_retire
//	func libffi_retire(tq unsafe.Pointer, state **C.char, n *C.int) C.int {
//		hotffi.Wait(tq)
//		return C.int(hotffi.HandOver(unsafe.Pointer(state), unsafe.Pointer(n), snapshot()))
//	}
func HandOver(state, n unsafe.Pointer, data []byte) int {
	if len(data) >= math.MaxInt32 {
		return RCError
	}
	// p: data, borrowed by sdk_hand_over for the copy.
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	if C.sdk_hand_over((**C.char)(state), (*C.int)(n), p, C.int(len(data))) != 0 {
		return RCError
	}
	return 0
}
