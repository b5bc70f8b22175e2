package tlsroots

import (
	"crypto/x509"
	"testing"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// TestEnsureOnAMachineWithoutRoots: with no system CA bundle (as on a node),
// a public root (from the bundle) verifies only after Ensure.
func TestEnsureOnAMachineWithoutRoots(t *testing.T) {
	t.Setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
	t.Setenv("SSL_CERT_DIR", t.TempDir())
	var root *x509.Certificate
	for c := range bundle.Roots() {
		if cert, err := x509.ParseCertificate(c.Certificate); err == nil && c.Constraint == nil && cert.Subject.CommonName == "ISRG Root X1" {
			root = cert
		}
	}
	if root == nil {
		t.Fatal("ISRG Root X1 (Let's Encrypt) not in the bundle")
	}
	if _, err := root.Verify(x509.VerifyOptions{}); err == nil {
		t.Fatal("verified without roots: the test machine's roots leaked in")
	}
	Ensure()
	Ensure() // twice is fine
	if _, err := root.Verify(x509.VerifyOptions{}); err != nil {
		t.Errorf("after Ensure: %v", err)
	}
}
