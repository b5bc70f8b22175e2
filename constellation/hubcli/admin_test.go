package hubcli_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hub"
	"github.com/etoile-os/etoile/constellation/hubcli"
	"github.com/etoile-os/etoile/constellation/pki"
	"github.com/etoile-os/etoile/constellation/store"
	"github.com/etoile-os/etoile/constellation/store/sqlite"
	"github.com/etoile-os/etoile/internal/syncbuf"
)

// adminClient is a remote admin over the config at path.
func adminClient(t *testing.T, h *testHub, path string) hub.Admin {
	t.Helper()
	cfg, err := hub.LoadClientConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := hub.NewClient(cfg, h.url)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantRevoked checks that a remote admin request was refused for name's
// revocation, saying what to do.
func wantRevoked(t *testing.T, err error, name string) {
	t.Helper()
	if !hub.IsRefusal(err, api.CodeUnauthorized) || !strings.Contains(err.Error(), "admin credential "+name+" was revoked at ") ||
		!strings.Contains(err.Error(), "etoile hub admin-config") {
		t.Fatalf("request with a revoked %s credential: %v", name, err)
	}
}

// Revoking alice refuses alice.yaml at its next request, over real TLS,
// even on a connection it already used; admin.yaml keeps working; alice
// issued again works; an admin may revoke its own name.
func TestAdminRevokeRefusesTheCredential(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	adminYAML := filepath.Join(h.dir, hub.AdminConfigFile)
	alicePath := filepath.Join(t.TempDir(), "alice.yaml")
	if out, err := cli("admin-config", "--data", h.dir, "--name", "alice", "--out", alicePath); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	alice := adminClient(t, h, alicePath)
	if _, err := alice.Sites(ctx); err != nil {
		t.Fatalf("alice before revoke: %v", err)
	}
	out, err := cli("admin", "revoke", "alice", "--hub", h.url, "--admin-config", adminYAML)
	if err != nil || !strings.Contains(out, "admin credential alice revoked at ") || !strings.Contains(out, "(1 recorded)") {
		t.Fatalf("admin revoke alice: %v\n%s", err, out)
	}
	_, err = alice.Sites(ctx) // the same client, its connection kept
	wantRevoked(t, err, "alice")
	_, err = cli("sites", "--hub", h.url, "--admin-config", alicePath)
	wantRevoked(t, err, "alice")
	if _, err := h.admin.Sites(ctx); err != nil {
		t.Fatalf("admin.yaml after alice's revoke: %v", err)
	}

	// alice again: a new certificate, issued after the revocation, works;
	// the old one stays refused.
	alice2Path := filepath.Join(t.TempDir(), "alice2.yaml")
	if out, err := cli("admin-config", "--data", h.dir, "--name", "alice", "--out", alice2Path); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	alice2 := adminClient(t, h, alice2Path)
	if _, err := alice2.Sites(ctx); err != nil {
		t.Fatalf("alice issued again: %v", err)
	}
	_, err = alice.Sites(ctx)
	wantRevoked(t, err, "alice")

	// The list, remotely as JSON and locally as a table.
	out, err = cli("admin", "list", "--json", "--hub", h.url, "--admin-config", adminYAML)
	if err != nil {
		t.Fatalf("admin list: %v\n%s", err, out)
	}
	var list api.AdminList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("admin list --json: %v\n%s", err, out)
	}
	state := map[string]int{}
	for _, c := range list.Certificates {
		k := c.Name + ":valid"
		if c.RevokedAt != nil {
			k = c.Name + ":revoked"
		}
		state[k]++
		if c.Serial == "" || len(c.KeySHA256) != 64 || !c.NotAfter.After(c.IssuedAt) || c.IssuedBy == "" {
			t.Errorf("admin certificate record: %+v", c)
		}
	}
	if state["admin:valid"] != 1 || state["alice:revoked"] != 1 || state["alice:valid"] != 1 || len(list.Certificates) != 3 ||
		len(list.Revocations) != 1 || list.Revocations[0].Name != "alice" {
		t.Fatalf("admin list: %+v", list)
	}
	out, err = cli("admin", "list", "--data", h.dir)
	if err != nil || !strings.Contains(out, "NAME") || strings.Count(out, "alice") < 3 || !strings.Contains(out, "revoked") || !strings.Contains(out, "valid") {
		t.Fatalf("admin list:\n%s %v", out, err)
	}

	// Unknown names are refused, saying where to look; nothing is recorded.
	_, err = cli("admin", "revoke", "bob", "--data", h.dir)
	wantErr(t, err, "no admin credential bob", "etoile hub admin list")
	_, err = h.admin.RevokeAdmin(ctx, "bob")
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "etoile hub admin list") {
		t.Fatalf("remote revoke of an unknown admin: %v", err)
	}
	_, err = cli("admin", "revoke", "--data", h.dir)
	wantErr(t, err, "give one admin name")

	// alice revokes her own name: the answer comes, then she is refused.
	if _, err := alice2.RevokeAdmin(ctx, "alice"); err != nil {
		t.Fatalf("revoking one's own name: %v", err)
	}
	_, err = alice2.Sites(ctx)
	wantRevoked(t, err, "alice")

	evs, err := h.admin.Audit(ctx, api.AuditAdminRevoke, 10)
	if err != nil || len(evs) != 2 || evs[0].Subject != "alice" || !strings.HasPrefix(evs[0].Actor, "admin:alice:") ||
		!strings.HasPrefix(evs[1].Actor, "admin:admin:") || !strings.Contains(evs[1].Detail, "certificates_revoked=1") {
		t.Fatalf("admin.revoke events: %+v %v", evs, err)
	}
	if out, err := cli("audit", "--data", h.dir, "--action", "nosuch"); err == nil || !strings.Contains(err.Error(), api.AuditAdminRevoke) {
		t.Fatalf("audit --action help does not list %s: %v %s", api.AuditAdminRevoke, err, out)
	}
}

// unrecordedAdmin writes an admin config whose certificate comes straight
// from the CA, as admin-config made them before the hub recorded them.
func unrecordedAdmin(t *testing.T, ca *pki.CA, hubURL, name string) string {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.ClientCertificate(&key.PublicKey, name, api.OrgAdmin, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".yaml")
	b := "apiVersion: etoile.io/v1alpha1\nkind: HubClientConfig\nhub: " + hubURL + "\nca: " + jsonString(ca.CertPEM) + "\ncert: " + jsonString(certPEM) + "\nkey: " + jsonString(keyPEM) + "\n"
	if err := os.WriteFile(path, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func jsonString(b []byte) string {
	s, _ := json.Marshal(string(b))
	return string(s)
}

// A certificate the hub has no record of (issued before it recorded them)
// is refused once its name is revoked, when it was issued before the
// revocation; another name's is not.
func TestAdminRevokeRefusesUnrecordedCertificates(t *testing.T) {
	ctx := context.Background()
	h := startHub(t, t.TempDir())
	ca, err := pki.LoadCA(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	carol := adminClient(t, h, unrecordedAdmin(t, ca, h.url, "carol"))
	dave := adminClient(t, h, unrecordedAdmin(t, ca, h.url, "dave"))
	for _, c := range []hub.Admin{carol, dave} {
		if _, err := c.Sites(ctx); err != nil {
			t.Fatalf("unrecorded certificate before any revoke: %v", err)
		}
	}
	// Such a certificate was audited when it was issued: that is how the
	// hub knows the name.
	_, err = cli("admin", "revoke", "carol", "--data", h.dir)
	wantErr(t, err, "no admin credential carol", "etoile hub admin list")
	st, err := sqlite.Open(ctx, filepath.Join(h.dir, hubcli.DBFile), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Audit(ctx, api.AuditEvent{At: time.Now().UTC(), Actor: "local:old", Action: api.AuditAdminIssue, Subject: "carol", Detail: "ttl=24h0m0s"})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cli("admin", "revoke", "carol", "--data", h.dir)
	if err != nil || !strings.Contains(out, "(0 recorded)") {
		t.Fatalf("admin revoke carol: %v\n%s", err, out)
	}
	_, err = carol.Sites(ctx)
	wantRevoked(t, err, "carol")
	if _, err := dave.Sites(ctx); err != nil {
		t.Fatalf("another name's unrecorded certificate after carol's revoke: %v", err)
	}
	// An unrecorded carol certificate issued after the revocation is not
	// refused for it (the hub's clock moves with the CA's).
	h.advance(time.Hour)
	later, _, err := pki.LoadOrCreateCA(h.dir, func() time.Time { return time.Now().Add(time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminClient(t, h, unrecordedAdmin(t, later, h.url, "carol")).Sites(ctx); err != nil {
		t.Fatalf("unrecorded carol certificate issued after the revocation: %v", err)
	}
	_, err = carol.Sites(ctx)
	wantRevoked(t, err, "carol")
	out, err = cli("admin", "list", "--data", h.dir)
	if err != nil || !strings.Contains(out, "REVOKED NAME") || !strings.Contains(out, "carol") {
		t.Fatalf("admin list:\n%s %v", out, err)
	}
}

// The hub's own admin.yaml is issued again at a start when it expires
// within 30 days, has expired or was revoked; the new one works. The first
// start runs with the hub's clock set back instead of the restart's moved
// forward: the admin client checks the hub's certificate with the real
// clock.
func TestHubAdminConfigIssuedAgainAtStart(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		back   time.Duration // the first start's clock, before now
		revoke bool
	}{
		{"expired", 366 * 24 * time.Hour, false},
		{"expiring", 340 * 24 * time.Hour, false},
		{"revoked", 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, hub.AdminConfigFile)
			h := startHub(t, dir, func(o *hubcli.ServeOptions) {
				o.Now = func() time.Time { return time.Now().Add(-tt.back) }
			})
			if tt.revoke {
				// admin.yaml revokes its own name.
				if _, err := h.admin.RevokeAdmin(ctx, "admin"); err != nil {
					t.Fatal(err)
				}
				_, err := h.admin.Sites(ctx)
				wantRevoked(t, err, "admin")
			}
			before, err := hub.LoadAdminCert(path)
			if err != nil {
				t.Fatal(err)
			}
			h.stop()
			var logs syncbuf.Buffer
			h2 := startHub(t, dir, func(o *hubcli.ServeOptions) { o.Log = slog.New(slog.NewTextHandler(&logs, nil)) })
			if l := logs.String(); !strings.Contains(l, `msg="admin config issued again"`) || !strings.Contains(l, "why=\"its certificate ") {
				t.Errorf("the hub's log does not say admin.yaml was issued again:\n%s", l)
			}
			after, err := hub.LoadAdminCert(path)
			if err != nil {
				t.Fatal(err)
			}
			if after.SerialNumber.Cmp(before.SerialNumber) == 0 || after.Subject.CommonName != "admin" {
				t.Fatalf("admin.yaml not issued again: serial %x, name %s", after.SerialNumber, after.Subject.CommonName)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("admin.yaml mode: %v %v", err, fi.Mode())
			}
			if _, err := h2.admin.Sites(ctx); err != nil {
				t.Fatalf("admin.yaml issued again: %v", err)
			}
			evs, err := h2.admin.Audit(ctx, api.AuditAdminIssue, 1)
			if err != nil || len(evs) != 1 || evs[0].Actor != "hub" || evs[0].Subject != "admin" || !strings.Contains(evs[0].Detail, "reason="+tt.name) {
				t.Fatalf("admin.issue event: %+v %v", evs, err)
			}
			list, err := h2.admin.AdminCerts(ctx)
			if err != nil || len(list.Certificates) != 2 {
				t.Fatalf("admin list: %+v %v", list, err)
			}
			// A further start keeps the new one.
			h2.stop()
			startHub(t, dir)
			again, err := hub.LoadAdminCert(path)
			if err != nil || again.SerialNumber.Cmp(after.SerialNumber) != 0 {
				t.Fatalf("admin.yaml issued again at a start where it was fine: %v", err)
			}
		})
	}
}

// A hub whose database predates the admin certificate records keeps
// working: the tables are made, and its admin.yaml is recorded at start.
func TestHubAdminConfigFromBeforeRecordsIsRecorded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h := startHub(t, dir)
	h.stop()
	// The database as an etoile from before the records left it.
	db, err := sql.Open("sqlite3_etoile_hub", filepath.Join(dir, hubcli.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TABLE admin_certs`, `DROP TABLE admin_revocations`, `PRAGMA user_version = 1`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	before, err := hub.LoadAdminCert(filepath.Join(dir, hub.AdminConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	h2 := startHub(t, dir)
	list, err := h2.admin.AdminCerts(ctx)
	if err != nil || len(list.Certificates) != 1 || list.Certificates[0].Serial != before.SerialNumber.Text(16) {
		t.Fatalf("admin list after the upgrade: %+v %v", list, err)
	}
}

// TestHubAdminConfigIssuedAgainWhileRunning: a hub that runs on until its
// admin.yaml is within 30 days of expiry issues it again by itself, as it
// looks at its TLS certificate.
func TestHubAdminConfigIssuedAgainWhileRunning(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, hub.AdminConfigFile)
	h := startHub(t, dir, func(o *hubcli.ServeOptions) { o.CertCheckEvery = 100 * time.Millisecond })
	before, err := hub.LoadAdminCert(path)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // checks that find it fine leave it alone
	if same, err := hub.LoadAdminCert(path); err != nil || same.SerialNumber.Cmp(before.SerialNumber) != 0 {
		t.Fatalf("admin.yaml issued again while it was fine: %v", err)
	}
	h.advance(340 * 24 * time.Hour)
	deadline := time.Now().Add(20 * time.Second)
	for {
		after, err := hub.LoadAdminCert(path)
		if err == nil && after.SerialNumber.Cmp(before.SerialNumber) != 0 {
			if !after.NotAfter.After(before.NotAfter) {
				t.Errorf("the new admin.yaml expires %s, not after the old one's %s", after.NotAfter, before.NotAfter)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin.yaml not issued again 340 days on, 20 s after the clock moved: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
