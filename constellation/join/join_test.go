package join

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/pki"
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
		w, r, err := ApplyTemplates(dir, s.objs, nil)
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
	if _, _, err := ApplyTemplates(dir, []api.TemplateObject{{Name: "../../../etc/passwd", Manifest: ns}}, nil); err == nil {
		t.Fatal("path traversal in a template name was written")
	}
}

// TestApplyTemplatesLeavesOthersFiles: with the files the templates wrote
// known, an operator's own etoile-*.yaml is neither removed nor replaced.
func TestApplyTemplatesLeavesOthersFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ManifestDir)
	ns := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "etoile-mine.yaml")
	if err := os.WriteFile(mine, []byte("# the operator's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, r, err := ApplyTemplates(dir, []api.TemplateObject{{Name: "a", Manifest: ns}}, []string{})
	if err != nil || strings.Join(w, " ") != "etoile-a.yaml" || len(r) != 0 {
		t.Fatalf("written %v removed %v err %v", w, r, err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Fatalf("the operator's etoile-mine.yaml was removed: %v", err)
	}
	// A template named like it stops the apply, before anything is written.
	_, _, err = ApplyTemplates(dir, []api.TemplateObject{{Name: "b", Manifest: ns}, {Name: "mine", Manifest: ns}}, []string{"etoile-a.yaml"})
	if err == nil || !strings.Contains(err.Error(), "etoile-mine.yaml") || !strings.Contains(err.Error(), "not written by the constellation") {
		t.Fatalf("a template replacing the operator's file: %v", err)
	}
	if data, _ := os.ReadFile(mine); string(data) != "# the operator's\n" {
		t.Errorf("the operator's file was replaced: %q", data)
	}
	if _, err := os.Stat(filepath.Join(dir, "etoile-b.yaml")); err == nil {
		t.Error("a refused apply wrote etoile-b.yaml")
	}
	// What the templates wrote goes when unselected; the operator's stays.
	_, r, err = ApplyTemplates(dir, nil, []string{"etoile-a.yaml"})
	if err != nil || strings.Join(r, " ") != "etoile-a.yaml" {
		t.Errorf("removed %v, %v", r, err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("the operator's file went: %v", err)
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

// TestRenewalAtTwoThirdsOfTheIssuedLifetime: the hub dates certificates 5
// minutes back; a short lifetime is still renewed at two thirds of it, not
// at once (a one-minute certificate renewed on every beat).
func TestRenewalAtTwoThirdsOfTheIssuedLifetime(t *testing.T) {
	issued := time.Now()
	for _, life := range []time.Duration{time.Minute, 10 * time.Minute, 24 * time.Hour} {
		s := &Site{cert: &tls.Certificate{Leaf: &x509.Certificate{NotBefore: issued.Add(-pki.Backdate), NotAfter: issued.Add(life)}}}
		if s.NeedsRenewal(issued.Add(life * 6 / 10)) {
			t.Errorf("%v: renewal due at 60%% of the lifetime", life)
		}
		if !s.NeedsRenewal(issued.Add(life * 7 / 10)) {
			t.Errorf("%v: renewal not due at 70%% of the lifetime", life)
		}
	}
}

// TestAnswerOverTheLimitSaysSo: an answer larger than a site reads is
// reported as such, not as the JSON error of a cut answer; one just under
// the limit is read.
func TestAnswerOverTheLimitSaysSo(t *testing.T) {
	var size int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// {"revision":1,"sendTemplates":true,"templates":[{"name":"big","manifest":"xxx…"}]}
		head, tail := `{"revision":1,"sendTemplates":true,"templates":[{"name":"big","manifest":"`, `"}]}`
		fmt.Fprint(w, head+strings.Repeat("x", size-len(head)-len(tail))+tail)
	}))
	defer srv.Close()
	var resp api.HeartbeatResponse
	size = api.MaxAnswerBytes
	if err := post(t.Context(), srv.Client(), DefaultStall, srv.URL, api.Heartbeat{}, &resp); err != nil || len(resp.Templates) != 1 {
		t.Fatalf("answer of %d bytes: %v", size, err)
	}
	size = api.MaxAnswerBytes + 1
	err := post(t.Context(), srv.Client(), DefaultStall, srv.URL, api.Heartbeat{}, &resp)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("exceeded %d bytes", api.MaxAnswerBytes)) || !strings.Contains(err.Error(), "templates") {
		t.Fatalf("answer of %d bytes: %v", size, err)
	}
}
