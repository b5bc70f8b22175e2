package console

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A console's lines are written by a goroutine of its own, never by the
// caller. A console can stop taking output whatever NoFlowControl did:
// Scroll Lock on a screen (the kernel stops the tty), a serial console with
// RTS/CTS flow control (console=ttyS1,115200n8r) and no CTS from the other
// end. A write to it then blocks until it takes output again, and PID 1's
// logger — and with it the shutdown, the reaping and K3s's supervision —
// must not wait with it. So each console has a bounded queue: when it is
// full, lines are dropped and counted, and the count is said on that
// console once it takes output again. Every line also goes to the agent's
// log in memory (etoile-agent logs), where none is dropped.

// queueBytes bounds what waits for one console: about 20 s of a 115200
// baud serial line, so that a burst of boot lines (etoile.debug) is not
// dropped on a slow but working console.
const queueBytes = 256 << 10

// queue is one console's lines waiting for its writer goroutine.
type queue struct {
	name  string
	w     io.Writer
	owned *os.File // opened here (the fd is kept open, not opened per line); nil for PID 1's stdout

	mu      sync.Mutex
	lines   []string
	size    int
	dropped int
	busy    bool // the writer holds lines it has not written yet
	wake    chan struct{}
}

// queues knows every console's queue: by device number, so that
// /dev/console (PID 1's stdout) and the tty it is share one queue and
// their lines keep their order, and by path, not to stat a console per line.
var queues struct {
	mu     sync.Mutex
	byDev  map[uint64]*queue
	byPath map[string]*queue
	all    []*queue // for Flush
}

func newQueue(name string, w io.Writer, owned *os.File) *queue {
	q := &queue{name: name, w: w, owned: owned, wake: make(chan struct{}, 1)}
	queues.all = append(queues.all, q)
	go q.run()
	return q
}

// Write queues p (whole lines) and returns at once.
func (q *queue) Write(p []byte) (int, error) {
	q.add(string(p))
	return len(p), nil
}

func (q *queue) add(s string) {
	q.mu.Lock()
	if q.size+len(s) > queueBytes {
		q.dropped++
	} else {
		q.lines = append(q.lines, s)
		q.size += len(s)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// idle reports whether every line queued so far has been written.
func (q *queue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.busy && len(q.lines) == 0 && q.dropped == 0
}

func (q *queue) run() {
	for range q.wake {
		for {
			q.mu.Lock()
			lines, dropped := q.lines, q.dropped
			q.lines, q.size, q.dropped = nil, 0, 0
			q.busy = len(lines) > 0 || dropped > 0
			q.mu.Unlock()
			if len(lines) == 0 && dropped == 0 {
				break
			}
			for _, l := range lines {
				q.write(l)
			}
			// The dropped lines came after those just written.
			if dropped > 0 {
				q.write(fmt.Sprintf("etoile: warning: console lines dropped count=%d console=%s reason=%q fix=%q\n", dropped, q.name,
					"the console took no output for a while (Scroll Lock on a screen, or a serial line's RTS/CTS flow control with no CTS)",
					"etoile-agent logs shows every line"))
			}
			q.mu.Lock()
			q.busy = false
			q.mu.Unlock()
		}
	}
}

// write writes s whole, waiting as long as the console takes no output:
// the lines keep their order, and new ones are dropped meanwhile. A console
// that fails (a serial port gone) loses the line; one opened here is closed
// and opened again for the next line.
func (q *queue) write(s string) {
	b := []byte(s)
	for len(b) > 0 {
		if q.owned != nil {
			// The console is opened O_NONBLOCK, so the wait is the runtime's
			// poller's; the deadline only makes sure a missed wake-up is not
			// waited for ever.
			_ = q.owned.SetWriteDeadline(time.Now().Add(time.Second))
		}
		n, err := q.w.Write(b)
		b = b[n:]
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			// O_NONBLOCK without the poller: try again shortly.
			time.Sleep(20 * time.Millisecond)
		default:
			q.broken()
			return
		}
	}
}

// broken forgets a console whose write failed, so that its next line opens
// it again; its fd is closed (here: a close can wait for a serial port's
// closing_wait, up to 30 s).
func (q *queue) broken() {
	queues.mu.Lock()
	for k, v := range queues.byDev {
		if v == q {
			delete(queues.byDev, k)
		}
	}
	for k, v := range queues.byPath {
		if v == q {
			delete(queues.byPath, k)
		}
	}
	queues.mu.Unlock()
	if q.owned != nil {
		q.owned.Close()
	}
}

// pathQueue returns the queue of the console device at path, opening it the
// first time; nil (and no error) when path is not a device (a regular file
// under --root or in tests), which is written at once.
func pathQueue(name, path string) (*queue, error) {
	queues.mu.Lock()
	defer queues.mu.Unlock()
	if q := queues.byPath[path]; q != nil {
		return q, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return nil, nil
	}
	if queues.byDev == nil {
		queues.byDev, queues.byPath = map[uint64]*queue{}, map[string]*queue{}
	}
	if q := queues.byDev[st.Rdev]; q != nil {
		queues.byPath[path] = q
		return q, nil
	}
	// O_NONBLOCK: the open does not wait for a serial line's carrier, and
	// the writes wait in the writer goroutine's poller, not in a thread.
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	q := newQueue(name, f, f)
	queues.byDev[st.Rdev] = q
	queues.byPath[path] = q
	return q, nil
}

// Queued returns a writer that queues what is written to w, a console, and
// writes it from a goroutine of its own, so that a console that takes no
// output never holds the writer's caller (PID 1's log). Each Write should
// be whole lines. w is returned as it is when it is not a character device
// (a file, a pipe, a buffer): those do not stop, and a program that exits
// must not lose its last lines. When w is /dev/console, its lines share the
// queue of the console behind it (Broadcaster's lines on that console), to
// keep their order.
func Queued(w io.Writer) io.Writer {
	f, ok := w.(*os.File)
	if !ok {
		return w
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return w
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return w
	}
	dev := uint64(sys.Rdev)
	if unix.Major(dev) == 5 && unix.Minor(dev) == 1 {
		// /dev/console: the kernel says which tty it is.
		if c, err := f.SyscallConn(); err == nil {
			_ = c.Control(func(fd uintptr) {
				if d, err := unix.IoctlGetUint32(int(fd), unix.TIOCGDEV); err == nil && d != 0 {
					dev = uint64(d)
				}
			})
		}
	}
	queues.mu.Lock()
	defer queues.mu.Unlock()
	if queues.byDev == nil {
		queues.byDev, queues.byPath = map[uint64]*queue{}, map[string]*queue{}
	}
	if q := queues.byDev[dev]; q != nil && (q.owned != nil || q.w == w) {
		return q
	}
	q := newQueue(f.Name(), f, nil)
	queues.byDev[dev] = q
	return q
}

// Flush waits until every console's queued lines are written, for at most
// wait (a console that takes no output is not waited for longer); it
// reports whether they all were. The shutdown calls it before the reboot,
// so that its last lines reach the consoles that work.
func Flush(wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		queues.mu.Lock()
		all := queues.all
		queues.mu.Unlock()
		done := true
		for _, q := range all {
			if !q.idle() {
				done = false
				break
			}
		}
		if done {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
