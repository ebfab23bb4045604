// Command fetch is a Go runtime that does concurrent I/O with the standard
// library (build/lib/libgo_fetch.so): a request names several paths, the
// runtime GETs them all at once from the base URL of its configuration and
// answers with the status, size and SHA-256 of each body.
//
//	local cfg = cjson.encode({ base = "http://127.0.0.1:8080",
//	                           timeout_ms = 2000, parallel = 8 })
//	local rt = require("resty.hotffi").load("go_fetch", cfg)
//	local ok, res = rt:get(cjson.encode({ paths = { "/a", "/b" } }))
//	-- res: [{"path":"/a","status":200,"bytes":5,"sha256":"..."}, ...]
//
// Only paths below the configured base can be fetched, so Lua code cannot
// turn the runtime into an open proxy.  When the caller gives up (its
// timeout), the fetches still running are cancelled.
package main

import "C"

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unsafe"

	"hotffi/sdk/go/hotffi"
)

type config struct {
	Base      string `json:"base"`       // e.g. "http://127.0.0.1:8080"
	TimeoutMS int    `json:"timeout_ms"` // per fetch; default 5000
	Parallel  int    `json:"parallel"`   // fetches at once per call; default 8
}

type request struct {
	Paths []string `json:"paths"`
}

type result struct {
	Path   string `json:"path"`
	Status int    `json:"status,omitempty"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256,omitempty"`
	Error  string `json:"error,omitempty"`
}

type fetcher struct {
	base     *url.URL
	client   *http.Client
	parallel int
}

func newFetcher(cfg string) (*fetcher, error) {
	c := config{TimeoutMS: 5000, Parallel: 8}
	if err := json.Unmarshal([]byte(cfg), &c); err != nil {
		return nil, fmt.Errorf("bad configuration: %v", err)
	}
	base, err := url.Parse(c.Base)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("bad configuration: base %q is not an http(s) URL", c.Base)
	}
	if c.TimeoutMS <= 0 || c.Parallel <= 0 {
		return nil, fmt.Errorf("bad configuration: timeout_ms and parallel must be positive")
	}

	// One client per runtime: its connection pool is shared by all calls.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = c.Parallel
	// A connection the pool dialed but never used looks to nginx like a
	// client that has not sent its request yet, and a graceful quit waits
	// for those (up to client_header_timeout): let idle ones go soon.
	transport.IdleConnTimeout = 2 * time.Second

	return &fetcher{
		base:     base,
		client:   &http.Client{Transport: transport, Timeout: time.Duration(c.TimeoutMS) * time.Millisecond},
		parallel: c.Parallel,
	}, nil
}

func (f *fetcher) handle(ctx context.Context, req []byte) ([]byte, error) {
	var r request
	if err := json.Unmarshal(req, &r); err != nil {
		return nil, hotffi.Fail(2, "bad request: %v", err)
	}
	for _, p := range r.Paths {
		if !strings.HasPrefix(p, "/") {
			return nil, hotffi.Fail(2, "bad request: path %q does not start with /", p)
		}
	}

	results := make([]result, len(r.Paths))
	slots := make(chan struct{}, f.parallel)
	var wg sync.WaitGroup

	for i, p := range r.Paths {
		wg.Add(1)
		slots <- struct{}{}
		go func(i int, p string) {
			defer func() {
				<-slots
				wg.Done()
			}()
			results[i] = f.fetch(ctx, p)
		}(i, p)
	}
	wg.Wait()

	if ctx.Err() != nil {
		return nil, hotffi.Fail(4, "cancelled: the caller gave up")
	}
	return json.Marshal(results)
}

func (f *fetcher) fetch(ctx context.Context, path string) result {
	res := result{Path: path}

	u := *f.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		res.Error = err.Error()
		return res
	}

	rsp, err := f.client.Do(req)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer rsp.Body.Close()

	h := sha256.New()
	res.Status = rsp.StatusCode
	res.Bytes, err = io.Copy(h, rsp.Body)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.SHA256 = hex.EncodeToString(h.Sum(nil))
	return res
}

// thread: the nginx event loop; starts the server and returns.
//
//export libffi_init
func libffi_init(cfg *C.char, tq unsafe.Pointer) C.int {
	// cfg: borrowed, freed by hotffi after we return: GoString copies it.
	f, err := newFetcher(C.GoString(cfg))
	if err != nil {
		hotffi.InitError(tq, err.Error())
		return 1
	}
	hotffi.Start(tq, &hotffi.Server{HandleContext: f.handle})
	return 0
}

// thread: a hotffi reaper thread; see examples/go/echo.
//
//export libffi_fini
func libffi_fini(tq unsafe.Pointer) C.int {
	hotffi.Wait(tq)
	return 0
}

func main() {}
