package hubcli

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hub"
	"github.com/etoile-os/etoile/constellation/pki"
	"github.com/etoile-os/etoile/constellation/store"
	"github.com/etoile-os/etoile/constellation/store/sqlite"
)

// ServeOptions is `etoile hub serve` as values, for tests and embedding.
type ServeOptions struct {
	Data              string
	Listen            string
	StatusListen      string // "" for none
	SANs              []string
	URL               string // advertised; derived from the listener when empty
	HeartbeatInterval time.Duration
	CertLifetime      time.Duration
	IdleTimeout       time.Duration
	// ServerCertLifetime is the hub's own TLS certificate's (default 365
	// days), renewed while the hub runs; CertCheckEvery how often that is
	// looked at (default an hour). For tests.
	ServerCertLifetime time.Duration
	CertCheckEvery     time.Duration
	Log                *slog.Logger
	// Ready, when set, receives the advertised URL and status address once
	// both listeners are open.
	Ready func(hubURL, statusAddr string)
	// Now is the hub's clock (tests move it to expire tokens); time.Now when nil.
	Now func() time.Time
	// Store options (crash-test hooks).
	StoreOptions sqlite.Options
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("etoile hub serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := ServeOptions{}
	var sans multi
	fs.StringVar(&o.Data, "data", DefaultDataDir, "data folder: CA, database, admin config (created 0700)")
	fs.StringVar(&o.Listen, "listen", ":8443", "HTTPS address for sites and admins")
	fs.StringVar(&o.StatusListen, "status-listen", "127.0.0.1:9443", "plain HTTP address of the read-only status page and /metrics (\"\" to disable)")
	fs.Var(&sans, "san", "extra DNS name or IP for the hub certificate, repeatable; the first is the advertised host")
	fs.StringVar(&o.URL, "url", "", "URL sites use to reach the hub (default https://FIRST-SAN-OR-LISTEN-HOST:PORT)")
	fs.DurationVar(&o.HeartbeatInterval, "heartbeat-interval", hub.DefaultHeartbeatInterval, "interval asked of sites")
	fs.DurationVar(&o.CertLifetime, "cert-lifetime", hub.DefaultCertLifetime, "site certificate lifetime")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", 2*time.Minute, "close site connections idle this long: above the heartbeat interval saves CPU (no TLS handshake per heartbeat), below it saves memory (~25 KB per open site connection)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	verbose := fs.Bool("v", false, "log at debug level")
	pos, err := parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if err := noArgs("serve", pos, "etoile hub serve takes flags only, e.g. --data DIR --listen ADDR"); err != nil {
		return err
	}
	o.SANs = sans
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	ho := &slog.HandlerOptions{Level: level}
	switch *logFormat {
	case "text":
		o.Log = slog.New(slog.NewTextHandler(stderr, ho))
	case "json":
		o.Log = slog.New(slog.NewJSONHandler(stderr, ho))
	default:
		return fmt.Errorf("hub serve: --log-format %q is not text or json", *logFormat)
	}
	o.Ready = func(hubURL, statusAddr string) {
		fmt.Fprintf(stdout, "etoile hub: serving %s (admin config %s)", hubURL, filepath.Join(o.Data, hub.AdminConfigFile))
		if statusAddr != "" {
			fmt.Fprintf(stdout, ", status page http://%s/", statusAddr)
		}
		fmt.Fprintln(stdout)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Serve(ctx, o)
}

// Serve runs a hub until ctx ends.
func Serve(ctx context.Context, o ServeOptions) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := validateURLOptions(o); err != nil {
		return err
	}
	if err := os.MkdirAll(o.Data, 0o700); err != nil {
		return fmt.Errorf("hub data folder: %w", err)
	}
	// One hub per data folder: a second would rewrite the advertised URL
	// and heartbeat interval under the first.
	unlock, err := lockData(o.Data)
	if err != nil {
		return err
	}
	defer unlock()
	ca, created, err := pki.LoadOrCreateCA(o.Data, o.Now)
	if err != nil {
		return err
	}
	if created {
		log.Info("created hub CA", "pin", "sha256:"+ca.Pin(), "dir", o.Data)
	}
	st, err := sqlite.Open(ctx, filepath.Join(o.Data, DBFile), o.StoreOptions)
	if err != nil {
		return err
	}
	defer st.Close()
	apiL, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("hub listen %s: %w", o.Listen, err)
	}
	defer apiL.Close()
	var statusL net.Listener
	statusAddr := ""
	if o.StatusListen != "" {
		if statusL, err = net.Listen("tcp", o.StatusListen); err != nil {
			return fmt.Errorf("hub status listen %s: %w", o.StatusListen, err)
		}
		defer statusL.Close()
		statusAddr = statusL.Addr().String()
	}
	hubURL, hosts, err := advertise(o, apiL.Addr().(*net.TCPAddr))
	if err != nil {
		return err
	}
	serverLife := o.ServerCertLifetime
	if serverLife <= 0 {
		serverLife = 365 * 24 * time.Hour
	}
	issue := func() (tls.Certificate, error) { return ca.ServerCertificate(hosts, serverLife) }
	cert, err := issue()
	if err != nil {
		return err
	}
	if err := st.SetMeta(ctx, hub.MetaURL, hubURL); err != nil {
		return err
	}
	interval := o.HeartbeatInterval
	if interval <= 0 {
		interval = hub.DefaultHeartbeatInterval
	}
	if err := st.SetMeta(ctx, metaInterval, interval.String()); err != nil {
		return err
	}
	svc := &hub.Service{Store: st, CA: ca, Log: log, Now: o.Now, HeartbeatInterval: interval, CertLifetime: o.CertLifetime}
	// Before the store closes: the count of refused joins of the minute in
	// progress is recorded, not lost.
	defer svc.FlushRefusals(context.WithoutCancel(ctx))
	cfgPath := filepath.Join(o.Data, hub.AdminConfigFile)
	if _, err := os.Stat(cfgPath); errors.Is(err, os.ErrNotExist) {
		c, err := svc.IssueAdminConfig(ctx, hub.AdminConfigRequest{Path: cfgPath, HubURL: hubURL, Name: "admin", Lifetime: adminConfigLifetime, IssuedBy: "hub", Detail: "file=" + cfgPath})
		if err != nil {
			return fmt.Errorf("hub admin config: %w", err)
		}
		log.Info("wrote admin config", "path", cfgPath, "expires", c.NotAfter)
	} else {
		// The hub's own admin config follows the hub's URL (a restart with
		// another --url or --san), keeping its credentials.
		old, err := hub.UpdateAdminConfigURL(cfgPath, hubURL)
		switch {
		case err != nil:
			log.Warn("admin config not updated to the hub's URL: use --hub "+hubURL+" with it", "path", cfgPath, "url", hubURL, "err", err)
		case old != hubURL:
			log.Info("admin config now points at the hub's URL", "path", cfgPath, "url", hubURL, "was", old)
		}
		if err == nil {
			renewAdminConfig(ctx, svc, cfgPath, hubURL, log)
		}
	}
	srv := &hub.Server{Service: svc, Log: log, IdleTimeout: o.IdleTimeout,
		RenewCert: issue, CertCheckEvery: o.CertCheckEvery}
	// While it runs, the hub looks at its admin.yaml as often as at its
	// TLS certificate: one running for a year keeps a working one.
	wctx, stopWatch := context.WithCancel(ctx)
	var watch sync.WaitGroup
	watch.Go(func() {
		every := cmp.Or(o.CertCheckEvery, time.Hour)
		for t := time.NewTicker(every); ; {
			select {
			case <-wctx.Done():
				t.Stop()
				return
			case <-t.C:
				if _, err := os.Stat(cfgPath); err == nil {
					renewAdminConfig(wctx, svc, cfgPath, hubURL, log)
				}
			}
		}
	})
	defer func() { stopWatch(); watch.Wait() }()
	log.Info("hub serving", "url", hubURL, "ca_pin", "sha256:"+ca.Pin(), "status", statusAddr, "sans", hosts)
	if o.Ready != nil {
		o.Ready(hubURL, statusAddr)
	}
	err = srv.Run(ctx, hub.Listeners{API: apiL, Status: statusL}, cert)
	log.Info("hub stopped")
	return err
}

// adminConfigLifetime is the hub's own admin.yaml's; renewAdminBefore is how
// long before its expiry a start issues it again.
const (
	adminConfigLifetime = 365 * 24 * time.Hour
	renewAdminBefore    = 30 * 24 * time.Hour
)

// renewAdminConfig issues the hub's own admin config again when its
// certificate expires within renewAdminBefore, has expired, was revoked or
// is not from this hub's CA, replacing the file atomically (0600). A
// certificate issued before the hub recorded admin certificates is recorded
// now, so that etoile hub admin list shows it. Failures are logged: the hub
// serves its sites without the file.
func renewAdminConfig(ctx context.Context, svc *hub.Service, path, hubURL string, log *slog.Logger) {
	leaf, err := hub.LoadAdminCert(path)
	if err != nil {
		log.Warn("admin config not checked for expiry or revocation", "path", path, "err", err)
		return
	}
	now := time.Now()
	if svc.Now != nil {
		now = svc.Now()
	}
	rec, err := hub.AdminCertOf(leaf)
	if err != nil {
		log.Warn("admin config not checked for expiry or revocation", "path", path, "err", err)
		return
	}
	reason, why := "", ""
	switch {
	case leaf.CheckSignatureFrom(svc.CA.Cert) != nil:
		reason, why = "foreign", "its certificate is not from this hub's CA"
	case !now.Before(leaf.NotAfter):
		reason, why = "expired", "its certificate expired at "+leaf.NotAfter.UTC().Format(time.RFC3339)
	case leaf.NotAfter.Sub(now) < renewAdminBefore:
		reason, why = "expiring", "its certificate expires at "+leaf.NotAfter.UTC().Format(time.RFC3339)+", within "+shortDuration(renewAdminBefore)
	}
	if reason == "" {
		st, err := svc.Store.AdminStatus(ctx, rec.Serial, rec.Name)
		if err != nil {
			log.Warn("admin config not checked for revocation", "path", path, "err", err)
			return
		}
		ref := store.AdmitAdmin(st, rec.Name, leaf.NotBefore)
		if ref == nil {
			if !st.Recorded {
				if err := svc.RecordAdminCert(ctx, rec, "hub", "file="+path+" recorded at start: issued before the hub recorded admin certificates"); err != nil {
					log.Warn("admin config's certificate not recorded", "path", path, "serial", rec.Serial, "err", err)
				}
			}
			return
		}
		at := st.RevokedAt
		if !st.Recorded {
			at = st.NameRevokedAt
		}
		reason, why = "revoked", "its certificate was revoked at "+at.UTC().Format(time.RFC3339)
	}
	c, err := svc.IssueAdminConfig(ctx, hub.AdminConfigRequest{Path: path, HubURL: hubURL, Name: "admin", Lifetime: adminConfigLifetime, IssuedBy: "hub", Replace: true,
		Detail: fmt.Sprintf("file=%s reason=%s replaces=%s", path, reason, rec.Serial)})
	if err != nil {
		log.Error("admin config not issued again: it does not work with this hub", "path", path, "why", why, "err", err)
		return
	}
	log.Info("admin config issued again", "path", path, "why", why, "expires", c.NotAfter, "serial", c.Serial, "replaces", rec.Serial)
}

// advertise decides the URL sites use and the names the certificate covers.
func advertise(o ServeOptions, addr *net.TCPAddr) (string, []string, error) {
	port := strconv.Itoa(addr.Port)
	listenHost, _, _ := net.SplitHostPort(o.Listen)
	hosts := slices.Clone(o.SANs)
	if ip := net.ParseIP(listenHost); listenHost != "" && (ip == nil || !ip.IsUnspecified()) {
		hosts = append(hosts, listenHost)
	}
	hubURL := o.URL
	if hubURL == "" {
		host := ""
		if len(hosts) > 0 {
			host = hosts[0]
		} else if h, err := os.Hostname(); err == nil {
			host = h
		} else {
			host = "localhost"
		}
		hubURL = "https://" + net.JoinHostPort(host, port)
	}
	if err := api.ValidateHubURL(hubURL); err != nil {
		if o.URL != "" {
			return "", nil, fmt.Errorf("hub --url %q: %w", o.URL, err)
		}
		return "", nil, fmt.Errorf("hub URL %q (from --san, --listen or the host name): %w", hubURL, err)
	}
	u, _ := url.Parse(hubURL)
	hosts = append(hosts, u.Hostname(), "localhost", "127.0.0.1", "::1")
	slices.Sort(hosts)
	return u.String(), slices.Compact(hosts), nil
}

// validateURLOptions checks --url and --san before anything is written.
func validateURLOptions(o ServeOptions) error {
	if o.URL != "" {
		if err := api.ValidateHubURL(o.URL); err != nil {
			return fmt.Errorf("hub --url %q: %w", o.URL, err)
		}
	}
	for _, san := range o.SANs {
		if net.ParseIP(san) != nil {
			continue
		}
		if err := api.ValidateHost(san); err != nil {
			return fmt.Errorf("hub --san %q is not a DNS name or an IP address (give it without a port: the port comes from --listen)", san)
		}
	}
	return nil
}
