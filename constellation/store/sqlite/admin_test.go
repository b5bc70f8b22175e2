package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/store"
)

// A database of schema 1 (before admin certificates were recorded) is
// migrated in place and keeps its data.
func TestMigrationAddsAdminTables(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	s := open(t, path)
	now := time.Now().UTC()
	tok := api.Token{ID: "0123456789abcdef", SecretHash: store.HashSecret("s"), Site: "a", CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: 1, CreatedBy: "t"}
	if err := s.CreateToken(ctx, tok, api.AuditEvent{At: now, Actor: "t", Action: api.AuditTokenCreate}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TABLE admin_certs`, `DROP TABLE admin_revocations`, `PRAGMA user_version = 1`} {
		if _, err := s.w.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s2 := open(t, path)
	if toks, err := s2.Tokens(ctx); err != nil || len(toks) != 1 {
		t.Fatalf("tokens after migration: %+v %v", toks, err)
	}
	c := api.AdminCert{Serial: "ab12", Name: "alice", KeySHA256: strings.Repeat("a", 64), IssuedAt: now, NotAfter: now.Add(time.Hour), IssuedBy: "t"}
	if err := s2.RecordAdminCert(ctx, c, api.AuditEvent{At: now, Actor: "t", Action: api.AuditAdminIssue, Subject: "alice"}); err != nil {
		t.Fatalf("recording after migration: %v", err)
	}
}

func TestAdminRevocation(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ev := func(action, subject string) api.AuditEvent {
		return api.AuditEvent{At: t0, Actor: "t", Action: action, Subject: subject}
	}
	record := func(serial, name string, at time.Time) {
		t.Helper()
		c := api.AdminCert{Serial: serial, Name: name, KeySHA256: strings.Repeat("b", 64), IssuedAt: at, NotAfter: at.Add(24 * time.Hour), IssuedBy: "t"}
		if err := s.RecordAdminCert(ctx, c, ev(api.AuditAdminIssue, name)); err != nil {
			t.Fatal(err)
		}
	}
	admit := func(serial, name string, notBefore time.Time) error {
		t.Helper()
		st, err := s.AdminStatus(ctx, serial, name)
		if err != nil {
			t.Fatal(err)
		}
		return store.AdmitAdmin(st, name, notBefore)
	}
	record("a1", "alice", t0)
	record("b1", "bob", t0)
	if err := s.RecordAdminCert(ctx, api.AdminCert{Serial: "a1", Name: "alice", KeySHA256: "x", IssuedBy: "t"}, ev(api.AuditAdminIssue, "alice")); err == nil {
		t.Fatal("a serial recorded twice")
	}
	if err := admit("a1", "alice", t0); err != nil {
		t.Fatalf("recorded, not revoked: %v", err)
	}

	// Unknown names: never recorded, revoked or audited.
	_, err := s.RevokeAdmin(ctx, "carol", t0, ev(api.AuditAdminRevoke, "carol"))
	var nf *store.NotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "etoile hub admin list") {
		t.Fatalf("revoking an unknown name: %v", err)
	}
	// A name only the audit knows (issued before the records) is known.
	if err := s.Audit(ctx, ev(api.AuditAdminIssue, "carol")); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(time.Hour)
	rev, err := s.RevokeAdmin(ctx, "carol", t1, ev(api.AuditAdminRevoke, "carol"))
	if err != nil || rev.Certificates != 0 || !rev.RevokedAt.Equal(t1) {
		t.Fatalf("revoking carol: %+v %v", rev, err)
	}
	if err := admit("c0", "carol", t0); err == nil || !strings.Contains(err.Error(), "admin credential carol was revoked at "+t1.Format(time.RFC3339)) {
		t.Fatalf("unrecorded carol from before the revoke: %v", err)
	}
	if err := admit("c9", "carol", t1.Add(time.Minute)); err != nil {
		t.Fatalf("unrecorded carol from after the revoke: %v", err)
	}

	rev, err = s.RevokeAdmin(ctx, "alice", t1, ev(api.AuditAdminRevoke, "alice"))
	if err != nil || rev.Certificates != 1 {
		t.Fatalf("revoking alice: %+v %v", rev, err)
	}
	if err := admit("a1", "alice", t0); err == nil {
		t.Fatal("revoked alice accepted")
	}
	if err := admit("b1", "bob", t0); err != nil {
		t.Fatalf("bob after alice's revoke: %v", err)
	}
	// alice issued again, after: recorded and not revoked, so accepted
	// even with a NotBefore dated back before the revocation.
	record("a2", "alice", t1.Add(time.Minute))
	if err := admit("a2", "alice", t0); err != nil {
		t.Fatalf("alice issued again: %v", err)
	}
	// Revoked again: the later time holds, the earlier revocation of a1 too.
	t2 := t1.Add(time.Hour)
	if rev, err := s.RevokeAdmin(ctx, "alice", t2, ev(api.AuditAdminRevoke, "alice")); err != nil || rev.Certificates != 1 || !rev.RevokedAt.Equal(t2) {
		t.Fatalf("revoking alice again: %+v %v", rev, err)
	}
	list, err := s.AdminCerts(ctx)
	if err != nil || len(list.Certificates) != 3 || len(list.Revocations) != 2 {
		t.Fatalf("admin list: %+v %v", list, err)
	}
	for _, c := range list.Certificates {
		switch {
		case c.Serial == "a1" && (c.RevokedAt == nil || !c.RevokedAt.Equal(t1)),
			c.Serial == "a2" && (c.RevokedAt == nil || !c.RevokedAt.Equal(t2)),
			c.Serial == "b1" && c.RevokedAt != nil:
			t.Errorf("listed %+v", c)
		}
	}
	evs, err := s.AuditEvents(ctx, api.AuditAdminRevoke, 10)
	if err != nil || len(evs) != 3 || evs[0].Detail != "certificates_revoked=1" {
		t.Fatalf("admin.revoke events: %+v %v", evs, err)
	}
}
