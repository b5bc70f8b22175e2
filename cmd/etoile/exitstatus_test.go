package main

import (
	"errors"
	"fmt"
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
	} {
		if got := exitStatus(c.err); got != c.want {
			t.Errorf("exitStatus(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}
