// Command echo is the smallest Go runtime (build/lib/libgo_echo.so): every
// request is answered with its own bytes.
//
//	local rt = require("resty.hotffi").load("go_echo")
//	local ok, res = rt:echo("hello")   -- true, "hello"
package main

import "C"

import (
	"unsafe"

	"hotffi/sdk/go/hotffi"
)

// thread: the nginx event loop; starts the server and returns.
//
//export libffi_init
func libffi_init(cfg *C.char, tq unsafe.Pointer) C.int {
	hotffi.Start(tq, &hotffi.Server{
		Handler: func(req []byte) ([]byte, error) { return req, nil },
		// the handler keeps nothing: the request need not be copied
		BorrowRequest: true,
	})
	return 0
}

// thread: a hotffi reaper thread, after the stop was delivered: returns
// once every call taken was answered, so that hotffi can free tq.  Go
// libraries are linked with -z nodelete, so dlclose() never unmaps them,
// even with unpin = true: see docs/go.md.
//
//export libffi_fini
func libffi_fini(tq unsafe.Pointer) C.int {
	hotffi.Wait(tq)
	return 0
}

func main() {}
