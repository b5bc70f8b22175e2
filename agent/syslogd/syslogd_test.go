package syslogd

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Message
	}{
		// The C library's syslog(3): no host name.
		{"<28>Nov 26 19:05:08 nvidia-persistenced[412]: Failed to lock PID file: Resource temporarily unavailable\n",
			Message{3, 4, "nvidia-persistenced", "412", "Failed to lock PID file: Resource temporarily unavailable"}},
		{"<30>Nov  6 09:05:08 iscsid: connection1:0 is operational now",
			Message{3, 6, "iscsid", "", "connection1:0 is operational now"}},
		// A sender that names its host.
		{"<13>Nov 26 19:05:08 node-1 root[99]: hello", Message{1, 5, "root", "99", "hello"}},
		// RFC 5424, with and without structured data and a message.
		{`<165>1 2026-11-26T19:05:08.003Z node-1 evntslog 7 ID47 [exampleSDID@32473 iut="3" eventSource="Appl\]ication"] An application event`,
			Message{20, 5, "evntslog", "7", "An application event"}},
		{"<11>1 2026-11-26T19:05:08Z - app - - - \ufeffboom", Message{1, 3, "app", "", "boom"}},
		{"<11>1 2026-11-26T19:05:08Z host app 12 - -", Message{1, 3, "app", "12", ""}},
		// No priority: user.notice; no tag: the whole text.
		{"just some text", Message{1, 5, "", "", "just some text"}},
		{"<999>too big", Message{1, 5, "", "", "<999>too big"}},
		// A message cannot forge a console line.
		{"<12>app: one\nfake: etoile: ready\x1b[2J", Message{1, 4, "app", "", "one fake: etoile: ready [2J"}},
		{"<12>app: \xff\xfe", Message{1, 4, "app", "", "\uFFFD"}},
	} {
		if got := Parse([]byte(tc.in)); got != tc.want {
			t.Errorf("Parse(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
	m := Message{Facility: 3, Severity: 4, App: "nvidia-persistenced", PID: "412", Text: "x"}
	if got := m.Line(); got != "daemon.warning nvidia-persistenced[412]: x" {
		t.Errorf("Line() = %q", got)
	}
	if got := (Message{Facility: 1, Severity: 5, Text: "y"}).Line(); got != "user.notice -: y" {
		t.Errorf("Line() without a tag = %q", got)
	}
}

type lines struct {
	mu sync.Mutex
	l  []string
}

func (s *lines) Add(line string) {
	s.mu.Lock()
	s.l = append(s.l, line)
	s.mu.Unlock()
}

func (s *lines) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.l...)
}

// waitLines waits for n lines in the sink.
func waitLines(t *testing.T, s *lines, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got := s.get(); len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("got %d lines, want %d: %q", len(s.get()), n, s.get())
	return nil
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func serve(t *testing.T, path string) (*lines, *syncBuf) {
	t.Helper()
	sink := &lines{}
	console := &syncBuf{}
	srv, err := Listen(path, sink, slog.New(slog.NewTextHandler(console, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("the socket is still at %s after Serve returned: %v", path, err)
		}
	})
	return sink, console
}

// util-linux's logger writes to the socket as syslog(3) and other senders
// do: its local form (the C library's), RFC 3164 with a host name, and RFC
// 5424.
func TestLoggerMessagesAreKept(t *testing.T) {
	logger, err := exec.LookPath("logger")
	if err != nil {
		t.Fatal("logger (util-linux, Debian's bsdutils) is needed: apt-get install bsdutils")
	}
	path := filepath.Join(t.TempDir(), "log")
	sink, console := serve(t, path)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o666 {
		t.Errorf("socket mode %v, want 0666 so that daemons without root log too", st.Mode().Perm())
	}
	for _, args := range [][]string{
		{"-p", "daemon.warning", "-t", "nvidia-persistenced", "--id=412", "Failed to open libnvidia-cfg.so.1"},
		{"--rfc3164", "-p", "local3.info", "-t", "iscsid", "connection1:0 is operational now"},
		{"--rfc5424", "-p", "user.err", "-t", "vendor-agent", "--msgid", "M1", "disk 3 failing"},
	} {
		cmd := exec.Command(logger, append([]string{"--socket", path, "--socket-errors=on"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", cmd.Args, err, out)
		}
	}
	got := waitLines(t, sink, 3)
	want := []string{
		" daemon.warning nvidia-persistenced[412]: Failed to open libnvidia-cfg.so.1",
		" local3.info iscsid",
		" user.err vendor-agent",
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("line %d = %q, want it to contain %q", i, got[i], w)
		}
		if _, err := time.Parse("2006-01-02T15:04:05.000Z", strings.Fields(got[i])[0]); err != nil {
			t.Errorf("line %d does not start with the time it came: %q", i, got[i])
		}
	}
	if !strings.HasSuffix(got[1], ": connection1:0 is operational now") || !strings.HasSuffix(got[2], ": disk 3 failing") {
		t.Errorf("messages: %q", got)
	}
	// Warnings and worse reach the console, info does not.
	out := console.String()
	for _, w := range []string{"app=nvidia-persistenced pid=412 severity=warning", "app=vendor-agent", "severity=err"} {
		if !strings.Contains(out, w) {
			t.Errorf("console lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "iscsid") {
		t.Errorf("an info message reached the console:\n%s", out)
	}
}

// A daemon in a loop cannot flood the consoles: past the burst, lines are
// counted and the count is said with the next one shown; the sink keeps
// every message.
func TestConsoleIsRateLimited(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	sink := &lines{}
	console := &syncBuf{}
	srv, err := Listen(path, sink, slog.New(slog.NewTextHandler(console, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.conn.Close()
	now := time.Date(2026, 11, 26, 19, 0, 0, 0, time.UTC)
	srv.now = func() time.Time { return now }
	for i := range 50 {
		srv.handle(Parse([]byte("<11>looper[1]: round " + string(rune('A'+i%26)))))
	}
	if n := strings.Count(console.String(), "msg=syslog "); n != ConsoleBurst {
		t.Errorf("%d console lines for 50 messages at once, want the burst of %d", n, ConsoleBurst)
	}
	now = now.Add(3 * time.Second)
	srv.handle(Parse([]byte("<11>looper[1]: later")))
	out := console.String()
	if !strings.Contains(out, "syslog messages left off the console\" count=40") || !strings.Contains(out, "text=later") {
		t.Errorf("after a pause the count of messages left off and the next message should show:\n%s", out)
	}
	if n := len(sink.get()); n != 51 {
		t.Errorf("the log kept %d messages, want all 51", n)
	}
}

func TestListenReplacesAStaleSocketOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	// A socket an earlier run left behind.
	old, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	sink, _ := serve(t, path)
	c, err := net.Dial("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("<14>me: hi")); err != nil {
		t.Fatal(err)
	}
	if got := waitLines(t, sink, 1); !strings.HasSuffix(got[0], " user.info me: hi") {
		t.Errorf("got %q", got)
	}
	// A regular file is somebody's: not removed.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file, sink, nil); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Errorf("the file was touched: %q", b)
	}
}

// A datagram longer than MaxMessage is cut, not lost, and the next one is
// read whole.
func TestLongMessageIsCut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	sink, _ := serve(t, path)
	c, err := net.Dial("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("<14>big: " + strings.Repeat("x", 2*MaxMessage))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("<14>small: next")); err != nil {
		t.Fatal(err)
	}
	got := waitLines(t, sink, 2)
	if n := strings.Count(got[0], "x"); n != MaxMessage-len("<14>big: ") {
		t.Errorf("the long message kept %d bytes of text, want %d", n, MaxMessage-len("<14>big: "))
	}
	if !strings.HasSuffix(got[1], "user.info small: next") {
		t.Errorf("next message: %q", got[1])
	}
}
