package syslogd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/etoile-os/etoile/internal/syncbuf"
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
		// Its bounds on APP-NAME (48) and PROCID (128) hold.
		{"<11>1 - - " + strings.Repeat("A", 16000) + " " + strings.Repeat("9", 200) + " - - hi",
			Message{1, 3, strings.Repeat("A", 48) + "…", strings.Repeat("9", 128) + "…", "hi"}},
		// No priority: user.notice; no tag: the whole text.
		{"just some text", Message{1, 5, "", "", "just some text"}},
		{"<999>too big", Message{1, 5, "", "", "<999>too big"}},
		// A message cannot forge a console line.
		{"<12>app: one\nfake: etoile: ready\x1b[2J", Message{1, 4, "app", "", "one fake: etoile: ready [2J"}},
		{"<12>app: \xff\xfe", Message{1, 4, "app", "", "\uFFFD"}},
		// C1 controls (U+009B: CSI) and bidirectional overrides too.
		{"<12>app: a\u009b2Jb\u202etxt.exe\u2066c", Message{1, 4, "app", "", "a 2Jb txt.exe c"}},
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

func serve(t *testing.T, path string) (*Server, *lines, *syncbuf.Buffer) {
	t.Helper()
	sink := &lines{}
	console := &syncbuf.Buffer{}
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
	return srv, sink, console
}

// waitConsole waits until the console shows want.
func waitConsole(t *testing.T, console *syncbuf.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(console.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the console never showed %q:\n%s", want, console)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
	_, sink, console := serve(t, path)
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
	// The kernel's word on the sender comes first: logger's pid, our uid.
	who := regexp.MustCompile(`^\S+ pid=[1-9][0-9]* uid=` + strconv.Itoa(os.Getuid()) + ` `)
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
		if !who.MatchString(got[i]) {
			t.Errorf("line %d does not name its sender's pid and uid: %q", i, got[i])
		}
	}
	if !strings.HasSuffix(got[1], ": connection1:0 is operational now") || !strings.HasSuffix(got[2], ": disk 3 failing") {
		t.Errorf("messages: %q", got)
	}
	// Warnings and worse reach the console, info does not.
	waitConsole(t, console, "app=vendor-agent severity=err")
	out := console.String()
	for _, w := range []string{"app=nvidia-persistenced severity=warning text=\"Failed to open libnvidia-cfg.so.1\" pid=", " uid=" + strconv.Itoa(os.Getuid())} {
		if !strings.Contains(out, w) {
			t.Errorf("console lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "iscsid") {
		t.Errorf("an info message reached the console:\n%s", out)
	}
}

// A daemon in a loop cannot flood the consoles: past the burst, one line a
// second, and the count of those left off is said (with the next line
// shown, or a moment after the first left off); the log keeps every
// message, and a long text is cut on the console only.
func TestConsoleIsRateLimited(t *testing.T) {
	old := sayDroppedAfter
	sayDroppedAfter = time.Second
	defer func() { sayDroppedAfter = old }()
	srv, sink, console := serve(t, filepath.Join(t.TempDir(), "log"))
	var mu sync.Mutex
	now := time.Date(2026, 11, 26, 19, 0, 0, 0, time.UTC)
	srv.mu.Lock()
	srv.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv.mu.Unlock()
	me := Sender{PID: 77, UID: 0}
	for i := range 50 {
		srv.handle(Parse([]byte(fmt.Sprintf("<11>looper[1]: round %d", i))), me)
	}
	waitConsole(t, console, `"syslog messages left off the console" count=40`)
	if n := strings.Count(console.String(), "msg=syslog "); n != ConsoleBurst {
		t.Errorf("%d console lines for 50 messages at once, want the burst of %d", n, ConsoleBurst)
	}
	// Three seconds on: three more lines, the other two counted.
	mu.Lock()
	now = now.Add(3 * time.Second)
	mu.Unlock()
	for i := range 5 {
		srv.handle(Parse([]byte(fmt.Sprintf("<11>looper[1]: later %d", i))), me)
	}
	waitConsole(t, console, `"syslog messages left off the console" count=2`)
	out := console.String()
	for i, want := range []bool{true, true, true, false, false} {
		if got := strings.Contains(out, fmt.Sprintf("text=\"later %d\"", i)); got != want {
			t.Errorf("later %d on the console: %v, want %v\n%s", i, got, want, out)
		}
	}
	if n := len(sink.get()); n != 55 {
		t.Errorf("the log kept %d messages, want all 55", n)
	}
	// A long text: cut on the console, whole in the log.
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	long := strings.Repeat("é", ConsoleText)
	srv.handle(Parse([]byte("<11>looper: "+long)), me)
	waitConsole(t, console, "…")
	if !strings.Contains(console.String(), "text="+strings.Repeat("é", ConsoleText/2)+"…") {
		t.Errorf("the long text is not cut at %d bytes on the console", ConsoleText)
	}
	if l := sink.get(); !strings.HasSuffix(l[len(l)-1], long) {
		t.Errorf("the log did not keep the long text whole")
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
	_, sink, _ := serve(t, path)
	c, err := net.Dial("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("<14>me: hi")); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(" pid=%d uid=%d user.info me: hi", os.Getpid(), os.Getuid())
	if got := waitLines(t, sink, 1); !strings.HasSuffix(got[0], want) {
		t.Errorf("got %q, want it to end in %q", got, want)
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
	_, sink, _ := serve(t, path)
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
	if !strings.HasSuffix(got[0], "x…") {
		t.Errorf("the cut message does not end in …: %q", got[0][len(got[0])-20:])
	}
	if !strings.HasSuffix(got[1], "user.info small: next") {
		t.Errorf("next message: %q", got[1])
	}
}

// TestNoHostGuessedWithoutATimestamp: Python's SysLogHandler without an
// ident sends "<11>Disk full: …": the first word is the message's, not a
// host's; after a timestamp (the C library's form, or RFC 3339) a host is.
func TestNoHostGuessedWithoutATimestamp(t *testing.T) {
	for in, want := range map[string]string{
		"<11>Disk full: /var/lib is at 100%\x00":                        "user.err -: Disk full: /var/lib is at 100%",
		"<11>Upload failed: timeout":                                    "user.err -: Upload failed: timeout",
		"<13>foo bar: baz":                                              "user.notice -: foo bar: baz",
		"<14>Nov 26 19:05:08 edge-1 app[5]: hello":                      "user.info app[5]: hello",
		"<13>2026-11-26T19:05:08.123+00:00 myhost app[5]: from rfc3339": "user.notice app[5]: from rfc3339",
		"<11>myapp: plain":                                              "user.err myapp: plain",
	} {
		if got := Parse([]byte(in)).Line(); got != want {
			t.Errorf("Parse(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCleanedTextIsBounded: invalid bytes, three bytes each once cleaned,
// do not make a message longer than MaxMessage.
func TestCleanedTextIsBounded(t *testing.T) {
	in := append([]byte("<14>app: "), []byte(strings.Repeat("a\xff", MaxMessage/2-10))...)
	m := Parse(in)
	if len(m.Text) > MaxMessage+len("…") || !strings.HasSuffix(m.Text, "…") || !utf8.ValidString(m.Text) {
		t.Errorf("text of %d bytes, suffix %q", len(m.Text), m.Text[len(m.Text)-6:])
	}
}

// TestParseLineReadsTheSink: a line of the sink, as handle writes it, reads
// back as the message and the time it came.
func TestParseLineReadsTheSink(t *testing.T) {
	at := time.Date(2026, 11, 28, 6, 0, 1, 234000000, time.UTC)
	for _, tc := range []struct {
		m     Message
		creds string
	}{
		{Message{Facility: 3, Severity: 3, App: "chronyd", PID: "42", Text: "no server reachable: a: b"}, "pid=42 uid=0 "},
		{Message{Facility: 19, Severity: 5, Text: "no app"}, ""},
		{Message{Facility: 1, Severity: 7, App: "k3s-standin", Text: "[x] text"}, "pid=7 uid=0 "},
	} {
		line := at.Format(sinkTime) + " " + tc.creds + tc.m.Line()
		m, got, ok := ParseLine(line)
		if !ok || m != tc.m || !got.Equal(at) {
			t.Errorf("ParseLine(%q) = %+v, %v, %v; want %+v at %v", line, m, got, ok, tc.m, at)
		}
	}
	if _, _, ok := ParseLine("not a sink line"); ok {
		t.Error("a line that is not the sink's was read")
	}
}
