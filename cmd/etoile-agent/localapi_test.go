package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/logring"
	"github.com/etoile-os/etoile/internal/syncbuf"
)

// testAgent is the local API's backend with real log rings and the real
// machine config validation: the commands below talk to it over a real
// unix socket, as they talk to PID 1 on a node.
type testAgent struct {
	agent, k3s *logring.Ring
	gate       sync.Mutex // held by a test adding lines the API must see all at once
	mu         sync.Mutex
	applied    []byte
	power      []string
}

func (a *testAgent) Status(context.Context) api.Status { return api.Status{Version: "v1"} }

func (a *testAgent) Logs(source string, n int, after uint64) (api.LogPage, error) {
	a.gate.Lock()
	defer a.gate.Unlock()
	r := a.agent
	if source == "k3s" {
		r = a.k3s
	}
	lines, next, skipped := r.Since(after)
	if len(lines) > n {
		if after > 0 {
			skipped += uint64(len(lines) - n)
		}
		lines = lines[len(lines)-n:]
	}
	return api.LogPage{Lines: lines, Next: next, Skipped: skipped}, nil
}

func (a *testAgent) Power(action string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.power = append(a.power, action)
	return nil
}

func (a *testAgent) Config() (api.RunningConfig, error) {
	a.mu.Lock()
	data := a.applied
	a.mu.Unlock()
	if data == nil {
		return api.RunningConfig{}, fmt.Errorf("%w (no machine config found)", api.ErrNoConfig)
	}
	c, err := config.Parse(data)
	if err != nil {
		return api.RunningConfig{}, err
	}
	r, err := c.Redacted()
	if err != nil {
		return api.RunningConfig{}, err
	}
	y, err := r.Marshal()
	return api.RunningConfig{From: "local API", YAML: string(y)}, err
}

func (a *testAgent) ValidateConfig(data []byte) ([]string, error) {
	_, w, err := config.Check(data)
	return w, err
}

func (a *testAgent) ApplyConfig(_ context.Context, data []byte) ([]string, error) {
	w, err := a.ValidateConfig(data)
	if err == nil {
		a.mu.Lock()
		a.applied = data
		a.mu.Unlock()
	}
	return append(w, "applied until the next boot"), err
}

func serveAgent(t *testing.T) (*testAgent, string) {
	t.Helper()
	a := &testAgent{agent: logring.New(100), k3s: logring.New(5)}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, sock, a, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	// Listening, not only there: the socket's file exists from bind(2),
	// an instant before listen(2) lets a client in.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return a, sock
		}
		if time.Now().After(deadline) {
			t.Fatal("the API socket never accepted a connection")
		}
	}
}

func TestLogsPrintsTheLastLines(t *testing.T) {
	a, sock := serveAgent(t)
	for _, l := range []string{"etoile: step=mount-api", "etoile: step=cmdline", "etoile: ready version=v1"} {
		a.agent.Add(l)
	}
	a.k3s.Add("k3s: starting")
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"logs", "--socket", sock, "-n", "2"}, &out, &errb); err != nil {
		t.Fatalf("logs: %v\n%s", err, errb.String())
	}
	if out.String() != "etoile: step=cmdline\netoile: ready version=v1\n" {
		t.Errorf("logs -n 2 printed %q", out.String())
	}
	out.Reset()
	// The source after the flags or before them.
	if err := run(context.Background(), []string{"logs", "k3s", "--socket", sock}, &out, &errb); err != nil {
		t.Fatalf("logs k3s: %v", err)
	}
	if out.String() != "k3s: starting\n" {
		t.Errorf("logs k3s printed %q", out.String())
	}
}

// following is `etoile-agent logs -f … k3s` running against a test agent
// whose K3s log already holds "old 1" and "old 2".
type following struct {
	a         *testAgent
	out, errb syncbuf.Buffer
	cancel    context.CancelFunc
	done      chan error
}

func follow(t *testing.T, flags ...string) *following {
	t.Helper()
	prev := followEvery
	followEvery = 10 * time.Millisecond
	t.Cleanup(func() { followEvery = prev })
	a, sock := serveAgent(t)
	a.k3s.Add("old 1")
	a.k3s.Add("old 2")
	ctx, cancel := context.WithCancel(context.Background())
	f := &following{a: a, cancel: cancel, done: make(chan error, 1)}
	args := append(append([]string{"logs", "-f", "--socket", sock}, flags...), "k3s")
	go func() { f.done <- run(ctx, args, &f.out, &f.errb) }()
	t.Cleanup(func() { cancel(); <-f.done; f.done <- nil })
	return f
}

// wait waits until the command has printed want.
func (f *following) wait(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(f.out.String(), want); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("logs -f never printed %q; printed:\n%s%s", want, f.out.String(), f.errb.String())
		}
	}
}

// add adds lines to K3s's log all at once, between two of the command's asks.
func (f *following) add(lines ...string) {
	f.a.gate.Lock()
	defer f.a.gate.Unlock()
	for _, l := range lines {
		f.a.k3s.Add(l)
	}
}

// stop interrupts the command (^C) and returns what it printed.
func (f *following) stop(t *testing.T) string {
	t.Helper()
	f.cancel()
	err := <-f.done
	f.done <- err
	if err != nil {
		t.Fatalf("logs -f ended with %v", err)
	}
	return f.out.String()
}

// TestLogsFollow: -f prints the lines held, then each line as it comes,
// once; lines the ring dropped before they were asked for are announced.
func TestLogsFollow(t *testing.T) {
	f := follow(t)
	f.wait(t, "old 2\n")
	f.add("new 1")
	f.wait(t, "new 1\n")
	f.add("new 2", "new 3")
	f.wait(t, "new 3\n")
	// More lines than the ring holds (5) between two asks: 3 are lost.
	f.add("burst 1", "burst 2", "burst 3", "burst 4", "burst 5", "burst 6", "burst 7", "burst 8")
	f.wait(t, "burst 8\n")
	got := f.stop(t)
	for _, l := range []string{"old 1", "old 2", "new 1", "new 2", "new 3"} {
		if strings.Count(got, l+"\n") != 1 {
			t.Errorf("%q printed %d times, want once:\n%s", l, strings.Count(got, l+"\n"), got)
		}
	}
	if !strings.Contains(got, "… 3 lines not shown") || !strings.Contains(got, "burst 4\nburst 5\nburst 6\nburst 7\nburst 8\n") || strings.Contains(got, "burst 3\n") {
		t.Errorf("the burst is not shown as 3 lines lost then the 5 held:\n%s", got)
	}
}

// TestLogsFollowAfterN: -n limits the lines already there, not those that
// come while following.
func TestLogsFollowAfterN(t *testing.T) {
	f := follow(t, "-n", "1")
	f.wait(t, "old 2\n")
	f.add("new 1", "new 2", "new 3")
	f.wait(t, "new 3\n")
	if got := f.stop(t); got != "old 2\nnew 1\nnew 2\nnew 3\n" {
		t.Errorf("logs -f -n 1 printed %q", got)
	}
}

func TestLogsBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"logs", "dmesg"}, `no log named "dmesg": use agent, k3s, kernel or syslog`},
		{[]string{"logs", "agent", "k3s"}, "one log at a time"},
		{[]string{"logs", "-n", "0"}, "-n 0: give a number from 1 to 10000"},
		{[]string{"logs", "--", "-f"}, `no log named "-f"`},
		{[]string{"logs", "--socket", filepath.Join(t.TempDir(), "none.sock")}, "no agent serves this socket"},
	} {
		wantFailure(t, tc.args, tc.want)
	}
}

func TestConfigApply(t *testing.T) {
	a, sock := serveAgent(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, config.Example(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"config", "apply", good, "--socket", sock}, &out, &errb); err != nil {
		t.Fatalf("apply: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), good+": applied") || !strings.Contains(errb.String(), "warning: applied until the next boot") {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
	if !bytes.Equal(a.applied, config.Example()) {
		t.Error("the agent did not get the file's bytes")
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: boss\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	err := run(context.Background(), []string{"config", "apply", "--socket", sock, bad}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "not valid") || !strings.Contains(err.Error(), "keeps the config it runs") {
		t.Errorf("an invalid config: err %v", err)
	}
	if !strings.Contains(errb.String(), "error: role") {
		t.Errorf("the field error is not shown: %q", errb.String())
	}
	if !bytes.Equal(a.applied, config.Example()) {
		t.Error("an invalid config replaced the applied one")
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"config", "apply"}, "no FILE given"},
		{[]string{"config", "apply", good, bad}, "one FILE at a time"},
		{[]string{"config", "apply", "--sock", sock, good}, "flag provided but not defined: -sock"},
		{[]string{"config", "apply", filepath.Join(dir, "none.yaml"), "--socket", sock}, "none.yaml: no such file"},
		{[]string{"config", "apply", good, "--socket", filepath.Join(dir, "none.sock")}, "no agent serves this socket"},
	} {
		wantFailure(t, tc.args, tc.want)
	}
}

// TestConfigShow: the running config as the agent has it, secrets redacted.
func TestConfigShow(t *testing.T) {
	_, sock := serveAgent(t)
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"config", "show", "--socket", sock}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "runs no machine config") {
		t.Errorf("show before any config: %v", err)
	}
	file := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-7\nrole: agent\ncluster:\n  server: https://10.0.0.1:6443\n  token: K10deadbeef::server:topsecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"config", "apply", "--socket", sock, file}, &out, &errb); err != nil {
		t.Fatalf("apply: %v\n%s", err, errb.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"config", "show", "--socket", sock}, &out, &errb); err != nil {
		t.Fatalf("show: %v\n%s", err, errb.String())
	}
	got := out.String()
	if !strings.HasPrefix(got, "# from: local API\n") || !strings.Contains(got, "hostname: edge-7") || !strings.Contains(got, "token: REDACTED") || strings.Contains(got, "topsecret") {
		t.Errorf("config show printed:\n%s", got)
	}
	wantFailure(t, []string{"config", "show", "extra"}, "takes no FILE")
}

// wantFailure runs the command and wants it to fail saying want (in its
// error or on stderr).
func wantFailure(t *testing.T, args []string, want string) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	if err == nil || !strings.Contains(err.Error()+errb.String(), want) {
		t.Errorf("%q: err %v, stderr %q; want %q", args, err, errb.String(), want)
	}
}

func TestRebootAndPoweroff(t *testing.T) {
	a, sock := serveAgent(t)
	for _, action := range []string{"reboot", "poweroff"} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{action, "--socket", sock}, &out, &errb); err != nil {
			t.Fatalf("%s: %v\n%s", action, err, errb.String())
		}
		if !strings.Contains(out.String(), "K3s is stopped first") {
			t.Errorf("%s printed %q", action, out.String())
		}
	}
	if strings.Join(a.power, ",") != "reboot,poweroff" {
		t.Errorf("the agent was asked %q", a.power)
	}
	wantFailure(t, []string{"reboot", "now"}, "takes no arguments")
	wantFailure(t, []string{"poweroff", "--socket", filepath.Join(t.TempDir(), "none.sock")}, "no agent serves this socket")
}

// TestPowerThroughSignal: the local API's reboot and power-off reach PID 1's
// handling as the signals Ctrl-Alt-Del and the power button send (caught
// here, as PID 1 catches them).
func TestPowerThroughSignal(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGUSR2)
	defer signal.Stop(sigs)
	for action, want := range map[string]os.Signal{"reboot": unix.SIGTERM, "poweroff": unix.SIGUSR2} {
		if err := powerThroughSignal(action); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-sigs:
			if got != want {
				t.Errorf("%s sent %v, want %v", action, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s sent no signal", action)
		}
	}
}
