package hubcli_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hub"
	"github.com/etoile-os/etoile/constellation/hubcli"
	"github.com/etoile-os/etoile/constellation/join"
)

// TestSitesSaysWhyTemplatesAreNotDeployed: a site that cannot deploy the
// templates it is sent (a K3s agent) stays behind in `etoile hub sites`,
// and the site's reason is printed under the table.
func TestSitesSaysWhyTemplatesAreNotDeployed(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	if _, err := h.admin.PutTemplate(ctx, api.Template{Name: "base", Manifest: manifestA}); err != nil {
		t.Fatal(err)
	}
	site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "worker-1"}), join.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	site.Undeployable = func(api.TemplateObject) string { return "this node is a K3s agent" }
	for range 2 {
		if _, err := site.Beat(ctx, status(1, "v1.34.9+k3s1")); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb bytes.Buffer
	if err := hubcli.Command(ctx, []string{"sites", "--hub", h.url, "--admin-config", filepath.Join(h.dir, hub.AdminConfigFile)}, &out, &errb); err != nil {
		t.Fatalf("etoile hub sites: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "worker-1: templates not deployed: template base not applied: this node is a K3s agent") {
		t.Errorf("etoile hub sites does not say why worker-1 is behind:\n%s", out.String())
	}
}
