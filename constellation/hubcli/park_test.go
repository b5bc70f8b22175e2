package hubcli_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hubcli"
	"github.com/etoile-os/etoile/constellation/join"
	"github.com/etoile-os/etoile/constellation/pki"
)

// rawSite is one site connection spoken to byte by byte, to see what the
// hub does with the connection between requests.
type rawSite struct {
	conn *tls.Conn
	r    *bufio.Reader
}

func dialSite(t *testing.T, h *testHub, cert *tls.Certificate) *rawSite {
	t.Helper()
	ca, err := pki.LoadCA(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	u, err := url.Parse(h.url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{*cert}, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("hub negotiated %q, want http/1.1", p)
	}
	return &rawSite{conn: c, r: bufio.NewReader(c)}
}

const beatBody = `{"nodes":1,"nodesReady":1}`

func beatRequest(host, extra string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s",
		api.PathHeartbeat, host, len(beatBody), extra, beatBody)
}

func (s *rawSite) send(t *testing.T, parts ...string) {
	t.Helper()
	for i, p := range parts {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := io.WriteString(s.conn, p); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *rawSite) expectOK(t *testing.T, what string) *http.Response {
	t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(s.r, nil)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(body)) {
		t.Fatalf("%s: %s, %d bytes for Content-Length %d (%v): %s", what, resp.Status, len(body), resp.ContentLength, err, body)
	}
	return resp
}

func (s *rawSite) expectClosed(t *testing.T, what string, within time.Duration) {
	t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(within))
	if n, err := s.r.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("%s: read %d bytes, %v; want the hub to close the connection", what, n, err)
	}
}

// Between heartbeats the hub parks a site's connection outside the HTTP
// server; whatever the site sends next, however it arrives, is served on the
// same connection with the same client identity.
func TestParkedSiteConnectionServesWhateverComesNext(t *testing.T) {
	h := startHub(t, t.TempDir())
	root := t.TempDir()
	if _, err := join.Join(context.Background(), h.token(t, api.TokenRequest{Site: "park-1"}), join.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	cert := siteCert(t, root)
	u, _ := url.Parse(h.url)
	s := dialSite(t, h, cert)

	s.send(t, beatRequest(u.Host, ""))
	s.expectOK(t, "first beat")
	time.Sleep(200 * time.Millisecond) // parked by now
	s.send(t, beatRequest(u.Host, ""))
	s.expectOK(t, "beat on the parked connection")
	// The request trickles in: header, then body.
	req := beatRequest(u.Host, "")
	s.send(t, req[:len(req)-len(beatBody)], req[len(req)-len(beatBody):])
	s.expectOK(t, "beat sent in two parts")
	// Two requests in one write (pipelining).
	s.send(t, beatRequest(u.Host, "")+beatRequest(u.Host, ""))
	s.expectOK(t, "first pipelined beat")
	s.expectOK(t, "second pipelined beat")
	// The first bytes of the next request come with a request, the rest
	// later: read ahead by the HTTP server, they must not be lost when it
	// waits for the rest.
	next := beatRequest(u.Host, "")
	s.send(t, beatRequest(u.Host, "")+next[:2], next[2:])
	s.expectOK(t, "beat followed by two bytes")
	s.expectOK(t, "beat that came in two writes")
	// ... and in their own write (TLS record), right behind the request.
	if _, err := io.WriteString(s.conn, beatRequest(u.Host, "")); err != nil {
		t.Fatal(err)
	}
	s.send(t, next[:3], next[3:])
	s.expectOK(t, "beat followed by three bytes")
	s.expectOK(t, "beat that came in three writes")
	// ... and its first line, the rest later.
	line := strings.Index(next, "\r\n") + 2
	s.send(t, beatRequest(u.Host, "")+next[:line], next[line:])
	s.expectOK(t, "beat followed by a request line")
	s.expectOK(t, "beat whose request line came early")
	// An unknown path is net/http's 404, and the connection goes on.
	s.send(t, "GET /nowhere HTTP/1.1\r\nHost: "+u.Host+"\r\n\r\n")
	if resp, err := http.ReadResponse(s.r, nil); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown path: %v, %v", resp, err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	s.send(t, beatRequest(u.Host, ""))
	s.expectOK(t, "beat after a 404")
	// Asking to close is honoured.
	s.send(t, beatRequest(u.Host, "Connection: close\r\n"))
	s.expectOK(t, "last beat")
	s.expectClosed(t, "after Connection: close", 5*time.Second)

	// Another site's certificate on another connection is another identity:
	// parking never mixes up connections.
	other := t.TempDir()
	if _, err := join.Join(context.Background(), h.token(t, api.TokenRequest{Site: "park-2"}), join.Options{Root: other}); err != nil {
		t.Fatal(err)
	}
	s2 := dialSite(t, h, siteCert(t, other))
	s2.send(t, beatRequest(u.Host, ""))
	s2.expectOK(t, "other site")
	waitFor(t, "both sites seen", func() bool {
		return h.site(t, "park-1").Heartbeat.NodesReady == 1 && h.site(t, "park-2").LastHeartbeat != nil
	})
}

// A parked connection costs no goroutine (on Linux), is closed after the idle
// timeout like any idle connection, and at shutdown.
func TestParkedSiteConnectionsIdleAndShutdown(t *testing.T) {
	h := startHub(t, t.TempDir(), func(o *hubcli.ServeOptions) { o.IdleTimeout = 2 * time.Second })
	root := t.TempDir()
	if _, err := join.Join(context.Background(), h.token(t, api.TokenRequest{Site: "park-3"}), join.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	cert := siteCert(t, root)
	u, _ := url.Parse(h.url)

	const n = 40
	before := runtime.NumGoroutine()
	sites := make([]*rawSite, n)
	for i := range sites {
		sites[i] = dialSite(t, h, cert)
		sites[i].send(t, beatRequest(u.Host, ""))
		sites[i].expectOK(t, fmt.Sprintf("site connection %d", i))
	}
	if runtime.GOOS == "linux" {
		var g int
		for range 50 {
			if g = runtime.NumGoroutine() - before; g < n/4 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if g >= n/4 {
			var b strings.Builder
			buf := make([]byte, 1<<20)
			b.Write(buf[:runtime.Stack(buf, true)])
			t.Fatalf("%d idle site connections hold %d goroutines:\n%s", n, g, b.String())
		}
	}
	// Idle past the timeout: closed by the hub.
	sites[0].expectClosed(t, "idle past the idle timeout", 10*time.Second)
	// Busy ones stay open; shutdown closes them.
	s := dialSite(t, h, cert)
	s.send(t, beatRequest(u.Host, ""))
	s.expectOK(t, "before shutdown")
	h.stop()
	s.expectClosed(t, "at shutdown", 5*time.Second)
}
