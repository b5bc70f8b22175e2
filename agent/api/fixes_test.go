package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveBackend serves b on a socket in a fresh folder and returns a client.
func serveBackend(t *testing.T, b Backend) (*Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, b, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return NewClient(sock), sock
		}
		if time.Now().After(deadline) {
			t.Fatal("the socket never accepted a connection")
		}
	}
}

// TestSocketFolderMadePrivate: the folder exists already, 0755 (as
// /run/etoile does on a node): Serve makes it 0700.
func TestSocketFolderMadePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etoile")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, &fakeAgent{}, nil) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the socket never accepted a connection")
		}
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("socket folder: %v, %v; want 0700", st.Mode().Perm(), err)
	}
}

// TestServeLeavesWhatIsNotASocket: a file or folder at the socket's path is
// refused with an error naming it, and left where it is.
func TestServeLeavesWhatIsNotASocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.sock")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Bounded: an agent that took the path would serve until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := Serve(ctx, file, &fakeAgent{}, nil)
	if err == nil || !strings.Contains(err.Error(), file+" is a file, not a socket") {
		t.Errorf("Serve over a file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Errorf("the file was replaced: %q", b)
	}
	sub := filepath.Join(dir, "folder.sock")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Serve(ctx, sub, &fakeAgent{}, nil); err == nil || !strings.Contains(err.Error(), "is a folder, not a socket") {
		t.Errorf("Serve over a folder: %v", err)
	}
}

// TestServeReplacesAStaleSocket: a socket an earlier run left is replaced;
// one another agent serves is not.
func TestServeReplacesAStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	bounded, stop := context.WithTimeout(context.Background(), 2*time.Second)
	defer stop()
	if err := Serve(bounded, sock, &fakeAgent{}, nil); err == nil || !strings.Contains(err.Error(), "another agent serves") {
		t.Errorf("Serve over a live socket: %v", err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, &fakeAgent{}, nil) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := NewClient(sock).Status(context.Background()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stale socket was not replaced")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// rawRequest sends req on a new connection to sock, half-closes it, and
// returns the answer.
func rawRequest(t *testing.T, sock, req string) *http.Response {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.(*net.UnixConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestBodyReadErrors: only a body over the limit is 413; a body cut short
// is 400, naming the read's error.
func TestBodyReadErrors(t *testing.T) {
	_, _, sock := serve(t)
	resp := rawRequest(t, sock, "POST /v1/config/validate HTTP/1.1\r\nHost: agent\r\nContent-Length: 100\r\n\r\nrole: ser")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "reading the config body") {
		t.Errorf("a body cut short: %s %s", resp.Status, body)
	}
	big := strings.Repeat("x", maxBody+1)
	resp = rawRequest(t, sock, fmt.Sprintf("POST /v1/config/validate HTTP/1.1\r\nHost: agent\r\nContent-Length: %d\r\n\r\n%s", len(big), big))
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "over") {
		t.Errorf("a body over the limit: %s %s", resp.Status, body)
	}
}

// TestPlainTextErrorsReachTheUser: ServeMux's own answers (404, 405) are
// plain text; the client's error says them instead of "agent: ".
func TestPlainTextErrorsReachTheUser(t *testing.T) {
	c, _, _ := serve(t)
	var out map[string]any
	_, err := c.do(context.Background(), "GET", "/v1/nothing-here", nil, &out)
	if err == nil || !strings.Contains(err.Error(), "404 Not Found: 404 page not found") {
		t.Errorf("404: %v", err)
	}
	_, err = c.do(context.Background(), "DELETE", "/v1/status", nil, &out)
	if err == nil || !strings.Contains(err.Error(), "405 Method Not Allowed") {
		t.Errorf("405: %v", err)
	}
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusMethodNotAllowed {
		t.Errorf("405 is not a StatusError: %#v", err)
	}
}

// bigLogs answers /v1/logs with lines of 16 KiB full of '<' (a daemon's
// syslog message at its bound), as many as asked.
type bigLogs struct{ fakeAgent }

func (b *bigLogs) Logs(_ string, n int, _ uint64) (LogPage, error) {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("%05d ", i) + strings.Repeat("<", 16<<10)
	}
	return LogPage{Lines: lines, Next: uint64(n)}, nil
}

// TestLogsAnswerIsBoundedInBytes: 200 lines of 16 KiB of '<' were 19.7 MB
// as JSON (each '<' escaped to six bytes), over what the client reads.
// The answer holds the newest lines that fit and says how many it left out.
func TestLogsAnswerIsBoundedInBytes(t *testing.T) {
	c, _ := serveBackend(t, &bigLogs{})
	// 200 lines (the default -n): 3.3 MB, under the bound once not
	// escaped for HTML; 10000: over it.
	for _, n := range []int{200, 10000} {
		page, err := c.Logs(context.Background(), "syslog", n, 0)
		if err != nil {
			t.Fatalf("-n %d: %v", n, err)
		}
		if (page.Dropped == 0) != (n == 200) || int(page.Dropped)+len(page.Lines) != n {
			t.Errorf("-n %d: %d lines and %d dropped, want them to add up to %d, with some dropped only for 10000", n, len(page.Lines), page.Dropped, n)
		}
		if len(page.Lines) == 0 || !strings.HasPrefix(page.Lines[len(page.Lines)-1], fmt.Sprintf("%05d ", n-1)) {
			t.Errorf("-n %d: the newest line is not the last kept", n)
		}
		if total := len(page.Lines) * (16<<10 + 6); total > MaxLogAnswer {
			t.Errorf("-n %d: %d bytes of lines, over %d", n, total, MaxLogAnswer)
		}
	}
	// Not escaped for HTML: a '<' is one byte in the answer.
	var buf bytes.Buffer
	rec := &recorder{header: http.Header{}, body: &buf}
	writeJSON(rec, http.StatusOK, LogPage{Lines: []string{"<b>&"}})
	if !strings.Contains(buf.String(), `"<b>&"`) {
		t.Errorf("answer %s escapes HTML", buf.String())
	}
}

type recorder struct {
	header http.Header
	body   *bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(int)             {}

// TestClientSaysAnAnswerIsTooLarge: over what the client reads, the error
// says so, not "unexpected end of JSON input".
func TestClientSaysAnAnswerIsTooLarge(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "big.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"lines": ["`))
		w.Write(bytes.Repeat([]byte("x"), maxAnswer))
		w.Write([]byte(`"], "next": 1}`))
	})}
	go srv.Serve(l)
	defer srv.Close()
	_, err = NewClient(sock).Logs(context.Background(), "agent", 10000, 0)
	if err == nil || !strings.Contains(err.Error(), "larger than 16 MiB") || !strings.Contains(err.Error(), "-n") {
		t.Errorf("err = %v", err)
	}
}

// k3sAgent's applies succeed, but K3s does not start with "k3s-fails", and
// the machine shuts down with "shutting".
type k3sAgent struct{ fakeAgent }

func (k *k3sAgent) ApplyConfig(_ context.Context, data []byte) ([]string, error) {
	switch {
	case bytes.Contains(data, []byte("shutting")):
		return nil, fmt.Errorf("%w (reboot asked): the config is not applied", ErrShuttingDown)
	case bytes.Contains(data, []byte("k3s-retrying")):
		return nil, fmt.Errorf("%w: K3s could not be executed: fork/exec /usr/local/bin/k3s: text file busy; the config stays applied and %w", ErrK3sNotStarted, ErrK3sRetrying)
	case bytes.Contains(data, []byte("k3s-fails")):
		return []string{"applied until the next boot"}, fmt.Errorf("%w: writing K3s config: read-only file system", ErrK3sNotStarted)
	}
	return []string{"applied until the next boot"}, nil
}

// TestApplySaysWhetherK3sStarted: an apply whose K3s did not start again
// is applied (200) with k3s_started false and why; one during a shutdown is
// refused (409).
func TestApplySaysWhetherK3sStarted(t *testing.T) {
	c, sock := serveBackend(t, &k3sAgent{})
	ctx := context.Background()
	res, err := c.ApplyConfig(ctx, []byte("role: server"))
	if err != nil || !res.Applied || res.K3sStarted == nil || !*res.K3sStarted || len(res.Errors) != 0 {
		t.Errorf("apply = %+v, %v", res, err)
	}
	res, err = c.ApplyConfig(ctx, []byte("role: server # k3s-fails"))
	if err != nil || !res.Applied || res.K3sStarted == nil || *res.K3sStarted || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "read-only file system") {
		t.Errorf("apply whose K3s did not start = %+v, %v", res, err)
	}
	_, err = c.ApplyConfig(ctx, []byte("role: server # shutting"))
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusConflict || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("apply while shutting down: %v", err)
	}
	// The JSON names it k3s_started, and a validation has none.
	resp := rawRequest(t, sock, "POST /v1/config/validate HTTP/1.1\r\nHost: agent\r\nContent-Length: 12\r\n\r\nrole: server")
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["k3s_started"]; ok {
		t.Errorf("a validation's answer has k3s_started: %v", m)
	}
}

// TestServerTimeouts: a request whose body never comes is ended after
// readTimeout, and an idle connection closed after idleTimeout.
func TestServerTimeouts(t *testing.T) {
	oldRead, oldIdle := readTimeout, idleTimeout
	readTimeout, idleTimeout = 300*time.Millisecond, 300*time.Millisecond
	defer func() { readTimeout, idleTimeout = oldRead, oldIdle }()
	_, sock := serveBackend(t, &fakeAgent{})
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /v1/config/validate HTTP/1.1\r\nHost: agent\r\nContent-Length: 100\r\n\r\nrole:")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a stalled body: %s", resp.Status)
	}
	// Idle after a whole request: closed by the server.
	c2, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "GET /v1/status HTTP/1.1\r\nHost: agent\r\n\r\n")
	br := bufio.NewReader(c2)
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	start := time.Now()
	if _, err := br.ReadByte(); err == nil || time.Since(start) > 4*time.Second {
		t.Errorf("an idle connection stayed open (%v after %s)", err, time.Since(start))
	}
}

// TestApplySaysK3sIsRetried: an apply whose K3s could not be executed yet,
// its supervisor trying again, says so (k3s_retrying) beside k3s_started
// false; one whose K3s did not start for another reason does not.
func TestApplySaysK3sIsRetried(t *testing.T) {
	c, _ := serveBackend(t, &k3sAgent{})
	ctx := context.Background()
	res, err := c.ApplyConfig(ctx, []byte("role: server # k3s-retrying"))
	if err != nil || !res.Applied || res.K3sStarted == nil || *res.K3sStarted || !res.K3sRetrying ||
		len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "text file busy") {
		t.Errorf("apply whose K3s is retried = %+v, %v", res, err)
	}
	res, err = c.ApplyConfig(ctx, []byte("role: server # k3s-fails"))
	if err != nil || res.K3sRetrying {
		t.Errorf("apply whose K3s did not start = %+v, %v: not retrying", res, err)
	}
}
