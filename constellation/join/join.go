// Package join is the site side of the constellation: joining a hub with a
// join string, renewing the site certificate, heartbeating, and applying
// the hub's templates into K3s's auto-deploy folder. It is linked into the
// static agent, so it imports nothing that needs cgo.
package join

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/pki"
)

// Paths under the site's root (the state partition on a machine).
const (
	StateDir    = "var/lib/etoile/constellation"
	ManifestDir = "var/lib/rancher/k3s/server/manifests"
	keyFile     = "site.key"
	certFile    = "site.crt"
	caFile      = "ca.crt"
	stateFile   = "site.json"
)

// State is what a joined site remembers about its hub. It is kept across
// reboots, so the site runs on with the hub gone and reports in when it is back.
type State struct {
	Hub             string     `json:"hub"`
	CAPin           string     `json:"caPin"`
	SiteID          string     `json:"siteID"`
	SiteName        string     `json:"siteName"`
	Policy          api.Policy `json:"policy"`
	JoinedAt        time.Time  `json:"joinedAt"`
	AppliedRevision int64      `json:"appliedRevision"`
	// DeployState is the Site's DeployState when AppliedRevision was
	// recorded: when it changes, the set is asked for again.
	DeployState   string     `json:"deployState,omitempty"`
	LastHeartbeat *time.Time `json:"lastHeartbeat,omitempty"`
	LastError     string     `json:"lastError,omitempty"`
	// TokenID is the join token's ID (not its secret), to tell a new join
	// string from the one this site joined with.
	TokenID string `json:"tokenID,omitempty"`
	// Revoked is set once the hub said this site is revoked: the same
	// join string does not join again.
	Revoked bool `json:"revoked,omitempty"`
	// Refused is the hub's word once it refused this site's certificate
	// and its renewal as well (the site is not known to it, the certificate
	// expired past the renewal grace, another machine's key took the name
	// over): the identity is dead, and the machine config's join string
	// is the way back in. A heartbeat the hub takes clears it.
	Refused string `json:"refused,omitempty"`
	// Templates are the manifest files the hub's templates wrote (file
	// names in ManifestDir): only these are ever removed. Absent in a state
	// written before it was kept: every etoile-*.yaml is taken as written.
	Templates []string `json:"templates"`
}

// Site is a joined site's credentials and state, loaded from root.
type Site struct {
	Root  string
	State State
	Log   *slog.Logger
	// Stall bounds each exchange with the hub by its progress, not its
	// length (DefaultStall when zero): an answer is read for as long as
	// its bytes keep coming, so a large template set crosses a slow link,
	// and given up once nothing came for this long. Set it before the
	// first exchange.
	Stall time.Duration
	// Warn, when set, is told what the site's operator should see (the
	// agent puts it in its status's warnings): the hub refusing heartbeats
	// for RefusalsToWarn beats in a row, templates that cannot be deployed
	// here; "" once all is well again. Run calls it.
	Warn func(problem string)
	// Undeployable, when set, says why a template the hub sends cannot run
	// on this machine ("" when it can): on a K3s agent nothing deploys the
	// manifests folder. Such templates are not written, and the set is not
	// reported applied, so that the hub does not show it as deployed.
	Undeployable func(api.TemplateObject) string
	// DeployState names what Undeployable's answers follow (the node's
	// K3s role, whether its helm controller is disabled): when it is not
	// the one the applied set was judged under, the set is asked for
	// again and judged anew (templates written before a change that makes
	// them undeployable are removed, refused ones written after one that
	// makes them deployable).
	DeployState string
	// Proxy picks the web proxy of each request to the hub, as
	// Options.Proxy (EnsureJoined sets it from its options). Set it before
	// the first exchange.
	Proxy func(*http.Request) (*url.URL, error)

	lastSaved        time.Time
	templatesProblem string // why the last set sent was not applied in full; "" when it was
	refusedRevision  int64  // the revision of that set, told to the hub so that it does not send it again
	hubTakesRefused  bool   // the hub's answers said it reads refusedRevision (older hubs refuse unknown fields)

	mu     sync.Mutex
	key    *ecdsa.PrivateKey
	cert   *tls.Certificate
	client *http.Client
}

func stateDir(root string) string { return filepath.Join(root, StateDir) }

// LoadOrCreateKey returns the site key, creating it 0600 on first use.
// Keeping it across a failed join is what makes a retry idempotent: the hub
// recognizes the same token and key and returns the same site.
func LoadOrCreateKey(root string) (*ecdsa.PrivateKey, error) {
	dir := stateDir(root)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating site state folder: %w", err)
	}
	path := filepath.Join(dir, keyFile)
	k, err := pki.LoadKey(path)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err = pki.NewKey()
	if err != nil {
		return nil, err
	}
	if err := pki.WriteKey(path, k); err != nil {
		return nil, err
	}
	return k, nil
}

// DefaultStall is how long an exchange with the hub may go without
// progress (see Site.Stall).
const DefaultStall = 30 * time.Second

// Options for Join.
type Options struct {
	Root      string
	Inventory api.Inventory
	Log       *slog.Logger
	// Timeout bounds the join request; 30 s when zero.
	Timeout time.Duration
	// Proxy, when set, picks the web proxy of each request to the hub
	// (http.Transport.Proxy: the machine config's proxy section); nil
	// reaches the hub directly.
	Proxy func(*http.Request) (*url.URL, error)
}

// RemoteError is a refusal from the hub, with its stable code.
type RemoteError struct {
	Status int
	Code   string
	Msg    string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("hub refused (%s): %s", e.Code, e.Msg)
}

// Join joins the hub named by js and stores the site's credentials.
func Join(ctx context.Context, js api.JoinString, o Options) (*Site, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	key, err := LoadOrCreateKey(o.Root)
	if err != nil {
		return nil, err
	}
	csr, err := pki.CSR(key, "etoile-site")
	if err != nil {
		return nil, err
	}
	// The join's answer is small: o.Timeout bounds it whole, as it did.
	timeout := cmp.Or(o.Timeout, 30*time.Second)
	hc, err := pinnedClient(js.Hub, js.CAPin, nil, timeout, timeout, o.Proxy)
	if err != nil {
		return nil, err
	}
	var resp api.JoinResponse
	if err := post(ctx, hc, timeout, js.Hub+api.PathJoin, api.JoinRequest{Token: js.Token(), CSR: string(csr), Inventory: o.Inventory}, &resp); err != nil {
		var re *RemoteError
		if errors.As(err, &re) && re.Code == api.CodeSiteRevoked {
			// A revoked site's name (joining again after its key was lost):
			// final, as a revocation seen in a heartbeat is.
			return nil, fmt.Errorf("%w (joining hub %s: %w)", ErrRevoked, js.Hub, err)
		}
		return nil, fmt.Errorf("joining hub %s: %w", js.Hub, err)
	}
	cert, err := checkIssued(resp.Certificate, resp.CA, js.CAPin, key)
	if err != nil {
		return nil, fmt.Errorf("hub %s answered the join with %w", js.Hub, err)
	}
	s := &Site{Root: o.Root, Log: o.Log, Proxy: o.Proxy, key: key, cert: cert, State: State{
		Hub: js.Hub, CAPin: js.CAPin, SiteID: resp.SiteID, SiteName: resp.SiteName, Policy: resp.Policy, JoinedAt: time.Now().UTC(),
		TokenID: js.TokenID, Templates: []string{},
	}}
	if old, err := readState(o.Root); err == nil && old.SiteID == resp.SiteID && old.CAPin == js.CAPin {
		// The same site joining again (with a token whose tags may differ):
		// what it applied is still on disk. The hub compares it with the
		// selection for the site's new attributes and sends the set when
		// they differ.
		s.State.AppliedRevision, s.State.Templates = old.AppliedRevision, old.Templates
	} else if err == nil {
		// Another site, or another hub: the templates the previous one
		// wrote go now (the new hub sends its own, from revision 0 on,
		// and would not send any while its revision is 0).
		_, removed, err := ApplyTemplates(filepath.Join(o.Root, ManifestDir), nil, old.Templates)
		if err != nil {
			return nil, fmt.Errorf("removing the previous hub's templates: %w", err)
		}
		if len(removed) > 0 {
			o.Log.Info("removed the previous site's templates", "previous_site", old.SiteName, "removed", removed)
		}
	}
	dir := stateDir(o.Root)
	if err := pki.WriteFileAtomic(filepath.Join(dir, caFile), []byte(resp.CA), 0o644); err != nil {
		return nil, err
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, certFile), []byte(resp.Certificate), 0o644); err != nil {
		return nil, err
	}
	if err := s.saveState(); err != nil {
		return nil, err
	}
	o.Log.Info("joined constellation", "hub", js.Hub, "site", resp.SiteName, "site_id", resp.SiteID, "cert_not_after", cert.Leaf.NotAfter)
	return s, nil
}

// checkIssued verifies that the certificate the hub returned is for our key
// and chains to the pinned CA, so a buggy or hostile answer is not stored.
func checkIssued(certPEM, caPEM, pin string, key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	ca, err := pki.ParseCertPEM([]byte(caPEM))
	if err != nil {
		return nil, fmt.Errorf("an unreadable CA: %w", err)
	}
	if pki.Pin(ca) != pin {
		return nil, errors.New("a CA that does not match the pin")
	}
	leaf, err := pki.ParseCertPEM([]byte(certPEM))
	if err != nil {
		return nil, fmt.Errorf("an unreadable certificate: %w", err)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("a certificate for another key")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	// Validity dates are the hub's business: an edge box whose clock is off
	// (no NTP yet) must still store the certificate, so the chain is checked
	// at the certificate's own start time.
	at := leaf.NotBefore.Add(time.Second)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("a certificate that does not verify: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// Load reads a joined site from root.
func Load(root string, log *slog.Logger) (*Site, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := readState(root)
	if err != nil {
		return nil, err
	}
	dir := stateDir(root)
	key, err := pki.LoadKey(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, fmt.Errorf("site key: %w", err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, certFile))
	if err != nil {
		return nil, fmt.Errorf("site certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, caFile))
	if err != nil {
		return nil, fmt.Errorf("hub CA: %w", err)
	}
	cert, err := checkIssued(string(certPEM), string(caPEM), st.CAPin, key)
	if err != nil {
		return nil, fmt.Errorf("stored site certificate is %w: join again", err)
	}
	return &Site{Root: root, State: st, Log: log, key: key, cert: cert}, nil
}

func readState(root string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(stateDir(root), stateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return st, fmt.Errorf("this site has not joined a constellation (no %s): run etoile-agent join JOIN-STRING: %w", filepath.Join(StateDir, stateFile), err)
		}
		return st, fmt.Errorf("reading site state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("site state %s: %w", stateFile, err)
	}
	return st, nil
}

func (s *Site) saveState() error {
	b, err := json.MarshalIndent(s.State, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding site state: %w", err)
	}
	if err := pki.WriteFileAtomic(filepath.Join(stateDir(s.Root), stateFile), append(b, '\n'), 0o644); err != nil {
		return err
	}
	s.lastSaved = time.Now()
	return nil
}

// Certificate returns the current site certificate.
func (s *Site) Certificate() *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert.Leaf
}

func (s *Site) stall() time.Duration { return cmp.Or(s.Stall, DefaultStall) }

func (s *Site) httpClient() (*http.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	// No overall timeout: a heartbeat's answer carries the site's
	// templates (up to 6 MiB), which take minutes over a slow edge link.
	// post bounds the exchange by its progress instead.
	c, err := pinnedClient(s.State.Hub, s.State.CAPin, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.cert, nil
	}, 0, s.stall(), s.Proxy)
	if err != nil {
		return nil, err
	}
	s.client = c
	return c, nil
}

// Renew asks the hub for a fresh certificate for the same key.
func (s *Site) Renew(ctx context.Context) error {
	hc, err := s.httpClient()
	if err != nil {
		return err
	}
	csr, err := pki.CSR(s.key, "etoile-site")
	if err != nil {
		return err
	}
	var resp api.RenewResponse
	if err := post(ctx, hc, s.stall(), s.State.Hub+api.PathRenew, api.RenewRequest{CSR: string(csr)}, &resp); err != nil {
		return fmt.Errorf("renewing site certificate: %w", err)
	}
	cert, err := checkIssued(resp.Certificate, resp.CA, s.State.CAPin, s.key)
	if err != nil {
		return fmt.Errorf("hub answered the renewal with %w", err)
	}
	if err := pki.WriteFileAtomic(filepath.Join(stateDir(s.Root), certFile), []byte(resp.Certificate), 0o644); err != nil {
		return err
	}
	s.mu.Lock()
	s.cert = cert
	// A fresh client: a resumed TLS session would present the old
	// certificate again, so the session cache goes with the connections.
	s.client = nil
	s.mu.Unlock()
	hc.CloseIdleConnections()
	s.Log.Info("site certificate renewed", "not_after", cert.Leaf.NotAfter)
	return nil
}

// NeedsRenewal is true once two thirds of the certificate's life are gone.
func (s *Site) NeedsRenewal(now time.Time) bool {
	c := s.Certificate()
	life := c.NotAfter.Sub(c.NotBefore)
	if life > pki.Backdate {
		// The hub dates a certificate back (for clocks a little behind): its
		// lifetime counts from its issue.
		life -= pki.Backdate
	}
	return now.After(c.NotAfter.Add(-life / 3))
}

// pinnedClient is a client for the hub pinned to its CA. timeout bounds a
// whole exchange (0: none); stall the wait for the answer's headers; proxy
// picks the web proxy (nil: none). Through a proxy the TLS session is still
// the hub's own, pinned and with the site's certificate: the proxy only
// relays it (CONNECT).
func pinnedClient(hub, pin string, getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error), timeout, stall time.Duration, proxy func(*http.Request) (*url.URL, error)) (*http.Client, error) {
	u, err := url.Parse(hub)
	if err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("hub URL %q is not https", hub)
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The pin replaces the system roots: the hub's CA is its own, and
		// trusting it comes from the join string, never from the network.
		InsecureSkipVerify:   true,
		VerifyConnection:     pki.PinnedVerifier(pin, u.Hostname()),
		GetClientCertificate: getCert,
		// A hub that closes idle connections gets resumed handshakes.
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}
	tr := &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 1, IdleConnTimeout: 5 * time.Minute, TLSHandshakeTimeout: 15 * time.Second,
		ResponseHeaderTimeout: stall, ForceAttemptHTTP2: false, Proxy: proxy}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// post sends in and decodes the answer into out. The exchange is given up
// once nothing was received for stall (0: never): a deadline pushed
// forward while the answer's bytes arrive, so that a large answer over a
// slow link arrives whatever it takes, and a dead link is noticed.
func post(ctx context.Context, hc *http.Client, stall time.Duration, u string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encoding request: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errStalled := fmt.Errorf("nothing received from the hub for %s: the link is too slow or broken", stall)
	var progress *time.Timer
	if stall > 0 {
		progress = time.AfterFunc(stall, func() { cancel(errStalled) })
		defer progress.Stop()
	}
	stalled := func(err error) error {
		if context.Cause(ctx) == errStalled {
			return errStalled
		}
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return stalled(err)
	}
	defer resp.Body.Close()
	var body io.Reader = resp.Body
	if progress != nil {
		body = &progressReader{r: resp.Body, t: progress, d: stall}
	}
	data, err := io.ReadAll(io.LimitReader(body, api.MaxAnswerBytes+1))
	if err != nil {
		return fmt.Errorf("reading hub answer: %w", stalled(err))
	}
	if len(data) > api.MaxAnswerBytes {
		// Said as it is, not as the JSON error a cut answer would give: the
		// templates this site selects are larger than a site reads.
		return fmt.Errorf("the hub's answer exceeded %d bytes, the most a site reads: the templates the hub selects for this site are too large together (the hub's administrator lists them with etoile hub template list)", api.MaxAnswerBytes)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return &RemoteError{Status: resp.StatusCode, Code: e.Code, Msg: e.Message}
		}
		return fmt.Errorf("hub answered %s", resp.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding hub answer: %w", err)
	}
	return nil
}

// progressReader pushes t back by d whenever bytes arrive.
type progressReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.t.Reset(p.d)
	}
	return n, err
}

// EnsureJoined is the unattended join of the machine config's
// `constellation:` section: it loads the site when it has joined the hub the
// join string names, and joins otherwise. A join string for another hub (a
// different CA pin) means the site moves: it joins the new hub. A site the
// hub no longer accepts (State.Refused) joins again with the join string.
func EnsureJoined(ctx context.Context, joinString string, o Options) (*Site, error) {
	js, err := api.ParseJoinString(joinString)
	if err != nil {
		return nil, fmt.Errorf("constellation join string: %w", err)
	}
	if s, err := Load(o.Root, o.Log); err == nil && s.State.CAPin == js.CAPin {
		s.Proxy = o.Proxy
		switch {
		case s.State.Revoked && s.State.TokenID == js.TokenID:
			return nil, ErrRevoked
		case s.State.Revoked:
			// A new join string after the revocation (or a state that did
			// not keep its token): join with it; the hub says whether it may.
		case s.State.Refused != "":
			return rejoin(ctx, s, js, o)
		default:
			if s.State.TokenID != js.TokenID {
				// Joined already: a new token for the same hub is not needed
				// (nor used: the site keeps its name and key).
				s.Log.Info("this site has joined this hub already: the join string's token is not used", "site", s.State.SiteName, "token", js.TokenID)
			}
			if s.State.Hub != js.Hub {
				// The same hub (its CA) at another address: follow the
				// join string, the newer word.
				s.Log.Info("the hub's address changed", "was", s.State.Hub, "now", js.Hub)
				s.State.Hub = js.Hub
				if err := s.saveState(); err != nil {
					return nil, err
				}
			}
			return s, nil
		}
	}
	return Join(ctx, js, o)
}

// rejoin joins s, which the hub no longer accepts, again with js: a new
// token for its name, or the same one while it may still be used (a fleet's
// token with uses left, the hub's database restored without this site).
func rejoin(ctx context.Context, s *Site, js api.JoinString, o Options) (*Site, error) {
	s.Log.Info("the hub no longer accepts this site: joining again with the join string", "site", s.State.SiteName, "refused", s.State.Refused, "token", js.TokenID)
	site, err := Join(ctx, js, o)
	if err == nil || ctx.Err() != nil {
		return site, err
	}
	// The hub may take the old certificate again (its database was
	// restored once more): a renewal says so, and is refused otherwise.
	if rerr := s.Renew(ctx); rerr == nil {
		s.Log.Info("the hub accepts this site again", "site", s.State.SiteName)
		s.State.Refused = ""
		if err := s.saveState(); err != nil {
			return nil, err
		}
		return s, nil
	}
	hint := "give the machine config a new join string"
	if s.State.TokenID == js.TokenID {
		hint = "the machine config's join string is the one this site joined with: give it a new one"
	}
	return nil, fmt.Errorf("%w (%s), and joining again failed (%w): %s (etoile hub token create --site %s)", ErrRefused, s.State.Refused, err, hint, s.State.SiteName)
}

// ErrRefused says that the hub refuses this site's certificate, its renewal
// included: the site needs to join again, with a join string.
var ErrRefused = errors.New("the hub no longer accepts this site")

// refusal is err's hub refusal when the site cannot carry on with its
// certificate after it (nil otherwise): a revocation (recorded as such) or
// an unauthorized renewal (recorded in State.Refused). The error returned
// is ErrRevoked's or ErrRefused's.
func (s *Site) refusal(err error) error {
	var re *RemoteError
	if !errors.As(err, &re) {
		return nil
	}
	switch re.Code {
	case api.CodeSiteRevoked:
		if err := s.MarkRevoked(); err != nil {
			s.Log.Warn("recording the revocation", "err", err)
		}
		return fmt.Errorf("%w (%w)", ErrRevoked, err)
	case api.CodeUnauthorized:
		s.State.Refused = re.Msg
		if err := s.saveState(); err != nil {
			s.Log.Warn("recording the hub's refusal", "err", err)
		}
		return fmt.Errorf("%w (%s): give the machine config a new join string (etoile hub token create --site %s)", ErrRefused, re.Msg, s.State.SiteName)
	}
	return nil
}

// ErrRevoked is EnsureJoined's answer for a site the hub revoked, given the
// join string it joined with.
var ErrRevoked = errors.New("this site was revoked on the hub: it keeps running but does not report in; to join again, give a new join string (a new token, for a new site name)")

// MarkRevoked records that the hub revoked this site.
func (s *Site) MarkRevoked() error {
	s.State.Revoked = true
	return s.saveState()
}
