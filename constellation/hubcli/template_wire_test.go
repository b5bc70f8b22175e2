package hubcli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hub"
)

// TestRemoteTemplateAddIsNotHTMLEscaped: a manifest within the manifest
// limit, full of <, > and & (an HTML page in a ConfigMap), is added
// through a remote hub as through its data folder: the request carries it
// as it is, not at six bytes a character over the hub's request limit.
func TestRemoteTemplateAddIsNotHTMLEscaped(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	page := strings.Repeat("<p>a &amp; b</p>", (api.MaxBodyBytes/2-200)/16)
	manifest := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: page\ndata:\n  index.html: \"" + page + "\"\n"
	if len(manifest) > api.MaxBodyBytes/2 || api.TemplateWireBytes("page", manifest) <= api.MaxBodyBytes {
		t.Fatalf("test manifest: %d bytes, %d escaped: want it within the manifest limit and over the request limit escaped", len(manifest), api.TemplateWireBytes("page", manifest))
	}
	file := filepath.Join(t.TempDir(), "page.yaml")
	if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("template", "add", "page", "--file", file, "--hub", h.url, "--admin-config", filepath.Join(h.dir, hub.AdminConfigFile)); err != nil {
		t.Fatalf("remote template add of a %d-byte manifest: %v\n%s", len(manifest), err, out)
	}
	tl, err := h.admin.Templates(ctx)
	if err != nil || len(tl.Templates) != 1 || tl.Templates[0].Manifest != manifest {
		t.Fatalf("templates after the add: %d, %v (manifest kept as sent: %v)", len(tl.Templates), err, len(tl.Templates) == 1 && tl.Templates[0].Manifest == manifest)
	}
}
