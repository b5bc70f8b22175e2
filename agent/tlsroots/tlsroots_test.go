package tlsroots

import (
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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
	// The fallback roots are the process's for good once installed (Go
	// refuses to set them twice): with -count=N only the first run can see
	// the machine without them (and not even that when another test, run
	// first under -shuffle, installed them).
	if !installed.Load() {
		if _, err := root.Verify(x509.VerifyOptions{}); err == nil {
			t.Fatal("verified without roots: the test machine's roots leaked in")
		}
	}
	Ensure()
	Ensure() // twice is fine
	if _, err := root.Verify(x509.VerifyOptions{}); err != nil {
		t.Errorf("after Ensure: %v", err)
	}
}

// TestForURLRedirectToHTTPS: an http:// URL that redirects to https makes
// the roots ready before the TLS handshake; a plain http one does not.
func TestForURLRedirectToHTTPS(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer tlsSrv.Close()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, tlsSrv.URL+"/config.yaml", http.StatusFound)
			return
		}
		io.WriteString(w, "plain")
	}))
	defer plain.Close()
	base := tlsSrv.Client() // trusts the test server's certificate
	before := calls.Load()
	resp, err := ForURL(base, plain.URL+"/plain").Get(plain.URL + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if calls.Load() != before {
		t.Error("a plain http fetch made the roots ready")
	}
	resp, err = ForURL(base, plain.URL+"/redirect").Get(plain.URL + "/redirect")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" || calls.Load() == before {
		t.Errorf("redirect to https: body %q, Ensure called %d times", body, calls.Load()-before)
	}
}

// TestForURLRefusesARedirectOutOfHTTPS: what was asked for over https (a
// machine config with the cluster token) is not fetched in clear text
// through a redirect to http; an upper-case HTTPS:// URL is https too.
func TestForURLRefusesARedirectOutOfHTTPS(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "token: in clear") }))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/config.yaml?X-Amz-Signature=SECRET", http.StatusFound)
	}))
	defer tlsSrv.Close()
	resp, err := ForURL(tlsSrv.Client(), tlsSrv.URL+"/config.yaml").Get(tlsSrv.URL + "/config.yaml")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("followed a redirect from https to http: %q", body)
	}
	if !strings.Contains(err.Error(), "leaves https") {
		t.Errorf("err = %v, want it to say the redirect leaves https", err)
	}
	// The refusal itself (what a caller shows without net/http's own
	// wrapping, which names the request's URL) hides the signed query.
	var ue *url.Error
	if errors.As(err, &ue) && strings.Contains(ue.Err.Error(), "SECRET") {
		t.Errorf("the refusal shows the redirect's query: %v", ue.Err)
	}
	before := calls.Load()
	ForURL(nil, "HTTPS://example.invalid/config.yaml")
	if calls.Load() == before {
		t.Error("an HTTPS:// URL did not make the roots ready")
	}
}
