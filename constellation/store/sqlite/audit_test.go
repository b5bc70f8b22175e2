package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/store"
)

// TestRefusedJoinsAreCapped: refused joins, which anybody can cause, keep
// only the newest store.KeepJoinRefusals rows; the rest of the audit trail
// is never deleted.
func TestRefusedJoinsAreCapped(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
	now := time.Now().UTC()
	if err := s.Audit(ctx, api.AuditEvent{At: now, Actor: "local:root", Action: api.AuditPlacement, Subject: "placement", Detail: "before the flood"}); err != nil {
		t.Fatal(err)
	}
	// A flood's worth of refusals already recorded, oldest first.
	if _, err := s.w.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO audit (at, actor, action, subject, detail) SELECT ?, 'token:x', ?, 'token_invalid', 'old ' || i FROM n`,
		store.KeepJoinRefusals, us(now), api.AuditSiteJoinRefuse); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		ev := api.AuditEvent{At: now, Actor: "token:y", Action: api.AuditSiteJoinRefuse, Subject: api.CodeTokenInvalid, Detail: fmt.Sprintf("new %d", i)}
		if err := s.Audit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.AuditEvents(ctx, api.AuditSiteJoinRefuse, 2*store.KeepJoinRefusals)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != store.KeepJoinRefusals {
		t.Fatalf("%d %s events kept, want the newest %d", len(evs), api.AuditSiteJoinRefuse, store.KeepJoinRefusals)
	}
	if evs[0].Detail != "new 2" || evs[len(evs)-1].Detail != "old 4" {
		t.Errorf("kept %q … %q, want the newest (\"new 2\" … \"old 4\")", evs[0].Detail, evs[len(evs)-1].Detail)
	}
	if other, err := s.AuditEvents(ctx, api.AuditPlacement, 10); err != nil || len(other) != 1 {
		t.Errorf("the placement event older than every refusal: %+v %v, want it kept", other, err)
	}
}
