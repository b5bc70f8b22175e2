// Package tlsroots gives the agent's HTTPS clients (etoile.config=https://…,
// etoile.system=https://…) the Mozilla root certificates when the machine
// has none: the initramfs and the system image carry no CA bundle. The
// bundle (golang.org/x/crypto/x509roots/fallback) is parsed on the first
// HTTPS request, not at every boot.
package tlsroots

import (
	"crypto/x509"
	"sync"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

var once sync.Once

// Ensure installs the fallback roots once, for the whole process; roots the
// system has (/etc/ssl/certs, SSL_CERT_FILE) still take precedence.
func Ensure() {
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
	})
}
