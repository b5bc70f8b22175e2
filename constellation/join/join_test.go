package join

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/constellation/api"
)

func TestApplyTemplates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ManifestDir)
	ns := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n"
	steps := []struct {
		name    string
		objs    []api.TemplateObject
		files   string
		written string
		removed string
	}{
		{"first set", []api.TemplateObject{{Name: "a", Manifest: ns}, {Name: "b", Manifest: ns}}, "etoile-a.yaml etoile-b.yaml keep.yaml", "etoile-a.yaml etoile-b.yaml", ""},
		{"same set rewrites nothing", []api.TemplateObject{{Name: "a", Manifest: ns}, {Name: "b", Manifest: ns}}, "etoile-a.yaml etoile-b.yaml keep.yaml", "", ""},
		{"b changes, a goes", []api.TemplateObject{{Name: "b", Manifest: ns + "# v2\n"}}, "etoile-b.yaml keep.yaml", "etoile-b.yaml", "etoile-a.yaml"},
		{"empty set", nil, "keep.yaml", "", "etoile-b.yaml"},
	}
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "keep.yaml"), []byte(ns), 0o644)
	for _, s := range steps {
		w, r, err := ApplyTemplates(dir, s.objs)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if got := strings.Join(names, " "); got != s.files {
			t.Errorf("%s: files %q, want %q", s.name, got, s.files)
		}
		if strings.Join(w, " ") != s.written || strings.Join(r, " ") != s.removed {
			t.Errorf("%s: written %v removed %v", s.name, w, r)
		}
	}
	if _, _, err := ApplyTemplates(dir, []api.TemplateObject{{Name: "../../../etc/passwd", Manifest: ns}}); err == nil {
		t.Fatal("path traversal in a template name was written")
	}
}

func TestCommandRefusesBadJoinStrings(t *testing.T) {
	var out, errb strings.Builder
	for _, args := range [][]string{{}, {"https://hub:8443"}, {"etoile://hub:8443?token=x&ca=sha256:00"}, {"a", "b"}} {
		if err := Command(t.Context(), args, &out, &errb); err == nil {
			t.Errorf("join %q accepted", args)
		}
	}
}
