// Package hub is the constellation hub: the admin service (tokens, sites,
// placement, templates, audit) shared by the local CLI and the admin API,
// the HTTPS server sites talk to, the read-only status page, metrics, and
// the remote admin client.
package hub

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
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
	AdminCerts(ctx context.Context) (api.AdminList, error)
	// RevokeAdmin revokes every certificate of an admin name; a new one
	// issued after (etoile hub admin-config) works.
	RevokeAdmin(ctx context.Context, name string) (api.AdminRevocation, error)
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
	putMu     sync.Mutex        // template puts, checked against the budget one at a time

	// Refused joins are audited, but an unauthenticated flood must neither
	// fill the disk nor bury the audit trail: past refusalsPerMinute in one
	// minute they are only counted, and the count is recorded as one event
	// when the minute is over (refTimer), or with the next refusal after it.
	// The store keeps the newest store.KeepJoinRefusals of these events.
	refMu         sync.Mutex
	refMinute     int64 // Unix minute of the window counted
	refCount      int
	refSuppressed int
	refLast       time.Time // the last refusal counted only
	refTimer      *time.Timer
}

const refusalsPerMinute = 10

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
	// One put at a time, so that two templates added together cannot both
	// fit the budget alone and exceed it together.
	a.s.putMu.Lock()
	defer a.s.putMu.Unlock()
	tl, err := a.s.Store.Templates(ctx)
	if err != nil {
		return t, err
	}
	if err := checkTemplateBudget(t, tl.Templates); err != nil {
		return t, err
	}
	t.UpdatedAt = a.s.now()
	sel := api.SelectorTerms(t.Selector)
	rev, err := a.s.Store.PutTemplate(ctx, t, a.event(api.AuditTemplateAdd, t.Name, fmt.Sprintf("selector=%s bytes=%d", strings.Join(sel, ","), len(t.Manifest))))
	t.Revision = rev
	return t, err
}

// checkTemplateBudget refuses t when some site could be sent more than
// api.MaxTemplateSetBytes of templates in one answer with t among them
// (existing holds the templates stored now; one named as t is replaced).
//
// Not every template can reach the same site: a site has one country,
// region, jurisdiction, name, K3s version, Étoile version and slot, so
// templates whose selectors ask two values of one of those never go
// together (per-version variants of a large manifest are the common case),
// while tags and GPU vendors add up (a site has several). The check takes
// the largest set of templates that one site could select together with t
// and counts them as they travel (api.TemplateWireBytes). Sets without t
// only shrink or stay when t is put, so a hub whose puts all passed never
// answers a site with more than the budget.
func checkTemplateBudget(t api.Template, existing []api.Template) error {
	mineTerms, ok := exclusiveTerms(t.Selector)
	if !ok {
		return nil // it selects no site
	}
	mine := budgetItem{name: t.Name, terms: mineTerms, bytes: api.TemplateWireBytes(t.Name, t.Manifest)}
	var others []budgetItem
	for _, o := range existing {
		if o.Name == t.Name {
			continue
		}
		terms, ok := exclusiveTerms(o.Selector)
		if !ok || !compatible(mine.terms, terms) {
			continue
		}
		// What t fixes is settled for every site t reaches.
		for k := range mine.terms {
			delete(terms, k)
		}
		others = append(others, budgetItem{name: o.Name, terms: terms, bytes: api.TemplateWireBytes(o.Name, o.Manifest)})
	}
	steps := 0
	total, names := largestTogether(others, &steps)
	total += mine.bytes
	if total <= api.MaxTemplateSetBytes {
		return nil
	}
	sort.Strings(names)
	with := ""
	if len(names) > 0 {
		shown := names[:min(len(names), 5)]
		with = fmt.Sprintf(", with %d other templates that can reach a site together with it: %s", len(names), strings.Join(shown, ", "))
		if len(names) > len(shown) {
			with += fmt.Sprintf(", and %d more", len(names)-len(shown))
		}
	}
	return &store.Refusal{Code: api.CodeTooLarge, Message: fmt.Sprintf(
		"template %s is refused: with it a site could be sent %d bytes of templates in one heartbeat answer (%s: %d bytes as sent%s), over the %d-byte limit (a site reads at most %d bytes of an answer): "+
			"shrink the manifest, narrow this template's selector or another's so that fewer templates reach the same sites, or remove templates (etoile hub template list)",
		t.Name, total, t.Name, mine.bytes, with, api.MaxTemplateSetBytes, api.MaxAnswerBytes)}
}

// budgetItem is a template as the budget sees it: its size as sent and
// the selector terms that exclude each other between templates.
type budgetItem struct {
	name  string
	terms map[string]string
	bytes int
}

// exclusiveTerms are the selector terms on attributes a site has one value
// of ("site" is the same attribute as "name"); tags and GPU vendors, which
// a site may have several of, never keep two templates apart. ok is false
// for a selector no site can meet (name and site naming two sites).
func exclusiveTerms(sel map[string]string) (terms map[string]string, ok bool) {
	out := map[string]string{}
	for k, v := range sel {
		switch k {
		case "tag", "gpu.vendor":
			continue
		case "site":
			k = "name"
		}
		if w, seen := out[k]; seen && w != v {
			return nil, false
		}
		out[k] = v
	}
	return out, true
}

func compatible(a, b map[string]string) bool {
	for k, v := range a {
		if w, ok := b[k]; ok && w != v {
			return false
		}
	}
	return true
}

// maxBudgetSteps bounds the search of largestTogether; past it the answer
// is the sum of every template left, which is never below the truth.
const maxBudgetSteps = 100000

// largestTogether returns the largest total size of items one site could
// select together, and their names. Items whose terms share no attribute
// are independent and solved apart; within a group the search tries each
// value of the attribute most items ask for.
func largestTogether(items []budgetItem, steps *int) (int, []string) {
	total, names := 0, []string{}
	var rest []budgetItem
	for _, it := range items {
		if len(it.terms) == 0 {
			total += it.bytes
			names = append(names, it.name)
			continue
		}
		rest = append(rest, it)
	}
	for _, group := range attributeGroups(rest) {
		n, ns := largestInGroup(group, steps)
		total += n
		names = append(names, ns...)
	}
	return total, names
}

// attributeGroups splits items into groups that share no attribute key.
func attributeGroups(items []budgetItem) [][]budgetItem {
	parent := map[string]string{}
	var find func(string) string
	find = func(k string) string {
		if p, ok := parent[k]; ok && p != k {
			r := find(p)
			parent[k] = r
			return r
		}
		parent[k] = k
		return k
	}
	for _, it := range items {
		first := ""
		for _, k := range sortedKeys(it.terms) {
			if first == "" {
				first = find(k)
				continue
			}
			parent[find(k)] = first
		}
	}
	byRoot := map[string][]budgetItem{}
	var roots []string
	for _, it := range items {
		r := find(sortedKeys(it.terms)[0])
		if _, ok := byRoot[r]; !ok {
			roots = append(roots, r)
		}
		byRoot[r] = append(byRoot[r], it)
	}
	out := make([][]budgetItem, 0, len(roots))
	for _, r := range roots {
		out = append(out, byRoot[r])
	}
	return out
}

func largestInGroup(items []budgetItem, steps *int) (int, []string) {
	*steps++
	if *steps > maxBudgetSteps {
		total, names := 0, []string{}
		for _, it := range items {
			total += it.bytes
			names = append(names, it.name)
		}
		return total, names
	}
	count := map[string]int{}
	for _, it := range items {
		for k := range it.terms {
			count[k]++
		}
	}
	key := ""
	for k, n := range count {
		if key == "" || n > count[key] || n == count[key] && k < key {
			key = k
		}
	}
	values := map[string]bool{}
	for _, it := range items {
		if v, ok := it.terms[key]; ok {
			values[v] = true
		}
	}
	best, bestNames := -1, []string(nil)
	for _, v := range sortedKeys(values) {
		// A site whose key is v: the items asking for v (that term now
		// met) and those not asking about key at all.
		var sub []budgetItem
		for _, it := range items {
			w, ok := it.terms[key]
			switch {
			case !ok:
				sub = append(sub, it)
			case w == v:
				terms := make(map[string]string, len(it.terms)-1)
				for k, x := range it.terms {
					if k != key {
						terms[k] = x
					}
				}
				sub = append(sub, budgetItem{name: it.name, terms: terms, bytes: it.bytes})
			}
		}
		if n, ns := largestTogether(sub, steps); n > best {
			best, bestNames = n, ns
		}
	}
	return best, bestNames
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
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

func (a *actorView) AdminCerts(ctx context.Context) (api.AdminList, error) {
	return a.s.Store.AdminCerts(ctx)
}

func (a *actorView) RevokeAdmin(ctx context.Context, name string) (api.AdminRevocation, error) {
	if err := api.ValidateName("admin name", name); err != nil {
		return api.AdminRevocation{}, &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()}
	}
	now := a.s.now()
	rev, err := a.s.Store.RevokeAdmin(ctx, name, now, a.event(api.AuditAdminRevoke, name, ""))
	if err == nil {
		a.s.log().Info("admin credential revoked", "name", name, "by", a.actor, "certificates", rev.Certificates)
	}
	return rev, err
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
		// What the site would be sent now, from its latest attributes: the
		// same value its next heartbeat answer carries, so applied and
		// desired are equal exactly when the site is up to date.
		_, sites[i].DesiredRevision = selectTemplates(&tl, sites[i])
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
	minute := ev.At.Unix() / 60
	var summary *api.AuditEvent
	if minute != s.refMinute {
		summary = s.takeRefusalSummary()
		s.refMinute, s.refCount = minute, 0
	}
	s.refCount++
	record := s.refCount <= refusalsPerMinute
	if !record {
		s.refSuppressed++
		s.refLast = ev.At
		if s.refTimer == nil {
			// The count is recorded at the minute's end even when no
			// refusal follows (a flood that stopped).
			wait := time.Unix((minute+1)*60, 0).Sub(ev.At)
			s.refTimer = time.AfterFunc(min(max(wait, time.Second), time.Minute), func() { s.flushRefusals(minute) })
		}
	}
	s.refMu.Unlock()
	if summary != nil {
		s.recordRefusal(ctx, *summary)
	}
	if record {
		s.recordRefusal(ctx, ev)
	}
}

// takeRefusalSummary returns the event counting the refusals of the
// current minute that were not recorded one by one, nil when there are
// none, and starts counting again. s.refMu is held.
func (s *Service) takeRefusalSummary() *api.AuditEvent {
	if s.refTimer != nil {
		s.refTimer.Stop()
		s.refTimer = nil
	}
	if s.refSuppressed == 0 {
		return nil
	}
	from := time.Unix(s.refMinute*60, 0).UTC().Format(time.RFC3339)
	ev := &api.AuditEvent{At: s.refLast, Actor: "hub", Action: api.AuditSiteJoinRefuse, Subject: "suppressed",
		Detail: fmt.Sprintf("and %d more refused joins in the minute from %s, not recorded one by one (the hub records the first %d of a minute)", s.refSuppressed, from, refusalsPerMinute)}
	s.refSuppressed = 0
	return ev
}

// flushRefusals records the count of minute's unrecorded refusals, at its
// end; a refusal after it may have done so already.
func (s *Service) flushRefusals(minute int64) {
	s.refMu.Lock()
	var summary *api.AuditEvent
	if s.refMinute == minute {
		summary = s.takeRefusalSummary()
	}
	s.refMu.Unlock()
	if summary != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.recordRefusal(ctx, *summary)
	}
}

// FlushRefusals records the count of refused joins not recorded one by one
// yet, at once: the hub calls it as it stops, before closing its store.
func (s *Service) FlushRefusals(ctx context.Context) {
	s.refMu.Lock()
	summary := s.takeRefusalSummary()
	s.refMu.Unlock()
	if summary != nil {
		s.recordRefusal(ctx, *summary)
	}
}

func (s *Service) recordRefusal(ctx context.Context, ev api.AuditEvent) {
	if err := s.Store.Audit(ctx, ev); err != nil {
		s.log().Error("recording refused join", "err", err)
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
	tl, err := s.templateList(ctx, r.TemplateRevision)
	if err != nil {
		return api.HeartbeatResponse{}, err
	}
	// The selection follows the site's latest attributes (its K3s and
	// Étoile versions, slot, GPUs, the tags of the token it joined with) as
	// much as the templates: its digest, not the hub's global revision, says
	// whether the site has what it should.
	sel, digest := selectTemplates(tl, r.Site)
	resp := api.HeartbeatResponse{Revision: digest, HeartbeatSeconds: int(s.interval() / time.Second), TakesRefused: true}
	// Sent until applied, but not again to a site that said it cannot
	// deploy this very set (its heartbeat's templatesProblem says why).
	if hb.AppliedRevision == digest || (digest != 0 && hb.RefusedRevision == digest) {
		return resp, nil
	}
	resp.SendTemplates = true
	resp.Templates = make([]api.TemplateObject, 0, len(sel))
	for _, t := range sel {
		resp.Templates = append(resp.Templates, api.TemplateObject{Name: t.Name, Manifest: t.Manifest})
	}
	return resp, nil
}

// selectTemplates returns the templates of tl that select site, by name,
// and the digest of that selection: the "revision" a site is sent and
// reports back as applied. It is a hash of the selected templates' names
// and revisions (each template change gets a revision of its own), cut to
// 53 bits so that it stays exact in any JSON reader; 0 is the empty
// selection, which a site that never received a set has already applied.
// A site reporting anything else (a global revision from an older hub, a
// selection its attributes no longer give) is sent its set once.
func selectTemplates(tl *api.TemplateList, site api.Site) ([]api.Template, int64) {
	var sel []api.Template
	for _, t := range tl.Templates {
		if api.Selects(t.Selector, site) {
			sel = append(sel, t)
		}
	}
	if len(sel) == 0 {
		return nil, 0
	}
	sort.Slice(sel, func(i, j int) bool { return sel[i].Name < sel[j].Name })
	h := sha256.New()
	var b []byte
	for _, t := range sel {
		b = append(b[:0], t.Name...)
		b = append(b, 0)
		b = strconv.AppendInt(b, t.Revision, 10)
		b = append(b, '\n')
		h.Write(b)
	}
	d := int64(binary.BigEndian.Uint64(h.Sum(nil)) & (1<<53 - 1))
	if d == 0 {
		d = 1
	}
	return sel, d
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
