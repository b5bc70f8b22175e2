package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/store"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestMigrationsAndReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	s := open(t, path)
	var v int
	var mode string
	s.w.QueryRow(`PRAGMA user_version`).Scan(&v)
	s.w.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
	if v != len(migrations)-1 || mode != "wal" {
		t.Fatalf("user_version %d journal %s", v, mode)
	}
	now := time.Now().UTC()
	tok := api.Token{ID: "0123456789abcdef", SecretHash: store.HashSecret("s"), Site: "a", CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: 1, CreatedBy: "t"}
	if err := s.CreateToken(ctx, tok, api.AuditEvent{At: now, Actor: "t", Action: api.AuditTokenCreate}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := open(t, path)
	toks, err := s2.Tokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].Site != "a" || !toks[0].ExpiresAt.Equal(tok.ExpiresAt.Truncate(time.Microsecond)) {
		t.Fatalf("after reopen: %+v %v", toks, err)
	}
	// A database from a newer etoile is refused, not downgraded.
	s2.w.Exec(`PRAGMA user_version = 99`)
	s2.Close()
	if _, err := Open(ctx, path, Options{}); err == nil {
		t.Fatal("opened a newer schema")
	}
}

// Concurrent joins with one single-use token: exactly one site results.
func TestConcurrentJoinsOneUse(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
	now := time.Now().UTC()
	tok := api.Token{ID: "0123456789abcdef", SecretHash: store.HashSecret("s"), Site: "race-1", CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: 1, CreatedBy: "t"}
	if err := s.CreateToken(ctx, tok, api.AuditEvent{At: now, Action: api.AuditTokenCreate}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, used := 0, 0
	for i := range 8 {
		wg.Go(func() {
			_, err := s.Join(ctx, store.JoinParams{TokenID: tok.ID, Secret: "s", KeySHA256: string(rune('a' + i)), Now: now, NewSiteID: string(rune('A' + i))}, api.AuditEvent{At: now, Action: api.AuditSiteJoin})
			mu.Lock()
			defer mu.Unlock()
			var r *store.Refusal
			switch {
			case err == nil:
				ok++
			case errors.As(err, &r) && r.Code == api.CodeTokenUsed:
				used++
			default:
				t.Errorf("join %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	sites, _ := s.Sites(ctx)
	if ok != 1 || used != 7 || len(sites) != 1 {
		t.Fatalf("%d joined, %d refused as used, %d sites", ok, used, len(sites))
	}
}

// TestRekeyIsItsOwnAuditAction: a token with uses left joining its site
// again with another key (a machine whose key was lost, or another machine
// taking the name) is audited as site.rekey, naming the previous key.
func TestRekeyIsItsOwnAuditAction(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
	now := time.Now().UTC()
	tok := api.Token{ID: "0123456789abcdef", SecretHash: store.HashSecret("s"), Site: "lyon-1", CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: 3, CreatedBy: "t"}
	if err := s.CreateToken(ctx, tok, api.AuditEvent{At: now, Action: api.AuditTokenCreate}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb"} {
		if _, err := s.Join(ctx, store.JoinParams{TokenID: tok.ID, Secret: "s", KeySHA256: key, Now: now, NewSiteID: "S" + key[:1]},
			api.AuditEvent{At: now, Action: api.AuditSiteJoin, Detail: "key=" + key[:16]}); err != nil {
			t.Fatal(err)
		}
	}
	joins, _ := s.AuditEvents(ctx, api.AuditSiteJoin, 10)
	rekeys, err := s.AuditEvents(ctx, api.AuditSiteRekey, 10)
	if err != nil || len(joins) != 1 || len(rekeys) != 1 {
		t.Fatalf("%d site.join and %d site.rekey events (%v), want one each", len(joins), len(rekeys), err)
	}
	if d := rekeys[0].Detail; !strings.Contains(d, "key=bbbbbbbbbbbbbbbb") || !strings.Contains(d, "previous_key=aaaaaaaaaaaaaaaa") {
		t.Errorf("site.rekey detail %q lacks the new and the previous key", d)
	}
}
