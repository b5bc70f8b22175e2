package hubcli_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hub"
	"github.com/etoile-os/etoile/constellation/hubcli"
	"github.com/etoile-os/etoile/constellation/join"
	"github.com/etoile-os/etoile/constellation/pki"
	"github.com/etoile-os/etoile/constellation/store"
)

// testHub is a hub serving on loopback with real TLS and a movable clock.
type testHub struct {
	dir, url, status string
	offset           *atomic.Int64
	admin            hub.Admin
	stop             func()
}

func (h *testHub) advance(d time.Duration) { h.offset.Add(int64(d)) }

func startHub(t *testing.T, dir string, opts ...func(*hubcli.ServeOptions)) *testHub {
	t.Helper()
	h := &testHub{dir: dir, offset: &atomic.Int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	o := hubcli.ServeOptions{
		Data: dir, Listen: "127.0.0.1:0", StatusListen: "127.0.0.1:0", HeartbeatInterval: 2 * time.Second,
		Now: func() time.Time { return time.Now().Add(time.Duration(h.offset.Load())) },
		Ready: func(u, s string) {
			h.url, h.status = u, s
			close(ready)
		},
	}
	for _, f := range opts {
		f(&o)
	}
	go func() { done <- hubcli.Serve(ctx, o) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("hub did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("hub did not start within 30 s")
	}
	cfg, err := hub.LoadClientConfig(filepath.Join(dir, hub.AdminConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if h.admin, err = hub.NewClient(cfg, h.url); err != nil {
		t.Fatal(err)
	}
	var once bool
	h.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub stopped with %v", err)
		}
	}
	t.Cleanup(h.stop)
	return h
}

func (h *testHub) token(t *testing.T, req api.TokenRequest) api.JoinString {
	t.Helper()
	if req.TTLSeconds == 0 {
		req.TTLSeconds = 3600
	}
	if req.Uses == 0 {
		req.Uses = 1
	}
	resp, err := h.admin.CreateToken(context.Background(), req)
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	js, err := api.ParseJoinString(resp.JoinString)
	if err != nil {
		t.Fatalf("hub printed a join string it cannot parse: %v", err)
	}
	return js
}

func (h *testHub) site(t *testing.T, name string) api.Site {
	t.Helper()
	sites, err := h.admin.Sites(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sites {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("site %s not listed (have %d sites)", name, len(sites))
	return api.Site{}
}

func status(nodes int, k3s string) join.StatusFunc {
	return func(context.Context) (api.Heartbeat, error) {
		return api.Heartbeat{Nodes: nodes, NodesReady: nodes, K3sVersion: k3s, EtoileVersion: "0.1.0", Slot: "a",
			Capacity: api.Capacity{CPUMillis: 16000, CPUUsedMillis: 4000, MemoryBytes: 64 << 30, MemoryUsedBytes: 16 << 30, GPUs: []api.GPU{{Vendor: "nvidia", Count: 2}}}}, nil
	}
}

func inventory() api.Inventory {
	return api.Inventory{Hostname: "edge-1", Arch: "amd64", Nodes: 1, CPUMillis: 16000, MemoryBytes: 64 << 30}
}

func TestJoinHeartbeatSitesJSON(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	js := h.token(t, api.TokenRequest{Site: "paris-1", Attributes: api.Attributes{Country: "FR", Region: "eu-west-3", Jurisdiction: "EU", Tags: []string{"nis2", "gdpr"}}})
	root := t.TempDir()
	site, err := join.Join(ctx, js, join.Options{Root: root, Inventory: inventory()})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	if site.State.SiteName != "paris-1" || site.State.Policy.Country != "FR" || site.State.Policy.HeartbeatSeconds != 2 {
		t.Fatalf("join state %+v", site.State)
	}
	fi, err := os.Stat(filepath.Join(root, join.StateDir, "site.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("site key: %v mode %v, want 0600", err, fi.Mode())
	}
	if life := time.Until(site.Certificate().NotAfter); life > 25*time.Hour || life < 23*time.Hour {
		t.Fatalf("site certificate lives %s, want about 24h", life)
	}

	// The CLI lists it, as JSON, through the remote admin API.
	var out, errb bytes.Buffer
	if err := hubcli.Command(ctx, []string{"sites", "--json", "--hub", h.url, "--admin-config", filepath.Join(h.dir, hub.AdminConfigFile)}, &out, &errb); err != nil {
		t.Fatalf("etoile hub sites --json: %v\n%s", err, errb.String())
	}
	var listed []api.Site
	if err := json.Unmarshal(out.Bytes(), &listed); err != nil || len(listed) != 1 {
		t.Fatalf("sites --json: %v\n%s", err, out.String())
	}
	s := listed[0]
	if s.Name != "paris-1" || s.Country != "FR" || s.Jurisdiction != "EU" || strings.Join(s.Tags, ",") != "gdpr,nis2" || s.Status != api.StatusOffline || s.LastHeartbeat != nil {
		t.Fatalf("listed before any heartbeat: %+v", s)
	}

	// A heartbeat makes it online with its capacity.
	if _, err := site.Beat(ctx, status(3, "v1.31.4+k3s1")); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	s = h.site(t, "paris-1")
	if s.Status != api.StatusOnline || s.Heartbeat.Nodes != 3 || s.Heartbeat.K3sVersion != "v1.31.4+k3s1" || s.Heartbeat.Capacity.GPUFree("nvidia") != 2 {
		t.Fatalf("after heartbeat: %+v", s)
	}
	first := *s.LastHeartbeat
	h.advance(10 * time.Second)
	if _, err := site.Beat(ctx, status(4, "v1.31.5+k3s1")); err != nil {
		t.Fatalf("second heartbeat: %v", err)
	}
	s = h.site(t, "paris-1")
	if !s.LastHeartbeat.After(first) || s.Heartbeat.Nodes != 4 {
		t.Fatalf("second heartbeat did not update the site: %+v", s)
	}
	// Status follows the age of the last heartbeat (interval 2 s).
	h.advance(10 * time.Second)
	if s = h.site(t, "paris-1"); s.Status != api.StatusStale {
		t.Fatalf("after 10 s: status %s, want stale", s.Status)
	}
	h.advance(time.Minute)
	if s = h.site(t, "paris-1"); s.Status != api.StatusOffline {
		t.Fatalf("after 70 s: status %s, want offline", s.Status)
	}
	// Renewal over mTLS keeps the same key.
	if err := site.Renew(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if _, err := site.Beat(ctx, status(4, "v1.31.5+k3s1")); err != nil {
		t.Fatalf("heartbeat after renewal: %v", err)
	}
	// Audit lists the token creation and the join.
	evs, err := h.admin.Audit(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range evs {
		actions = append(actions, e.Action+":"+e.Subject)
	}
	if got := strings.Join(actions, " "); !strings.Contains(got, "site.join:paris-1") || !strings.Contains(got, "token.create:"+js.TokenID) {
		t.Fatalf("audit: %s", got)
	}
}

func TestJoinRetryIsIdempotent(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	js := h.token(t, api.TokenRequest{Site: "retry-1"})
	root := t.TempDir()
	a, err := join.Join(ctx, js, join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	// The answer was "lost": the site asks again with the same token and key.
	b, err := join.Join(ctx, js, join.Options{Root: root})
	if err != nil {
		t.Fatalf("retry with the same key: %v", err)
	}
	if a.State.SiteID != b.State.SiteID {
		t.Fatalf("retry made another site: %s vs %s", a.State.SiteID, b.State.SiteID)
	}
	sites, _ := h.admin.Sites(ctx)
	toks, _ := h.admin.Tokens(ctx)
	if len(sites) != 1 || toks[0].Uses != 1 {
		t.Fatalf("after retry: %d sites, token uses %d; want 1 and 1", len(sites), toks[0].Uses)
	}
	// A reset site (new key) needs a new token; with one, it keeps its id.
	reset := t.TempDir()
	_, err = join.Join(ctx, js, join.Options{Root: reset})
	wantRefusal(t, err, api.CodeTokenUsed)
	c, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "retry-1"}), join.Options{Root: reset})
	if err != nil {
		t.Fatalf("rejoin with a new token: %v", err)
	}
	if c.State.SiteID != a.State.SiteID {
		t.Fatalf("rejoin changed the site id")
	}
	// The old key's certificate no longer heartbeats.
	_, err = a.Beat(ctx, status(1, ""))
	wantRefusal(t, err, api.CodeUnauthorized)
}

func wantRefusal(t *testing.T, err error, code string) {
	t.Helper()
	var re *join.RemoteError
	if !errors.As(err, &re) || re.Code != code {
		t.Fatalf("got %v, want a refusal with code %s", err, code)
	}
	if len(re.Msg) < 20 {
		t.Fatalf("refusal %q is not a clear message", re.Msg)
	}
}

func TestJoinRefusals(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())

	t.Run("expired token", func(t *testing.T) {
		js := h.token(t, api.TokenRequest{Site: "exp-1", TTLSeconds: 60})
		h.advance(2 * time.Minute)
		_, err := join.Join(ctx, js, join.Options{Root: t.TempDir()})
		wantRefusal(t, err, api.CodeTokenExpired)
	})
	t.Run("reused token", func(t *testing.T) {
		js := h.token(t, api.TokenRequest{Site: "reuse-1"})
		if _, err := join.Join(ctx, js, join.Options{Root: t.TempDir()}); err != nil {
			t.Fatal(err)
		}
		_, err := join.Join(ctx, js, join.Options{Root: t.TempDir()})
		wantRefusal(t, err, api.CodeTokenUsed)
	})
	t.Run("revoked token", func(t *testing.T) {
		js := h.token(t, api.TokenRequest{Site: "rev-1"})
		if err := h.admin.RevokeToken(ctx, js.TokenID); err != nil {
			t.Fatal(err)
		}
		_, err := join.Join(ctx, js, join.Options{Root: t.TempDir()})
		wantRefusal(t, err, api.CodeTokenRevoked)
	})
	t.Run("forged secret", func(t *testing.T) {
		js := h.token(t, api.TokenRequest{Site: "forge-1"})
		js.TokenSecret = strings.Repeat("A", 43)
		_, err := join.Join(ctx, js, join.Options{Root: t.TempDir()})
		wantRefusal(t, err, api.CodeTokenInvalid)
	})
	t.Run("unknown token id", func(t *testing.T) {
		js := h.token(t, api.TokenRequest{Site: "forge-2"})
		js.TokenID = "ffffffffffffffff"
		_, err := join.Join(ctx, js, join.Options{Root: t.TempDir()})
		wantRefusal(t, err, api.CodeTokenInvalid)
	})
	t.Run("wrong CA pin", func(t *testing.T) {
		js := h.token(t, api.TokenRequest{Site: "pin-1"})
		js.CAPin = strings.Repeat("0", 64)
		_, err := join.Join(ctx, js, join.Options{Root: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "does not match the pin") {
			t.Fatalf("got %v, want a pin mismatch", err)
		}
		// Nothing was sent: the token is still unused.
		for _, tok := range must(h.admin.Tokens(ctx)) {
			if tok.ID == js.TokenID && tok.Uses != 0 {
				t.Fatalf("token used despite the pin mismatch")
			}
		}
	})
	t.Run("hostile inventory fields", func(t *testing.T) {
		for _, inv := range []api.Inventory{
			{Hostname: "<script>alert(1)</script>"},
			{Hostname: "edge-1'; DROP TABLE sites;--"},
			{Arch: "amd64\x1b[2J"},
			{EtoileVersion: "1.0 && reboot"},
			{GPUs: []api.GPU{{Vendor: "<img src=x>", Count: 1}}},
			{Nodes: -1},
		} {
			js := h.token(t, api.TokenRequest{Site: "inv-1"})
			_, err := join.Join(ctx, js, join.Options{Root: t.TempDir(), Inventory: inv})
			wantRefusal(t, err, api.CodeBadRequest)
		}
		if sites := must(h.admin.Sites(ctx)); len(sites) != 0 {
			for _, s := range sites {
				if s.Name == "inv-1" {
					t.Fatalf("a refused join recorded site %+v", s)
				}
			}
		}
	})
	t.Run("hostile token fields", func(t *testing.T) {
		for _, req := range []api.TokenRequest{
			{Site: "x'); DROP TABLE sites;--"},
			{Site: "<script>alert(1)</script>"},
			{Site: "ok-1", Attributes: api.Attributes{Country: "<b>"}},
			{Site: "ok-1", Attributes: api.Attributes{Region: "eu' OR 1=1"}},
			{Site: "ok-1", Attributes: api.Attributes{Jurisdiction: "EU\n"}},
			{Site: "ok-1", Attributes: api.Attributes{Tags: []string{"gdpr\x1b[2J"}}},
		} {
			req.TTLSeconds, req.Uses = 3600, 1
			_, err := h.admin.CreateToken(ctx, req)
			if !hub.IsRefusal(err, api.CodeBadRequest) {
				t.Errorf("token %+v: got %v, want bad_request", req, err)
			}
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// rawClient talks to the hub with the pinned CA and an optional client cert.
func rawClient(t *testing.T, h *testHub, cert *tls.Certificate) *http.Client {
	t.Helper()
	ca, err := pki.LoadCA(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{InsecureSkipVerify: true, VerifyConnection: pki.PinnedVerifier(ca.Pin(), "127.0.0.1")}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 20 * time.Second}
}

func siteCert(t *testing.T, root string) *tls.Certificate {
	t.Helper()
	dir := filepath.Join(root, join.StateDir)
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, "site.crt"), filepath.Join(dir, "site.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func postRaw(t *testing.T, c *http.Client, url string, body io.Reader) (int, api.Error) {
	t.Helper()
	resp, err := c.Post(url, "application/json", body)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var e api.Error
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

func TestHeartbeatRefusals(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	root := t.TempDir()
	site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "hb-1"}), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	good := rawClient(t, h, siteCert(t, root))
	hbURL := h.url + api.PathHeartbeat

	// A site certificate from another CA (same key, even) is refused.
	other, _, err := pki.LoadOrCreateCA(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.LoadKey(filepath.Join(root, join.StateDir, "site.key"))
	if err != nil {
		t.Fatal(err)
	}
	foreignPEM, _, err := other.ClientCertificate(&key.PublicKey, site.State.SiteID, api.OrgSite, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	foreign, err := tls.X509KeyPair(foreignPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	big := `{"k3sVersion":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`
	tests := []struct {
		name   string
		client *http.Client
		body   string
		status int
		code   string
	}{
		{"no client certificate", rawClient(t, h, nil), `{}`, 401, api.CodeUnauthorized},
		{"client certificate from another CA", rawClient(t, h, &foreign), `{}`, 401, api.CodeUnauthorized},
		{"oversized body", good, big, 413, api.CodeTooLarge},
		{"malformed body", good, `{"nodes":`, 400, api.CodeBadRequest},
		{"unknown field", good, `{"nodes":1,"admin":true}`, 400, api.CodeBadRequest},
		{"negative capacity", good, `{"nodes":1,"capacity":{"cpuMillis":-1}}`, 400, api.CodeBadRequest},
		{"html in version", good, `{"nodes":1,"k3sVersion":"<script>alert(1)</script>"}`, 400, api.CodeBadRequest},
		{"sql in slot", good, `{"nodes":1,"slot":"A'; DELETE FROM sites;--"}`, 400, api.CodeBadRequest},
		{"valid", good, `{"nodes":1,"nodesReady":1,"k3sVersion":"v1.31.4+k3s1"}`, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, e := postRaw(t, tt.client, hbURL, strings.NewReader(tt.body))
			if st != tt.status || e.Code != tt.code {
				t.Fatalf("status %d code %q (%s), want %d %q", st, e.Code, e.Message, tt.status, tt.code)
			}
		})
	}
	t.Run("oversized join", func(t *testing.T) {
		st, e := postRaw(t, rawClient(t, h, nil), h.url+api.PathJoin, strings.NewReader(big))
		if st != 413 || e.Code != api.CodeTooLarge {
			t.Fatalf("status %d %+v", st, e)
		}
	})
	t.Run("admin API with a site certificate", func(t *testing.T) {
		resp, err := good.Get(h.url + api.PathAdminSites)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("site certificate reached the admin API: %s", resp.Status)
		}
	})
	t.Run("revoked site", func(t *testing.T) {
		var out bytes.Buffer
		if err := hubcli.Command(ctx, []string{"sites", "revoke", "hb-1", "--hub", h.url, "--admin-config", filepath.Join(h.dir, hub.AdminConfigFile)}, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		_, err := site.Beat(ctx, status(1, ""))
		wantRefusal(t, err, api.CodeSiteRevoked)
		if err := site.Renew(ctx); err == nil {
			t.Fatal("revoked site renewed its certificate")
		}
		if s := h.site(t, "hb-1"); s.Status != api.StatusRevoked {
			t.Fatalf("status %s, want revoked", s.Status)
		}
		// A revoked name cannot get a new token.
		_, err = h.admin.CreateToken(ctx, api.TokenRequest{Site: "hb-1", TTLSeconds: 3600, Uses: 1})
		if !hub.IsRefusal(err, api.CodeConflict) {
			t.Fatalf("token for a revoked site name: %v", err)
		}
	})
}

const manifestA = `apiVersion: v1
kind: Namespace
metadata:
  name: gdpr-tools
`

const helmChart = `apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: dcgm-exporter
  namespace: kube-system
spec:
  chart: dcgm-exporter
  repo: https://nvidia.github.io/dcgm-exporter/helm-charts
`

func TestTemplatesFollowSelection(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	root := t.TempDir()
	site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "tpl-1", Attributes: api.Attributes{Country: "FR", Tags: []string{"gdpr"}}}), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	mdir := filepath.Join(root, join.ManifestDir)
	// Somebody else's manifest in the same folder is never touched.
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mdir, "local.yaml"), []byte(manifestA), 0o644); err != nil {
		t.Fatal(err)
	}
	put := func(name, manifest string, sel map[string]string) {
		t.Helper()
		if _, err := h.admin.PutTemplate(ctx, api.Template{Name: name, Manifest: manifest, Selector: sel}); err != nil {
			t.Fatalf("template add %s: %v", name, err)
		}
	}
	files := func() string {
		t.Helper()
		if _, err := site.Beat(ctx, status(1, "")); err != nil {
			t.Fatal(err)
		}
		return dirNames(mdir)
	}
	put("gdpr-tools", manifestA, map[string]string{"tag": "gdpr"})
	put("gpu-metrics", helmChart, map[string]string{"gpu.vendor": "nvidia"})
	put("us-only", manifestA, map[string]string{"country": "US"})
	if got := files(); got != "etoile-gdpr-tools.yaml etoile-gpu-metrics.yaml local.yaml" {
		t.Fatalf("after first heartbeat: %s", got)
	}
	b, _ := os.ReadFile(filepath.Join(mdir, "etoile-gpu-metrics.yaml"))
	if string(b) != helmChart {
		t.Fatalf("HelmChart written as %q", b)
	}
	// The next heartbeat reports the applied revision (the site's own: a
	// digest of its selection); the hub sees it is what the site should have.
	files()
	if s := h.site(t, "tpl-1"); s.Heartbeat.AppliedRevision == 0 || s.Heartbeat.AppliedRevision != s.DesiredRevision {
		t.Fatalf("applied revision %d, desired %d", s.Heartbeat.AppliedRevision, s.DesiredRevision)
	}
	// Narrow a selector and remove a template: the files follow.
	put("gdpr-tools", manifestA, map[string]string{"tag": "gdpr", "country": "DE"})
	if _, err := h.admin.RemoveTemplate(ctx, "gpu-metrics"); err != nil {
		t.Fatal(err)
	}
	if got := files(); got != "local.yaml" {
		t.Fatalf("after deselection: %s", got)
	}
	// Broken manifests and hostile names are refused at the hub.
	for _, bad := range []api.Template{
		{Name: "x", Manifest: "not: [yaml"},
		{Name: "x", Manifest: "kind: Namespace\n"},
		{Name: "../../etc/cron.d/x", Manifest: manifestA},
		{Name: "x", Manifest: manifestA, Selector: map[string]string{"country": "FR' OR '1'='1"}},
	} {
		if _, err := h.admin.PutTemplate(ctx, bad); !hub.IsRefusal(err, api.CodeBadRequest) {
			t.Errorf("template %+v: %v, want bad_request", bad, err)
		}
	}
}

func TestRestartKeepsState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h := startHub(t, dir)
	pin := func() string { ca, _ := pki.LoadCA(dir); return ca.Pin() }()
	root := t.TempDir()
	site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "keep-1", Attributes: api.Attributes{Country: "DE"}}), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	h.token(t, api.TokenRequest{Site: "later-1"})
	if _, err := h.admin.PutTemplate(ctx, api.Template{Name: "base", Manifest: manifestA}); err != nil {
		t.Fatal(err)
	}
	h.stop()

	h2 := startHub(t, dir)
	if ca, _ := pki.LoadCA(dir); ca.Pin() != pin {
		t.Fatal("restart made a new CA")
	}
	if s := h2.site(t, "keep-1"); s.Country != "DE" {
		t.Fatalf("site after restart: %+v", s)
	}
	if toks, _ := h2.admin.Tokens(ctx); len(toks) != 2 {
		t.Fatalf("%d tokens after restart, want 2", len(toks))
	}
	if tl, _ := h2.admin.Templates(ctx); len(tl.Templates) != 1 {
		t.Fatalf("templates after restart: %+v", tl)
	}
	// The site reconnects to the restarted hub (new port) with its certificate.
	site.State.Hub = h2.url
	if _, err := site.Beat(ctx, status(1, "")); err != nil {
		t.Fatalf("heartbeat after restart: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, join.ManifestDir, "etoile-base.yaml")); err != nil {
		t.Fatalf("template after restart: %v", err)
	}
}

func TestPlacementOverSites(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	for _, s := range []struct {
		name, country string
		tags          []string
		gpus          int
		beat          bool
	}{
		{"paris-1", "FR", []string{"gdpr"}, 2, true},
		{"paris-2", "FR", []string{"gdpr"}, 0, true},
		{"berlin-1", "DE", []string{"gdpr"}, 2, true},
		{"lyon-1", "FR", []string{"gdpr"}, 2, false},
		{"ohio-1", "US", nil, 2, true},
	} {
		site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: s.name, Attributes: api.Attributes{Country: s.country, Jurisdiction: map[bool]string{true: "US", false: "EU"}[s.country == "US"], Tags: s.tags}}),
			join.Options{Root: t.TempDir(), Inventory: api.Inventory{Nodes: 1, GPUs: []api.GPU{{Vendor: "nvidia", Count: s.gpus}}}})
		if err != nil {
			t.Fatal(err)
		}
		if !s.beat {
			continue
		}
		gpus := s.gpus
		if _, err := site.Beat(ctx, func(context.Context) (api.Heartbeat, error) {
			return api.Heartbeat{Nodes: 1, NodesReady: 1, Capacity: api.Capacity{CPUMillis: 8000, MemoryBytes: 16 << 30, GPUs: []api.GPU{{Vendor: "nvidia", Count: gpus}}}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	err := hubcli.Command(ctx, []string{"place", "--need", "country=FR", "--need", "gpu.vendor=nvidia", "--tag", "gdpr", "--json", "--hub", h.url, "--admin-config", filepath.Join(h.dir, hub.AdminConfigFile)}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var res api.PlacementResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(len(res.Eligible), " ")
	for _, c := range res.Eligible {
		got += c.Site + " "
	}
	for _, e := range res.Excluded {
		got += e.Site + ":" + e.Rule + " "
	}
	want := "1 paris-1 berlin-1:residency lyon-1:offline ohio-1:residency paris-2:attribute "
	if got != want {
		t.Fatalf("placement %q, want %q", got, want)
	}
	evs, _ := h.admin.Audit(ctx, api.AuditPlacement, 1)
	if len(evs) != 1 || !strings.Contains(evs[0].Detail, "eligible=paris-1") || !strings.HasPrefix(evs[0].Actor, "admin:admin:") {
		t.Fatalf("placement audit: %+v", evs)
	}
}

// The admin commands work on the hub machine against its data folder while
// the hub runs (SQLite WAL lets both use the file).
func TestLocalAdminCommands(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := hubcli.Command(ctx, append(args, "--data", h.dir), &out, &errb); err != nil {
			t.Fatalf("etoile hub %s: %v\n%s", strings.Join(args, " "), err, errb.String())
		}
		return out.String()
	}
	out := run("token", "create", "--site", "local-1", "--country", "FR", "--tag", "gdpr", "--ttl", "10m", "--qr", "always")
	first, rest, _ := strings.Cut(out, "\n")
	js, err := api.ParseJoinString(first)
	if err != nil {
		t.Fatalf("first line is not a join string: %v\n%s", err, out)
	}
	if js.Hub != h.url || !strings.Contains(rest, "▀") {
		t.Fatalf("join string hub %s (want %s), QR printed: %v", js.Hub, h.url, strings.Contains(rest, "▀"))
	}
	if _, err := join.Join(ctx, js, join.Options{Root: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if got := run("sites"); !strings.Contains(got, "local-1") || !strings.Contains(got, "FR") {
		t.Fatalf("sites:\n%s", got)
	}
	if got := run("token", "list"); !strings.Contains(got, js.TokenID) || !strings.Contains(got, "used") {
		t.Fatalf("token list:\n%s", got)
	}
	if got := run("audit", "--action", api.AuditTokenCreate); !strings.Contains(got, "local:") || !strings.Contains(got, js.TokenID) {
		t.Fatalf("audit:\n%s", got)
	}
	// A folder with no hub is refused with what to do.
	err = hubcli.Command(ctx, []string{"sites", "--data", t.TempDir()}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "etoile hub serve") {
		t.Fatalf("sites on an empty folder: %v", err)
	}
}

func TestNamedAdminConfigIsAudited(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	cfgPath := filepath.Join(t.TempDir(), "alice.yaml")
	if err := hubcli.Command(ctx, []string{"admin-config", "--data", h.dir, "--name", "alice", "--out", cfgPath}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cfgPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin config: %v %v", err, fi.Mode())
	}
	var out bytes.Buffer
	// The hub has no site: nowhere to run, said by the exit status.
	var ee *hubcli.ExitError
	if err := hubcli.Command(ctx, []string{"place", "--need", "country=FR", "--hub", h.url, "--admin-config", cfgPath}, &out, io.Discard); !errors.As(err, &ee) || ee.Code != hubcli.ExitNoEligible {
		t.Fatal(err)
	}
	evs, err := h.admin.Audit(ctx, api.AuditPlacement, 1)
	if err != nil || len(evs) != 1 || !strings.HasPrefix(evs[0].Actor, "admin:alice:") {
		t.Fatalf("audit actor: %+v %v", evs, err)
	}
}

// cli runs `etoile hub ARGS…` and returns its output and error.
func cli(args ...string) (string, error) {
	var out, errb bytes.Buffer
	err := hubcli.Command(context.Background(), args, &out, &errb)
	return out.String() + errb.String(), err
}

func wantErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want an error with %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not say %q", err, w)
		}
	}
}

// Repeated --selector tag= terms are all required: a gdpr+nis2 template
// must not reach a site with gdpr only.
func TestTemplateSelectorsAreANDed(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	file := filepath.Join(t.TempDir(), "ns.yaml")
	if err := os.WriteFile(file, []byte(manifestA), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("template", "add", "eu-strict", "--file", file, "--selector", "tag=gdpr", "--selector", "tag=nis2", "--data", h.dir); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := cli("template", "list", "--data", h.dir)
	if err != nil || !strings.Contains(out, "tag=gdpr,tag=nis2") {
		t.Fatalf("template list: %v\n%s", err, out)
	}
	applied := func(name string, tags ...string) bool {
		t.Helper()
		root := t.TempDir()
		site, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: name, Attributes: api.Attributes{Tags: tags}}), join.Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := site.Beat(ctx, status(1, "")); err != nil {
			t.Fatal(err)
		}
		_, err = os.Stat(filepath.Join(root, join.ManifestDir, "etoile-eu-strict.yaml"))
		return err == nil
	}
	if applied("only-gdpr", "gdpr") {
		t.Error("the gdpr+nis2 template reached a site without nis2")
	}
	if !applied("both-1", "gdpr", "nis2") {
		t.Error("the gdpr+nis2 template missed a site with both")
	}
	// Bad selectors are refused by name, before anything is stored.
	for _, tt := range []struct {
		sel  []string
		want []string
	}{
		{[]string{"country=FR", "country=DE"}, []string{"country=FR", "country=DE"}},
		{[]string{"countyr=FR"}, []string{"countyr", "valid keys: country"}},
		{[]string{"country=fr"}, []string{"country=fr", "ISO 3166-1"}},
		{[]string{"tag=GDPR"}, []string{"tag=GDPR", "lowercase"}},
		{[]string{"tag"}, []string{"KEY=VALUE"}},
	} {
		args := []string{"template", "add", "bad", "--file", file, "--data", h.dir}
		for _, s := range tt.sel {
			args = append(args, "--selector", s)
		}
		_, err := cli(args...)
		wantErr(t, err, tt.want...)
	}
	if tl, _ := h.admin.Templates(ctx); len(tl.Templates) != 1 {
		t.Fatalf("templates after refusals: %+v", tl.Templates)
	}
}

// Nothing on the command line is ignored: leftover arguments and unknown
// subcommands are refused before any data folder is opened, and the
// flags-first form of sites works.
func TestPositionalArgumentsAreNotDropped(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	if _, err := join.Join(ctx, h.token(t, api.TokenRequest{Site: "nice-1"}), join.Options{Root: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("sites", "--data", h.dir, "revoke", "nice-1"); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("sites --data D revoke nice-1: %v\n%s", err, out)
	}
	if s := h.site(t, "nice-1"); s.RevokedAt == nil {
		t.Fatal("sites --data D revoke nice-1 did not revoke")
	}
	missing := filepath.Join(t.TempDir(), "no-hub-here")
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"audit", "--data", h.dir, "site.join"}, []string{`"site.join"`, "--action site.join"}},
		{[]string{"token", "--data", missing, "list"}, []string{"etoile hub token create|list|revoke [flags]", "--data"}},
		{[]string{"template", "--data", missing, "list"}, []string{"etoile hub template add|list|remove|rm [flags]"}},
		{[]string{"token", "frob", "--data", missing}, []string{`unknown subcommand "frob"`}},
		{[]string{"template", "frob", "--data", missing}, []string{`unknown subcommand "frob"`}},
		{[]string{"sites", "frob", "--data", missing}, []string{`unknown subcommand "frob"`}},
		{[]string{"token", "list", "extra", "--data", missing}, []string{`unexpected argument "extra"`}},
		{[]string{"token", "create", "paris-1", "--site", "paris-1", "--data", missing}, []string{`unexpected argument "paris-1"`, "--site"}},
		{[]string{"template", "list", "extra", "--data", missing}, []string{`unexpected argument "extra"`}},
		{[]string{"sites", "list", "extra", "--data", missing}, []string{`unexpected argument "extra"`}},
		{[]string{"sites", "revoke", "--data", missing}, []string{"give one site name"}},
		{[]string{"audit", "extra", "--data", missing}, []string{`unexpected argument "extra"`}},
		{[]string{"admin-config", "alice", "--data", missing}, []string{`unexpected argument "alice"`}},
		{[]string{"serve", "extra", "--data", missing}, []string{`unexpected argument "extra"`}},
		{[]string{"rules", "extra"}, []string{`unexpected argument "extra"`}},
	} {
		_, err := cli(tt.args...)
		wantErr(t, err, tt.want...)
		if strings.Contains(err.Error(), "no hub CA") || strings.Contains(err.Error(), hubcli.DefaultDataDir) {
			t.Errorf("etoile hub %s opened a data folder before refusing: %v", strings.Join(tt.args, " "), err)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused command created %s", missing)
	}
	if _, err := cli("audit", "--data", h.dir, "--action", "nosuch"); err == nil || !strings.Contains(err.Error(), api.AuditTemplateAdd) {
		t.Errorf("audit --action nosuch: %v", err)
	}
}

// A second `hub serve` on the same data folder is refused and leaves the
// running hub's settings alone; admin commands keep working beside it.
func TestSecondServeOnSameDataIsRefused(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	// Bounded: a second hub that does start must not hang the test.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := hubcli.Serve(sctx, hubcli.ServeOptions{Data: h.dir, Listen: "127.0.0.1:0", URL: "https://elsewhere.example:9999"})
	wantErr(t, err, fmt.Sprintf("data folder %s is in use by another etoile hub serve (pid %d)", h.dir, os.Getpid()))
	out, err := cli("token", "create", "--site", "after-1", "--qr", "never", "--data", h.dir)
	if err != nil {
		t.Fatal(err)
	}
	js, err := api.ParseJoinString(strings.SplitN(out, "\n", 2)[0])
	if err != nil || js.Hub != h.url {
		t.Fatalf("join string after a refused second serve: %v, hub %s (want %s)", err, js.Hub, h.url)
	}
	h.stop()
	// Stopped, the folder is free again.
	startHub(t, h.dir)
}

func TestServeRefusesBadPorts(t *testing.T) {
	// Bounded: a hub that does start must not hang the test.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	data := filepath.Join(t.TempDir(), "hub")
	err := hubcli.Serve(ctx, hubcli.ServeOptions{Data: data, Listen: "127.0.0.1:0", URL: "https://x:99999"})
	wantErr(t, err, "--url", "99999", "65535")
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused serve created its data folder: %v", err)
	}
	err = hubcli.Serve(ctx, hubcli.ServeOptions{Data: t.TempDir(), Listen: "127.0.0.1:0", SANs: []string{"x:99999"}})
	wantErr(t, err, "--san", "x:99999")
	if strings.Contains(err.Error(), "--url") {
		t.Errorf("an error about --san names --url: %v", err)
	}
}

// admin.yaml follows the hub's URL across restarts, with its credentials.
func TestAdminConfigFollowsHubURL(t *testing.T) {
	dir := t.TempDir()
	h := startHub(t, dir)
	path := filepath.Join(dir, hub.AdminConfigFile)
	before, err := hub.LoadClientConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	h.stop()
	h2 := startHub(t, dir, func(o *hubcli.ServeOptions) { o.URL = "https://localhost:7443" })
	after, err := hub.LoadClientConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Hub != h2.url || after.Hub == before.Hub || after.Cert != before.Cert || after.Key != before.Key {
		t.Fatalf("admin.yaml hub %s (want %s, was %s), same credentials: %v", after.Hub, h2.url, before.Hub, after.Cert == before.Cert && after.Key == before.Key)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.yaml mode: %v %v", err, fi.Mode())
	}
}

func TestAdminConfigTTLAndAudit(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	out := filepath.Join(t.TempDir(), "alice.yaml")
	for _, ttl := range []string{"-1h", "0", "30s", "8761h", "1000000h"} {
		_, err := cli("admin-config", "--data", h.dir, "--name", "alice", "--out", out, "--ttl", ttl)
		wantErr(t, err, "--ttl ", "is outside 1m..8760h")
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("--ttl %s wrote %s", ttl, out)
		}
	}
	if o, err := cli("admin-config", "--data", h.dir, "--name", "alice", "--out", out, "--ttl", "720h"); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	evs, err := h.admin.Audit(ctx, api.AuditAdminIssue, 10)
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, e := range evs {
		subjects = append(subjects, e.Actor+">"+e.Subject)
	}
	got := strings.Join(subjects, " ")
	if !strings.Contains(got, "local:") || !strings.Contains(got, ">alice") || !strings.Contains(got, "hub>admin") {
		t.Fatalf("admin.issue events: %s", got)
	}
}

// A remote "not found" says so once and where to look.
func TestRemoteNotFoundSaidOnce(t *testing.T) {
	h := startHub(t, t.TempDir())
	_, err := cli("token", "revoke", "nosuch", "--hub", h.url, "--admin-config", filepath.Join(h.dir, hub.AdminConfigFile))
	if err == nil || err.Error() != "hub token revoke: no token nosuch: see etoile hub token list" {
		t.Fatalf("remote revoke of a missing token: %v", err)
	}
	_, err = h.admin.RemoveTemplate(context.Background(), "nosuch")
	if err == nil || err.Error() != "no template nosuch: see etoile hub template list" || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("remote remove of a missing template: %v", err)
	}
}

// dirNames lists dir's entries' names, space-separated and sorted ("" when
// it is missing).
func dirNames(dir string) string {
	ents, _ := os.ReadDir(dir)
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return strings.Join(n, " ")
}
