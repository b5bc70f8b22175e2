package config

import (
	"bytes"
	"context"
	"crypto/tls"
	"github.com/etoile-os/etoile/internal/testca"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestFromURLHTTPS: an https etoile.config= URL, as a release asset on a
// forge: the server answers 302 to a second host (a signed object-store
// URL, as GitHub's releases do), both verified against the roots the client
// trusts, and the document comes back. A certificate the client does not
// trust — at the URL or at the redirect's end — is refused with an error
// naming the URL, and a redirect that leaves https is refused; a signed
// query never shows.
func TestFromURLHTTPS(t *testing.T) {
	ca := testca.New(t, "Site CA")
	other := testca.New(t, "Someone else's CA")
	const (
		forge   = "releases.site.test"
		objects = "objects.site.test"
		evil    = "evil.site.test"
		plain   = "plain.site.test"
	)
	addrs := map[string]string{}
	objSrv := ca.Server(t, []string{objects}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != objects || r.URL.Path != "/assets/123" || r.URL.Query().Get("X-Amz-Signature") != "sig-secret" {
			http.NotFound(w, r)
			return
		}
		w.Write(Example())
	}))
	evilSrv := other.Server(t, []string{evil}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(Example()) }))
	plainSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(Example()) }))
	t.Cleanup(plainSrv.Close)
	forgeSrv := ca.Server(t, []string{forge}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/site/machines/releases/download/v1/config.yaml":
			// GitHub's answer: 302 Found to a signed, short-lived URL on
			// another host.
			http.Redirect(w, r, "https://"+objects+"/assets/123?X-Amz-Signature=sig-secret&X-Amz-Expires=300", http.StatusFound)
		case "/to-untrusted":
			http.Redirect(w, r, "https://"+evil+"/config.yaml?token=sig-secret", http.StatusFound)
		case "/expired":
			http.Redirect(w, r, "https://"+objects+"/assets/123?X-Amz-Signature=sig-secret-expired", http.StatusFound)
		case "/to-http":
			http.Redirect(w, r, "http://"+plain+"/config.yaml?token=sig-secret", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	for host, srv := range map[string]*httptest.Server{forge: forgeSrv, objects: objSrv, evil: evilSrv, plain: plainSrv} {
		addrs[host] = srv.Listener.Addr().String()
	}
	roots := ca.Pool()
	var dialer net.Dialer
	// The client trusts the site's CA only, and resolves the test's host
	// names to its servers (port 443 and 80 included: the URLs name none).
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if a, ok := addrs[host]; ok {
				addr = a
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}}

	t.Run("302 to a second host", func(t *testing.T) {
		data, err := FromURL(context.Background(), "https://"+forge+"/site/machines/releases/download/v1/config.yaml", client)
		if err != nil || !bytes.Equal(data, Example()) {
			t.Fatalf("got %d bytes, %v", len(data), err)
		}
	})
	for _, tc := range []struct {
		name, url string
		client    *http.Client
		want      []string
	}{
		{"a certificate the client does not trust", "https://" + evil + "/config.yaml?token=sig-secret", client,
			[]string{"https://" + evil + "/config.yaml?xxxxx", "tls: failed to verify certificate", "certificate signed by unknown authority"}},
		{"the redirect's end has a certificate the client does not trust", "https://" + forge + "/to-untrusted", client,
			[]string{"https://" + forge + "/to-untrusted (redirected to https://" + evil + "/config.yaml?xxxxx)", "certificate signed by unknown authority"}},
		{"a 404 at the redirect's end", "https://" + forge + "/expired", client,
			[]string{"https://" + forge + "/expired (redirected to https://" + objects + "/assets/123?xxxxx)", "404 Not Found"}},
		{"a redirect that leaves https", "https://" + forge + "/to-http", client,
			[]string{"https://" + forge + "/to-http", "leaves https"}},
		// With no client of its own the machine's roots (and the agent's
		// built-in Mozilla roots) are used: the site's CA is not among them.
		{"the machine's own roots", objSrv.URL + "/assets/123?X-Amz-Signature=sig-secret", nil,
			[]string{objSrv.URL + "/assets/123?xxxxx", "certificate signed by unknown authority"}},
		{"a 404", "https://" + forge + "/missing", client,
			[]string{"https://" + forge + "/missing: the server answered 404 Not Found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := FromURL(context.Background(), tc.url, tc.client)
			if err == nil {
				t.Fatalf("no error; got %d bytes", len(data))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "sig-secret") {
				t.Errorf("error shows the signed query: %v", err)
			}
		})
	}
}
