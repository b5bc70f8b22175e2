// Package sqlite is the hub's default store: one SQLite file in WAL mode,
// numbered migrations, one writer connection and a small reader pool. It is
// the only cgo dependency of the constellation and is imported by the hub
// binary alone, never by the static agent.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strings"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/store"
)

// Options tune the store.
type Options struct {
	// BeforeJoinCommit runs inside the join transaction just before commit.
	// It exists for crash tests (kill -9 mid-join) and is nil otherwise.
	BeforeJoinCommit func()
}

// Store implements store.Store over SQLite.
type Store struct {
	w    *sql.DB // one connection: SQLite has one writer anyway
	r    *sql.DB
	opts Options
	stop chan struct{}
	done chan struct{}
	// heartbeat is prepared once: parsing the statement cost more than
	// running it, and it runs for every heartbeat of every site.
	heartbeat *sql.Stmt
	// Heartbeats go through one writer goroutine that commits them in
	// groups: under load one commit (one WAL write) serves many sites.
	hbq    chan hbRequest
	hbDone chan struct{}
}

type hbRequest struct {
	args  []any
	reply chan hbReply // buffered: the writer never blocks on a caller
}

type hbReply struct {
	id, name, country, region, jurisdiction, tags, rev string
	found                                              bool
	err                                                error
}

// maxHeartbeatBatch bounds one group commit.
const maxHeartbeatBatch = 256

// driverName is mattn's driver with automatic WAL checkpoints turned off
// on the hub's connections: a checkpoint run inside a commit stalls the
// heartbeat that triggered it (an fsync), so the store checkpoints from a
// background goroutine instead.
const driverName = "sqlite3_etoile_hub"

func init() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec("PRAGMA wal_autocheckpoint = 0", nil)
		return err
	}})
}

// checkpointEvery is how often the background checkpoint runs.
const checkpointEvery = time.Second

var _ store.Store = (*Store)(nil)

// migrations are applied in order; PRAGMA user_version records how many ran.
// Never edit one that shipped: append a new one.
var migrations = []string{
	1: `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('templates_revision', '0');
CREATE TABLE tokens (
	id TEXT PRIMARY KEY,
	secret_hash BLOB NOT NULL,
	site TEXT NOT NULL,
	country TEXT NOT NULL,
	region TEXT NOT NULL,
	jurisdiction TEXT NOT NULL,
	tags TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	max_uses INTEGER NOT NULL,
	uses INTEGER NOT NULL DEFAULT 0,
	revoked_at INTEGER,
	created_by TEXT NOT NULL
);
CREATE TABLE sites (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL UNIQUE,
	country TEXT NOT NULL,
	region TEXT NOT NULL,
	jurisdiction TEXT NOT NULL,
	tags TEXT NOT NULL,
	inventory TEXT NOT NULL,
	key_sha256 TEXT NOT NULL,
	token_id TEXT NOT NULL REFERENCES tokens(id),
	joined_at INTEGER NOT NULL,
	revoked_at INTEGER,
	last_heartbeat INTEGER,
	heartbeat TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE token_uses (
	token_id TEXT NOT NULL REFERENCES tokens(id),
	key_sha256 TEXT NOT NULL,
	site_id TEXT NOT NULL REFERENCES sites(id),
	at INTEGER NOT NULL,
	PRIMARY KEY (token_id, key_sha256)
);
CREATE TABLE templates (
	name TEXT PRIMARY KEY,
	manifest TEXT NOT NULL,
	selector TEXT NOT NULL,
	revision INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE TABLE audit (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	at INTEGER NOT NULL,
	actor TEXT NOT NULL,
	action TEXT NOT NULL,
	subject TEXT NOT NULL,
	detail TEXT NOT NULL
);
CREATE INDEX audit_action ON audit (action, id);
`,
	// Admin certificates, recorded at their issue, and revoked admin names
	// (which also refuse the certificates issued before 2 was applied).
	2: `
CREATE TABLE admin_certs (
	serial TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	key_sha256 TEXT NOT NULL,
	issued_at INTEGER NOT NULL,
	not_after INTEGER NOT NULL,
	revoked_at INTEGER,
	issued_by TEXT NOT NULL
);
CREATE INDEX admin_certs_name ON admin_certs (name);
CREATE TABLE admin_revocations (
	name TEXT PRIMARY KEY,
	revoked_at INTEGER NOT NULL
);
`,
}

// Open opens or creates the database file and applies pending migrations.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", "10000")
	q.Set("_foreign_keys", "1")
	file := "file:" + (&url.URL{Path: path}).EscapedPath() + "?"
	// The writer's transactions take the write lock as they begin (BEGIN
	// IMMEDIATE): one that read first and wrote later could otherwise fail
	// with "database is locked" halfway, past the busy timeout's help.
	wq := maps.Clone(q)
	wq.Set("_txlock", "immediate")
	w, err := sql.Open(driverName, file+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening hub database %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	// The readers' transactions are deferred and their connections query
	// only: mattn's driver ignores TxOptions.ReadOnly and begins every
	// transaction with the DSN's _txlock, so an immediate one here would
	// take the write lock for a read, waiting out the busy timeout behind
	// the heartbeat writer or another process's CLI, and holding writers
	// off in turn. A WAL reader needs no lock the writer waits for, and
	// sees every transaction committed before its own began. query_only
	// still lets the background checkpoint run on this pool.
	q.Set("_txlock", "deferred")
	q.Set("_query_only", "1")
	r, err := sql.Open(driverName, file+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("opening hub database %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	s := &Store{w: w, r: r, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.migrate(ctx); err != nil {
		close(s.done)
		s.Close()
		return nil, fmt.Errorf("hub database %s: %w", path, err)
	}
	s.heartbeat, err = w.PrepareContext(ctx, heartbeatSQL)
	if err != nil {
		close(s.done)
		s.Close()
		return nil, fmt.Errorf("hub database %s: preparing heartbeat statement: %w", path, err)
	}
	s.hbq, s.hbDone = make(chan hbRequest, maxHeartbeatBatch), make(chan struct{})
	go s.checkpoint()
	go s.heartbeatWriter()
	return s, nil
}

// checkpoint copies the WAL back into the database file in the background.
// PASSIVE never waits for readers or the writer; TRUNCATE once in a while
// keeps the WAL file from growing without bound.
func (s *Store) checkpoint() {
	defer close(s.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		mode := "PASSIVE"
		if n%60 == 0 {
			mode = "TRUNCATE"
		}
		_, _ = s.r.Exec("PRAGMA wal_checkpoint(" + mode + ")")
	}
}

func (s *Store) migrate(ctx context.Context) error {
	var v int
	if err := s.w.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return fmt.Errorf("reading schema version (is this a SQLite file?): %w", err)
	}
	if v > len(migrations)-1 {
		return fmt.Errorf("schema version %d is newer than this etoile (%d): upgrade etoile", v, len(migrations)-1)
	}
	for n := v + 1; n < len(migrations); n++ {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %d: %w", n, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[n]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", n, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, n)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", n, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", n, err)
		}
	}
	return nil
}

// Close stops the checkpointer, checkpoints and closes both pools.
func (s *Store) Close() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	if s.hbDone != nil {
		<-s.hbDone
	}
	if s.heartbeat != nil {
		s.heartbeat.Close()
	}
	_, _ = s.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	return errors.Join(s.r.Close(), s.w.Close())
}

func us(t time.Time) int64 { return t.UnixMicro() }

func fromUS(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullUS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromUS(v.Int64)
	return &t
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs and slices reach here; Marshal cannot fail on them.
		return "null"
	}
	return string(b)
}

func insertAudit(ctx context.Context, tx *sql.Tx, ev api.AuditEvent) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)`,
		us(ev.At), ev.Actor, ev.Action, ev.Subject, ev.Detail)
	if err != nil {
		return fmt.Errorf("recording audit event %s: %w", ev.Action, err)
	}
	return nil
}

// inTx runs f in a write transaction and commits when it returns nil.
func (s *Store) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("hub database: %w", err)
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("hub database commit: %w", err)
	}
	return nil
}

// CreateToken stores a new token.
func (s *Store) CreateToken(ctx context.Context, t api.Token, ev api.AuditEvent) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var revoked sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT revoked_at FROM sites WHERE name = ?`, t.Site).Scan(&revoked)
		if err == nil && revoked.Valid {
			return &store.Refusal{Code: api.CodeConflict, Message: fmt.Sprintf("site %s was revoked: a revoked name is not reused, choose another site name", t.Site)}
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("checking site %s: %w", t.Site, err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO tokens (id, secret_hash, site, country, region, jurisdiction, tags, created_at, expires_at, max_uses, uses, created_by)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`,
			t.ID, t.SecretHash, t.Site, t.Country, t.Region, t.Jurisdiction, toJSON(nonNil(t.Tags)), us(t.CreatedAt), us(t.ExpiresAt), t.MaxUses, t.CreatedBy)
		if err != nil {
			return fmt.Errorf("storing token: %w", err)
		}
		return insertAudit(ctx, tx, ev)
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const tokenCols = `id, secret_hash, site, country, region, jurisdiction, tags, created_at, expires_at, max_uses, uses, revoked_at, created_by`

type scanner interface{ Scan(...any) error }

func scanToken(r scanner) (api.Token, error) {
	var t api.Token
	var tags string
	var created, expires int64
	var revoked sql.NullInt64
	if err := r.Scan(&t.ID, &t.SecretHash, &t.Site, &t.Country, &t.Region, &t.Jurisdiction, &tags, &created, &expires, &t.MaxUses, &t.Uses, &revoked, &t.CreatedBy); err != nil {
		return t, err
	}
	if err := json.Unmarshal([]byte(tags), &t.Tags); err != nil {
		return t, fmt.Errorf("token %s tags: %w", t.ID, err)
	}
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromUS(created), fromUS(expires), fromNullUS(revoked)
	return t, nil
}

// Tokens lists every token, newest first.
func (s *Store) Tokens(ctx context.Context) ([]api.Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+tokenCols+` FROM tokens ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	defer rows.Close()
	var out []api.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("listing tokens: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken marks a token revoked; revoking twice is not an error.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time, ev api.AuditEvent) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, us(at), id)
		if err != nil {
			return fmt.Errorf("revoking token %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.NotFound("token", id)
		}
		return insertAudit(ctx, tx, ev)
	})
}

// admitToken reads the token through q and applies store.Admit.
func admitToken(ctx context.Context, q querier, p store.JoinParams) (api.Token, error) {
	t, err := scanToken(q.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = ?`, p.TokenID))
	var tp *api.Token
	if err == nil {
		tp = &t
	} else if !errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("reading token: %w", err)
	}
	return t, store.Admit(tp, p.Secret, p.Now)
}

// Join admits the token and records the site atomically.
func (s *Store) Join(ctx context.Context, p store.JoinParams, ev api.AuditEvent) (store.JoinResult, error) {
	var res store.JoinResult
	// /v1/join is unauthenticated: the secret is checked on the reader pool
	// first, so that a join with an unknown token or a wrong secret never
	// takes the one writer connection that heartbeats share.
	if _, err := admitToken(ctx, s.r, p); err != nil {
		return res, err
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// Again inside the transaction: the token may have been revoked
		// since.
		t, err := admitToken(ctx, tx, p)
		if err != nil {
			return err
		}
		res.Token = t
		// A retry of a join whose answer was lost: same token, same key.
		var prior string
		var firstUse int64
		err = tx.QueryRowContext(ctx, `SELECT site_id, at FROM token_uses WHERE token_id = ? AND key_sha256 = ?`, t.ID, p.KeySHA256).Scan(&prior, &firstUse)
		if err == nil {
			site, err := siteByID(ctx, tx, prior)
			if err != nil {
				return err
			}
			if site.RevokedAt != nil {
				return &store.Refusal{Code: api.CodeSiteRevoked, Message: fmt.Sprintf("site %s was revoked", site.Name)}
			}
			if site.KeySHA256 != p.KeySHA256 {
				return &store.Refusal{Code: api.CodeTokenUsed, Message: fmt.Sprintf("site %s has joined again with another key since: this key needs a new token", site.Name)}
			}
			if err := store.AdmitRetry(&t, fromUS(firstUse), p.Now); err != nil {
				return err
			}
			res.Site, res.Retry = site, true
			return nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("reading token uses: %w", err)
		}
		if err := store.AdmitUse(&t, p.Now); err != nil {
			return err
		}
		site, err := siteByName(ctx, tx, t.Site)
		switch {
		case err == nil && site.RevokedAt != nil:
			return &store.Refusal{Code: api.CodeSiteRevoked, Message: fmt.Sprintf("site %s was revoked: a revoked name is not reused, ask for a token with another site name", site.Name)}
		case err == nil:
			// A site reset (new key) rejoining with a new token keeps its id
			// and history; the old key stops working at once.
			_, err = tx.ExecContext(ctx, `UPDATE sites SET country = ?, region = ?, jurisdiction = ?, tags = ?, inventory = ?, key_sha256 = ?, token_id = ?, joined_at = ? WHERE id = ?`,
				t.Country, t.Region, t.Jurisdiction, toJSON(nonNil(t.Tags)), toJSON(p.Inventory), p.KeySHA256, t.ID, us(p.Now), site.ID)
			if err != nil {
				return fmt.Errorf("re-keying site %s: %w", site.Name, err)
			}
			if site.KeySHA256 != p.KeySHA256 {
				res.Rekeyed = true
				// The audit tells a machine taking over a site's name from
				// a first join: the previous key is named.
				ev.Action = api.AuditSiteRekey
				ev.Detail = strings.TrimSpace(ev.Detail + " previous_key=" + site.KeySHA256[:min(16, len(site.KeySHA256))])
			}
		case errors.Is(err, store.ErrNotFound):
			site.ID = p.NewSiteID
			_, err = tx.ExecContext(ctx, `INSERT INTO sites (id, name, country, region, jurisdiction, tags, inventory, key_sha256, token_id, joined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				site.ID, t.Site, t.Country, t.Region, t.Jurisdiction, toJSON(nonNil(t.Tags)), toJSON(p.Inventory), p.KeySHA256, t.ID, us(p.Now))
			if err != nil {
				return fmt.Errorf("recording site %s: %w", t.Site, err)
			}
		default:
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO token_uses (token_id, key_sha256, site_id, at) VALUES (?, ?, ?, ?)`, t.ID, p.KeySHA256, site.ID, us(p.Now)); err != nil {
			return fmt.Errorf("recording token use: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tokens SET uses = uses + 1 WHERE id = ?`, t.ID); err != nil {
			return fmt.Errorf("counting token use: %w", err)
		}
		ev.Subject = t.Site
		if err := insertAudit(ctx, tx, ev); err != nil {
			return err
		}
		res.Site, err = siteByID(ctx, tx, site.ID)
		if err != nil {
			return err
		}
		res.Token.Uses++
		if s.opts.BeforeJoinCommit != nil {
			s.opts.BeforeJoinCommit()
		}
		return nil
	})
	return res, err
}

const siteCols = `id, name, country, region, jurisdiction, tags, inventory, key_sha256, token_id, joined_at, revoked_at, last_heartbeat, heartbeat`

func scanSite(r scanner) (api.Site, error) {
	var st api.Site
	var tags, inv, hb string
	var joined int64
	var revoked, last sql.NullInt64
	if err := r.Scan(&st.ID, &st.Name, &st.Country, &st.Region, &st.Jurisdiction, &tags, &inv, &st.KeySHA256, &st.TokenID, &joined, &revoked, &last, &hb); err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(tags), &st.Tags); err != nil {
		return st, fmt.Errorf("site %s tags: %w", st.Name, err)
	}
	if err := json.Unmarshal([]byte(inv), &st.Inventory); err != nil {
		return st, fmt.Errorf("site %s inventory: %w", st.Name, err)
	}
	if err := json.Unmarshal([]byte(hb), &st.Heartbeat); err != nil {
		return st, fmt.Errorf("site %s heartbeat: %w", st.Name, err)
	}
	st.JoinedAt, st.RevokedAt, st.LastHeartbeat = fromUS(joined), fromNullUS(revoked), fromNullUS(last)
	return st, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func siteByID(ctx context.Context, q querier, id string) (api.Site, error) {
	st, err := scanSite(q.QueryRowContext(ctx, `SELECT `+siteCols+` FROM sites WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("site %s: %w", id, store.ErrNotFound)
	}
	return st, err
}

func siteByName(ctx context.Context, q querier, name string) (api.Site, error) {
	st, err := scanSite(q.QueryRowContext(ctx, `SELECT `+siteCols+` FROM sites WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return st, store.NotFound("site", name)
	}
	return st, err
}

// Sites lists every site by name.
func (s *Store) Sites(ctx context.Context) ([]api.Site, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+siteCols+` FROM sites ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing sites: %w", err)
	}
	defer rows.Close()
	var out []api.Site
	for rows.Next() {
		st, err := scanSite(rows)
		if err != nil {
			return nil, fmt.Errorf("listing sites: %w", err)
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// Site returns one site by id.
func (s *Store) Site(ctx context.Context, id string) (api.Site, error) {
	return siteByID(ctx, s.r, id)
}

// RevokeSite revokes a site by name: its certificates stop working at once.
func (s *Store) RevokeSite(ctx context.Context, name string, at time.Time, ev api.AuditEvent) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE sites SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?`, us(at), name)
		if err != nil {
			return fmt.Errorf("revoking site %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.NotFound("site", name)
		}
		return insertAudit(ctx, tx, ev)
	})
}

const heartbeatSQL = `UPDATE sites SET last_heartbeat = ?, heartbeat = ? WHERE id = ? AND key_sha256 = ? AND revoked_at IS NULL
	RETURNING id, name, country, region, jurisdiction, tags, (SELECT value FROM meta WHERE key = 'templates_revision')`

// RecordHeartbeat stores the latest heartbeat in one statement; the
// RETURNING clause hands back what the answer needs.
func (s *Store) RecordHeartbeat(ctx context.Context, siteID, keySHA string, hb api.Heartbeat, at time.Time) (store.HeartbeatResult, error) {
	var res store.HeartbeatResult
	req := hbRequest{args: []any{us(at), toJSON(hb), siteID, keySHA}, reply: make(chan hbReply, 1)}
	select {
	case s.hbq <- req:
	case <-s.stop:
		return res, errors.New("hub database is closing")
	case <-ctx.Done():
		return res, ctx.Err()
	}
	var rp hbReply
	select {
	case rp = <-req.reply:
	case <-s.hbDone:
		return res, errors.New("hub database is closing")
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if rp.err != nil {
		return res, fmt.Errorf("recording heartbeat of site %s: %w", siteID, rp.err)
	}
	if !rp.found {
		return res, s.whyRefused(ctx, siteID, keySHA)
	}
	st := &res.Site
	st.ID, st.Name, st.Country, st.Region, st.Jurisdiction = rp.id, rp.name, rp.country, rp.region, rp.jurisdiction
	tags, rev := rp.tags, rp.rev
	if err := json.Unmarshal([]byte(tags), &st.Tags); err != nil {
		return res, fmt.Errorf("site %s tags: %w", siteID, err)
	}
	st.Heartbeat = hb
	st.LastHeartbeat = &at
	if _, err := fmt.Sscan(rev, &res.TemplateRevision); err != nil {
		return res, fmt.Errorf("templates revision %q: %w", rev, err)
	}
	return res, nil
}

// heartbeatWriter takes the heartbeats waiting at the moment, up to
// maxHeartbeatBatch, and records them in one transaction. A lone heartbeat
// is written at once: batching costs no latency when the hub is idle.
func (s *Store) heartbeatWriter() {
	defer close(s.hbDone)
	batch := make([]hbRequest, 0, maxHeartbeatBatch)
	for {
		batch = batch[:0]
		select {
		case <-s.stop:
			return
		case r := <-s.hbq:
			batch = append(batch, r)
		}
	drain:
		for len(batch) < maxHeartbeatBatch {
			select {
			case r := <-s.hbq:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.writeHeartbeats(batch)
	}
}

func (s *Store) writeHeartbeats(batch []hbRequest) {
	ctx := context.Background()
	replies := make([]hbReply, len(batch))
	tx, err := s.w.BeginTx(ctx, nil)
	if err == nil {
		stmt := tx.StmtContext(ctx, s.heartbeat)
		for i, r := range batch {
			rp := &replies[i]
			err := stmt.QueryRowContext(ctx, r.args...).Scan(&rp.id, &rp.name, &rp.country, &rp.region, &rp.jurisdiction, &rp.tags, &rp.rev)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				rp.err = err
			default:
				rp.found = true
			}
		}
		err = tx.Commit()
	}
	for i, r := range batch {
		if err != nil {
			replies[i] = hbReply{err: err}
		}
		r.reply <- replies[i]
	}
}

func (s *Store) whyRefused(ctx context.Context, siteID, keySHA string) error {
	st, err := siteByID(ctx, s.r, siteID)
	if errors.Is(err, store.ErrNotFound) {
		return &store.Refusal{Code: api.CodeUnauthorized, Message: fmt.Sprintf("site %s is not known to this hub: join again with a new token", siteID)}
	}
	if err != nil {
		return err
	}
	if st.RevokedAt != nil {
		return &store.Refusal{Code: api.CodeSiteRevoked, Message: fmt.Sprintf("site %s was revoked at %s: heartbeats are refused", st.Name, st.RevokedAt.Format(time.RFC3339))}
	}
	if st.KeySHA256 != keySHA {
		return &store.Refusal{Code: api.CodeUnauthorized, Message: fmt.Sprintf("site %s joined again with another key: this certificate is for the old key", st.Name)}
	}
	return fmt.Errorf("site %s: heartbeat not recorded", st.Name)
}

// CheckSite returns the site when siteID is current with keySHA.
func (s *Store) CheckSite(ctx context.Context, siteID, keySHA string) (api.Site, error) {
	st, err := siteByID(ctx, s.r, siteID)
	if err != nil || st.RevokedAt != nil || st.KeySHA256 != keySHA {
		return st, s.whyRefused(ctx, siteID, keySHA)
	}
	return st, nil
}

func bumpRevision(ctx context.Context, tx *sql.Tx) (int64, error) {
	var rev int64
	err := tx.QueryRowContext(ctx, `UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'templates_revision' RETURNING CAST(value AS INTEGER)`).Scan(&rev)
	if err != nil {
		return 0, fmt.Errorf("bumping templates revision: %w", err)
	}
	return rev, nil
}

// PutTemplate adds or replaces a template and bumps the revision.
func (s *Store) PutTemplate(ctx context.Context, t api.Template, ev api.AuditEvent) (int64, error) {
	var rev int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if rev, err = bumpRevision(ctx, tx); err != nil {
			return err
		}
		sel := t.Selector
		if sel == nil {
			sel = map[string]string{}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO templates (name, manifest, selector, revision, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET manifest = excluded.manifest, selector = excluded.selector, revision = excluded.revision, updated_at = excluded.updated_at`,
			t.Name, t.Manifest, toJSON(sel), rev, us(t.UpdatedAt))
		if err != nil {
			return fmt.Errorf("storing template %s: %w", t.Name, err)
		}
		return insertAudit(ctx, tx, ev)
	})
	return rev, err
}

// RemoveTemplate deletes a template and bumps the revision.
func (s *Store) RemoveTemplate(ctx context.Context, name string, ev api.AuditEvent) (int64, error) {
	var rev int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM templates WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("removing template %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.NotFound("template", name)
		}
		if rev, err = bumpRevision(ctx, tx); err != nil {
			return err
		}
		return insertAudit(ctx, tx, ev)
	})
	return rev, err
}

// Templates lists every template with the current revision, read together.
func (s *Store) Templates(ctx context.Context) (api.TemplateList, error) {
	var out api.TemplateList
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return out, fmt.Errorf("listing templates: %w", err)
	}
	defer tx.Rollback()
	var rev string
	if err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'templates_revision'`).Scan(&rev); err != nil {
		return out, fmt.Errorf("reading templates revision: %w", err)
	}
	if _, err := fmt.Sscan(rev, &out.Revision); err != nil {
		return out, fmt.Errorf("templates revision %q: %w", rev, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT name, manifest, selector, revision, updated_at FROM templates ORDER BY name`)
	if err != nil {
		return out, fmt.Errorf("listing templates: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t api.Template
		var sel string
		var upd int64
		if err := rows.Scan(&t.Name, &t.Manifest, &sel, &t.Revision, &upd); err != nil {
			return out, fmt.Errorf("listing templates: %w", err)
		}
		if err := json.Unmarshal([]byte(sel), &t.Selector); err != nil {
			return out, fmt.Errorf("template %s selector: %w", t.Name, err)
		}
		t.UpdatedAt = fromUS(upd)
		out.Templates = append(out.Templates, t)
	}
	return out, rows.Err()
}

// Audit records an event on its own (placement queries, refused joins).
// A refused join also deletes the refused joins past the newest
// store.KeepJoinRefusals, in the same transaction: an index walk of that
// many entries, cheap at the rate the hub records them.
func (s *Store) Audit(ctx context.Context, ev api.AuditEvent) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := insertAudit(ctx, tx, ev); err != nil {
			return err
		}
		if ev.Action != api.AuditSiteJoinRefuse {
			return nil
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM audit WHERE action = ?1 AND id <= (SELECT id FROM audit WHERE action = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)`,
			ev.Action, store.KeepJoinRefusals)
		if err != nil {
			return fmt.Errorf("deleting old %s audit events: %w", ev.Action, err)
		}
		return nil
	})
}

// AuditEvents lists events newest first, of one action when action is set.
func (s *Store) AuditEvents(ctx context.Context, action string, limit int) ([]api.AuditEvent, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, at, actor, action, subject, detail FROM audit WHERE (? = '' OR action = ?) ORDER BY id DESC LIMIT ?`, action, action, limit)
	if err != nil {
		return nil, fmt.Errorf("listing audit events: %w", err)
	}
	defer rows.Close()
	var out []api.AuditEvent
	for rows.Next() {
		var ev api.AuditEvent
		var at int64
		if err := rows.Scan(&ev.ID, &at, &ev.Actor, &ev.Action, &ev.Subject, &ev.Detail); err != nil {
			return nil, fmt.Errorf("listing audit events: %w", err)
		}
		ev.At = fromUS(at)
		out = append(out, ev)
	}
	return out, rows.Err()
}

// RecordAdminCert records an admin certificate with its issue event.
func (s *Store) RecordAdminCert(ctx context.Context, c api.AdminCert, ev api.AuditEvent) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO admin_certs (serial, name, key_sha256, issued_at, not_after, issued_by) VALUES (?, ?, ?, ?, ?, ?)`,
			c.Serial, c.Name, c.KeySHA256, us(c.IssuedAt), us(c.NotAfter), c.IssuedBy)
		if err != nil {
			return fmt.Errorf("recording admin certificate %s of %s: %w", c.Serial, c.Name, err)
		}
		return insertAudit(ctx, tx, ev)
	})
}

// AdminCerts lists recorded admin certificates by name, newest first, and
// the revoked names.
func (s *Store) AdminCerts(ctx context.Context) (api.AdminList, error) {
	out := api.AdminList{Certificates: []api.AdminCert{}, Revocations: []api.AdminRevocation{}}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return out, fmt.Errorf("listing admin certificates: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT serial, name, key_sha256, issued_at, not_after, revoked_at, issued_by FROM admin_certs ORDER BY name, issued_at DESC, serial`)
	if err != nil {
		return out, fmt.Errorf("listing admin certificates: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c api.AdminCert
		var issued, notAfter int64
		var revoked sql.NullInt64
		if err := rows.Scan(&c.Serial, &c.Name, &c.KeySHA256, &issued, &notAfter, &revoked, &c.IssuedBy); err != nil {
			return out, fmt.Errorf("listing admin certificates: %w", err)
		}
		c.IssuedAt, c.NotAfter, c.RevokedAt = fromUS(issued), fromUS(notAfter), fromNullUS(revoked)
		out.Certificates = append(out.Certificates, c)
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("listing admin certificates: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT name, revoked_at FROM admin_revocations ORDER BY name`)
	if err != nil {
		return out, fmt.Errorf("listing revoked admin names: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r api.AdminRevocation
		var at int64
		if err := rows.Scan(&r.Name, &at); err != nil {
			return out, fmt.Errorf("listing revoked admin names: %w", err)
		}
		r.RevokedAt = fromUS(at)
		out.Revocations = append(out.Revocations, r)
	}
	return out, rows.Err()
}

// RevokeAdmin revokes an admin name: its recorded certificates, and its
// unrecorded ones issued before at.
func (s *Store) RevokeAdmin(ctx context.Context, name string, at time.Time, ev api.AuditEvent) (api.AdminRevocation, error) {
	rev := api.AdminRevocation{Name: name}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// Known: recorded, revoked before, or issued before the hub
		// recorded admin certificates (its admin.issue event names it).
		var known bool
		err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM admin_certs WHERE name = ?) OR EXISTS (SELECT 1 FROM admin_revocations WHERE name = ?)
			OR EXISTS (SELECT 1 FROM audit WHERE action = ? AND subject = ?)`, name, name, api.AuditAdminIssue, name).Scan(&known)
		if err != nil {
			return fmt.Errorf("looking up admin %s: %w", name, err)
		}
		if !known {
			return &store.NotFoundError{Message: fmt.Sprintf("no admin credential %s was issued by this hub: see etoile hub admin list", name)}
		}
		res, err := tx.ExecContext(ctx, `UPDATE admin_certs SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL`, us(at), name)
		if err != nil {
			return fmt.Errorf("revoking admin certificates of %s: %w", name, err)
		}
		n, _ := res.RowsAffected()
		rev.Certificates = int(n)
		var stored int64
		err = tx.QueryRowContext(ctx, `INSERT INTO admin_revocations (name, revoked_at) VALUES (?, ?)
			ON CONFLICT (name) DO UPDATE SET revoked_at = MAX(revoked_at, excluded.revoked_at) RETURNING revoked_at`, name, us(at)).Scan(&stored)
		if err != nil {
			return fmt.Errorf("revoking admin %s: %w", name, err)
		}
		rev.RevokedAt = fromUS(stored)
		ev.Detail = strings.TrimSpace(ev.Detail + fmt.Sprintf(" certificates_revoked=%d", n))
		return insertAudit(ctx, tx, ev)
	})
	return rev, err
}

// adminStatusSQL reads a certificate's record and its name's revocation
// through the two primary keys, in one statement.
const adminStatusSQL = `SELECT EXISTS (SELECT 1 FROM admin_certs WHERE serial = ?), (SELECT revoked_at FROM admin_certs WHERE serial = ?),
	(SELECT revoked_at FROM admin_revocations WHERE name = ?)`

// AdminStatus reads what store.AdmitAdmin needs about one certificate.
func (s *Store) AdminStatus(ctx context.Context, serial, name string) (store.AdminStatus, error) {
	var st store.AdminStatus
	var revoked, nameRevoked sql.NullInt64
	if err := s.r.QueryRowContext(ctx, adminStatusSQL, serial, serial, name).Scan(&st.Recorded, &revoked, &nameRevoked); err != nil {
		return st, fmt.Errorf("reading admin certificate %s: %w", serial, err)
	}
	st.RevokedAt, st.NameRevokedAt = fromNullUS(revoked), fromNullUS(nameRevoked)
	return st, nil
}

// SetMeta stores a hub setting (the advertised URL).
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("storing hub setting %s: %w", key, err)
	}
	return nil
}

// Meta reads a hub setting; a missing one is ErrNotFound.
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("hub setting %s: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("reading hub setting %s: %w", key, err)
	}
	return v, nil
}
