package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
)

// readerBound is how long a reader may take beside an open write
// transaction before the test calls it blocked: far below the 10 s busy
// timeout a reader that waits for the write lock would spend.
const readerBound = 5 * time.Second

// returnsBeside runs f and fails the test unless it returns, without an
// error, within readerBound: the caller still holds its transaction open.
func returnsBeside(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readerBound)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s beside an open transaction: %v", what, err)
		}
	case <-time.After(readerBound):
		t.Errorf("%s did not return while another transaction was open: it waits for the write lock", what)
		<-done
	}
}

// TestReadersDoNotTakeTheWriteLock: the reader pool's transactions
// (Templates, AdminCerts) neither wait for a write transaction, the hub's
// heartbeat writer's or a local CLI's, nor hold writers off while they
// read; they see what was committed, in this process or another.
func TestReadersDoNotTakeTheWriteLock(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	s := open(t, path)
	cli := open(t, path) // the local CLI beside the hub, another connection set
	now := time.Now().UTC()
	if _, err := s.PutTemplate(ctx, api.Template{Name: "base", Manifest: "kind: Namespace", UpdatedAt: now}, api.AuditEvent{At: now, Action: api.AuditTemplateAdd}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordAdminCert(ctx, api.AdminCert{Serial: "ab12", Name: "alice", KeySHA256: strings.Repeat("a", 64), IssuedAt: now, NotAfter: now.Add(time.Hour), IssuedBy: "t"},
		api.AuditEvent{At: now, Action: api.AuditAdminIssue, Subject: "alice"}); err != nil {
		t.Fatal(err)
	}

	// A write transaction is open (a heartbeat batch, a template put).
	held, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := held.ExecContext(ctx, `UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'templates_revision'`); err != nil {
		t.Fatal(err)
	}
	for _, st := range []struct {
		name string
		s    *Store
	}{{"hub", s}, {"cli", cli}} {
		returnsBeside(t, st.name+" Templates()", func(ctx context.Context) error {
			tl, err := st.s.Templates(ctx)
			if err == nil && (tl.Revision != 1 || len(tl.Templates) != 1) {
				t.Errorf("%s Templates() = revision %d with %d templates, want the committed revision 1 with 1", st.name, tl.Revision, len(tl.Templates))
			}
			return err
		})
		returnsBeside(t, st.name+" AdminCerts()", func(ctx context.Context) error {
			al, err := st.s.AdminCerts(ctx)
			if err == nil && len(al.Certificates) != 1 {
				t.Errorf("%s AdminCerts() = %d certificates, want 1", st.name, len(al.Certificates))
			}
			return err
		})
	}
	if err := held.Rollback(); err != nil {
		t.Fatal(err)
	}

	// The other way round: a reader's open transaction does not hold the
	// writer off, and a reader begun after the commit sees it.
	rtx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rtx.Rollback()
	var v string
	if err := rtx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'templates_revision'`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	returnsBeside(t, "SetMeta (the writer)", func(ctx context.Context) error { return s.SetMeta(ctx, "hub_url", "https://hub.example:8443") })
	returnsBeside(t, "cli SetMeta (another process's writer)", func(ctx context.Context) error { return cli.SetMeta(ctx, "note", "x") })
	for _, st := range []*Store{s, cli} {
		if got, err := st.Meta(ctx, "hub_url"); err != nil || got != "https://hub.example:8443" {
			t.Errorf("Meta(hub_url) after the writer's commit = %q, %v", got, err)
		}
	}

	// The reader pool writes nothing, whatever a caller asks of it, and
	// still runs the background checkpoint (query_only allows it).
	if _, err := s.r.ExecContext(ctx, `UPDATE meta SET value = 'x' WHERE key = 'note'`); err == nil {
		t.Error("the reader pool wrote to the database")
	}
	rtx.Rollback()
	// The background checkpointers of both stores may hold it a moment.
	var err2 error
	var walSize int64 = -1
	for range 50 {
		var busy, frames, copied int
		err2 = s.r.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &copied)
		if fi, err := os.Stat(path + "-wal"); err == nil {
			walSize = fi.Size()
		}
		if err2 == nil && busy == 0 && walSize == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err2 != nil || walSize != 0 {
		t.Errorf("TRUNCATE checkpoint on the reader pool: %v, WAL %d bytes after it, want it empty", err2, walSize)
	}
}
