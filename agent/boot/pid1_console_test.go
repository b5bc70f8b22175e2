package boot

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// stuckWriter holds every Write until release is closed, as a console that
// takes no output holds a write to it.
type stuckWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *stuckWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestShutdownLogIsNotHeld: StayUp's log (Unblocked) does not hold the
// shutdown when the log's writer takes no more lines: the line saying the
// reboot returns although the line before it is stuck; once the writer
// takes lines again both are written, in order.
func TestShutdownLogIsNotHeld(t *testing.T) {
	w := &stuckWriter{release: make(chan struct{})}
	log := Unblocked(NewLogger(w, nil), 10*time.Millisecond)
	returns := func(line string, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { f(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waits for the stuck writer: the shutdown would not start", line)
		}
	}
	returns("the line before the shutdown's", func() { log.Warn("a DHCP renewal failed") })
	returns(`the "signal … action=reboot" line`, func() { log.Info("signal", "signal", "terminated", "action", "reboot") })
	close(w.release)
	want := "etoile: warning: a DHCP renewal failed\netoile: signal signal=terminated action=reboot\n"
	for deadline := time.Now().Add(10 * time.Second); w.String() != want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if w.String() != want {
		t.Errorf("once the writer takes lines again it holds %q, want %q", w.String(), want)
	}
}

// TestUnblockedKeepsOrder: with a writer that works, each call returns once
// its line is written, so the lines stay in order.
func TestUnblockedKeepsOrder(t *testing.T) {
	var b bytes.Buffer
	log := Unblocked(NewLogger(&b, nil), time.Minute).With("action", "reboot")
	log.Info("shutting down")
	log.Warn("sync did not finish")
	log.Debug("hidden")
	if want := "etoile: shutting down action=reboot\netoile: warning: sync did not finish action=reboot\n"; b.String() != want {
		t.Errorf("log holds %q, want %q", b.String(), want)
	}
}

// TestNoConsole: PID 1 started without a console has fds 0-2 on /dev/null
// (the Go runtime opens it for closed ones before main); that is no
// console, and reopenConsole opens /dev/console then. A terminal or a file
// is a console already.
func TestNoConsole(t *testing.T) {
	null, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	_, tty, _ := fakeroot.Pty(t)
	const closed = 1 << 30 // past any fd limit: never open
	for _, c := range []struct {
		what string
		fd   int
		want bool
	}{
		{"/dev/null", int(null.Fd()), true},
		{"a closed fd", closed, true},
		{"a terminal", int(tty.Fd()), false},
		{"a file", int(file.Fd()), false},
	} {
		if got := noConsole(c.fd); got != c.want {
			t.Errorf("noConsole(%s) = %v, want %v", c.what, got, c.want)
		}
	}
}
