package node

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/k3s"
)

const standinApplyDoc = "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-1\nrole: server\ncluster: {init: true}\nk3s: {https-listen-port: 0}\n"

// busyStart is an Env.Start whose execs of bin fail with ETXTBSY (the
// binary open for writing: an image extension still being copied) while
// fail says so; tries counts the execs of bin.
func busyStart(bin string, tries *atomic.Int32, fail func(try int32) bool) func(*exec.Cmd) error {
	return func(c *exec.Cmd) error {
		if c.Path != bin {
			return c.Start()
		}
		if fail(tries.Add(1)) {
			return &os.PathError{Op: "fork/exec", Path: c.Path, Err: syscall.ETXTBSY}
		}
		return c.Start()
	}
}

// standinNode starts a node named edge-1 over the K3s stand-in, built into
// a temporary root, with env's other fields (K3sEnv added to the
// stand-in's); while fail (when not nil) says so, its execs of K3s fail
// with ETXTBSY. It returns the node, its root and the count of K3s's execs;
// the node is stopped and waited for when the test ends.
func standinNode(t *testing.T, env Env, fail func(try int32) bool) (*Node, string, *atomic.Int32) {
	t.Helper()
	root := t.TempDir()
	buildStandin(t, root)
	tries := &atomic.Int32{}
	env.Root, env.NodeName, env.Socket = root, "edge-1", filepath.Join(root, "agent.sock")
	env.K3sEnv = append([]string{"ETOILE_K3S_STANDIN_ROOT=" + root}, env.K3sEnv...)
	if fail != nil {
		env.Start = busyStart(filepath.Join(root, "usr/local/bin/k3s"), tries, fail)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, env)
	t.Cleanup(n.Wait)
	t.Cleanup(cancel)
	return n, root, tries
}

// TestApplyWaitsOutAFailedExec: K3s's first exec fails (ETXTBSY) and the
// supervisor's next one succeeds: the apply answers that K3s started.
func TestApplyWaitsOutAFailedExec(t *testing.T) {
	n, _, tries := standinNode(t, Env{}, func(try int32) bool { return try == 1 })
	ctx := context.Background()
	if _, err := n.ApplyConfig(ctx, []byte(standinApplyDoc)); err != nil {
		t.Errorf("ApplyConfig = %v, want nil: the supervisor's second exec succeeded", err)
	}
	if got := tries.Load(); got != 2 {
		t.Errorf("%d execs of K3s tried, want 2 (one failed, one that ran)", got)
	}
}

// TestApplyWhenK3sCannotBeExecuted: every exec fails: after its bounded
// wait the apply says K3s did not start, with the cause (errors.Is), and
// that the supervisor keeps trying — not to apply the config again.
func TestApplyWhenK3sCannotBeExecuted(t *testing.T) {
	old := execWait
	execWait = 2500 * time.Millisecond
	defer func() { execWait = old }()
	n, _, tries := standinNode(t, Env{}, func(int32) bool { return true })
	ctx := context.Background()
	_, err := n.ApplyConfig(ctx, []byte(standinApplyDoc))
	t.Logf("ApplyConfig: %v", err)
	if !errors.Is(err, api.ErrK3sNotStarted) || !errors.Is(err, syscall.ETXTBSY) || !errors.Is(err, api.ErrK3sRetrying) {
		t.Fatalf("ApplyConfig = %v, want K3s not started, wrapping ETXTBSY, its supervisor retrying", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "keeps trying") || strings.Contains(msg, "apply it again") {
		t.Errorf("ApplyConfig's error %q should say the supervisor keeps trying, and not to apply again", msg)
	}
	if got := tries.Load(); got < 2 {
		t.Errorf("the apply answered after %d exec(s): it should wait for the supervisor's next try", got)
	}
	if st := n.Status(ctx); !strings.Contains(st.K3s.Reason, "could not start K3s") {
		t.Errorf("status k3s = %+v", st.K3s)
	}
}

// TestApplyK3sExitingAtOnce: K3s is executed and exits at once (as a
// server does that refuses its data with another token): the apply says
// it did not start, with K3s's last fatal message.
func TestApplyK3sExitingAtOnce(t *testing.T) {
	n, _, _ := standinNode(t, Env{K3sEnv: []string{"ETOILE_K3S_STANDIN_CRASH_AFTER=0.1"}}, nil)
	ctx := context.Background()
	_, err := n.ApplyConfig(ctx, []byte(standinApplyDoc))
	t.Logf("ApplyConfig: %v", err)
	if !errors.Is(err, api.ErrK3sNotStarted) || !strings.Contains(err.Error(), "crashing as told") ||
		!strings.Contains(err.Error(), "after it was executed") {
		t.Errorf("ApplyConfig = %v, want K3s not started with the stand-in's fatal message", err)
	}
}

// TestStatusWhenTheNewK3sCannotBeMade: an apply stops the running K3s and
// the new one cannot be made (the image has no K3s any more): the status
// says so, not the old supervisor's "stopped to start again".
func TestStatusWhenTheNewK3sCannotBeMade(t *testing.T) {
	n, root, _ := standinNode(t, Env{}, nil)
	ctx := context.Background()
	if _, err := n.ApplyConfig(ctx, []byte(standinApplyDoc)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "usr/local/bin/k3s"), filepath.Join(root, "k3s.moved")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.ApplyConfig(ctx, []byte(standinApplyDoc)); !errors.Is(err, api.ErrK3sNotStarted) {
		t.Errorf("second ApplyConfig = %v, want K3s not started", err)
	}
	st := n.Status(ctx)
	if st.K3s.State != string(k3s.StateStopped) || !strings.Contains(st.K3s.Reason, "has no K3s") {
		t.Errorf("status k3s = %+v, want stopped, naming the missing K3s", st.K3s)
	}
	if s := n.K3sState(); s != string(k3s.StateStopped) {
		t.Errorf("k3s= %s", s)
	}
}

var _ config.Source = namedFailure{}

// namedFailure is a config source named "USB stick" that fails with err.
type namedFailure struct{ err string }

func (namedFailure) Name() string                           { return "USB stick" }
func (f namedFailure) Read(context.Context) ([]byte, error) { return nil, errors.New(f.err) }

// TestConfigSourceFailingDifferentlyIsShown: the same source failing
// another way is shown at once (console and status), not only when another
// source fails or ten minutes later.
func TestConfigSourceFailingDifferentlyIsShown(t *testing.T) {
	root := t.TempDir()
	var vol swappableSource
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{Root: root, ConfigVolume: vol.get, Broadcast: con.add, ConfigRetry: 20 * time.Millisecond,
		Socket: filepath.Join(root, "agent.sock")})
	defer n.Wait()
	defer cancel()
	vol.set(namedFailure{"USB stick unreadable: I/O error"})
	waitUntil(t, "the first failure", 10*time.Second, func() bool { return con.has("I/O error") })
	vol.set(namedFailure{"USB stick: config.yaml is a symbolic link leading out of the volume"})
	waitUntil(t, "the second failure on the console", 10*time.Second, func() bool { return con.has("symbolic link leading out") })
	if st := n.Status(ctx); !strings.Contains(st.K3s.Reason, "symbolic link leading out") {
		t.Errorf("status k3s = %+v, want the source's latest failure", st.K3s)
	}
	if got := con.count("I/O error"); got != 1 {
		t.Errorf("the first failure shown %d times", got)
	}
}

// TestBootDoesNotWaitForK3sRetries: at boot, Start returns once K3s's first
// exec has been tried, failed or not: the ready line does not wait for the
// supervisor's next try (an apply does).
func TestBootDoesNotWaitForK3sRetries(t *testing.T) {
	_, _, tries := standinNode(t, Env{ConfigVolume: func() config.Source { return fileSource{"volume", standinApplyDoc} }}, func(try int32) bool { return try == 1 })
	if got := tries.Load(); got != 1 {
		t.Errorf("Start returned after %d execs of K3s, want 1: the boot waits for the first try only", got)
	}
	waitUntil(t, "K3s executed by the supervisor's next try", 30*time.Second, func() bool { return tries.Load() >= 2 })
}
