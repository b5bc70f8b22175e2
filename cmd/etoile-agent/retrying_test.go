package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/logring"
)

// k3sRetryingAgent applies configs, but K3s could not be executed yet: its
// supervisor keeps trying.
type k3sRetryingAgent struct{ *testAgent }

func (a k3sRetryingAgent) ApplyConfig(ctx context.Context, data []byte) ([]string, error) {
	w, err := a.testAgent.ApplyConfig(ctx, data)
	if err != nil {
		return w, err
	}
	return w, fmt.Errorf("%w: K3s could not be executed: fork/exec /usr/local/bin/k3s: text file busy; the config stays applied and %w (k3s state starting, next try in 2s)",
		api.ErrK3sNotStarted, api.ErrK3sRetrying)
}

// TestConfigApplyWhenK3sIsRetried: K3s could not be executed yet and its
// supervisor keeps trying: the command fails (exit status 1) without
// telling to apply the config again, which would stop that supervisor.
func TestConfigApplyWhenK3sIsRetried(t *testing.T) {
	sock := serveBackend(t, k3sRetryingAgent{&testAgent{agent: logring.New(10), k3s: logring.New(10)}})
	file := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(file, config.Example(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"config", "apply", "--socket", sock, file}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "its supervisor keeps trying") || strings.Contains(err.Error(), "apply it again") {
		t.Errorf("err = %v", err)
	}
	if !strings.Contains(errb.String(), "error: the config is applied, but K3s did not start with it: K3s could not be executed: fork/exec /usr/local/bin/k3s: text file busy") {
		t.Errorf("stderr %q does not say why", errb.String())
	}
	if code := exitCode(err); code != exitFailed {
		t.Errorf("exit status %d, want %d", code, exitFailed)
	}
}
