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

// TestRetryAfterExpiry: the same token and key joining again (a retry after
// a lost answer) is allowed while the token is valid or within
// store.RetryWindow of that key's first join, never later: an old join
// string and key must not mint certificates past the renewal grace.
func TestRetryAfterExpiry(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tok := api.Token{ID: "0123456789abcdef", SecretHash: store.HashSecret("s"), Site: "old-1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), MaxUses: 1, CreatedBy: "t"}
	if err := s.CreateToken(ctx, tok, api.AuditEvent{At: t0, Action: api.AuditTokenCreate}); err != nil {
		t.Fatal(err)
	}
	join := func(key string, at time.Time) (store.JoinResult, error) {
		return s.Join(ctx, store.JoinParams{TokenID: tok.ID, Secret: "s", KeySHA256: key, Now: at, NewSiteID: "S1"}, api.AuditEvent{At: at, Action: api.AuditSiteJoin})
	}
	// First joined just before the token expires: its answer is lost.
	first := t0.Add(50 * time.Minute)
	if _, err := join("aaaaaaaaaaaaaaaaaaaa", first); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		at   time.Time
		ok   bool
	}{
		{"while the token is valid", t0.Add(55 * time.Minute), true},
		{"expired, within the window after the first join", first.Add(store.RetryWindow - time.Minute), true},
		{"expired, past the window", first.Add(store.RetryWindow + time.Minute), false},
		{"200 days later", t0.Add(200 * 24 * time.Hour), false},
	} {
		res, err := join("aaaaaaaaaaaaaaaaaaaa", c.at)
		var r *store.Refusal
		switch {
		case c.ok && (err != nil || !res.Retry):
			t.Errorf("retry %s: %v (retry %v)", c.name, err, res.Retry)
		case !c.ok && (!errors.As(err, &r) || r.Code != api.CodeTokenExpired):
			t.Errorf("retry %s: %v, want %s", c.name, err, api.CodeTokenExpired)
		case !c.ok && !strings.Contains(r.Message, "new join string"):
			t.Errorf("retry %s: refusal %q does not say what to do", c.name, r.Message)
		}
	}
}

// TestBogusJoinDoesNotTakeTheWriter: a join with an unknown token or a
// wrong secret is refused from the reader pool; it does not wait for the
// writer connection, which heartbeats need.
func TestBogusJoinDoesNotTakeTheWriter(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
	now := time.Now().UTC()
	tok := api.Token{ID: "0123456789abcdef", SecretHash: store.HashSecret("s"), Site: "a", CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: 1, CreatedBy: "t"}
	if err := s.CreateToken(ctx, tok, api.AuditEvent{At: now, Action: api.AuditTokenCreate}); err != nil {
		t.Fatal(err)
	}
	// Somebody holds the writer (a heartbeat batch, a template put) for as
	// long as the joins below take.
	held, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Rollback()
	for _, p := range []store.JoinParams{
		{TokenID: tok.ID, Secret: "wrong"},
		{TokenID: "fedcba9876543210", Secret: "s"},
	} {
		p.KeySHA256, p.Now, p.NewSiteID = "aaaaaaaaaaaaaaaaaaaa", now, "S1"
		// The deadline only ends a join that waits for the writer: one
		// refused from the reader pool returns long before it.
		jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := s.Join(jctx, p, api.AuditEvent{At: now, Action: api.AuditSiteJoin})
		cancel()
		var r *store.Refusal
		if !errors.As(err, &r) || r.Code != api.CodeTokenInvalid {
			t.Errorf("join with token %s secret %q while the writer is busy: %v, want %s", p.TokenID, p.Secret, err, api.CodeTokenInvalid)
		}
	}
	// A valid join still goes through once the writer is free.
	held.Rollback()
	if _, err := s.Join(ctx, store.JoinParams{TokenID: tok.ID, Secret: "s", KeySHA256: "aaaaaaaaaaaaaaaaaaaa", Now: now, NewSiteID: "S1"}, api.AuditEvent{At: now, Action: api.AuditSiteJoin}); err != nil {
		t.Fatal(err)
	}
}

// TestTokenCheckedAgainInTransaction: the token is checked again inside the
// write transaction, so a revocation between the two checks still refuses.
func TestTokenCheckedAgainInTransaction(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC()
	tok := api.Token{ID: "0123456789abcdef", SecretHash: store.HashSecret("s"), Site: "a", CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: 1, CreatedBy: "t"}
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
	if err := s.CreateToken(ctx, tok, api.AuditEvent{At: now, Action: api.AuditTokenCreate}); err != nil {
		t.Fatal(err)
	}
	// Revoke the token in a transaction that holds the writer and is not
	// committed yet: the join's first check, on the reader pool, passes.
	held, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := held.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = ?`, us(now), tok.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Join(ctx, store.JoinParams{TokenID: tok.ID, Secret: "s", KeySHA256: "aaaaaaaaaaaaaaaaaaaa", Now: now, NewSiteID: "S1"}, api.AuditEvent{At: now, Action: api.AuditSiteJoin})
		done <- err
	}()
	// The join passed the reader check (the revocation is not committed)
	// and waits for the writer; commit the revocation.
	waitWriterWaiters(t, s)
	if err := held.Commit(); err != nil {
		t.Fatal(err)
	}
	var r *store.Refusal
	if err := <-done; !errors.As(err, &r) || r.Code != api.CodeTokenRevoked {
		t.Fatalf("join revoked between the checks: %v, want %s", err, api.CodeTokenRevoked)
	}
}

// waitWriterWaiters waits until a caller waits for the writer connection.
func waitWriterWaiters(t *testing.T, s *Store) {
	t.Helper()
	for range 3000 {
		if s.w.Stats().WaitCount > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no join waited for the writer")
}
