package node

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/agent/k3s"
)

const applyDoc = "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-1\nrole: server\ncluster: {init: true, token: t0ken}\n"

// TestApplyWhenK3sCannotStart: the new config is the node's, but K3s did
// not start again (its config cannot be written): the apply says so
// instead of reporting success.
func TestApplyWhenK3sCannotStart(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"usr/local/bin/k3s": "#!/bin/sh\nexit 1\n", // never run: its config cannot be written
		// A folder where K3s's config.yaml goes: writing it fails.
		"etc/rancher/k3s/config.yaml/in-the-way": "",
	})
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{Root: root, Broadcast: con.add, Socket: filepath.Join(root, "agent.sock")})
	defer func() { cancel(); n.Wait() }()
	warns, err := n.ApplyConfig(ctx, []byte(applyDoc))
	if !errors.Is(err, api.ErrK3sNotStarted) || !strings.Contains(err.Error(), "writing K3s config") ||
		!strings.Contains(err.Error(), "apply it again") {
		t.Errorf("ApplyConfig = %v, want K3s not started, naming why and what to do", err)
	}
	if !strings.Contains(strings.Join(warns, "\n"), "applied until the next boot") {
		t.Errorf("warnings %q", warns)
	}
	if rc, err := n.Config(); err != nil || !strings.Contains(rc.YAML, "hostname: edge-1") {
		t.Errorf("the config was not kept applied: %+v, %v", rc, err)
	}
	if st := n.Status(ctx); st.K3s.State != string(k3s.StateInvalid) {
		t.Errorf("status k3s = %+v", st.K3s)
	}
}

// TestAPIServesWhileShuttingDown: once a reboot is under way the local API
// still answers until the services have stopped: a second request is
// refused naming the first, an apply is refused (409), the status answers.
func TestAPIServesWhileShuttingDown(t *testing.T) {
	root := t.TempDir()
	sock := filepath.Join(root, "agent.sock")
	var asked atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{Root: root, Socket: sock, Power: func(string) error { asked.Add(1); return nil }})
	c := api.NewClient(sock)
	waitUntil(t, "the local API", 10*time.Second, func() bool { _, err := c.Status(ctx); return err == nil })
	// A service that takes its time to stop, as K3s does (30 s at most).
	release := make(chan struct{})
	n.background("test: a slow service", func() { <-ctx.Done(); <-release })
	if err := c.Power(context.Background(), "reboot"); err != nil {
		t.Fatal(err)
	}
	cancel() // what the signal that follows does
	time.Sleep(300 * time.Millisecond)
	bg := context.Background()
	if _, err := c.Status(bg); err != nil {
		t.Errorf("status while the services stop: %v", err)
	}
	err := c.Power(bg, "reboot")
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusConflict || !strings.Contains(err.Error(), "already shutting down (reboot asked first)") {
		t.Errorf("a second reboot: %v", err)
	}
	_, err = c.ApplyConfig(bg, []byte(applyDoc))
	if !errors.As(err, &se) || se.Code != http.StatusConflict || !strings.Contains(err.Error(), "shutting down") || !strings.Contains(err.Error(), "not applied") {
		t.Errorf("an apply while shutting down: %v", err)
	}
	if asked.Load() != 1 {
		t.Errorf("the machine was asked to power %d times, want 1", asked.Load())
	}
	close(release)
	done := make(chan struct{})
	go func() { n.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return once the services stopped")
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is still there after Wait: %v", err)
	}
}

// TestPanicInAnApplyLeavesApplying: a panic while a config found in its
// source is applied (caught, shown on the consoles) must not leave K3s's
// lock held: a later apply goes through instead of waiting for ever.
func TestPanicInAnApplyLeavesApplying(t *testing.T) {
	root := t.TempDir()
	var vol swappableSource
	var calls atomic.Int32
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := Start(ctx, Env{Root: root, ConfigVolume: vol.get, ConfigRetry: 20 * time.Millisecond, Broadcast: con.add,
		Socket: filepath.Join(root, "agent.sock"),
		ApplyNetwork: func(context.Context, *config.MachineConfig) error {
			if calls.Add(1) == 1 {
				panic("network code bug")
			}
			return nil
		}})
	vol.set(fileSource{"volume", applyDoc})
	waitUntil(t, "the panic on the console", 10*time.Second, func() bool {
		return con.has(`etoile: error: watching for a machine config crashed reason="network code bug" stack="`)
	})
	done := make(chan error, 1)
	go func() { _, err := n.ApplyConfig(ctx, []byte(applyDoc)); done <- err }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, api.ErrK3sNotStarted) {
			t.Errorf("apply after the panic: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an apply after a panic in an earlier one waits for ever: K3s's lock was left held")
	}
	cancel()
	n.Wait()
}

// TestHostnameChangeWarnsAndRenewsTheNodePassword: a new host name is
// warned about in the answer and on the consoles, and the node password is
// derived again for the new name (the one the next boot derives).
func TestHostnameChangeWarnsAndRenewsTheNodePassword(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{"sys/class/dmi/id/product_uuid": "4c4c4544-0031-3210-8052-b4c04f4e3232\n"})
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{Root: root, Broadcast: con.add, Socket: filepath.Join(root, "agent.sock")})
	if _, err := n.ApplyConfig(ctx, []byte(applyDoc)); err != nil && !errors.Is(err, api.ErrK3sNotStarted) {
		t.Fatal(err)
	}
	pw := filepath.Join(root, k3s.NodePasswordPath)
	first, err := os.ReadFile(pw)
	if err != nil {
		t.Fatal(err)
	}
	warns, err := n.ApplyConfig(ctx, []byte(strings.Replace(applyDoc, "edge-1", "edge-2", 1)))
	if err != nil && !errors.Is(err, api.ErrK3sNotStarted) {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(warns, "\n"), "hostname: the node's name changes from edge-1 to edge-2") {
		t.Errorf("warnings %q", warns)
	}
	if !con.has("etoile: warning: config applied: hostname: the node's name changes from edge-1 to edge-2") {
		t.Errorf("not on the console:\n%s", con.all())
	}
	second, err := os.ReadFile(pw)
	if err != nil || string(second) == string(first) {
		t.Errorf("node password after the new name: %q (was %q), %v; want one derived for edge-2", second, first, err)
	}
	cancel()
	n.Wait()
}
