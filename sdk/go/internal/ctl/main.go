// Command ctl is the Go runtime the tests steer (build/lib/libgo_ctl.so),
// to reach every path of the SDK through its requests:
//
//	echo:BYTES        answers BYTES
//	fail:RC:TEXT      fails with rc RC and TEXT (hotffi.Fail)
//	wrap:RC:TEXT      the same error, wrapped with fmt.Errorf("wrapped: %w")
//	error:TEXT        fails with a plain error: rc 1
//	panic:TEXT        panics with TEXT
//	nilptr            dereferences a nil pointer (a runtime panic)
//	null              answers no payload
//	empty             answers ""
//	sleep:MS          answers "slept" after MS ms, or "cancelled" as soon as
//	                  the caller gave up
//	cancelled         how many sleeps saw their caller give up
//	peak              the most handlers seen running at once
//	cfg               the configuration, or <nil>
//	abi               the host's ABI version
//	count             "CFG N": N counts the count calls of this runtime,
//	                  carried across rt:__reload() (libffi_retire hands it
//	                  over, libffi_init takes it back with hotffi.State)
//	addr              the address of the request's first byte, in decimal:
//	                  the caller's own with cfg "borrow", a copy's without
//	log:LEVEL:N:TEXT  writes N lines "TEXT I" (I = 1..N) to nginx's error
//	                  log at LEVEL, odd ones with hotffi.Logf, even ones
//	                  through hotffi.NewLogger; answers "logged N"
//	dict:NAME         the shared dict scenario of 450-languages.t on the
//	                  lua_shared_dict NAME (hotffi.OpenDict); answers its
//	                  findings, space-separated
//
// cfg "max=N" bounds the handlers running at once (Server.MaxConcurrency);
// cfg "borrow" hands handlers the caller's bytes (Server.BorrowRequest);
// cfg "fail-init" fails libffi_init with a reason.
package main

import "C"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"hotffi/sdk/go/hotffi"
)

type ctl struct {
	tq        unsafe.Pointer // hotffi's, never dereferenced here
	cfg       string
	hasCfg    bool
	running   int64
	peak      int64
	cancelled int64
	count     int64 // atomic; seeded from the state handed over
}

// The instances by queue, for libffi_retire: each version of a reloaded
// runtime has its own tq and its own ctl.  The tq keys are hotffi's and
// never dereferenced here; an entry goes in libffi_retire or libffi_fini.
var (
	ctlsMu sync.Mutex
	ctls   = map[unsafe.Pointer]*ctl{} // locks: ctlsMu
)

func (c *ctl) handle(ctx context.Context, req []byte) ([]byte, error) {
	n := atomic.AddInt64(&c.running, 1)
	defer atomic.AddInt64(&c.running, -1)
	for {
		p := atomic.LoadInt64(&c.peak)
		if n <= p || atomic.CompareAndSwapInt64(&c.peak, p, n) {
			break
		}
	}

	cmd, arg, _ := bytes.Cut(req, []byte(":"))

	switch string(cmd) {
	case "echo":
		return arg, nil

	case "fail", "wrap":
		code, text, _ := strings.Cut(string(arg), ":")
		rc, err := strconv.Atoi(code)
		if err != nil {
			return nil, err
		}
		if string(cmd) == "wrap" {
			return nil, fmt.Errorf("wrapped: %w", hotffi.Fail(rc, "%s", text))
		}
		return nil, hotffi.Fail(rc, "%s", text)

	case "error":
		return nil, errors.New(string(arg))

	case "panic":
		panic(string(arg))

	case "nilptr":
		var p *int
		return []byte(strconv.Itoa(*p)), nil

	case "null":
		return nil, nil

	case "empty":
		return []byte{}, nil

	case "sleep":
		ms, err := strconv.Atoi(string(arg))
		if err != nil {
			return nil, err
		}
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			return []byte("slept"), nil
		case <-ctx.Done():
			atomic.AddInt64(&c.cancelled, 1)
			return []byte("cancelled"), nil
		}

	case "cancelled":
		return []byte(strconv.FormatInt(atomic.LoadInt64(&c.cancelled), 10)), nil

	case "peak":
		return []byte(strconv.FormatInt(atomic.LoadInt64(&c.peak), 10)), nil

	case "cfg":
		if !c.hasCfg {
			return []byte("<nil>"), nil
		}
		return []byte(c.cfg), nil

	case "abi":
		return []byte(strconv.Itoa(hotffi.HostABIVersion())), nil

	case "count":
		n := atomic.AddInt64(&c.count, 1)
		return []byte(c.cfg + " " + strconv.FormatInt(n, 10)), nil

	case "addr":
		p := uintptr(unsafe.Pointer(&req[0]))
		return []byte(strconv.FormatUint(uint64(p), 10)), nil

	case "log":
		return c.log(string(arg))

	case "dict":
		return dictScenario(string(arg))
	}

	return nil, hotffi.Fail(3, "unknown command")
}

// log answers log:LEVEL:N:TEXT.
func (c *ctl) log(arg string) ([]byte, error) {
	lv, rest, _ := strings.Cut(arg, ":")
	count, text, _ := strings.Cut(rest, ":")
	level, err := strconv.Atoi(lv)
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(count)
	if err != nil {
		return nil, err
	}
	logger := hotffi.NewLogger(c.tq, hotffi.Level(level))
	for i := 1; i <= n; i++ {
		if i%2 == 1 {
			hotffi.Logf(c.tq, hotffi.Level(level), "%s %d", text, i)
		} else {
			logger.Printf("%s %d", text, i)
		}
	}
	return []byte("logged " + strconv.Itoa(n)), nil
}

// thread: the nginx event loop; starts the server and returns.
//
//export libffi_init
func libffi_init(cfg *C.char, tq unsafe.Pointer) C.int {
	// cfg: borrowed, freed by hotffi after we return: GoString copies it.
	c := &ctl{tq: tq, cfg: C.GoString(cfg), hasCfg: cfg != nil}
	srv := &hotffi.Server{HandleContext: c.handle}

	srv.BorrowRequest = c.cfg == "borrow"

	if c.cfg == "fail-init" {
		hotffi.InitError(tq, "asked to fail by its configuration")
		return 7
	}
	if strings.HasPrefix(c.cfg, "max=") {
		n, err := strconv.Atoi(strings.TrimPrefix(c.cfg, "max="))
		if err != nil || n < 1 {
			hotffi.InitError(tq, "max= needs a positive number")
			return 3
		}
		srv.MaxConcurrency = n
	}

	// nil (a first load, no hand-over): 0.  A state this code did not
	// write fails the init, which rolls the reload back.
	if st := hotffi.State(tq); st != nil {
		n, err := strconv.ParseInt(string(st), 10, 64)
		if err != nil {
			hotffi.InitError(tq, "cannot read the state handed over: "+err.Error())
			return 4
		}
		c.count = n
	}

	ctlsMu.Lock()
	ctls[tq] = c
	ctlsMu.Unlock()

	hotffi.Start(tq, srv)
	return 0
}

// forget drops tq's instance, once its server has ended.
func forget(tq unsafe.Pointer) *ctl {
	ctlsMu.Lock()
	defer ctlsMu.Unlock()
	c := ctls[tq]
	delete(ctls, tq)
	return c
}

// thread: a hotffi reaper thread, after the stop was delivered.  Safe to
// export from Go: the library is linked with -z nodelete (every Go
// c-shared library is), so even unpin = true never unmaps it.
//
//export libffi_fini
func libffi_fini(tq unsafe.Pointer) C.int {
	hotffi.Wait(tq)
	forget(tq)
	return 0
}

// thread: a hotffi reaper thread, when rt:__reload() replaces this version
// and asks for state.  Wait first: once every handler has returned, the
// count is final.  state, n: hotffi's out-parameters; HandOver fills them
// with malloc()'ed memory that hotffi frees.
//
//export libffi_retire
func libffi_retire(tq unsafe.Pointer, state **C.char, n *C.int) C.int {
	hotffi.Wait(tq)
	c := forget(tq)
	if c == nil {
		// an init that failed never registered: nothing to hand over
		return 0
	}
	data := []byte(strconv.FormatInt(atomic.LoadInt64(&c.count), 10))
	return C.int(hotffi.HandOver(unsafe.Pointer(state), unsafe.Pointer(n), data))
}

func main() {}

// num writes a Lua number as Lua's tostring() writes the tests' ones.
func num(f float64) string { return strconv.FormatFloat(f, 'g', 14, 64) }

// show is value/flags[/stale] of a Get, values as Lua writes them.
func show(value any, flags uint32, stale ...bool) string {
	var text string
	switch v := value.(type) {
	case nil:
		text = "nil"
	case bool:
		text = strconv.FormatBool(v)
	case float64:
		text = num(v)
	case string:
		text = v
	}
	text += "/" + strconv.FormatUint(uint64(flags), 10)
	for _, s := range stale {
		text += "/" + strconv.FormatBool(s)
	}
	return text
}

// dictScenario answers dict:NAME: the findings of 450-languages.t's shared
// dict case.
func dictScenario(name string) ([]byte, error) {
	var out []string
	if _, err := hotffi.OpenDict("nope"); err != nil {
		out = append(out, "nope=missing")
	} else {
		out = append(out, "nope=found")
	}
	d, err := hotffi.OpenDict(name)
	if err != nil {
		return nil, err
	}
	// first: a Get may evict expired items, as in Lua
	v, flags, stale, err := d.GetStale("old")
	if err != nil {
		return nil, err
	}
	out = append(out, "stale="+show(v, flags, stale))
	for _, key := range []string{"s", "n", "t", "f", "none", "old"} {
		v, flags, err := d.Get(key)
		if err != nil {
			return nil, err
		}
		out = append(out, key+"="+show(v, flags))
	}
	for _, e := range []error{
		d.Set("rs", "from-rt", 0, 9),
		d.Set("rn", -12.5, 0, 0),
		d.Set("rb", false, 0, 0),
	} {
		if e != nil {
			return nil, e
		}
	}
	declined := func(name string, err error, want error) {
		switch {
		case err == nil:
			out = append(out, name+"=true")
		case errors.Is(err, want):
			out = append(out, name+"=false")
		default:
			out = append(out, name+"="+err.Error())
		}
	}
	declined("add-s", d.Add("s", "x", 0, 0), hotffi.ErrExists)
	declined("add-new", d.Add("new", []byte("x"), 0, 0), hotffi.ErrExists)
	declined("replace-absent", d.Replace("absent", 1, 0, 0), hotffi.ErrNotFound)
	declined("replace-new", d.Replace("new", "y", 0, 0), hotffi.ErrNotFound)
	c, err := d.IncrInit("c", 2, 10, 0)
	if err != nil {
		return nil, err
	}
	out = append(out, "incr-c="+num(c))
	if c, err = d.Incr("c", -0.5); err != nil {
		return nil, err
	}
	out = append(out, "incr-c="+num(c))
	if _, err = d.Incr("absent", 1); errors.Is(err, hotffi.ErrNotFound) {
		out = append(out, "incr-absent=notfound")
	} else {
		out = append(out, fmt.Sprintf("incr-absent=%v", err))
	}
	if err = d.Delete("n"); err != nil {
		return nil, err
	}
	if err = d.Set("e", "x", 100*time.Second, 0); err != nil {
		return nil, err
	}
	if ttl, err := d.TTL("e"); err == nil && ttl > 0 && ttl <= 100*time.Second {
		out = append(out, "ttl-e=ok")
	} else {
		out = append(out, fmt.Sprintf("ttl-e=%v %v", ttl, err))
	}
	ttl, err := d.TTL("rs")
	out = append(out, fmt.Sprintf("ttl-rs=%s", num(ttl.Seconds())))
	if _, err = d.TTL("absent"); errors.Is(err, hotffi.ErrNotFound) {
		out = append(out, "ttl-absent=none")
	} else {
		out = append(out, "ttl-absent=some")
	}
	return []byte(strings.Join(out, " ")), nil
}
