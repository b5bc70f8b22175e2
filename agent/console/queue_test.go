package console

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/fakeroot"
	"golang.org/x/sys/unix"
)

// stoppedPty is fakeroot.StoppedPty, this package's queues forgotten when
// the test ends: the next test's pseudo-terminal may get this one's number.
func stoppedPty(t *testing.T) (slave string, start func(), lines <-chan string) {
	t.Helper()
	_, slave, start, lines = fakeroot.StoppedPty(t)
	t.Cleanup(forgetQueues)
	return slave, start, lines
}

// returns fails the test if f has not returned after a long while: it is
// held by the stopped console.
func returns(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s is still waiting for the stopped console", what)
	}
}

func next(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l := <-lines:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("the console shows no more lines once its output goes again")
		return ""
	}
}

// TestStoppedConsoleDoesNotHoldPrintln: a console that takes no output
// (Scroll Lock, no CTS) does not hold Println, nor the lines after it; when
// it takes output again it shows the lines in order.
func TestStoppedConsoleDoesNotHoldPrintln(t *testing.T) {
	slave, start, lines := stoppedPty(t)
	root := t.TempDir()
	sys, dev := filepath.Join(root, "sys"), filepath.Join(root, "dev")
	if err := os.MkdirAll(filepath.Join(sys, "class/tty/console"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sys, "class/tty/console/active"), []byte("tty0 ttyS1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(slave, filepath.Join(dev, "ttyS1")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dev, "tty0"), nil, 0o600); err != nil { // the screen, working
		t.Fatal(err)
	}
	b := Broadcaster{SysDir: sys, DevDir: dev}
	returns(t, "Println", func() {
		for i := range 3 {
			if reached, err := b.Println(fmt.Sprintf("etoile: line %d", i)); len(reached) != 2 || err != nil {
				t.Errorf("Println reached %q, err %v; want tty0 and ttyS1", reached, err)
			}
		}
	})
	if got, _ := os.ReadFile(filepath.Join(dev, "tty0")); string(got) != "etoile: line 0\netoile: line 1\netoile: line 2\n" {
		t.Errorf("the working console holds %q", got)
	}
	start()
	for i := range 3 {
		if l, want := next(t, lines), fmt.Sprintf("etoile: line %d", i); l != want {
			t.Errorf("ttyS1 shows %q, want %q", l, want)
		}
	}
	if !Flush(10 * time.Second) {
		t.Error("Flush: lines still queued once the console took them")
	}
}

// TestStoppedConsoleDropsAndCounts: while a console takes no output its
// queue is bounded; the lines past the bound are dropped, and the console
// says how many where they were dropped once it takes output again; the
// lines it kept come in order.
func TestStoppedConsoleDropsAndCounts(t *testing.T) {
	slave, start, lines := stoppedPty(t)
	f, err := os.OpenFile(slave, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w := Queued(f)
	if w == any(f) {
		t.Fatal("Queued left a console unqueued")
	}
	pad := strings.Repeat("x", 80)
	total := 2 * queueBytes / len(fmt.Sprintf("etoile: line 00000 %s\n", pad))
	returns(t, "Write", func() {
		for i := range total {
			fmt.Fprintf(w, "etoile: line %05d %s\n", i, pad)
		}
	})
	if Flush(0) {
		t.Error("Flush says all is written while the console takes no output")
	}
	start()
	kept, dropped := 0, 0
	for kept+dropped < total {
		l := next(t, lines)
		var n int
		if _, err := fmt.Sscanf(l, "etoile: warning: console lines dropped count=%d ", &n); err == nil {
			dropped += n
			continue
		}
		if want := fmt.Sprintf("etoile: line %05d %s", kept+dropped, pad); l != want {
			t.Fatalf("after %d lines shown and %d said dropped the console shows %.40q, want %.40q", kept, dropped, l, want)
		}
		kept++
	}
	if kept == total || dropped == 0 {
		t.Errorf("%d of %d lines kept, %d said dropped: the queue is not bounded", kept, total, dropped)
	}
	w.Write([]byte("etoile: after\n"))
	if l := next(t, lines); l != "etoile: after" {
		t.Errorf("then %q, want the next line", l)
	}
}

// TestQueuedLeavesFilesAlone: what is not a console device is written at
// once (a program's output to a file or pipe must not wait in a queue).
func TestQueuedLeavesFilesAlone(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if w := Queued(f); w != any(f) {
		t.Errorf("Queued(a file) = %T, want the file itself", w)
	}
}

// forgetQueues drops every console's queue, as if none had been written.
func forgetQueues() {
	queues.mu.Lock()
	defer queues.mu.Unlock()
	queues.byDev, queues.byPath, queues.all = nil, nil, nil
}
