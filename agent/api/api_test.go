package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/logring"
	"github.com/etoile-os/etoile/agent/timesync"
)

type fakeAgent struct {
	power   []string
	applied []byte
	k3s     *logring.Ring
}

func (f *fakeAgent) Status(context.Context) Status {
	return Status{Version: "v1", Hostname: "edge-1", Boot: "uefi", Source: "disk", Slot: "a", Uptime: "3s",
		Network: []Interface{{Name: "eth0", MAC: "52:54:00:12:34:56", Carrier: true, Addresses: []string{"10.0.2.15/24"}}},
		K3s:     K3sStatus{State: "crashloop", Reason: "k3s exited", Restarts: 4}, Config: "ETOILE-CFG volume",
		Daemons:  []DaemonStatus{{Name: "nvidia-persistenced", State: "running", PID: 412, Restarts: 1}},
		Warnings: []string{"no NTP server"},
		Time:     &timesync.Status{Synced: true, Server: "ntp.example.com", Offset: "-1.5ms", Last: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), Servers: []string{"ntp.example.com"}}}
}

func (f *fakeAgent) Logs(source string, n int, after uint64) (LogPage, error) {
	if source != "k3s" {
		return LogPage{}, errors.New("no log named " + source + ": use agent or k3s")
	}
	lines, next, skipped := f.k3s.Since(after)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return LogPage{Lines: lines, Next: next, Skipped: skipped}, nil
}

func (f *fakeAgent) Power(action string) error {
	if len(f.power) > 0 {
		return fmt.Errorf("already shutting down: %w", ErrShuttingDown)
	}
	f.power = append(f.power, action)
	return nil
}

func (f *fakeAgent) Config() (RunningConfig, error) {
	if f.applied == nil {
		return RunningConfig{}, fmt.Errorf("%w (none found)", ErrNoConfig)
	}
	return RunningConfig{From: "local API", YAML: string(f.applied)}, nil
}

func (f *fakeAgent) ValidateConfig(data []byte) ([]string, error) {
	if bytes.Contains(data, []byte("bad")) {
		return nil, errors.New("role: \"bad\": use server or agent\ncluster: missing")
	}
	return []string{"k3s.foo: not a K3s key"}, nil
}

func (f *fakeAgent) ApplyConfig(_ context.Context, data []byte) ([]string, error) {
	if bytes.Contains(data, []byte("read-only")) {
		return nil, errors.New("mkdir /run/etoile/applied: read-only file system")
	}
	w, err := f.ValidateConfig(data)
	if err == nil {
		f.applied = data
	}
	return w, err
}

func serve(t *testing.T) (*Client, *fakeAgent, string) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "etoile", "agent.sock")
	fa := &fakeAgent{k3s: logring.New(10)}
	fa.k3s.Add("line 1")
	fa.k3s.Add("line 2")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, fa, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	// Answering, not only there: the socket's file exists from bind(2), an
	// instant before listen(2) lets a client in and before its mode is
	// set; Serve answers only after both.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := NewClient(sock).Status(context.Background()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the socket never accepted a connection")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return NewClient(sock), fa, sock
}

func TestSocketIsPrivate(t *testing.T) {
	_, _, sock := serve(t)
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a 0600 socket", st.Mode())
	}
	dir, _ := os.Stat(filepath.Dir(sock))
	if dir.Mode().Perm() != 0o700 {
		t.Errorf("socket folder mode = %v, want 0700", dir.Mode().Perm())
	}
}

func TestStatusAndLogsOverTheSocket(t *testing.T) {
	c, fa, _ := serve(t)
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Slot != "a" || st.K3s.State != "crashloop" || st.K3s.Restarts != 4 || st.Network[0].Addresses[0] != "10.0.2.15/24" {
		t.Errorf("status = %+v", st)
	}
	var out bytes.Buffer
	if err := WriteStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Étoile v1 on edge-1", "uefi, system image from disk, slot a", "crashloop (k3s exited), 4 restarts", "daemon:  nvidia-persistenced running (pid 412), 1 restarts", "eth0", "10.0.2.15/24", "warning: no NTP server", "time:    synchronised with ntp.example.com (last correction -1.5ms at 2026-11-26T10:00:00Z)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, out.String())
		}
	}
	page, err := c.Logs(ctx, "k3s", 1, 0)
	if err != nil || len(page.Lines) != 1 || page.Lines[0] != "line 2" || page.Next != 2 {
		t.Errorf("logs = %+v, %v", page, err)
	}
	fa.k3s.Add("line 3")
	if page, err = c.Logs(ctx, "k3s", 10, page.Next); err != nil || len(page.Lines) != 1 || page.Lines[0] != "line 3" || page.Next != 3 {
		t.Errorf("logs after 2 = %+v, %v", page, err)
	}
	if page, err = c.Logs(ctx, "k3s", 10, page.Next); err != nil || page.Lines == nil || len(page.Lines) != 0 {
		t.Errorf("logs with nothing new = %#v, %v", page, err)
	}
	if _, err := c.Logs(ctx, "kernel", 5, 0); err == nil || !strings.Contains(err.Error(), "no log named kernel") {
		t.Errorf("unknown log source: %v", err)
	}
	if _, err := c.Logs(ctx, "k3s", 0, 0); err == nil || !strings.Contains(err.Error(), "lines=\"0\"") {
		t.Errorf("bad line count: %v", err)
	}
	var bad map[string]string
	if _, err := c.do(ctx, "GET", "/v1/logs?source=k3s&after=-1", nil, &bad); err == nil || !strings.Contains(err.Error(), `after="-1"`) {
		t.Errorf("bad after: %v", err)
	}
}

func TestConfigValidateAndApply(t *testing.T) {
	c, fa, _ := serve(t)
	ctx := context.Background()
	if _, err := c.Config(ctx); err == nil || !strings.Contains(err.Error(), "runs no machine config") {
		t.Errorf("running config before any: %v", err)
	}
	res, err := c.ValidateConfig(ctx, []byte("role: bad"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Valid || len(res.Errors) != 2 || !strings.Contains(res.Errors[0], `role: "bad"`) {
		t.Errorf("invalid config result = %+v", res)
	}
	res, err = c.ApplyConfig(ctx, []byte("role: server"))
	if err != nil || !res.Valid || !res.Applied || len(res.Warnings) != 1 {
		t.Errorf("apply = %+v, %v", res, err)
	}
	if string(fa.applied) != "role: server" {
		t.Errorf("backend got %q", fa.applied)
	}
	// Valid, but the node cannot take it: not reported as invalid.
	res, err = c.ApplyConfig(ctx, []byte("role: server # read-only"))
	if err != nil || !res.Valid || res.Applied || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "read-only file system") {
		t.Errorf("apply that fails after validation = %+v, %v", res, err)
	}
	if rc, err := c.Config(ctx); err != nil || rc.From != "local API" || rc.YAML != "role: server" {
		t.Errorf("running config = %+v, %v", rc, err)
	}
	if _, err := c.ApplyConfig(ctx, bytes.Repeat([]byte("x"), maxBody+1)); err == nil || !strings.Contains(err.Error(), "over") {
		t.Errorf("oversized body: %v", err)
	}
}

func TestClientSaysWhenTheAgentIsNotRunning(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "agent.sock"))
	_, err := c.Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no agent serves this socket") || !strings.Contains(err.Error(), "--socket PATH") ||
		strings.Contains(err.Error(), "sudo") {
		t.Errorf("err = %v, want it to say no agent serves the socket (not sudo: the socket is not there)", err)
	}
	// A socket file nobody listens on (an agent that stopped).
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := NewClient(filepath.Join(dir, "agent.sock")).Status(context.Background()); err == nil || !strings.Contains(err.Error(), "no agent serves this socket") {
		t.Errorf("err = %v for a socket nobody listens on", err)
	}
}

func TestPower(t *testing.T) {
	c, fa, sock := serve(t)
	ctx := context.Background()
	if err := c.Power(ctx, "reboot"); err != nil {
		t.Fatal(err)
	}
	if len(fa.power) != 1 || fa.power[0] != "reboot" {
		t.Errorf("backend asked %q, want reboot", fa.power)
	}
	if err := c.Power(ctx, "poweroff"); err == nil || !strings.Contains(err.Error(), "already shutting down") {
		t.Errorf("a second request: %v", err)
	}
	if err := c.Power(ctx, "halt"); err == nil || !strings.Contains(err.Error(), `action "halt": use reboot or poweroff`) {
		t.Errorf("an unknown action: %v", err)
	}
	var out map[string]string
	if _, err := NewClient(sock).do(ctx, "POST", "/v1/power", []byte("reboot"), &out); err == nil || !strings.Contains(err.Error(), "the body is not") {
		t.Errorf("a body that is not JSON: %v", err)
	}
	if len(fa.power) != 1 {
		t.Errorf("bad requests reached the backend: %q", fa.power)
	}
}

// TestStatusJSONListsAreNeverNull: a machine without a lease or warnings
// says "network": [] and "warnings": [], not null.
func TestStatusJSONListsAreNeverNull(t *testing.T) {
	b, err := json.Marshal(Status{Network: []Interface{{Name: "eth0"}}}.forJSON())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"addresses":[]`) || !strings.Contains(string(b), `"warnings":[]`) {
		t.Errorf("status JSON %s has a null list", b)
	}
	if b, _ := json.Marshal(Status{}.forJSON()); !strings.Contains(string(b), `"network":[]`) {
		t.Errorf("status JSON without a lease: %s", b)
	}
}

func TestStatusSaysTimeFailingAfterSync(t *testing.T) {
	var out bytes.Buffer
	last := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	st := Status{Time: &timesync.Status{Synced: true, Failing: true, Server: "ntp.example.com", Last: last, Error: "ntp.example.com: i/o timeout"}}
	if err := WriteStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "last synchronised with ntp.example.com at 2026-11-27T09:00:00Z; not corrected since (ntp.example.com: i/o timeout)") {
		t.Errorf("status:\n%s", out.String())
	}
	// Several servers: how many agreed, and who was outvoted.
	out.Reset()
	st.Time = &timesync.Status{Synced: true, Server: "b.example", Offset: "3ms", Last: last, Agreed: 2, Answered: 3,
		Falsetickers: []timesync.Falseticker{{Server: "a.example", Offset: "1h0m0s"}}}
	if err := WriteStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	if want := "synchronised with b.example (last correction 3ms at 2026-11-27T09:00:00Z; 2 of 3 servers agreed; outvoted: a.example (1h0m0s))"; !strings.Contains(out.String(), want) {
		t.Errorf("status:\n%s\nwant %q", out.String(), want)
	}
	// Not synchronised because the servers disagree: the status says so.
	out.Reset()
	st.Time = &timesync.Status{Servers: []string{"a.example", "b.example"}, Error: "the NTP servers disagree: a.example says 1h0m0s; b.example says 0s"}
	if err := WriteStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	if want := "not synchronised (servers a.example, b.example): the NTP servers disagree"; !strings.Contains(out.String(), want) {
		t.Errorf("status:\n%s\nwant %q", out.String(), want)
	}
}

// TestStatusTextSumsUpTheHardware: the text status has one hardware line
// from the inventory (the H100 host's, as the agent reports it), GPUs by
// model; none before the inventory is collected.
func TestStatusTextSumsUpTheHardware(t *testing.T) {
	inv := `{"dmi": {"vendor": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)"},
		"cpu": {"model": "AMD EPYC 9454 48-Core Processor", "count": 24}, "memory": {"total_bytes": 241591910400},
		"disks": [{}, {}], "nics": [{}], "gpus": [{"model": "NVIDIA H100 80GB HBM3"}]}`
	var out bytes.Buffer
	if err := WriteStatus(&out, Status{Inventory: json.RawMessage(inv)}); err != nil {
		t.Fatal(err)
	}
	want := "  hardware: QEMU Standard PC (Q35 + ICH9, 2009), 24 CPUs (AMD EPYC 9454 48-Core Processor), 225.0 GiB, 2 disks, 1 NIC, 1× NVIDIA H100 80GB HBM3\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("status:\n%s\nwant the line\n%s", out.String(), want)
	}
	out.Reset()
	if err := WriteStatus(&out, Status{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "hardware:") {
		t.Errorf("a hardware line before the inventory:\n%s", out.String())
	}
}

// serveFake serves fa on a socket of its own and returns its path once it
// answers.
func serveFake(t *testing.T, fa *fakeAgent) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, fa, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := NewClient(sock).Status(context.Background()); err == nil {
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatal("the socket never answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStalledClientIsCut: a client that asks for a large log answer and
// stops reading does not hold the answer, and its goroutine, in PID 1: the
// connection is closed once the write has waited writeTimeout.
func TestStalledClientIsCut(t *testing.T) {
	old := writeTimeout
	writeTimeout = 300 * time.Millisecond
	defer func() { writeTimeout = old }()
	fa := &fakeAgent{k3s: logring.New(10000)}
	line := strings.Repeat("x", 400)
	for range 10000 {
		fa.k3s.Add(line)
	}
	sock := serveFake(t, fa)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.UnixConn).SetReadBuffer(4096)
	if _, err := io.WriteString(c, "GET /v1/logs?source=k3s&lines=10000 HTTP/1.1\r\nHost: agent\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // not reading: the server's write waits, then gives up
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the stalled connection open (read %d bytes)", n)
	}
	if n >= 4_000_000 {
		t.Errorf("read %d bytes: the whole answer was kept for the stalled client", n)
	}
}

// TestConnectionsAreCapped: at most maxConns connections are served at
// once; the next waits until one ends.
func TestConnectionsAreCapped(t *testing.T) {
	sock := serveFake(t, &fakeAgent{k3s: logring.New(10)})
	var held []net.Conn
	for range maxConns {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond) // accepted by now
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err := NewClient(sock).Status(ctx)
	cancel()
	if err == nil {
		t.Fatalf("a connection past the %d held was served at once", maxConns)
	}
	held[0].Close()
	held = held[1:]
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := NewClient(sock).Status(ctx); err != nil {
		t.Errorf("once one of them ended, the next was not served: %v", err)
	}
}
