package hubcli_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hubcli"
	"github.com/etoile-os/etoile/constellation/join"
	"github.com/etoile-os/etoile/constellation/pki"
	"github.com/etoile-os/etoile/qa"
)

func TestExpiredCertificateRenewsWithinGrace(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "sleepy-1"}), join.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// The site was off for a day and a bit: its certificate expired.
	h.advance(25 * time.Hour)
	_, err = site.Beat(ctx, status(1, ""))
	wantRefusal(t, err, api.CodeUnauthorized)
	// Its key is still the pinned one, so renewal with the expired
	// certificate is allowed within the grace period, and beats resume.
	if err := site.Renew(ctx); err != nil {
		t.Fatalf("renewal within grace: %v", err)
	}
	if _, err := site.Beat(ctx, status(1, "")); err != nil {
		t.Fatalf("heartbeat after renewal: %v", err)
	}
	// Past the grace period the site must join again.
	h.advance(32 * 24 * time.Hour)
	var re *join.RemoteError
	if err := site.Renew(ctx); err == nil || !asRemote(err, &re) || re.Code != api.CodeUnauthorized {
		t.Fatalf("renewal past grace: %v", err)
	}
}

func asRemote(err error, re **join.RemoteError) bool {
	for e := err; e != nil; {
		if r, ok := e.(*join.RemoteError); ok {
			*re = r
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

// The site loop applies templates, reports the applied revision, rides out a
// hub outage and reports in again when the hub is back.
func TestSiteLoopRidesOutHubOutage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// The hub comes back on the same address: a port no connection takes
	// as its source port while the hub is down.
	addr := fmt.Sprintf("127.0.0.1:%d", qa.QuietPort(t))
	fixed := func(o *hubcli.ServeOptions) { o.Listen = addr }
	h := startHub(t, dir, fixed)
	if _, err := h.admin.PutTemplate(ctx, api.Template{Name: "base", Manifest: manifestA}); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "loop-1"}), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithCancel(ctx)
	loopDone := make(chan error, 1)
	go func() { loopDone <- site.Run(lctx, status(2, "v1.31.4+k3s1")) }()
	defer func() {
		cancel()
		if err := <-loopDone; err != nil {
			t.Errorf("site loop: %v", err)
		}
	}()
	waitFor(t, "template applied and reported", func() bool {
		_, err := os.Stat(filepath.Join(root, join.ManifestDir, "etoile-base.yaml"))
		s := h.site(t, "loop-1")
		return err == nil && s.Heartbeat.AppliedRevision != 0 && s.Heartbeat.AppliedRevision == s.DesiredRevision
	})
	h.stop()
	time.Sleep(3 * time.Second) // a beat or two fail; the loop keeps going
	stopped := time.Now()
	h2 := startHub(t, dir, fixed)
	waitFor(t, "heartbeat after the hub came back", func() bool {
		s := h2.site(t, "loop-1")
		return s.LastHeartbeat != nil && s.LastHeartbeat.After(stopped) && s.Status == api.StatusOnline
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// With --idle-timeout below the heartbeat interval, each beat reconnects;
// TLS session resumption keeps that cheap and the client certificate
// identity survives resumption.
func TestHeartbeatsResumeTLSAfterIdleClose(t *testing.T) {
	h := startHub(t, t.TempDir(), func(o *hubcli.ServeOptions) { o.IdleTimeout = 100 * time.Millisecond })
	root := t.TempDir()
	if _, err := join.Join(context.Background(), h.token(t, api.TokenRequest{Site: "resume-1"}), join.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{*siteCert(t, root)}, ClientSessionCache: tls.NewLRUClientSessionCache(4)}}}
	for i := range 3 {
		resp, err := c.Post(h.url+api.PathHeartbeat, "application/json", strings.NewReader(`{"nodes":1,"nodesReady":1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.TLS.DidResume != (i > 0) {
			t.Fatalf("beat %d: %s, resumed %v", i, resp.Status, resp.TLS.DidResume)
		}
		time.Sleep(time.Second) // well past the idle timeout, even on a loaded machine
	}
}

func TestEnsureJoinedIsUnattendedAndOnce(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	js := h.token(t, api.TokenRequest{Site: "auto-1"})
	root := t.TempDir()
	a, err := join.EnsureJoined(ctx, js.String(), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	// Every boot calls it again with the same config: it must not need the
	// (now revoked) token or the hub.
	if err := h.admin.RevokeToken(ctx, js.TokenID); err != nil {
		t.Fatal(err)
	}
	h.stop()
	b, err := join.EnsureJoined(ctx, js.String(), join.Options{Root: root})
	if err != nil || b.State.SiteID != a.State.SiteID {
		t.Fatalf("second boot: %v (site %s vs %s)", err, b.State.SiteID, a.State.SiteID)
	}
}

// TestSiteMovingHubsDropsTheOldTemplates: a site that joins another hub
// (a new CA) removes the templates the previous hub had it write, even
// when the new hub has none (its revision 0 would send nothing), and keeps
// an operator's own etoile-*.yaml.
func TestSiteMovingHubsDropsTheOldTemplates(t *testing.T) {
	ctx := context.Background()
	a := startHub(t, t.TempDir())
	root := t.TempDir()
	if _, err := a.admin.PutTemplate(ctx, api.Template{Name: "gdpr-tools", Manifest: manifestA, Selector: map[string]string{"tag": "gdpr"}}); err != nil {
		t.Fatal(err)
	}
	site, err := join.EnsureJoined(ctx, a.token(t, api.TokenRequest{Site: "mover-1", Attributes: api.Attributes{Tags: []string{"gdpr"}}}).String(), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := site.Beat(ctx, status(1, "")); err != nil {
		t.Fatal(err)
	}
	mdir := filepath.Join(root, join.ManifestDir)
	if err := os.WriteFile(filepath.Join(mdir, "etoile-mine.yaml"), []byte(manifestA), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mdir, "etoile-gdpr-tools.yaml")); err != nil {
		t.Fatalf("hub A's template not written: %v", err)
	}
	b := startHub(t, t.TempDir())
	moved, err := join.EnsureJoined(ctx, b.token(t, api.TokenRequest{Site: "mover-1"}).String(), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if moved.State.Hub != b.url {
		t.Fatalf("site reports to %s, want hub B %s", moved.State.Hub, b.url)
	}
	if _, err := moved.Beat(ctx, status(1, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mdir, "etoile-gdpr-tools.yaml")); err == nil {
		t.Error("hub A's template is still applied after the move to hub B")
	}
	if _, err := os.Stat(filepath.Join(mdir, "etoile-mine.yaml")); err != nil {
		t.Errorf("the operator's etoile-mine.yaml went: %v", err)
	}
}

// TestEnsureJoinedFollowsTheHubsNewAddress: the same hub (its CA) in a
// join string with another address is reported to there.
func TestEnsureJoinedFollowsTheHubsNewAddress(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	js := h.token(t, api.TokenRequest{Site: "moved-addr-1", Uses: 2})
	root := t.TempDir()
	if _, err := join.EnsureJoined(ctx, js.String(), join.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	// The state remembers an old address (the hub was renumbered).
	st := filepath.Join(root, join.StateDir, "site.json")
	data, err := os.ReadFile(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st, []byte(strings.Replace(string(data), js.Hub, "https://old-hub.invalid:8443", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := join.EnsureJoined(ctx, js.String(), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if s.State.Hub != js.Hub {
		t.Fatalf("site reports to %s, want the join string's %s", s.State.Hub, js.Hub)
	}
	if _, err := s.Beat(ctx, status(1, "")); err != nil {
		t.Errorf("heartbeat to the new address: %v", err)
	}
}

// TestRevokedSiteJoiningAgainIsFinal: a revoked site whose key was lost
// (a node booted from its media joins again at every boot) gets the
// revocation as join.ErrRevoked, which ends its client, not a retry.
func TestRevokedSiteJoiningAgainIsFinal(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	js := h.token(t, api.TokenRequest{Site: "gone-1", Uses: 3})
	if _, err := join.EnsureJoined(ctx, js.String(), join.Options{Root: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if err := h.admin.RevokeSite(ctx, "gone-1"); err != nil {
		t.Fatal(err)
	}
	_, err := join.EnsureJoined(ctx, js.String(), join.Options{Root: t.TempDir()}) // a fresh root: the key is gone
	if !errors.Is(err, join.ErrRevoked) {
		t.Fatalf("joining again after the revocation: %v, want join.ErrRevoked", err)
	}
}

// TestHubRenewsItsOwnCertificate: a hub running longer than two thirds of
// its TLS certificate's lifetime presents a new one (a year's, in use),
// and sites keep working across the change.
func TestHubRenewsItsOwnCertificate(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir(), func(o *hubcli.ServeOptions) {
		o.ServerCertLifetime, o.CertCheckEvery = 3*time.Second, 100*time.Millisecond
	})
	presented := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", strings.TrimPrefix(h.url, "https://"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	first := presented()
	site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "renew-hub-1"}), join.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for presented().SerialNumber.Cmp(first.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the hub still presents its first certificate (not after %v)", first.NotAfter)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if now := presented(); !now.NotAfter.After(first.NotAfter) {
		t.Errorf("the new certificate ends %v, not after the first's %v", now.NotAfter, first.NotAfter)
	}
	if _, err := site.Beat(ctx, status(1, "")); err != nil {
		t.Errorf("a heartbeat after the hub's renewal: %v", err)
	}
}

// k3sStatus is a site reporting K3s version v.
func k3sStatus(v string) join.StatusFunc {
	return func(context.Context) (api.Heartbeat, error) {
		return api.Heartbeat{Nodes: 1, NodesReady: 1, K3sVersion: v, Slot: "a", Capacity: api.Capacity{CPUMillis: 1000, MemoryBytes: 1 << 30}}, nil
	}
}

// TestTemplatesFollowK3sUpgrade: a template selecting a K3s version reaches
// a site once it reports that version (no template changed), and goes when
// the site moves off it.
func TestTemplatesFollowK3sUpgrade(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	root := t.TempDir()
	site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "k3s-1"}), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.PutTemplate(ctx, api.Template{Name: "new-k3s", Manifest: manifestA, Selector: map[string]string{"k3s.version": "v1.31.4+k3s1"}}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, join.ManifestDir, "etoile-new-k3s.yaml")
	beat := func(v string) {
		t.Helper()
		if _, err := site.Beat(ctx, k3sStatus(v)); err != nil {
			t.Fatal(err)
		}
	}
	beat("v1.30.0+k3s1")
	if _, err := os.Stat(file); err == nil {
		t.Fatal("a site on K3s 1.30 got the template for 1.31.4")
	}
	beat("v1.31.4+k3s1")
	if b, err := os.ReadFile(file); err != nil || string(b) != manifestA {
		t.Fatalf("after the upgrade to 1.31.4: %q %v", b, err)
	}
	beat("v1.31.4+k3s1")
	if s := h.site(t, "k3s-1"); s.Heartbeat.AppliedRevision != s.DesiredRevision {
		t.Fatalf("site up to date shown with applied %d, desired %d", s.Heartbeat.AppliedRevision, s.DesiredRevision)
	}
	beat("v1.32.0+k3s1")
	if _, err := os.Stat(file); err == nil {
		t.Fatal("the template stayed after the site left K3s 1.31.4")
	}
}

// TestRejoinWithNewTagsAppliesTheirTemplates: a site joining again (same
// key) with a token carrying another tag gets that tag's templates.
func TestRejoinWithNewTagsAppliesTheirTemplates(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	for name, tag := range map[string]string{"gdpr-tools": "gdpr", "dora-tools": "dora"} {
		if _, err := h.admin.PutTemplate(ctx, api.Template{Name: name, Manifest: manifestA, Selector: map[string]string{"tag": tag}}); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	mdir := filepath.Join(root, join.ManifestDir)
	files := func(site *join.Site) string {
		t.Helper()
		if _, err := site.Beat(ctx, k3sStatus("v1.31.4+k3s1")); err != nil {
			t.Fatal(err)
		}
		return dirNames(mdir)
	}
	site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "tags-1", Attributes: api.Attributes{Tags: []string{"dora"}}}), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if got := files(site); got != "etoile-dora-tools.yaml" {
		t.Fatalf("joined with tag dora: %s", got)
	}
	site, err = join.Join(ctx, h.token(t, api.TokenRequest{Site: "tags-1", Attributes: api.Attributes{Tags: []string{"gdpr"}}}), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if got := files(site); got != "etoile-gdpr-tools.yaml" {
		t.Fatalf("joined again with tag gdpr: %s", got)
	}
}

// TestTemplateSetFitsWhatSitesRead: the hub refuses the template that would
// make a site's templates larger than a site reads in one answer, saying
// so; what it accepted reaches the site.
func TestTemplateSetFitsWhatSitesRead(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	root := t.TempDir()
	site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "big-1"}), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	accepted := 0
	for i := range 40 {
		var b strings.Builder
		fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%d\ndata:\n", i)
		for j := 0; b.Len() < 480<<10; j++ {
			fmt.Fprintf(&b, "  k%06d: %s\n", j, strings.Repeat("x", 2000))
		}
		_, err := h.admin.PutTemplate(ctx, api.Template{Name: fmt.Sprintf("cm-%02d", i), Manifest: b.String()})
		if err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("template cm-%02d", i)) || !strings.Contains(err.Error(), fmt.Sprint(api.MaxTemplateSetBytes)) {
				t.Fatalf("refusal of template %d does not name it and the limit: %v", i, err)
			}
			break
		}
		accepted++
	}
	if accepted == 40 || accepted*480<<10 > api.MaxTemplateSetBytes {
		t.Fatalf("%d templates of 480 KiB accepted", accepted)
	}
	if _, err := site.Beat(ctx, k3sStatus("v1.31.4+k3s1")); err != nil {
		t.Fatalf("heartbeat with every accepted template: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, join.ManifestDir)); len(ents) != accepted {
		t.Fatalf("%d files written, %d templates accepted", len(ents), accepted)
	}
}

// TestExpiredTokenDoesNotJoinAgain: replaying a join string (same key) long
// after its token expired does not mint a certificate.
func TestExpiredTokenDoesNotJoinAgain(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	js := h.token(t, api.TokenRequest{Site: "old-1", Uses: 1, TTLSeconds: 3600})
	root := t.TempDir()
	if _, err := join.Join(ctx, js, join.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	// A lost answer is retried: the same site.
	if _, err := join.Join(ctx, js, join.Options{Root: root}); err != nil {
		t.Fatalf("retry while the token is valid: %v", err)
	}
	h.advance(200 * 24 * time.Hour)
	_, err := join.Join(ctx, js, join.Options{Root: root})
	wantRefusal(t, err, api.CodeTokenExpired)
}
