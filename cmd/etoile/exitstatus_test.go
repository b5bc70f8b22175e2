package main

import (
	"errors"
	"fmt"
	"os/exec"
	"testing"

	"github.com/etoile-os/etoile/constellation/hubcli"
)

// TestExitStatus: a command's own exit status (hub place with no eligible
// site) reaches the process, wrapped or not; any other error is 1.
func TestExitStatus(t *testing.T) {
	noSite := &hubcli.ExitError{Code: hubcli.ExitNoEligible, Err: errors.New("no site is eligible")}
	for _, c := range []struct {
		err  error
		want int
	}{
		{errors.New("failed"), 1},
		{noSite, hubcli.ExitNoEligible},
		{fmt.Errorf("hub place: %w", noSite), hubcli.ExitNoEligible},
		// A child process's status is not etoile's (apt exits 100).
		{fmt.Errorf("kernel package: %w", aptFailed(t)), 1},
	} {
		if got := exitStatus(c.err); got != c.want {
			t.Errorf("exitStatus(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// aptFailed is the error of a child process that exited 100, as apt-get
// does when a download fails.
func aptFailed(t *testing.T) error {
	err := exec.Command("sh", "-c", "exit 100").Run()
	if err == nil {
		t.Fatal("sh -c 'exit 100' succeeded")
	}
	return err
}
