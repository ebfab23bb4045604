// serve.go -- a server that answers tasks concurrently on goroutines (quick
// ones a batch at a time on the polling goroutine), with a bound on how many
// run at once, errors and panics turned into failed calls, and the caller
// giving up turned into a cancelled context.

package hotffi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// DefaultMaxConcurrency bounds the tasks a Server handles at once when
// Server.MaxConcurrency is 0.  Goroutines are cheap, but each holds its
// request and response: past the bound, calls wait in hotffi's queue, where
// their timeouts still run and abandoned ones are dropped unseen.
const DefaultMaxConcurrency = 1024

// A task a Server takes is handed to a goroutine of its own, which wakes
// another OS thread: that costs far more than a small handler does (figures
// in bench/README.md, "Figures behind design choices").  So while the
// handlers of recent calls took less than inlineLimit on average, a batch
// of tasks is answered on the polling goroutine itself, one after the
// other, and the queue is polled again after it: callers then cost no
// hand-off at all.  A batch that runs
// longer than inlineLimit is split: a timer hands the polling to a new
// goroutine and each task not yet begun to a goroutine of its own, so no
// call waits behind others for much longer than that.  A slow call also
// moves the average above the limit, after which every task gets its
// goroutine again.
const inlineLimit = 50 * time.Microsecond

// pollBatch is how many tasks a Server takes from the queue at once.
const pollBatch = 16

// DefaultCancelInterval is how often a Server looks for callers that gave
// up, when it has a HandleContext and Server.CancelInterval is 0.
const DefaultCancelInterval = 20 * time.Millisecond

// Handler answers one request.  req is the handler's own copy (but see
// Server.BorrowRequest).  A nil
// response sends no payload (Lua sees nil), an empty one sends "".  An
// error fails the call: Lua sees false, rc, err.Error(), where rc comes
// from an *Error in err's chain, or is RCError.
type Handler func(req []byte) ([]byte, error)

// ContextHandler is a Handler whose ctx is cancelled when the caller gives
// up on the call (its timeout, the end of its request).
type ContextHandler func(ctx context.Context, req []byte) ([]byte, error)

// Error fails a call with a chosen rc, which should be positive (hotffi's
// own codes are negative).  Wrap it (fmt.Errorf("...: %w", err)) to add
// context: the rc is found with errors.As and the message is the whole text.
type Error struct {
	RC  int
	Msg string
}

func (e *Error) Error() string { return e.Msg }

// Fail returns an *Error with rc and a formatted message.
func Fail(rc int, format string, args ...any) error {
	return &Error{RC: rc, Msg: fmt.Sprintf(format, args...)}
}

// Server answers the tasks of a queue.  Set exactly one of Handler and
// HandleContext (otherwise every call fails, saying so).  Its fields must
// not change once Serve runs.
type Server struct {
	Handler        Handler
	HandleContext  ContextHandler
	MaxConcurrency int           // tasks handled at once; 0: the default
	CancelInterval time.Duration // HandleContext only; 0: the default

	// BorrowRequest hands the handler the caller's own bytes instead of a
	// copy in Go memory: valid until the handler returns, and read-only.
	// It saves a copy and the garbage it leaves per call (a 100 KiB echo
	// took half the time), for handlers that neither keep req nor write
	// to it; returning it as the answer is fine (the answer is copied
	// before the call is answered).
	BorrowRequest bool
}

// Serve answers every task of tq with h, concurrently (see inlineLimit), until
// the runtime is unloaded.  It blocks; call it as `go hotffi.Serve(tq, h)`
// from libffi_init, or use Start.
func Serve(tq unsafe.Pointer, h Handler) {
	(&Server{Handler: h}).Serve(tq)
}

// Serve answers every task of tq until the runtime is unloaded, and
// returns once every task it took has been answered.
func (s *Server) Serve(tq unsafe.Pointer) {
	if (s.Handler == nil) == (s.HandleContext == nil) {
		// A panic here would end the nginx worker: fail the calls instead.
		s = &Server{Handler: func([]byte) ([]byte, error) {
			return nil, errors.New("hotffi: the Server needs exactly one of Handler and HandleContext")
		}, MaxConcurrency: s.MaxConcurrency}
	}

	limit := s.MaxConcurrency
	if limit <= 0 {
		limit = DefaultMaxConcurrency
	}

	r := &serving{s: s, tq: tq, slots: make(chan struct{}, limit)}
	if s.HandleContext != nil {
		r.w = newWatcher(s.CancelInterval)
		defer r.w.close()
	}

	r.poll()

	// The task queue is freed after libffi_fini: answer everything first.
	r.wg.Wait()
}

// serving is one run of Server.Serve: what its polling goroutines share.
type serving struct {
	s     *Server
	tq    unsafe.Pointer // hotffi's, borrowed until Serve returns
	w     *watcher       // nil without HandleContext
	slots chan struct{}  // one per task taken and not yet answered
	wg    sync.WaitGroup // the goroutines started, polling or handling
	avg   atomic.Int64   // handlers' mean duration in ns, moving (1/8)
}

// poll is a polling goroutine's loop; it returns at the stop, or once
// another goroutine took the polling over from it.
func (r *serving) poll() {
	buf := make([]Task, pollBatch)
	for {
		// Slots first, then tasks: a task is only taken when it can run.
		r.slots <- struct{}{}
		n := 1
	more:
		for n < pollBatch {
			select {
			case r.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}

		tasks := PollBatch(r.tq, buf[:n])
		for i := len(tasks); i < n; i++ {
			<-r.slots
		}
		if len(tasks) == 0 {
			return
		}

		if r.avg.Load() >= int64(inlineLimit) {
			for _, t := range tasks {
				r.spawn(t)
			}
		} else if !r.inline(tasks) {
			return
		}
	}
}

// spawn answers t on a goroutine of its own.
func (r *serving) spawn(t Task) {
	r.wg.Add(1)
	go func() {
		defer func() {
			<-r.slots
			r.wg.Done()
		}()
		r.timed(t)
	}()
}

// inlineBatch is a batch answered on the polling goroutine.  Its tasks are
// taken one at a time through next, by the poller or, once the timer has
// split the batch, by the goroutine the timer started; whoever sets taken
// first decides who polls next.
type inlineBatch struct {
	tasks []Task // the poller's buffer: nobody writes it until the batch ends
	next  atomic.Int32
	taken atomic.Bool
}

// take returns the next task not yet begun, if any.
func (b *inlineBatch) take() (Task, bool) {
	i := int(b.next.Add(1)) - 1
	if i >= len(b.tasks) {
		return Task{}, false
	}
	return b.tasks[i], true
}

// inline answers tasks on the polling goroutine; false when a new
// goroutine took the polling over meanwhile, because the batch ran longer
// than inlineLimit.
func (r *serving) inline(tasks []Task) bool {
	b := &inlineBatch{tasks: tasks}

	// The count of the goroutine the timer may start, added here by a
	// goroutine that is itself counted (or is Serve's, before its Wait):
	// a late timer then never adds to a WaitGroup being waited for.
	r.wg.Add(1)
	timer := time.AfterFunc(inlineLimit, func() {
		if b.taken.CompareAndSwap(false, true) {
			go func() {
				defer r.wg.Done()
				for t, ok := b.take(); ok; t, ok = b.take() {
					r.spawn(t)
				}
				r.poll()
			}()
		}
	})

	for t, ok := b.take(); ok; t, ok = b.take() {
		r.timed(t)
		<-r.slots
		if b.taken.Load() {
			break // the rest is the timer's goroutine's
		}
	}
	timer.Stop()

	if b.taken.CompareAndSwap(false, true) {
		r.wg.Done() // no goroutine was started
		return true
	}
	return false
}

// timed answers t and folds its duration into avg.
func (r *serving) timed(t Task) {
	start := time.Now()
	r.s.handle(t, r.w)
	d := int64(time.Since(start))
	for {
		old := r.avg.Load()
		if r.avg.CompareAndSwap(old, old+(d-old)/8) {
			return
		}
	}
}

func (s *Server) handle(t Task, w *watcher) {
	var req []byte
	if s.BorrowRequest {
		req = t.Req()
	} else {
		req = t.ReqCopy()
	}

	var rsp []byte
	var err error

	if w == nil {
		rsp, err = call(func() ([]byte, error) { return s.Handler(req) })

	} else {
		ctx, cancel := context.WithCancel(context.Background())
		w.add(t, cancel)
		rsp, err = call(func() ([]byte, error) { return s.HandleContext(ctx, req) })
		// Out of the watcher before the answer: it must not read the task
		// once hotffi may have freed it.
		w.remove(t)
		cancel()
	}

	if err == nil {
		t.Respond(0, rsp)
		return
	}

	rc := RCError
	var e *Error
	if errors.As(err, &e) && e.RC != 0 {
		rc = e.RC
	}
	if p, ok := err.(*panicError); ok {
		rc = p.rc
	}
	t.Respond(rc, []byte(err.Error()))
}

type panicError struct {
	rc  int
	msg string
}

func (p *panicError) Error() string { return p.msg }

// call runs f and turns a panic into an error: a bug in one handler fails
// its call and the runtime goes on serving.  A panic on a goroutine the
// handler started itself cannot be caught here and ends the nginx worker.
func call(f func() ([]byte, error)) (rsp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			// nginx sends the worker's stderr to its error log.
			fmt.Fprintf(os.Stderr, "hotffi: handler panic: %v\n%s", r, debug.Stack())
			rsp, err = nil, &panicError{rc: RCPanic, msg: fmt.Sprintf("panic: %v", r)}
		}
	}()
	return f()
}

// watcher cancels the context of every task whose caller gave up.  hotffi
// has no notification for that, only a flag per task, so the flags of the
// tasks in flight are read every interval, and only while there are some.
type watcher struct {
	interval time.Duration
	mu       sync.Mutex
	// Keys: the tasks in flight, each its handler's until the handler
	// removes it, which it does before the answer hands it to hotffi.
	tasks map[unsafe.Pointer]context.CancelFunc // locks: mu
	kick  chan struct{}                         // "tasks is not empty"
	done  chan struct{}
}

func newWatcher(interval time.Duration) *watcher {
	if interval <= 0 {
		interval = DefaultCancelInterval
	}
	w := &watcher{
		interval: interval,
		tasks:    make(map[unsafe.Pointer]context.CancelFunc),
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	go w.run()
	return w
}

func (w *watcher) add(t Task, cancel context.CancelFunc) {
	w.mu.Lock()
	w.tasks[t.p] = cancel
	w.mu.Unlock()

	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *watcher) remove(t Task) {
	w.mu.Lock()
	delete(w.tasks, t.p)
	w.mu.Unlock()
}

func (w *watcher) close() { close(w.done) }

func (w *watcher) run() {
	for {
		w.mu.Lock()
		idle := len(w.tasks) == 0
		w.mu.Unlock()

		if idle {
			select {
			case <-w.kick:
			case <-w.done:
				return
			}
		}

		select {
		case <-time.After(w.interval):
		case <-w.done:
			return
		}

		w.mu.Lock()
		for p, cancel := range w.tasks {
			// The task is in flight: its handler removes it under mu
			// before answering, so p is still hotffi's live task here.
			if (Task{p: p}).Cancelled() {
				cancel()
				delete(w.tasks, p)
			}
		}
		w.mu.Unlock()
	}
}

// The servers started by Start, by queue, for Wait.  The tq keys are
// hotffi's, never dereferenced here; Wait removes them.
var (
	startedMu sync.Mutex
	started   = map[unsafe.Pointer]*sync.WaitGroup{} // locks: startedMu
)

// Start runs s.Serve(tq) on a new goroutine and returns at once, as
// libffi_init must.  Wait(tq), called from libffi_fini, waits for it.
func Start(tq unsafe.Pointer, s *Server) {
	startedMu.Lock()
	wg := started[tq]
	if wg == nil {
		wg = &sync.WaitGroup{}
		started[tq] = wg
	}
	wg.Add(1)
	startedMu.Unlock()

	go func() {
		defer wg.Done()
		s.Serve(tq)
	}()
}

// Wait blocks until every server Start ran on tq has returned, that is
// until every task taken from tq has been answered, and forgets tq.  Call
// it from libffi_fini: hotffi frees tq once libffi_fini returns.
func Wait(tq unsafe.Pointer) {
	startedMu.Lock()
	wg := started[tq]
	delete(started, tq)
	startedMu.Unlock()

	if wg != nil {
		wg.Wait()
	}
}
