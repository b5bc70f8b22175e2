package image

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// TestUnreachable: --k3s-optional builds without K3s only when its source
// cannot be reached. A server that answers with a certificate that does
// not verify, or in plain HTTP to an https:// URL, or an interrupted
// build, is an error like any other wrong answer.
func TestUnreachable(t *testing.T) {
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(u string) error {
		resp, err := client.Get(u)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("GET %s succeeded", u)
		}
		return fmt.Errorf("downloading %s: %w; to build without network, ...", u, err)
	}
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler()) // its certificate is not trusted
	defer tlsSrv.Close()
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String() + "/k3s"
	closed.Close()

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", get(refused), true},
		{"DNS", &url.Error{Op: "Get", URL: "https://nowhere.invalid/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "nowhere.invalid", IsNotFound: true}}}, true},
		{"timeout", &url.Error{Op: "Get", URL: "https://x/", Err: context.DeadlineExceeded}, true},
		{"certificate not trusted", get(tlsSrv.URL + "/k3s"), false},
		{"wrong host name", &url.Error{Op: "Get", URL: "https://x/", Err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "x"}}, false},
		{"HTTP response to HTTPS client", get("https://" + plain.Listener.Addr().String() + "/k3s"), false},
		{"malformed response", &url.Error{Op: "Get", URL: "https://x/", Err: errors.New("net/http: HTTP/1.x transport connection broken: malformed HTTP response")}, false},
		{"interrupted", &url.Error{Op: "Get", URL: "https://x/", Err: context.Canceled}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unreachable(tc.err); got != tc.want {
				t.Errorf("unreachable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
