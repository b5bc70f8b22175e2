package hub

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/pki"
	"github.com/etoile-os/etoile/constellation/store"
)

// Server serves the site and admin API over TLS and, on a separate plain
// listener meant for loopback or a management network, the read-only
// status page and /metrics.
type Server struct {
	Service *Service
	Log     *slog.Logger
	// IdleTimeout closes site connections idle this long (default 2 min).
	// Kept connections save a TLS handshake per heartbeat; parked between
	// heartbeats (see siteListener) each costs its TLS state, about 10 KB
	// of heap. Below the heartbeat interval every beat resumes TLS instead.
	IdleTimeout time.Duration
	// WriteStall bounds the writing of an answer by its progress (default
	// 30 s): each piece written gets this long, so that a site's template
	// set (up to 6 MiB) crosses a slow link whatever it takes, while a
	// client that stops reading is cut off. It is also the time a request
	// has from its headers to the start of its answer.
	WriteStall time.Duration
	// RenewCert issues the hub's TLS certificate again; Run calls it once
	// two thirds of the certificate's lifetime have passed (checked every
	// CertCheckEvery, default an hour), so that a hub running for longer
	// than the certificate lasts does not start presenting an expired one.
	// Nil: the certificate given to Run is kept.
	RenewCert      func() (tls.Certificate, error)
	CertCheckEvery time.Duration

	cert atomic.Pointer[tls.Certificate] // what the API listener presents

	// verified caches client certificates already checked against the CA,
	// by SHA-256 of their DER: a site that reconnects (TLS resumption after
	// an idle close) is not re-verified with an ECDSA operation each time.
	verifiedMu sync.Mutex
	verified   map[[32]byte]identity

	metricsOnce sync.Once
	reg         *prometheus.Registry
	heartbeats  *prometheus.CounterVec
	joins       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
}

type connKey struct{}

// connAuth caches the verification of a connection's client certificate:
// sites keep their connection between heartbeats, so the CA signature is
// checked once per connection rather than once per heartbeat.
type connAuth struct {
	mu   sync.Mutex
	leaf *x509.Certificate
	id   identity
	err  error
}

type identity struct {
	org, cn, keySHA     string
	serial              string // lowercase hex, as admin certificates are recorded
	notBefore, notAfter time.Time
}

func (s *Server) metrics() {
	s.metricsOnce.Do(func() {
		s.reg = prometheus.NewRegistry()
		s.heartbeats = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "etoile_hub_heartbeats_total", Help: "Heartbeats received, by result."}, []string{"result"})
		s.joins = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "etoile_hub_joins_total", Help: "Join attempts, by result code."}, []string{"result"})
		s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "etoile_hub_request_duration_seconds", Help: "API request latency, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"route"})
		s.reg.MustRegister(s.heartbeats, s.joins, s.duration, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &siteCollector{s: s.Service})
	})
}

// Registry returns the Prometheus registry the server reports to.
func (s *Server) Registry() *prometheus.Registry { s.metrics(); return s.reg }

var sitesDesc = prometheus.NewDesc("etoile_hub_sites", "Sites by status.", []string{"status"}, nil)

type siteCollector struct{ s *Service }

func (c *siteCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sitesDesc }

func (c *siteCollector) Collect(ch chan<- prometheus.Metric) {
	sites, err := c.s.Sites(context.Background())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(sitesDesc, err)
		return
	}
	n := map[string]int{api.StatusOnline: 0, api.StatusStale: 0, api.StatusOffline: 0, api.StatusRevoked: 0}
	for _, st := range sites {
		n[st.Status]++
	}
	for k, v := range n {
		ch <- prometheus.MustNewConstMetric(sitesDesc, prometheus.GaugeValue, float64(v), k)
	}
}

// TLSConfig is the API listener's TLS configuration. Client certificates
// are requested but checked by the handlers, so that an expired or foreign
// certificate gets a readable JSON answer instead of a TLS alert.
func (s *Server) TLSConfig(cert tls.Certificate) *tls.Config {
	s.cert.Store(&cert)
	return &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil },
		ClientAuth:     tls.RequestClientCert,
		MinVersion:     tls.VersionTLS13,
		// Sites and admins speak HTTP/1.1: an idle connection then costs
		// the hub only its TLS state (see siteListener).
		NextProtos: []string{"http/1.1"},
	}
}

// APIHandler routes the TLS API.
func (s *Server) APIHandler() http.Handler {
	s.metrics()
	mux := http.NewServeMux()
	route := func(pattern string, h http.HandlerFunc) {
		obs := s.duration.WithLabelValues(pattern)
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			t := time.Now()
			h(w, r)
			obs.Observe(time.Since(t).Seconds())
		})
	}
	route("POST "+api.PathJoin, s.handleJoin)
	route("POST "+api.PathRenew, s.handleRenew)
	route("POST "+api.PathHeartbeat, s.handleHeartbeat)
	route("POST "+api.PathAdminTokens, s.admin(func(w http.ResponseWriter, r *http.Request, a Admin) {
		var req api.TokenRequest
		if !s.decode(w, r, &req) {
			return
		}
		s.reply(w, r)(a.CreateToken(r.Context(), req))
	}))
	route("GET "+api.PathAdminTokens, s.admin(func(w http.ResponseWriter, r *http.Request, a Admin) {
		s.reply(w, r)(a.Tokens(r.Context()))
	}))
	route("DELETE "+api.PathAdminTokens+"/{id}", s.admin(func(w http.ResponseWriter, r *http.Request, a Admin) {
		s.reply(w, r)(struct{}{}, a.RevokeToken(r.Context(), r.PathValue("id")))
	}))
	route("GET "+api.PathAdminSites, s.admin(func(w http.ResponseWriter, r *http.Request, a Admin) {
		s.reply(w, r)(a.Sites(r.Context()))
	}))
	route("DELETE "+api.PathAdminSites+"/{name}", s.admin(func(w http.ResponseWriter, r *http.Request, a Admin) {
		s.reply(w, r)(struct{}{}, a.RevokeSite(r.Context(), r.PathValue("name")))
	}))
	route("POST "+api.PathAdminPlace, s.admin(func(w http.ResponseWriter, r *http.Request, a Admin) {
		var req api.PlacementRequest
		if !s.decode(w, r, &req) {
			return
		}
		s.reply(w, r)(a.Place(r.Context(), req))
	}))
	route("GET "+api.PathAdminTemplates, s.admin(func(w http.ResponseWriter, r *http.Request, a Admin) {
		s.reply(w, r)(a.Templates(r.Context()))
	}))
	route("POST "+api.PathAdminTemplates, s.admin(func(w http.ResponseWriter, r *http.Request, a Admin) {
		var t api.Template
		if !s.decode(w, r, &t) {
			return
		}
		s.reply(w, r)(a.PutTemplate(r.Context(), t))
	}))
	route("DELETE "+api.PathAdminTemplates+"/{name}", s.admin(func(w http.ResponseWriter, r *http.Request, a Admin) {
		s.reply(w, r)(a.RemoveTemplate(r.Context(), r.PathValue("name")))
	}))
	route("GET "+api.PathAdminAdmins, s.admin(func(w http.ResponseWriter, r *http.Request, a Admin) {
		s.reply(w, r)(a.AdminCerts(r.Context()))
	}))
	route("DELETE "+api.PathAdminAdmins+"/{name}", s.admin(func(w http.ResponseWriter, r *http.Request, a Admin) {
		s.reply(w, r)(a.RevokeAdmin(r.Context(), r.PathValue("name")))
	}))
	route("GET "+api.PathAdminAudit, s.admin(func(w http.ResponseWriter, r *http.Request, a Admin) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		s.reply(w, r)(a.Audit(r.Context(), r.URL.Query().Get("action"), limit))
	}))
	return mux
}

// ConnContext attaches the per-connection certificate cache.
func (s *Server) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if sc, ok := c.(*siteConn); ok {
		// A parked connection comes back as a new one: its cache lives
		// with it.
		return context.WithValue(ctx, connKey{}, sc)
	}
	return context.WithValue(ctx, connKey{}, &connAuth{})
}

// connAuthOf is the certificate cache of the request's connection, if any.
func connAuthOf(ctx context.Context) *connAuth {
	switch v := ctx.Value(connKey{}).(type) {
	case *connAuth:
		return v
	case *siteConn:
		return &v.auth
	}
	return nil
}

// clientIdentity verifies the request's client certificate against the hub
// CA at time at (cached per connection when at is now).
func (s *Server) clientIdentity(r *http.Request, allowExpired bool) (identity, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return identity{}, &store.Refusal{Code: api.CodeUnauthorized, Message: "no client certificate: this endpoint needs a site or admin certificate from this hub"}
	}
	leaf := r.TLS.PeerCertificates[0]
	now := s.Service.now()
	if allowExpired {
		at := now
		if leaf.NotAfter.Before(now) {
			if now.Sub(leaf.NotAfter) > RenewGrace {
				return identity{}, &store.Refusal{Code: api.CodeUnauthorized, Message: fmt.Sprintf("site certificate expired at %s, more than %s ago: join again with a new token", leaf.NotAfter.Format(time.RFC3339), RenewGrace)}
			}
			at = leaf.NotAfter.Add(-time.Second)
		}
		return s.verify(r.TLS.PeerCertificates, at)
	}
	ca := connAuthOf(r.Context())
	if ca == nil {
		return s.verify(r.TLS.PeerCertificates, now)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.leaf != leaf {
		ca.leaf = leaf
		ca.id, ca.err = s.verifyCached(r.TLS.PeerCertificates, now)
	}
	if ca.err == nil && now.After(ca.id.notAfter) {
		return identity{}, &store.Refusal{Code: api.CodeUnauthorized, Message: fmt.Sprintf("client certificate expired at %s: renew it", ca.id.notAfter.Format(time.RFC3339))}
	}
	return ca.id, ca.err
}

// maxVerified bounds the verified-certificate cache; it starts over when full.
const maxVerified = 100_000

func (s *Server) verifyCached(chain []*x509.Certificate, now time.Time) (identity, error) {
	sum := sha256.Sum256(chain[0].Raw)
	s.verifiedMu.Lock()
	id, ok := s.verified[sum]
	s.verifiedMu.Unlock()
	if ok && now.Before(id.notAfter) {
		return id, nil
	}
	id, err := s.verify(chain, now)
	if err != nil {
		return id, err
	}
	s.verifiedMu.Lock()
	if s.verified == nil || len(s.verified) >= maxVerified {
		s.verified = make(map[[32]byte]identity)
	}
	s.verified[sum] = id
	s.verifiedMu.Unlock()
	return id, nil
}

func (s *Server) verify(chain []*x509.Certificate, at time.Time) (identity, error) {
	leaf := chain[0]
	if err := s.Service.CA.VerifyClient(leaf, at); err != nil {
		return identity{}, &store.Refusal{Code: api.CodeUnauthorized, Message: err.Error()}
	}
	keySHA, err := pki.KeySHA256(leaf.PublicKey)
	if err != nil {
		return identity{}, &store.Refusal{Code: api.CodeUnauthorized, Message: err.Error()}
	}
	org := ""
	if len(leaf.Subject.Organization) == 1 {
		org = leaf.Subject.Organization[0]
	}
	return identity{org: org, cn: leaf.Subject.CommonName, keySHA: keySHA, serial: serialOf(leaf), notBefore: leaf.NotBefore, notAfter: leaf.NotAfter}, nil
}

func (s *Server) site(w http.ResponseWriter, r *http.Request, allowExpired bool) (identity, bool) {
	id, err := s.clientIdentity(r, allowExpired)
	if err == nil && id.org != api.OrgSite {
		err = &store.Refusal{Code: api.CodeUnauthorized, Message: "client certificate is not a site certificate"}
	}
	if err != nil {
		s.fail(w, r, err)
		return id, false
	}
	return id, true
}

func (s *Server) admin(h func(http.ResponseWriter, *http.Request, Admin)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := s.clientIdentity(r, false)
		if err == nil && id.org != api.OrgAdmin {
			err = &store.Refusal{Code: api.CodeUnauthorized, Message: "client certificate is not an admin certificate (use the admin config the hub wrote at first start)"}
		}
		if err == nil {
			// Revocation is read on every request, not cached with the
			// connection: a revoked credential is refused at its next one.
			err = s.Service.checkAdmin(r.Context(), id.serial, id.cn, id.notBefore)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		h(w, r, s.Service.As("admin:"+id.cn+":"+id.keySHA[:12]))
	}
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req api.JoinRequest
	if !s.decode(w, r, &req) {
		s.joins.WithLabelValues(api.CodeBadRequest).Inc()
		return
	}
	resp, err := s.Service.Join(r.Context(), req)
	if err != nil {
		code := api.CodeInternal
		var ref *store.Refusal
		if errors.As(err, &ref) {
			code = ref.Code
		}
		s.joins.WithLabelValues(code).Inc()
		s.fail(w, r, err)
		return
	}
	s.joins.WithLabelValues("ok").Inc()
	s.write(w, http.StatusOK, resp)
}

func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	id, ok := s.site(w, r, true)
	if !ok {
		return
	}
	var req api.RenewRequest
	if !s.decode(w, r, &req) {
		return
	}
	s.reply(w, r)(s.Service.Renew(r.Context(), id.cn, id.keySHA, req))
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	id, ok := s.site(w, r, false)
	if !ok {
		s.heartbeats.WithLabelValues("unauthorized").Inc()
		return
	}
	var hb api.Heartbeat
	if !s.decode(w, r, &hb) {
		s.heartbeats.WithLabelValues("bad_request").Inc()
		return
	}
	resp, err := s.Service.Heartbeat(r.Context(), id.cn, id.keySHA, hb)
	if err != nil {
		var ref *store.Refusal
		if errors.As(err, &ref) {
			s.heartbeats.WithLabelValues(ref.Code).Inc()
		} else {
			s.heartbeats.WithLabelValues("error").Inc()
		}
		s.fail(w, r, err)
		return
	}
	s.heartbeats.WithLabelValues("ok").Inc()
	s.write(w, http.StatusOK, resp)
}

func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			s.fail(w, r, &store.Refusal{Code: api.CodeBadRequest, Message: fmt.Sprintf("content type %q, want application/json", ct)})
			return false
		}
	}
	body := http.MaxBytesReader(w, r.Body, api.MaxBodyBytes)
	if err := api.Decode(body, v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || errors.Is(err, api.ErrTooLarge) {
			s.fail(w, r, &store.Refusal{Code: api.CodeTooLarge, Message: fmt.Sprintf("request body over %d bytes", api.MaxBodyBytes)})
			return false
		}
		s.fail(w, r, &store.Refusal{Code: api.CodeBadRequest, Message: err.Error()})
		return false
	}
	return true
}

func (s *Server) reply(w http.ResponseWriter, r *http.Request) func(v any, err error) {
	return func(v any, err error) {
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.write(w, http.StatusOK, v)
	}
}

var statusOf = map[string]int{
	api.CodeBadRequest:   http.StatusBadRequest,
	api.CodeTooLarge:     http.StatusRequestEntityTooLarge,
	api.CodeTokenInvalid: http.StatusForbidden,
	api.CodeTokenExpired: http.StatusForbidden,
	api.CodeTokenUsed:    http.StatusForbidden,
	api.CodeTokenRevoked: http.StatusForbidden,
	api.CodeSiteRevoked:  http.StatusForbidden,
	api.CodeUnauthorized: http.StatusUnauthorized,
	api.CodeNotFound:     http.StatusNotFound,
	api.CodeConflict:     http.StatusConflict,
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ref *store.Refusal
	switch {
	case errors.As(err, &ref):
		s.log().Info("request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "code", ref.Code, "reason", ref.Message)
		st, ok := statusOf[ref.Code]
		if !ok {
			st = http.StatusBadRequest
		}
		s.write(w, st, api.Error{Code: ref.Code, Message: ref.Message})
	case errors.Is(err, store.ErrNotFound):
		s.write(w, http.StatusNotFound, api.Error{Code: api.CodeNotFound, Message: err.Error()})
	default:
		s.log().Error("request failed", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		s.write(w, http.StatusInternalServerError, api.Error{Code: api.CodeInternal, Message: "internal error: see the hub's log"})
	}
}

// writePiece is how much of an answer is written under one write deadline.
const writePiece = 16 << 10

func (s *Server) writeStall() time.Duration { return cmp.Or(s.WriteStall, 30*time.Second) }

func (s *Server) write(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log().Error("encoding response", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	// The write deadline moves with the answer, piece by piece, rather than
	// bounding it whole: a site on a slow link gets its templates, and
	// one that stops reading is cut off after writeStall.
	rc := http.NewResponseController(w)
	for len(b) > 0 {
		n := min(len(b), writePiece)
		_ = rc.SetWriteDeadline(time.Now().Add(s.writeStall()))
		if _, err := w.Write(b[:n]); err != nil {
			s.log().Debug("writing response", "err", err)
			return
		}
		b = b[n:]
	}
}

// StatusHandler serves the read-only page and /metrics.
func (s *Server) StatusHandler() http.Handler {
	s.metrics()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /{$}", s.handlePage)
	return mux
}

// Listeners for Run.
type Listeners struct {
	API    net.Listener // plain TCP; Run wraps it in TLS
	Status net.Listener // may be nil
}

// Run serves until ctx ends, then shuts down gracefully within 10 s.
func (s *Server) Run(ctx context.Context, l Listeners, cert tls.Certificate) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	errLog := slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug)
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = 2 * time.Minute
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	api := &http.Server{
		Handler:           s.APIHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Until the answer starts; write moves the deadline while it
		// writes the answer (see WriteStall).
		WriteTimeout: s.writeStall(),
		// Sites heartbeat every 30 s: keeping their connection saves a TLS
		// handshake per heartbeat. Between heartbeats siteListener holds
		// the connection (parked), with the same idle timeout.
		IdleTimeout:    idle,
		MaxHeaderBytes: 16 << 10,
		ConnContext:    s.ConnContext,
		ConnState:      siteConnState,
		ErrorLog:       errLog,
		Protocols:      &protos,
	}
	// TLS is terminated by siteListener (handshake timeout as net/http's:
	// the shortest of the header, read and write timeouts).
	sl := newSiteListener(l.API, s.TLSConfig(cert), api.ReadHeaderTimeout, idle, s.log())
	servers := []*http.Server{api}
	g, gctx := errgroup.WithContext(ctx)
	if s.RenewCert != nil {
		g.Go(func() error { s.renewCertificate(gctx); return nil })
	}
	g.Go(func() error {
		if err := api.Serve(sl); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("hub API on %s: %w", l.API.Addr(), err)
		}
		return nil
	})
	if l.Status != nil {
		// The page and /metrics are small: a client gets them whole
		// within the timeouts or not at all, and an idle one is closed.
		st := &http.Server{Handler: s.StatusHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: idle, ErrorLog: errLog}
		servers = append(servers, st)
		g.Go(func() error {
			if err := st.Serve(l.Status); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("hub status page on %s: %w", l.Status.Addr(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var errs []error
		for _, srv := range slices.Backward(servers) {
			errs = append(errs, srv.Shutdown(sctx))
		}
		return errors.Join(errs...)
	})
	return g.Wait()
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// renewCertificate replaces the API's certificate with RenewCert's once two
// thirds of its lifetime have passed, until ctx ends. A failed issue is
// logged and tried again at the next check; the old certificate stays.
func (s *Server) renewCertificate(ctx context.Context) {
	every := s.CertCheckEvery
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		leaf := s.cert.Load().Leaf
		if leaf == nil {
			continue
		}
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		if life > pki.Backdate {
			life -= pki.Backdate // dated back for clocks a little behind: the lifetime counts from the issue
		}
		if time.Now().Before(leaf.NotAfter.Add(-life / 3)) {
			continue
		}
		cert, err := s.RenewCert()
		if err != nil {
			s.log().Warn("hub certificate renewal failed; retrying", "err", err, "not_after", leaf.NotAfter, "retry_in", every)
			continue
		}
		s.cert.Store(&cert)
		if cert.Leaf != nil {
			s.log().Info("hub certificate renewed", "not_after", cert.Leaf.NotAfter)
		}
	}
}
