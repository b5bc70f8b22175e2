package hubcli_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hub"
	"github.com/etoile-os/etoile/constellation/hubcli"
	"github.com/etoile-os/etoile/constellation/join"
)

// TestPlaceWithNoEligibleSiteExitsNonZero: etoile hub place prints its
// answer as ever, and ends with hubcli.ExitNoEligible when no site is
// eligible (none joined, or every one excluded), so that a script tells
// "nowhere to run" from a placement; an eligible site gives success.
func TestPlaceWithNoEligibleSiteExitsNonZero(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	remote := []string{"--hub", h.url, "--admin-config", filepath.Join(h.dir, hub.AdminConfigFile)}
	noEligible := func(why string, args ...string) string {
		t.Helper()
		out, err := cli(append([]string{"place"}, args...)...)
		var ee *hubcli.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != hubcli.ExitNoEligible || !strings.Contains(err.Error(), "no site is eligible") || !strings.Contains(err.Error(), why) {
			t.Fatalf("etoile hub place %s: %v, want exit status %d saying %q\n%s", strings.Join(args, " "), err, hubcli.ExitNoEligible, why, out)
		}
		return out
	}
	if out := noEligible("the hub has no site", append([]string{"--need", "country=FR"}, remote...)...); !strings.Contains(out, "ELIGIBLE (0)") {
		t.Errorf("the answer is not printed:\n%s", out)
	}
	site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "paris-1", Attributes: api.Attributes{Country: "FR"}}), join.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := site.Beat(ctx, status(1, "")); err != nil {
		t.Fatal(err)
	}
	out := noEligible("every site is excluded", "--need", "country=DE", "--json", "--data", h.dir)
	var res api.PlacementResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Excluded) != 1 || res.Excluded[0].Site != "paris-1" {
		t.Errorf("--json answer with no eligible site: %v\n%s", err, out)
	}
	if out, err := cli(append([]string{"place", "--need", "country=FR"}, remote...)...); err != nil || !strings.Contains(out, "ELIGIBLE (1)") {
		t.Errorf("etoile hub place with paris-1 eligible: %v\n%s", err, out)
	}
}
