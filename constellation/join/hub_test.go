package join_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hub"
	"github.com/etoile-os/etoile/constellation/join"
	"github.com/etoile-os/etoile/constellation/pki"
	"github.com/etoile-os/etoile/constellation/store/sqlite"
)

// testHub is a real hub (TLS, SQLite) on loopback with a movable clock.
type testHub struct {
	dir, url string
	offset   atomic.Int64
	admin    hub.Admin
	stop     func()
}

func (h *testHub) advance(d time.Duration) { h.offset.Add(int64(d)) }

// startHub serves a hub from dir (its CA and database kept there) on addr
// ("127.0.0.1:0" for any port); writeStall scales hub.Server.WriteStall.
func startHub(t *testing.T, dir, addr string, writeStall time.Duration) *testHub {
	t.Helper()
	h := &testHub{dir: dir}
	now := func() time.Time { return time.Now().Add(time.Duration(h.offset.Load())) }
	ctx, cancel := context.WithCancel(context.Background())
	ca, _, err := pki.LoadOrCreateCA(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "hub.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h.url = "https://" + l.Addr().String()
	if err := st.SetMeta(ctx, hub.MetaURL, h.url); err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate([]string{"127.0.0.1"}, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	svc := &hub.Service{Store: st, CA: ca, Now: now, HeartbeatInterval: time.Second}
	h.admin = svc.As("local:test")
	srv := &hub.Server{Service: svc, WriteStall: writeStall}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, hub.Listeners{API: l}, cert) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("hub stopped with %v", err)
			}
			st.Close()
		})
	}
	t.Cleanup(h.stop)
	return h
}

func (h *testHub) token(t *testing.T, site string) api.JoinString {
	t.Helper()
	resp, err := h.admin.CreateToken(context.Background(), api.TokenRequest{Site: site, TTLSeconds: 3600, Uses: 1})
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	js, err := api.ParseJoinString(resp.JoinString)
	if err != nil {
		t.Fatal(err)
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
	t.Fatalf("site %s not listed", name)
	return api.Site{}
}

func (h *testHub) tokenUses(t *testing.T, id string) int {
	t.Helper()
	toks, err := h.admin.Tokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range toks {
		if tk.ID == id {
			return tk.Uses
		}
	}
	t.Fatalf("token %s not listed", id)
	return 0
}

func healthy(context.Context) (api.Heartbeat, error) {
	return api.Heartbeat{Nodes: 1, NodesReady: 1, Slot: "a"}, nil
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runFor runs site's heartbeats until they return or d passes.
func runFor(site *join.Site, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return site.Run(ctx, healthy)
}

// TestRefusedSiteJoinsAgainWithNewJoinString: a site the hub no longer
// accepts, whatever the reason (off past the renewal grace, unknown to a
// hub whose database was lost, its name taken over by another machine),
// stops heartbeating with ErrRefused, says so when given its old join
// string, and joins again with a new join string from its machine config.
func TestRefusedSiteJoinsAgainWithNewJoinString(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		refuse func(t *testing.T, h *testHub, site string) *testHub // makes the hub refuse site; returns the hub now serving
	}{
		{"past the renewal grace", func(t *testing.T, h *testHub, _ string) *testHub {
			h.advance(33 * 24 * time.Hour)
			return h
		}},
		{"hub database lost", func(t *testing.T, h *testHub, _ string) *testHub {
			h.stop()
			for _, f := range []string{"hub.db", "hub.db-wal", "hub.db-shm"} {
				if err := os.Remove(filepath.Join(h.dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			}
			return startHub(t, h.dir, strings.TrimPrefix(h.url, "https://"), 0)
		}},
		{"name taken over by another key", func(t *testing.T, h *testHub, site string) *testHub {
			if _, err := join.Join(ctx, h.token(t, site), join.Options{Root: t.TempDir()}); err != nil {
				t.Fatal(err)
			}
			return h
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHub(t, t.TempDir(), "127.0.0.1:0", 0)
			root := t.TempDir()
			js1 := h.token(t, "cold-1")
			site, err := join.EnsureJoined(ctx, js1.String(), join.Options{Root: root})
			if err != nil {
				t.Fatal(err)
			}
			h = tc.refuse(t, h, "cold-1")
			err = runFor(site, 20*time.Second)
			if !errors.Is(err, join.ErrRefused) || !strings.Contains(err.Error(), "new join string") {
				t.Fatalf("heartbeats to a hub that refuses the site returned %v, want ErrRefused saying to give a new join string", err)
			}
			// The join string it joined with cannot bring it back: it says so.
			if _, err := join.EnsureJoined(ctx, js1.String(), join.Options{Root: root}); !errors.Is(err, join.ErrRefused) || !strings.Contains(err.Error(), "give it a new one") {
				t.Fatalf("EnsureJoined with the old join string: %v, want ErrRefused asking for a new one", err)
			}
			js2 := h.token(t, "cold-1")
			site, err = join.EnsureJoined(ctx, js2.String(), join.Options{Root: root})
			if err != nil {
				t.Fatalf("EnsureJoined with a new join string: %v", err)
			}
			if uses := h.tokenUses(t, js2.TokenID); uses != 1 || site.State.TokenID != js2.TokenID || site.State.Refused != "" {
				t.Fatalf("the new join string's token was used %d times; the site's state names token %s (want %s), refused %q", uses, site.State.TokenID, js2.TokenID, site.State.Refused)
			}
			if _, err := site.Beat(ctx, healthy); err != nil {
				t.Fatalf("heartbeat after joining again: %v", err)
			}
			// Joined: the next start loads it, whatever join string it has.
			again, err := join.EnsureJoined(ctx, js2.String(), join.Options{Root: root})
			if err != nil || again.State.SiteID != site.State.SiteID {
				t.Fatalf("EnsureJoined after the rejoin: %v", err)
			}
		})
	}
}

// TestSiteBehindRenewsWhenTheHubSaysExpired: with the hub's clock ahead of
// the site's (a site without NTP), the certificate expires at the hub before
// the site sees renewal due; the hub's refusal makes it renew at once.
func TestSiteBehindRenewsWhenTheHubSaysExpired(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir(), "127.0.0.1:0", 0)
	site, err := join.Join(ctx, h.token(t, "late-1"), join.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h.advance(25 * time.Hour)
	if site.NeedsRenewal(time.Now()) {
		t.Fatal("the site's clock sees renewal due: the test does not show a site behind")
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- site.Run(rctx, healthy) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "a heartbeat the hub takes", 20*time.Second, func() bool { return h.site(t, "late-1").LastHeartbeat != nil })
}

// TestPersistentRefusalsAreReported: heartbeats the hub keeps refusing are
// reported through Warn after RefusalsToWarn of them, with the hub's
// words; the warning goes with the first heartbeat taken.
func TestPersistentRefusalsAreReported(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir(), "127.0.0.1:0", 0)
	site, err := join.Join(ctx, h.token(t, "odd-1"), join.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var warning string
	warned := false
	site.Warn = func(w string) { mu.Lock(); warning, warned = w, true; mu.Unlock() }
	current := func() (string, bool) { mu.Lock(); defer mu.Unlock(); return warning, warned }
	var bad atomic.Bool
	bad.Store(true)
	status := func(context.Context) (api.Heartbeat, error) {
		hb := api.Heartbeat{Nodes: 1, NodesReady: 1, Slot: "a"}
		if bad.Load() {
			hb.Slot = "c" // refused by the hub: bad_request
		}
		return hb, nil
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- site.Run(rctx, status) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the refusals reported", 30*time.Second, func() bool {
		w, _ := current()
		return strings.Contains(w, "refused the last") && strings.Contains(w, "slot")
	})
	bad.Store(false)
	waitFor(t, "the warning cleared", 30*time.Second, func() bool { w, ok := current(); return ok && w == "" })
}

// TestUndeployableTemplatesAreNotReportedApplied: templates the machine
// cannot deploy (Undeployable) are not written, and the hub keeps showing
// the site behind instead of the set as applied; those it can are written.
func TestUndeployableTemplatesAreNotReportedApplied(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir(), "127.0.0.1:0", 0)
	putConfigMaps(t, h, "plain", "chart")
	root := t.TempDir()
	site, err := join.Join(ctx, h.token(t, "worker-1"), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	site.Undeployable = func(o api.TemplateObject) string {
		if o.Name == "chart" {
			return "nothing here deploys it"
		}
		return ""
	}
	for range 2 { // the second reports what the first applied
		if _, err := site.Beat(ctx, healthy); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(root, join.ManifestDir)
	if _, err := os.Stat(filepath.Join(dir, "etoile-chart.yaml")); err == nil {
		t.Error("a template this machine cannot deploy was written")
	}
	if _, err := os.Stat(filepath.Join(dir, "etoile-plain.yaml")); err != nil {
		t.Errorf("a deployable template was not written: %v", err)
	}
	s := h.site(t, "worker-1")
	if s.Heartbeat.AppliedRevision == s.DesiredRevision {
		t.Errorf("the hub shows the templates applied (revision %d of %d) though one cannot be deployed", s.Heartbeat.AppliedRevision, s.DesiredRevision)
	}
	// The hub is told which set and why, and does not send that set at
	// every heartbeat (a written template removed by hand stays removed).
	if s.Heartbeat.RefusedRevision != s.DesiredRevision || !strings.Contains(s.Heartbeat.TemplatesProblem, "nothing here deploys it") {
		t.Errorf("the hub's record of the site: refused revision %d (desired %d), problem %q", s.Heartbeat.RefusedRevision, s.DesiredRevision, s.Heartbeat.TemplatesProblem)
	}
	if err := os.Remove(filepath.Join(dir, "etoile-plain.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := site.Beat(ctx, healthy); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etoile-plain.yaml")); err == nil {
		t.Error("the hub sent again the set the site said it cannot deploy")
	}
	// Once it can be deployed (the node became a server), it is, and the
	// hub shows the site up to date.
	site.Undeployable = nil
	for range 2 {
		if _, err := site.Beat(ctx, healthy); err != nil {
			t.Fatal(err)
		}
	}
	if s := h.site(t, "worker-1"); s.Heartbeat.AppliedRevision != s.DesiredRevision {
		t.Errorf("applied revision %d, desired %d, once deployable", s.Heartbeat.AppliedRevision, s.DesiredRevision)
	}
}

// throttledProxy forwards TCP to addr, the answers at about bps bytes a
// second; with stopAfter > 0 it stops forwarding answers after that many
// bytes (a link gone dead), keeping the connection open.
func throttledProxy(t *testing.T, addr string, bps, stopAfter int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, u)
			mu.Unlock()
			conns.Add(2)
			go func() { defer conns.Done(); io.Copy(u, c); u.Close() }()
			go func() {
				defer conns.Done()
				defer c.Close()
				buf := make([]byte, bps/20)
				sent := 0
				for {
					n, err := u.Read(buf)
					if stopAfter > 0 && sent+n > stopAfter {
						// Dead link: hold on, send nothing more.
						io.Copy(io.Discard, u)
						return
					}
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
						sent += n
						time.Sleep(time.Duration(n) * time.Second / time.Duration(bps))
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func putBigTemplates(t *testing.T, h *testHub, n, size int) {
	t.Helper()
	for i := range n {
		m := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c" + fmt.Sprint(i) + "\ndata:\n  a: \"" + strings.Repeat("x", size) + "\"\n"
		if _, err := h.admin.PutTemplate(context.Background(), api.Template{Name: fmt.Sprintf("big%d", i), Manifest: m}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSlowLinkGetsItsTemplates: a template set that takes several times
// the stall bound to cross a slow link arrives, since both the hub and
// the site bound the exchange by its progress, not its length (the bound
// is scaled down from 30 s to 1 s here).
func TestSlowLinkGetsItsTemplates(t *testing.T) {
	ctx := context.Background()
	const stall = time.Second
	h := startHub(t, t.TempDir(), "127.0.0.1:0", stall)
	putBigTemplates(t, h, 4, 400_000) // 1.6 MB, 4 s at 400 KB/s
	js := h.token(t, "slow-1")
	js.Hub = "https://" + throttledProxy(t, strings.TrimPrefix(h.url, "https://"), 400_000, 0)
	root := t.TempDir()
	site, err := join.Join(ctx, js, join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	site.Stall = stall
	if _, err := site.Beat(ctx, healthy); err != nil {
		t.Fatalf("heartbeat with 1.6 MB of templates over a slow link: %v", err)
	}
	if site.State.AppliedRevision == 0 {
		t.Fatal("templates not applied")
	}
	for i := range 4 {
		if _, err := os.Stat(filepath.Join(root, join.ManifestDir, fmt.Sprintf("etoile-big%d.yaml", i))); err != nil {
			t.Errorf("template big%d not written: %v", i, err)
		}
	}
}

// TestDeadLinkIsGivenUp: an answer that stops coming is given up after the
// stall bound, saying so, rather than waited for.
func TestDeadLinkIsGivenUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h := startHub(t, t.TempDir(), "127.0.0.1:0", 0)
	putBigTemplates(t, h, 2, 400_000)
	js := h.token(t, "dead-1")
	hubAddr := strings.TrimPrefix(h.url, "https://")
	site, err := join.Join(ctx, js, join.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// The site's further exchanges go through a link that dies after
	// 100 KB of answer.
	site.State.Hub = "https://" + throttledProxy(t, hubAddr, 1_000_000, 100_000)
	site.Stall = 500 * time.Millisecond
	_, err = site.Beat(ctx, healthy)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "nothing received from the hub for 500ms") {
		t.Fatalf("heartbeat over a dead link: %v, want it given up after the stall bound", err)
	}
}

// TestDeployStateChangeJudgesTheTemplatesAgain: a node whose helm
// controller is disabled by a config applied later (DeployState changes)
// asks for its templates again, removes the one it can no longer deploy,
// and the hub no longer shows the set applied.
func TestDeployStateChangeJudgesTheTemplatesAgain(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir(), "127.0.0.1:0", 0)
	putConfigMaps(t, h, "plain", "chart")
	root := t.TempDir()
	site, err := join.Join(ctx, h.token(t, "server-1"), join.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	site.DeployState = "role=server helm-controller-disabled=false"
	for range 2 {
		if _, err := site.Beat(ctx, healthy); err != nil {
			t.Fatal(err)
		}
	}
	chart := filepath.Join(root, join.ManifestDir, "etoile-chart.yaml")
	if _, err := os.Stat(chart); err != nil {
		t.Fatalf("the template was not written while deployable: %v", err)
	}
	if s := h.site(t, "server-1"); s.Heartbeat.AppliedRevision != s.DesiredRevision {
		t.Fatalf("applied revision %d, desired %d", s.Heartbeat.AppliedRevision, s.DesiredRevision)
	}
	site.DeployState = "role=server helm-controller-disabled=true"
	site.Undeployable = func(o api.TemplateObject) string {
		if o.Name == "chart" {
			return "the helm controller is disabled"
		}
		return ""
	}
	for range 2 {
		if _, err := site.Beat(ctx, healthy); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(chart); err == nil {
		t.Error("a template the node can no longer deploy is still in its manifests folder")
	}
	if s := h.site(t, "server-1"); s.Heartbeat.AppliedRevision == s.DesiredRevision {
		t.Errorf("the hub shows the set applied (revision %d) though one template can no longer be deployed", s.Heartbeat.AppliedRevision)
	}
}

// putConfigMaps adds one template per name to the hub, a ConfigMap of
// that name, selecting every site.
func putConfigMaps(t *testing.T, h *testHub, names ...string) {
	t.Helper()
	for _, n := range names {
		m := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + n + "\n"
		if _, err := h.admin.PutTemplate(context.Background(), api.Template{Name: n, Manifest: m}); err != nil {
			t.Fatal(err)
		}
	}
}
