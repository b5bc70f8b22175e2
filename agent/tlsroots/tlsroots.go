// Package tlsroots gives the agent's HTTPS clients (etoile.config=https://…,
// etoile.system=https://…) the Mozilla root certificates when the machine
// has none where Go looks: the initramfs carries no CA bundle (the system
// image does, /etc/ssl/certs/ca-certificates.crt, which then takes
// precedence). The bundle (golang.org/x/crypto/x509roots/fallback) is
// parsed on the first HTTPS request, not at every boot.
package tlsroots

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

var (
	once      sync.Once
	calls     atomic.Int32 // Ensure's calls, for tests
	installed atomic.Bool  // the fallback roots are set, for tests
)

// Ensure installs the fallback roots once, for the whole process; roots the
// system has (/etc/ssl/certs, SSL_CERT_FILE) still take precedence.
func Ensure() {
	calls.Add(1)
	once.Do(func() {
		p := x509.NewCertPool()
		for c := range bundle.Roots() {
			cert, err := x509.ParseCertificate(c.Certificate)
			if err != nil {
				continue
			}
			if c.Constraint == nil {
				p.AddCert(cert)
			} else {
				p.AddCertWithConstraint(cert, c.Constraint)
			}
		}
		x509.SetFallbackRoots(p)
		installed.Store(true)
	})
}

// ForURL makes the roots ready when url, or a redirect it leads to, is
// https: it calls Ensure for an https URL and returns a copy of client (a
// new one when nil) whose redirects to https call it too.
func ForURL(client *http.Client, url string) *http.Client {
	if len(url) >= 8 && strings.EqualFold(url[:8], "https://") {
		Ensure()
	}
	c := &http.Client{}
	if client != nil {
		*c = *client
	}
	next := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme == "https" {
			Ensure()
		}
		if len(via) > 0 && via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
			// What was asked for over TLS (a config holding the cluster
			// token) does not come back in clear text.
			return fmt.Errorf("refused a redirect from %s to %s: it leaves https", shown(via[len(via)-1].URL), shown(req.URL))
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return c
}

// shown is u for a message: its password and its query (a signed URL's
// signature) hidden.
func shown(u *neturl.URL) string {
	c := *u
	if c.RawQuery != "" {
		c.RawQuery = "xxxxx"
	}
	return c.Redacted()
}
