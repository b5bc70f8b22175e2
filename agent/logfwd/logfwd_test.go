package logfwd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/logring"
	"github.com/etoile-os/etoile/internal/testca"
)

func TestParseEndpoint(t *testing.T) {
	for _, tt := range []struct{ in, scheme, addr, err string }{
		{"udp://192.0.2.10:514", "udp", "192.0.2.10:514", ""},
		{"udp://logs.site.example", "udp", "logs.site.example:514", ""},
		{"tcp://[2001:db8::5]:1514", "tcp", "[2001:db8::5]:1514", ""},
		{"tls://logs.site.example", "tls", "logs.site.example:6514", ""},
		{"http://logs:514", "", "", `the scheme is udp, tcp or tls`},
		{"logs:514", "", "", `is not an endpoint`},
		{"udp://bob:pw@logs:514", "", "", "has a user"},
		{"udp://:514", "", "", "has no host"},
		{"udp://logs:514/path", "", "", "a path, query or fragment"},
		{"udp://logs:", "", "", "an empty port"},
		{"udp://logs:70000", "", "", "port 70000 is not 1 to 65535"},
		{"https://bob:hunter2@logs:514", "", "", `"https://bob:xxxxx@logs:514" has a user`},
	} {
		scheme, addr, err := ParseEndpoint(tt.in)
		if scheme != tt.scheme || addr != tt.addr || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ParseEndpoint(%q) = %q, %q, %v; want %q, %q, %q", tt.in, scheme, addr, err, tt.scheme, tt.addr, tt.err)
		}
	}
	for _, e := range []string{"udp://bob:secret@logs:514", "https://bob:secret@logs:514", "udp://bob:secret@logs:5x4", "udp://bob:secret@[logs:514"} {
		if _, _, err := ParseEndpoint(e); err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("a password in an endpoint is shown: %v", err)
		}
	}
}

func TestMessage(t *testing.T) {
	at := time.Date(2026, 11, 28, 6, 0, 1, 234567000, time.UTC)
	e := Entry{Time: at, App: "k3s", Facility: 3, Severity: 3, Text: `level=error msg="failed"`}
	if got, want := string(Message(e, FormatRFC5424, "edge-1", time.Time{})), `<27>1 2026-11-28T06:00:01.234567Z edge-1 k3s - - - level=error msg="failed"`; got != want {
		t.Errorf("rfc5424:\n%s\nwant\n%s", got, want)
	}
	// No time: when sent; a PID; a host name with a space.
	e = Entry{App: "chronyd", PID: "42", Facility: 3, Severity: 6, Text: "ok"}
	if got, want := string(Message(e, FormatRFC5424, "edge 1", at)), "<30>1 2026-11-28T06:00:01.234567Z edge_1 chronyd 42 - - ok"; got != want {
		t.Errorf("rfc5424 with a pid:\n%s\nwant\n%s", got, want)
	}
	var j map[string]string
	if err := json.Unmarshal(Message(e, FormatJSONLines, "edge-1", at), &j); err != nil {
		t.Fatal(err)
	}
	if j["time"] != "2026-11-28T06:00:01.234567Z" || j["host"] != "edge-1" || j["app"] != "chronyd" || j["pid"] != "42" ||
		j["facility"] != "daemon" || j["severity"] != "info" || j["msg"] != "ok" {
		t.Errorf("json_lines: %v", j)
	}
	long := Entry{App: "k3s", Facility: 3, Severity: 6, Text: strings.Repeat("é", MaxText)}
	m := string(Message(long, FormatRFC5424, "h", at))
	if !strings.HasSuffix(m, "é…") || len(m) > MaxText+100 {
		t.Errorf("a long line: %d bytes, ends %q", len(m), m[len(m)-8:])
	}
}

// ringSource is a logring.Ring as a Source of the agent's kind.
func ringSource(name string, r *logring.Ring) Source {
	return Source{Name: name, Read: func(after uint64) ([]Entry, uint64, uint64) {
		lines, next, skipped := r.Since(after)
		out := make([]Entry, len(lines))
		for i, l := range lines {
			out[i] = Entry{Pos: next - uint64(len(lines)-i) + 1, App: name, Facility: 3, Severity: 6, Text: l}
		}
		return out, next, skipped
	}}
}

func quietLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// received collects what a test collector got, a message each.
type received struct {
	mu   sync.Mutex
	msgs []string
}

func (r *received) add(m string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
}

func (r *received) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// waitFor waits until the collector has n messages, and returns them.
func (r *received) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(r.all()) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := r.all()
	if len(got) != n {
		t.Fatalf("the collector got %d messages, want %d:\n%s", len(got), n, strings.Join(got, "\n"))
	}
	return got
}

// udpCollector is a syslog collector over UDP on the loopback, until the
// test ends: its address, and what it got (a message each datagram).
func udpCollector(t *testing.T) (string, *received) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	got := &received{}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got.add(string(buf[:n]))
		}
	}()
	return pc.LocalAddr().String(), got
}

// TestForwardUDP: every line the logs hold, then each new one, reaches a
// syslog collector over UDP, a datagram each, in order.
func TestForwardUDP(t *testing.T) {
	addr, got := udpCollector(t)
	agent, k3s := logring.New(10), logring.New(10)
	agent.Add("etoile: ready ip=10.0.0.2")
	k3s.Add("Starting k3s")
	var m Manager
	defer m.Stop()
	opts := Options{Sources: []Source{ringSource("agent", agent), ringSource("k3s", k3s)}, Host: func() string { return "edge-1" }, Log: quietLog(t), Poll: 20 * time.Millisecond}
	if err := m.Set(context.Background(), []Destination{{Endpoint: "udp://" + addr}}, opts); err != nil {
		t.Fatal(err)
	}
	msgs := got.waitFor(t, 2)
	if !strings.HasPrefix(msgs[0], "<30>1 ") || !strings.HasSuffix(msgs[0], " edge-1 agent - - - etoile: ready ip=10.0.0.2") || !strings.HasSuffix(msgs[1], " k3s - - - Starting k3s") {
		t.Errorf("the logs' lines:\n%s", strings.Join(msgs, "\n"))
	}
	k3s.Add("Node ready")
	if msgs := got.waitFor(t, 3); !strings.HasSuffix(msgs[2], " Node ready") {
		t.Errorf("a new line: %q", msgs[2])
	}
}

// tcpCollector accepts connections on l and reads RFC 6587 octet-counted
// frames (or newline-ended JSON lines), until l closes.
func tcpCollector(l net.Listener, got *received, jsonLines bool) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				if jsonLines {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					got.add(strings.TrimSuffix(line, "\n"))
					continue
				}
				n, err := br.ReadString(' ')
				if err != nil {
					return
				}
				size, err := strconv.Atoi(strings.TrimSpace(n))
				if err != nil {
					got.add("BAD FRAME " + n)
					return
				}
				b := make([]byte, size)
				if _, err := io.ReadFull(br, b); err != nil {
					return
				}
				got.add(string(b))
			}
		}()
	}
}

// TestForwardTCPWaitsForTheCollector: lines written while the collector
// is down reach it once it is back, once each; lines the logs no longer
// hold by then are counted in a warning.
func TestForwardTCPWaitsForTheCollector(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	var got received
	go tcpCollector(l, &got, false)
	agent := logring.New(5)
	agent.Add("line 1")
	var m Manager
	defer m.Stop()
	if err := m.Set(context.Background(), []Destination{{Endpoint: "tcp://" + addr}}, Options{Sources: []Source{ringSource("agent", agent)}, Log: quietLog(t), Poll: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	got.waitFor(t, 1)
	l.Close()
	// The open connection ends with the collector's end: what comes now
	// waits. Seven lines into a ring of five: two are lost.
	time.Sleep(100 * time.Millisecond)
	for i := 2; i <= 8; i++ {
		agent.Add(fmt.Sprintf("line %d", i))
		time.Sleep(30 * time.Millisecond)
	}
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	go tcpCollector(l2, &got, false)
	var texts []string
	joined := ""
	// The backoff's next try, then what waited.
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(joined, "line 8") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		texts = nil
		for _, m := range got.all() {
			texts = append(texts, m[strings.LastIndex(m, " - - ")+5:])
		}
		joined = strings.Join(texts, "|")
	}
	// What the first connection took before it was found closed is lost
	// with it (TCP gives no word of it), as with any syslog over TCP;
	// each line the ring held when the collector came back arrives once.
	for i := 4; i <= 8; i++ {
		if strings.Count(joined, fmt.Sprintf("line %d", i)) != 1 {
			t.Errorf("line %d did not arrive once:\n%s", i, strings.Join(texts, "\n"))
		}
	}
}

// TestForwardLostLinesAreSaid: lines the logs no longer hold when the
// destination is reached are counted in a warning sent before the others.
func TestForwardLostLinesAreSaid(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // down at first
	agent := logring.New(3)
	agent.Add("line 1")
	var m Manager
	defer m.Stop()
	if err := m.Set(context.Background(), []Destination{{Endpoint: "tcp://" + addr, Format: FormatJSONLines}}, Options{Sources: []Source{ringSource("agent", agent)}, Log: quietLog(t), Poll: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // tried, and failed: line 1 waits
	for i := 2; i <= 6; i++ {
		agent.Add(fmt.Sprintf("line %d", i)) // lines 1 to 3 go from the ring
	}
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	var got received
	go tcpCollector(l2, &got, true)
	msgs := got.waitFor(t, 4)
	var first map[string]string
	if err := json.Unmarshal([]byte(msgs[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["severity"] != "warning" || !strings.Contains(first["msg"], "3 lines of the agent log were gone from the node's memory before they could be sent to tcp://"+addr) {
		t.Errorf("the loss is not said first: %s", msgs[0])
	}
	for i, want := range []string{"line 4", "line 5", "line 6"} {
		if !strings.Contains(msgs[i+1], `"msg":"`+want+`"`) {
			t.Errorf("message %d: %s, want %s", i+1, msgs[i+1], want)
		}
	}
}

// TestForwardTLS: syslog over TLS (RFC 5425) to a collector whose
// certificate the site's CA signed; one signed by another CA is refused,
// and nothing is sent to it.
func TestForwardTLS(t *testing.T) {
	site, other := testca.New(t, "Site CA"), testca.New(t, "Other CA")
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{site.ServerCert(t, "127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var got received
	go tcpCollector(l, &got, false)
	agent := logring.New(10)
	agent.Add("etoile: ready")
	var m Manager
	defer m.Stop()
	opts := Options{Sources: []Source{ringSource("agent", agent)}, Roots: other.Pool(), Log: quietLog(t), Poll: 20 * time.Millisecond}
	dest := []Destination{{Endpoint: "tls://" + l.Addr().String()}}
	if err := m.Set(context.Background(), dest, opts); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if msgs := got.all(); len(msgs) != 0 {
		t.Fatalf("sent to a collector whose certificate is not trusted: %q", msgs)
	}
	// The site's CA applied: the destination starts again with it.
	opts.Roots = site.Pool()
	if err := m.Set(context.Background(), dest, opts); err != nil {
		t.Fatal(err)
	}
	if msgs := got.waitFor(t, 1); !strings.HasSuffix(msgs[0], " etoile: ready") {
		t.Errorf("over TLS: %q", msgs[0])
	}
	// Other roots that still trust it (a CA added to ca_certificates):
	// the destination starts again where it was, sending nothing twice.
	both := site.Pool()
	both.AddCert(other.Cert)
	opts.Roots = both
	if err := m.Set(context.Background(), dest, opts); err != nil {
		t.Fatal(err)
	}
	agent.Add("etoile: k3s state=ready")
	if msgs := got.waitFor(t, 2); !strings.HasSuffix(msgs[1], " etoile: k3s state=ready") {
		t.Errorf("after the roots changed: %q", msgs)
	}
	time.Sleep(200 * time.Millisecond)
	if msgs := got.all(); len(msgs) != 2 {
		t.Errorf("sent again after the roots changed: %q", msgs)
	}
}

// TestSetDoesNotWaitForAStuckCollector: a collector that accepts and then
// reads nothing (its buffers full) does not hold a config apply that
// removes it: Set returns without waiting out the write's time limit.
func TestSetDoesNotWaitForAStuckCollector(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c // held open, never read
		}
	}()
	agent := logring.New(5000)
	for i := range 5000 {
		agent.Add(fmt.Sprintf("line %d %s", i, strings.Repeat("x", 2000)))
	}
	var m Manager
	if err := m.Set(context.Background(), []Destination{{Endpoint: "tcp://" + l.Addr().String()}}, Options{Sources: []Source{ringSource("agent", agent)}, Log: quietLog(t), Poll: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	c := <-accepted
	defer c.Close()
	time.Sleep(300 * time.Millisecond) // the writes fill the buffers, and wait
	start := time.Now()
	if err := m.Set(context.Background(), nil, Options{}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= writeTimeout/2 {
		t.Errorf("Set waited %v for a collector that reads nothing", took)
	}
}

// TestUDPClosedPortIsNoFlood: a collector host whose port nobody listens
// on (its daemon restarting) answers UDP with "port unreachable"; UDP
// says nothing of what arrives, and the forwarder does not take it as the
// destination going down and up again at every line (each saying so in a
// line it would forward).
func TestUDPClosedPortIsNoFlood(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	var logged strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logged.Write(p)
	}), nil))
	agent := logring.New(100)
	var m Manager
	defer m.Stop()
	if err := m.Set(context.Background(), []Destination{{Endpoint: "udp://" + addr}}, Options{Sources: []Source{ringSource("agent", agent)}, Log: log, Poll: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		agent.Add(fmt.Sprintf("line %d", i))
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logged.String(), "unreachable") || strings.Contains(logged.String(), "reachable again") {
		t.Errorf("a closed UDP port is said:\n%s", logged.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestCloseSendsWhatIsLeft: as the machine stops, what the logs say last
// is sent at once, without waiting for the next poll.
func TestCloseSendsWhatIsLeft(t *testing.T) {
	addr, got := udpCollector(t)
	agent := logring.New(10)
	agent.Add("etoile: ready")
	var m Manager
	if err := m.Set(context.Background(), []Destination{{Endpoint: "udp://" + addr}}, Options{Sources: []Source{ringSource("agent", agent)}, Log: quietLog(t), Poll: time.Hour}); err != nil {
		t.Fatal(err)
	}
	got.waitFor(t, 1)
	agent.Add("etoile: k3s stopped pid=92")
	m.Close(3 * time.Second)
	if msgs := got.waitFor(t, 2); !strings.HasSuffix(msgs[1], " etoile: k3s stopped pid=92") {
		t.Errorf("the last line: %q", msgs)
	}
}

// TestManagerKeepsItsPlace: a config applied again with the same
// destination sends nothing twice; a destination no longer listed stops.
func TestManagerKeepsItsPlace(t *testing.T) {
	addr, got := udpCollector(t)
	agent := logring.New(10)
	agent.Add("one")
	var m Manager
	defer m.Stop()
	opts := Options{Sources: []Source{ringSource("agent", agent)}, Log: quietLog(t), Poll: 20 * time.Millisecond}
	dest := []Destination{{Endpoint: "udp://" + addr}}
	for range 3 {
		if err := m.Set(context.Background(), dest, opts); err != nil {
			t.Fatal(err)
		}
	}
	got.waitFor(t, 1)
	if err := m.Set(context.Background(), nil, opts); err != nil {
		t.Fatal(err)
	}
	agent.Add("two")
	time.Sleep(200 * time.Millisecond)
	if msgs := got.all(); len(msgs) != 1 {
		t.Errorf("after the destination was removed: %q", msgs)
	}
}
