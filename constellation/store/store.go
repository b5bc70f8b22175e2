// Package store defines what the hub keeps and the rules that every backend
// applies the same way. The SQLite backend lives in store/sqlite; a
// PostgreSQL backend for large constellations would implement the same
// interface and call the same Admit function.
package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
)

// ErrNotFound is returned when a named token, site or template is missing.
var ErrNotFound = errors.New("not found")

// NotFoundError is a missing token, site or template, said once with where
// to look ("no token X: see etoile hub token list"); it matches ErrNotFound.
type NotFoundError struct{ Message string }

func (e *NotFoundError) Error() string        { return e.Message }
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// NotFound returns the NotFoundError for a named kind ("token", "site",
// "template") with the command that lists what exists.
func NotFound(kind, name string) error {
	list := map[string]string{"token": "etoile hub token list", "site": "etoile hub sites", "template": "etoile hub template list"}[kind]
	if list == "" {
		return &NotFoundError{Message: fmt.Sprintf("no %s %s", kind, name)}
	}
	return &NotFoundError{Message: fmt.Sprintf("no %s %s: see %s", kind, name, list)}
}

// Refusal is a join or heartbeat refused for a reason the client must see.
type Refusal struct {
	Code    string // an api.Code* value
	Message string
}

func (r *Refusal) Error() string { return r.Message }

// JoinParams is one join attempt, already authenticated by its CSR.
type JoinParams struct {
	TokenID   string
	Secret    string // as presented; only its hash is compared
	KeySHA256 string
	Inventory api.Inventory
	Now       time.Time
	NewSiteID string // used when the join creates a site
}

// JoinResult says what the join did.
type JoinResult struct {
	Site  api.Site
	Token api.Token
	// Retry is true when the same token and key had already joined: the
	// answer was lost and the site asks again; nothing new was recorded.
	Retry bool
	// Rekeyed is true when an existing site got a new key with a new token.
	Rekeyed bool
}

// HeartbeatResult carries what the hub needs to answer a heartbeat.
type HeartbeatResult struct {
	Site             api.Site // attributes only, for template selection
	TemplateRevision int64
}

// KeepJoinRefusals is how many site.join.refused audit events a store
// keeps, the newest: days of refused joins at the hub's rate limit
// (hub.Service records a few a minute and counts the rest), and the
// audit's other events are never deleted.
const KeepJoinRefusals = 10000

// Store is the hub's persistence. Every mutating call records its audit
// event in the same transaction, so the audit trail never misses a change
// and never lists one that did not happen.
type Store interface {
	CreateToken(ctx context.Context, t api.Token, ev api.AuditEvent) error
	Tokens(ctx context.Context) ([]api.Token, error)
	RevokeToken(ctx context.Context, id string, at time.Time, ev api.AuditEvent) error

	// Join admits a token and records the site in one transaction. The
	// join is unauthenticated until the secret is checked: a backend checks
	// it (Admit) before it takes a write lock, and again inside.
	Join(ctx context.Context, p JoinParams, ev api.AuditEvent) (JoinResult, error)
	Sites(ctx context.Context) ([]api.Site, error)
	Site(ctx context.Context, id string) (api.Site, error)
	RevokeSite(ctx context.Context, name string, at time.Time, ev api.AuditEvent) error
	// RecordHeartbeat stores a heartbeat for a site whose current key is
	// keySHA256; a revoked or re-keyed site gets a *Refusal.
	RecordHeartbeat(ctx context.Context, siteID, keySHA256 string, hb api.Heartbeat, at time.Time) (HeartbeatResult, error)
	// CheckSite refuses revoked, re-keyed or unknown sites (renewal).
	CheckSite(ctx context.Context, siteID, keySHA256 string) (api.Site, error)

	PutTemplate(ctx context.Context, t api.Template, ev api.AuditEvent) (revision int64, err error)
	RemoveTemplate(ctx context.Context, name string, ev api.AuditEvent) (revision int64, err error)
	Templates(ctx context.Context) (api.TemplateList, error)

	// Audit records an event on its own. Of the site.join.refused events
	// (unauthenticated: anybody can cause them) only the newest
	// KeepJoinRefusals are kept; the older ones are deleted as new ones
	// come, so that a flood cannot grow the database without bound.
	Audit(ctx context.Context, ev api.AuditEvent) error
	AuditEvents(ctx context.Context, action string, limit int) ([]api.AuditEvent, error)

	// RecordAdminCert records an admin certificate at its issue.
	RecordAdminCert(ctx context.Context, c api.AdminCert, ev api.AuditEvent) error
	// AdminCerts lists the recorded admin certificates and revoked names.
	AdminCerts(ctx context.Context) (api.AdminList, error)
	// RevokeAdmin revokes every recorded certificate of name and records
	// the name as revoked at at (see AdmitAdmin). A name the hub never
	// issued a certificate for (none recorded, no admin.issue event, never
	// revoked) is a *NotFoundError. The event's Detail is completed with
	// the count of certificates revoked.
	RevokeAdmin(ctx context.Context, name string, at time.Time, ev api.AuditEvent) (api.AdminRevocation, error)
	// AdminStatus is what AdmitAdmin needs about one certificate, read in
	// one indexed query: it runs for every admin request.
	AdminStatus(ctx context.Context, serial, name string) (AdminStatus, error)

	SetMeta(ctx context.Context, key, value string) error
	Meta(ctx context.Context, key string) (string, error)

	Close() error
}

// HashSecret is how token secrets are kept: a 32-byte random secret needs
// no salt or stretching, only a one-way hash.
func HashSecret(secret string) []byte {
	s := sha256.Sum256([]byte(secret))
	return s[:]
}

// Admit applies the token rules in a fixed order. An unknown token and a
// wrong secret get the same answer so that token ids cannot be probed.
func Admit(t *api.Token, secret string, now time.Time) error {
	if t == nil || subtle.ConstantTimeCompare(t.SecretHash, HashSecret(secret)) != 1 {
		return &Refusal{Code: api.CodeTokenInvalid, Message: "join token is not known to this hub (wrong or forged secret): ask the hub administrator for a new join string"}
	}
	if t.RevokedAt != nil {
		return &Refusal{Code: api.CodeTokenRevoked, Message: fmt.Sprintf("join token %s was revoked at %s: ask for a new join string", t.ID, t.RevokedAt.UTC().Format(time.RFC3339))}
	}
	return nil
}

// AdminStatus is what the store knows of an admin certificate.
type AdminStatus struct {
	Recorded  bool       // the certificate (by serial) was recorded at its issue
	RevokedAt *time.Time // when the recorded certificate was revoked
	// NameRevokedAt is when the certificate's name was last revoked.
	NameRevokedAt *time.Time
}

// AdmitAdmin applies admin revocation to a certificate of name issued
// (NotBefore) at notBefore. A recorded certificate is refused when it was
// revoked, whatever its name's revocations: one issued after a revocation
// of its name is accepted. A certificate the hub has no record of (issued
// before the hub recorded admin certificates) is refused when its name was
// revoked after it was issued.
func AdmitAdmin(st AdminStatus, name string, notBefore time.Time) error {
	at := st.RevokedAt
	if !st.Recorded {
		at = nil
		if st.NameRevokedAt != nil && notBefore.Before(*st.NameRevokedAt) {
			at = st.NameRevokedAt
		}
	}
	if at == nil {
		return nil
	}
	return &Refusal{Code: api.CodeUnauthorized, Message: fmt.Sprintf("admin credential %s was revoked at %s: ask for a new one (etoile hub admin-config on the hub machine)", name, at.UTC().Format(time.RFC3339))}
}

// RetryWindow is how long after a key's first join with a token the same
// token and key may still join again once the token has expired. Such a
// retry is for a join whose answer was lost (it returns the same site with
// a fresh certificate and uses nothing up); without a limit a copy of an
// old join string and key would mint certificates for ever, past the
// renewal grace. The window covers an answer lost just before the expiry.
const RetryWindow = time.Hour

// AdmitRetry applies expiry to a retry (same token, same key), after Admit:
// a retry is allowed while the token is valid, or within RetryWindow of
// that key's first join with it.
func AdmitRetry(t *api.Token, firstUse, now time.Time) error {
	if now.Before(t.ExpiresAt) || now.Before(firstUse.Add(RetryWindow)) {
		return nil
	}
	return &Refusal{Code: api.CodeTokenExpired, Message: fmt.Sprintf("join token %s expired at %s, and this key joined with it at %s, over an hour ago: a joined site renews its certificate by itself; a site that cannot needs a new join string (etoile hub token create)",
		t.ID, t.ExpiresAt.UTC().Format(time.RFC3339), firstUse.UTC().Format(time.RFC3339))}
}

// AdmitUse applies expiry and use count, after Admit and the retry check.
func AdmitUse(t *api.Token, now time.Time) error {
	if !now.Before(t.ExpiresAt) {
		return &Refusal{Code: api.CodeTokenExpired, Message: fmt.Sprintf("join token %s expired at %s: ask for a new join string (etoile hub token create --ttl …)", t.ID, t.ExpiresAt.UTC().Format(time.RFC3339))}
	}
	if t.Uses >= t.MaxUses {
		return &Refusal{Code: api.CodeTokenUsed, Message: fmt.Sprintf("join token %s was already used %d of %d times: a site that was reset needs a new token", t.ID, t.Uses, t.MaxUses)}
	}
	return nil
}

// Status judges a site by the age of its last heartbeat: online within
// three intervals, stale within ten, offline beyond or never heard.
func Status(s api.Site, now time.Time, interval time.Duration) string {
	switch {
	case s.RevokedAt != nil:
		return api.StatusRevoked
	case s.LastHeartbeat == nil:
		return api.StatusOffline
	case now.Sub(*s.LastHeartbeat) <= 3*interval:
		return api.StatusOnline
	case now.Sub(*s.LastHeartbeat) <= 10*interval:
		return api.StatusStale
	}
	return api.StatusOffline
}
