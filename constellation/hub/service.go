// Package hub is the constellation hub: the admin service (tokens, sites,
// placement, templates, audit) shared by the local CLI and the admin API,
// the HTTPS server sites talk to, the read-only status page, metrics, and
// the remote admin client.
package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/pki"
	"github.com/etoile-os/etoile/constellation/placement"
	"github.com/etoile-os/etoile/constellation/store"
)

// MetaURL is the store setting holding the hub's advertised URL.
const MetaURL = "hub_url"

// Defaults for the site protocol.
const (
	DefaultHeartbeatInterval = 30 * time.Second
	DefaultCertLifetime      = 24 * time.Hour
	// RenewGrace lets a site that was offline past its certificate's expiry
	// renew with the expired certificate: its key is still the one the hub
	// pinned at join, so identity holds; a revoked site is refused anyway.
	RenewGrace = 30 * 24 * time.Hour
)

// Admin is what an administrator can do; the local Service and the remote
// Client both implement it, so the CLI does not care which it talks to.
type Admin interface {
	CreateToken(ctx context.Context, req api.TokenRequest) (api.TokenResponse, error)
	Tokens(ctx context.Context) ([]api.Token, error)
	RevokeToken(ctx context.Context, id string) error
	Sites(ctx context.Context) ([]api.Site, error)
	RevokeSite(ctx context.Context, name string) error
	Place(ctx context.Context, req api.PlacementRequest) (api.PlacementResult, error)
	PutTemplate(ctx context.Context, t api.Template) (api.Template, error)
	RemoveTemplate(ctx context.Context, name string) (int64, error)
	Templates(ctx context.Context) (api.TemplateList, error)
	Audit(ctx context.Context, action string, limit int) ([]api.AuditEvent, error)
}

// Service implements the hub's logic over a Store.
type Service struct {
	Store             store.Store
	CA                *pki.CA
	Log               *slog.Logger
	Now               func() time.Time
	HeartbeatInterval time.Duration
	CertLifetime      time.Duration

	mu        sync.Mutex
	templates *api.TemplateList // cache, replaced when the revision moves

	// Refused joins are audited, but an unauthenticated flood must not fill
	// the disk: past refusalsPerSecond in one second they are only counted,
	// and the count is recorded with the next refusal after that second.
	refMu         sync.Mutex
	refSecond     int64
	refCount      int
	refSuppressed int
}

const refusalsPerSecond = 20

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) interval() time.Duration {
	if s.HeartbeatInterval > 0 {
		return s.HeartbeatInterval
	}
	return DefaultHeartbeatInterval
}

func (s *Service) lifetime() time.Duration {
	if s.CertLifetime > 0 {
		return s.CertLifetime
	}
	return DefaultCertLifetime
}

// As returns the Admin view of the service acting for actor (recorded in
// the audit trail: "local:root", "admin:CN", …).
func (s *Service) As(actor string) Admin { return &actorView{s: s, actor: actor} }

type actorView struct {
	s     *Service
	actor string
}

func (a *actorView) event(action, subject, detail string) api.AuditEvent {
	return api.AuditEvent{At: a.s.now(), Actor: a.actor, Action: action, Subject: subject, Detail: detail}
}

// CreateToken makes a token and its join string.
func (a *actorView) CreateToken(ctx context.Context, req api.TokenRequest) (api.TokenResponse, error) {
	if err := req.Validate(); err != nil {
		return api.TokenResponse{}, &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()}
	}
	hubURL, err := a.s.Store.Meta(ctx, MetaURL)
	if err != nil {
		return api.TokenResponse{}, fmt.Errorf("hub URL unknown (start the hub once with `etoile hub serve`): %w", err)
	}
	id, secret, err := api.NewTokenCredentials()
	if err != nil {
		return api.TokenResponse{}, err
	}
	now := a.s.now()
	sort.Strings(req.Tags)
	t := api.Token{
		ID: id, SecretHash: store.HashSecret(secret), Site: req.Site, Attributes: req.Attributes,
		CreatedAt: now, ExpiresAt: now.Add(time.Duration(req.TTLSeconds) * time.Second),
		MaxUses: req.Uses, CreatedBy: a.actor,
	}
	detail := fmt.Sprintf("site=%s country=%s region=%s jurisdiction=%s tags=%s ttl=%ds uses=%d",
		req.Site, req.Country, req.Region, req.Jurisdiction, strings.Join(req.Tags, ","), req.TTLSeconds, req.Uses)
	if err := a.s.Store.CreateToken(ctx, t, a.event(api.AuditTokenCreate, id, detail)); err != nil {
		return api.TokenResponse{}, err
	}
	js := api.JoinString{Hub: hubURL, TokenID: id, TokenSecret: secret, CAPin: a.s.CA.Pin()}
	return api.TokenResponse{Token: t, JoinString: js.String()}, nil
}

func (a *actorView) Tokens(ctx context.Context) ([]api.Token, error) { return a.s.Store.Tokens(ctx) }

func (a *actorView) RevokeToken(ctx context.Context, id string) error {
	return a.s.Store.RevokeToken(ctx, id, a.s.now(), a.event(api.AuditTokenRevoke, id, ""))
}

func (a *actorView) Sites(ctx context.Context) ([]api.Site, error) { return a.s.Sites(ctx) }

func (a *actorView) RevokeSite(ctx context.Context, name string) error {
	if err := api.ValidateName("site", name); err != nil {
		return &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()}
	}
	return a.s.Store.RevokeSite(ctx, name, a.s.now(), a.event(api.AuditSiteRevoke, name, ""))
}

func (a *actorView) Place(ctx context.Context, req api.PlacementRequest) (api.PlacementResult, error) {
	sites, err := a.s.Sites(ctx)
	if err != nil {
		return api.PlacementResult{}, err
	}
	res, err := placement.Evaluate(req, sites, a.s.now(), a.s.interval())
	if err != nil {
		return res, &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()}
	}
	names := make([]string, len(res.Eligible))
	for i, c := range res.Eligible {
		names[i] = c.Site
	}
	detail := fmt.Sprintf("needs=%s tags=%s eligible=%s excluded=%d", strings.Join(req.Needs, ","), strings.Join(req.Tags, ","), strings.Join(names, ","), len(res.Excluded))
	if err := a.s.Store.Audit(ctx, a.event(api.AuditPlacement, "placement", detail)); err != nil {
		return res, err
	}
	return res, nil
}

func (a *actorView) PutTemplate(ctx context.Context, t api.Template) (api.Template, error) {
	t.Selector = api.NormalizeSelector(t.Selector)
	if err := t.Validate(); err != nil {
		return t, &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()}
	}
	if err := ValidateManifest(t.Manifest); err != nil {
		return t, &store.Refusal{Code: api.CodeBadRequest, Message: fmt.Sprintf("template %s: %v", t.Name, err)}
	}
	t.UpdatedAt = a.s.now()
	sel := api.SelectorTerms(t.Selector)
	rev, err := a.s.Store.PutTemplate(ctx, t, a.event(api.AuditTemplateAdd, t.Name, fmt.Sprintf("selector=%s bytes=%d", strings.Join(sel, ","), len(t.Manifest))))
	t.Revision = rev
	return t, err
}

func (a *actorView) RemoveTemplate(ctx context.Context, name string) (int64, error) {
	if err := api.ValidateName("template name", name); err != nil {
		return 0, &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()}
	}
	return a.s.Store.RemoveTemplate(ctx, name, a.event(api.AuditTemplateRemove, name, ""))
}

func (a *actorView) Templates(ctx context.Context) (api.TemplateList, error) {
	return a.s.Store.Templates(ctx)
}

func (a *actorView) Audit(ctx context.Context, action string, limit int) ([]api.AuditEvent, error) {
	if err := api.ValidateAuditAction(action); err != nil {
		return nil, &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()}
	}
	return a.s.Store.AuditEvents(ctx, action, limit)
}

// Sites lists sites with their status and the desired template revision.
func (s *Service) Sites(ctx context.Context) ([]api.Site, error) {
	sites, _, err := s.sitesAt(ctx)
	return sites, err
}

// sitesAt is Sites with the hub's current template revision, which the
// status page shows even before any site has joined.
func (s *Service) sitesAt(ctx context.Context) ([]api.Site, int64, error) {
	sites, err := s.Store.Sites(ctx)
	if err != nil {
		return nil, 0, err
	}
	tl, err := s.Store.Templates(ctx)
	if err != nil {
		return nil, 0, err
	}
	now := s.now()
	for i := range sites {
		sites[i].Status = store.Status(sites[i], now, s.interval())
		sites[i].DesiredRevision = tl.Revision
	}
	return sites, tl.Revision, nil
}

// Join admits a site: checks the CSR, runs the store transaction and signs
// the certificate. The returned error is a *store.Refusal when the site
// must be told why.
func (s *Service) Join(ctx context.Context, req api.JoinRequest) (api.JoinResponse, error) {
	if err := req.Validate(); err != nil {
		return api.JoinResponse{}, &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()}
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		return api.JoinResponse{}, &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()}
	}
	keySHA, err := pki.KeySHA256(csr.PublicKey)
	if err != nil {
		return api.JoinResponse{}, &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()}
	}
	id, secret, _ := api.SplitToken(req.Token)
	siteID, err := newSiteID()
	if err != nil {
		return api.JoinResponse{}, err
	}
	now := s.now()
	actor := "token:" + id
	res, err := s.Store.Join(ctx, store.JoinParams{TokenID: id, Secret: secret, KeySHA256: keySHA, Inventory: req.Inventory, Now: now, NewSiteID: siteID},
		api.AuditEvent{At: now, Actor: actor, Action: api.AuditSiteJoin, Detail: "key=" + keySHA[:16] + " host=" + req.Inventory.Hostname})
	if err != nil {
		var ref *store.Refusal
		if errors.As(err, &ref) {
			s.auditRefusal(ctx, api.AuditEvent{At: now, Actor: actor, Action: api.AuditSiteJoinRefuse, Subject: ref.Code, Detail: ref.Message})
		}
		return api.JoinResponse{}, err
	}
	certPEM, _, err := s.CA.SignCSR([]byte(req.CSR), res.Site.ID, api.OrgSite, s.lifetime())
	if err != nil {
		return api.JoinResponse{}, err
	}
	s.log().Info("site joined", "site", res.Site.Name, "site_id", res.Site.ID, "token", id, "retry", res.Retry, "rekeyed", res.Rekeyed)
	return api.JoinResponse{
		SiteID: res.Site.ID, SiteName: res.Site.Name, Certificate: string(certPEM), CA: string(s.CA.CertPEM),
		Policy: api.Policy{Attributes: res.Site.Attributes, HeartbeatSeconds: int(s.interval() / time.Second)},
	}, nil
}

func (s *Service) auditRefusal(ctx context.Context, ev api.AuditEvent) {
	s.refMu.Lock()
	sec := ev.At.Unix()
	var summary *api.AuditEvent
	if sec != s.refSecond {
		if s.refSuppressed > 0 {
			summary = &api.AuditEvent{At: ev.At, Actor: "hub", Action: api.AuditSiteJoinRefuse, Subject: "suppressed",
				Detail: fmt.Sprintf("%d more refused joins in the second from %s were not recorded one by one", s.refSuppressed, time.Unix(s.refSecond, 0).UTC().Format(time.RFC3339))}
		}
		s.refSecond, s.refCount, s.refSuppressed = sec, 0, 0
	}
	s.refCount++
	record := s.refCount <= refusalsPerSecond
	if !record {
		s.refSuppressed++
	}
	s.refMu.Unlock()
	for _, e := range []*api.AuditEvent{summary, &ev} {
		if e == nil || (e == &ev && !record) {
			continue
		}
		if err := s.Store.Audit(ctx, *e); err != nil {
			s.log().Error("recording refused join", "err", err)
		}
	}
}

// Renew signs a new certificate for a site's pinned key.
func (s *Service) Renew(ctx context.Context, siteID, keySHA string, req api.RenewRequest) (api.RenewResponse, error) {
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		return api.RenewResponse{}, &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()}
	}
	k, err := pki.KeySHA256(csr.PublicKey)
	if err != nil || k != keySHA {
		return api.RenewResponse{}, &store.Refusal{Code: api.CodeBadRequest, Message: "renewal CSR is for another key than the site certificate: a new key needs a new join token"}
	}
	if _, err := s.Store.CheckSite(ctx, siteID, keySHA); err != nil {
		return api.RenewResponse{}, err
	}
	certPEM, _, err := s.CA.SignCSR([]byte(req.CSR), siteID, api.OrgSite, s.lifetime())
	if err != nil {
		return api.RenewResponse{}, err
	}
	return api.RenewResponse{Certificate: string(certPEM), CA: string(s.CA.CertPEM)}, nil
}

// Heartbeat records a heartbeat and says which templates the site should run.
func (s *Service) Heartbeat(ctx context.Context, siteID, keySHA string, hb api.Heartbeat) (api.HeartbeatResponse, error) {
	if err := hb.Validate(); err != nil {
		return api.HeartbeatResponse{}, &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()}
	}
	r, err := s.Store.RecordHeartbeat(ctx, siteID, keySHA, hb, s.now())
	if err != nil {
		return api.HeartbeatResponse{}, err
	}
	resp := api.HeartbeatResponse{Revision: r.TemplateRevision, HeartbeatSeconds: int(s.interval() / time.Second)}
	if hb.AppliedRevision == r.TemplateRevision {
		return resp, nil
	}
	tl, err := s.templateList(ctx, r.TemplateRevision)
	if err != nil {
		return api.HeartbeatResponse{}, err
	}
	resp.Revision = tl.Revision
	resp.SendTemplates = true
	resp.Templates = []api.TemplateObject{}
	for _, t := range tl.Templates {
		if api.Selects(t.Selector, r.Site) {
			resp.Templates = append(resp.Templates, api.TemplateObject{Name: t.Name, Manifest: t.Manifest})
		}
	}
	return resp, nil
}

// templateList returns the templates at revision rev or later, from cache
// when it is current: most heartbeats of a large constellation hit it.
func (s *Service) templateList(ctx context.Context, rev int64) (*api.TemplateList, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.templates != nil && s.templates.Revision >= rev {
		return s.templates, nil
	}
	tl, err := s.Store.Templates(ctx)
	if err != nil {
		return nil, err
	}
	s.templates = &tl
	return s.templates, nil
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

func newSiteID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("site id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
