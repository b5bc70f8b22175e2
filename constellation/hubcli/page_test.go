package hubcli_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hubcli"
	"github.com/etoile-os/etoile/constellation/join"
)

// chromium runs Debian's headless Chromium with a throwaway profile and no
// network beyond the loopback page it is given.
func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: install Debian's package with `apt-get install -y chromium`")
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

func TestStatusPageInChromium(t *testing.T) {
	ctx := context.Background()
	// Chromium can take many seconds to start on a busy machine: a long
	// interval keeps the sites online while it does.
	h := startHub(t, t.TempDir(), func(o *hubcli.ServeOptions) { o.HeartbeatInterval = 10 * time.Minute })
	if _, err := h.admin.PutTemplate(ctx, api.Template{Name: "base", Manifest: manifestA}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		name, country string
		tags          []string
		nodes         int
		beat          bool
	}{
		{"paris-1", "FR", []string{"gdpr", "nis2"}, 3, true},
		{"lyon-1", "FR", []string{"gdpr"}, 1, false},
		{"berlin-1", "DE", []string{"gdpr", "dora"}, 5, true},
	} {
		site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: s.name, Attributes: api.Attributes{Country: s.country, Jurisdiction: "EU", Tags: s.tags}}), join.Options{Root: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if s.beat {
			for range 2 { // the second beat reports the applied template revision
				if _, err := site.Beat(ctx, status(s.nodes, "v1.31.4+k3s1")); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	url := "http://" + h.status + "/"
	dom := string(chromium(t, "--dump-dom", url))
	for _, want := range []string{
		`<h2 id="country-DE">DE`, `<h2 id="country-FR">FR`,
		`data-site="paris-1"`, `data-site="berlin-1"`, `data-site="lyon-1"`,
		`<span class="st online">online</span>`, `<span class="st offline">offline</span>`,
		"3/3", "5/5", "v1.31.4+k3s1", "0/2 nvidia", `<span class="tag">nis2</span>`,
		"template revision 1",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	// Countries in order, sites grouped under theirs.
	if de, fr := strings.Index(dom, "country-DE"), strings.Index(dom, "country-FR"); de < 0 || fr < de || strings.Index(dom, `data-site="paris-1"`) < fr {
		t.Errorf("sites are not grouped by country in order")
	}
	shot := filepath.Join(os.TempDir(), "etoile-hub-status-page.png")
	chromium(t, "--screenshot="+shot, "--window-size=1280,720", "--hide-scrollbars", url)
	b, err := os.ReadFile(shot)
	if err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
		t.Fatalf("screenshot %s: %v (%d bytes)", shot, err, len(b))
	}
	t.Logf("status page screenshot kept at %s", shot)
}
