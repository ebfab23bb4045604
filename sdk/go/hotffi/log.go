// Logging into nginx's error log from any goroutine: Log, Logf and the
// *log.Logger of NewLogger, over hotffi_log() (include/hotffi.h).  The line
// is copied and written later by the worker's event loop, so a call never
// blocks on I/O, the error_log level filters it, and `nginx -s reopen`
// needs nothing from the runtime.  See docs/go.md.
//
// Go 1.19 (Debian 12's) has no log/slog, which arrived in Go 1.21: the SDK
// gives a *log.Logger and an io.Writer instead, and with Go 1.21 or later,
// slog.NewTextHandler(hotffi.NewLogWriter(tq, level), nil) writes through
// the same path.
package hotffi

/*
#include "hotffi.h"

// weak: a no-op on a host without it (lua-resty-ffi)
#pragma weak hotffi_log

// p: borrowed Go memory, copied by hotffi before the call returns.  An
// empty line is "", since len 0 means NUL-terminated to hotffi_log().
static void
sdk_log(void *tq, int level, const char *p, int len)
{
    if (hotffi_log) {
        hotffi_log(tq, level, len > 0 ? p : "", len);
    }
}
*/
import "C"

import (
	"fmt"
	"io"
	"log"
	"math"
	"unsafe"
)

// Level is a line's level: nginx's, as error_log names them.
type Level int

// The levels of nginx's error_log, most severe first.
const (
	LevelEmerg  Level = C.HOTFFI_LEVEL_EMERG
	LevelAlert  Level = C.HOTFFI_LEVEL_ALERT
	LevelCrit   Level = C.HOTFFI_LEVEL_CRIT
	LevelError  Level = C.HOTFFI_LEVEL_ERR
	LevelWarn   Level = C.HOTFFI_LEVEL_WARN
	LevelNotice Level = C.HOTFFI_LEVEL_NOTICE
	LevelInfo   Level = C.HOTFFI_LEVEL_INFO
	LevelDebug  Level = C.HOTFFI_LEVEL_DEBUG
)

// Log writes msg as one line of nginx's error log at level, marked with the
// runtime's name and version.  tq is the pointer libffi_init received
// (valid as for Poll), or nil for a line of no runtime.  It never blocks:
// a line more verbose than error_log costs next to nothing, and one that
// finds the worker's buffer full is dropped and counted (docs/api.md).  A
// no-op on a host without hotffi_log (lua-resty-ffi).
func Log(tq unsafe.Pointer, level Level, msg string) {
	n := len(msg)
	if n > math.MaxInt32 {
		n = math.MaxInt32 // hotffi keeps 1900 bytes anyway
	}
	var p unsafe.Pointer
	if n > 0 {
		// the string's bytes, borrowed for the call: no copy here
		p = *(*unsafe.Pointer)(unsafe.Pointer(&msg))
	}
	C.sdk_log(tq, C.int(level), (*C.char)(p), C.int(n))
}

// Logf is Log with fmt.Sprintf's formatting.
func Logf(tq unsafe.Pointer, level Level, format string, args ...any) {
	Log(tq, level, fmt.Sprintf(format, args...))
}

// logWriter is the io.Writer of NewLogWriter.
type logWriter struct {
	tq    unsafe.Pointer
	level Level
}

// Write logs p as one line, without its trailing newline; it always
// reports len(p) written.
func (w logWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && p[len(p)-1] == '\n' {
		p = p[:len(p)-1]
	}
	var q unsafe.Pointer
	if len(p) > 0 {
		q = unsafe.Pointer(&p[0]) // borrowed for the call, copied
	}
	m := len(p)
	if m > math.MaxInt32 {
		m = math.MaxInt32
	}
	C.sdk_log(w.tq, C.int(w.level), (*C.char)(q), C.int(m))
	return n, nil
}

// NewLogWriter returns an io.Writer whose every Write is one line at level
// (a trailing newline dropped), for anything that logs to a writer.  Safe
// for concurrent use.
func NewLogWriter(tq unsafe.Pointer, level Level) io.Writer {
	return logWriter{tq: tq, level: level}
}

// NewLogger returns a *log.Logger writing lines at level; nginx adds the
// time, so it has no flags: logger.Printf("cache %s", state).
func NewLogger(tq unsafe.Pointer, level Level) *log.Logger {
	return log.New(NewLogWriter(tq, level), "", 0)
}
