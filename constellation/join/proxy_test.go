package join_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/join"
)

// connectProxy is a web proxy on loopback that relays CONNECT tunnels, as a
// site's proxy does, and records the destinations asked for.
type connectProxy struct {
	url   *url.URL
	mu    sync.Mutex
	seen  []string
	conns []net.Conn // closed at the test's end: a client keeps idle tunnels open
}

func (p *connectProxy) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen)
}

func startConnectProxy(t *testing.T) *connectProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{url: &url.URL{Scheme: "http", Host: l.Addr().String()}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				p.mu.Lock()
				p.seen = append(p.seen, req.Method+" "+req.Host)
				p.conns = append(p.conns, c)
				p.mu.Unlock()
				if req.Method != http.MethodConnect {
					io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
					return
				}
				up, err := net.DialTimeout("tcp", req.Host, 5*time.Second)
				if err != nil {
					io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
					return
				}
				defer up.Close()
				p.mu.Lock()
				p.conns = append(p.conns, up)
				p.mu.Unlock()
				io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				done := make(chan struct{})
				go func() { io.Copy(up, br); up.(*net.TCPConn).CloseWrite(); close(done) }()
				io.Copy(c, up)
				<-done
			}()
		}
	}()
	return p
}

// TestJoinAndBeatThroughAProxy: a site behind a web proxy (the machine
// config's proxy section) joins and beats through it: every exchange with
// the hub is a CONNECT tunnel through the proxy, and the TLS inside is
// still the hub's, pinned and with the site's certificate.
func TestJoinAndBeatThroughAProxy(t *testing.T) {
	h := startHub(t, t.TempDir(), "127.0.0.1:0", 0)
	p := startConnectProxy(t)
	viaProxy := func(*http.Request) (*url.URL, error) { return p.url, nil }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := t.TempDir()
	js := h.token(t, "proxied-1")
	site, err := join.EnsureJoined(ctx, js.String(), join.Options{Root: root, Proxy: viaProxy})
	if err != nil {
		t.Fatalf("join through the proxy: %v", err)
	}
	hubHost := js.Hub[len("https://"):]
	if got := p.asked(); !slices.Equal(got, []string{"CONNECT " + hubHost}) {
		t.Errorf("the proxy was asked %q, want one CONNECT to the hub %s", got, hubHost)
	}
	if _, err := site.Beat(ctx, healthy); err != nil {
		t.Fatalf("heartbeat through the proxy: %v", err)
	}
	if got := p.asked(); len(got) != 2 || got[1] != "CONNECT "+hubHost {
		t.Errorf("the proxy was asked %q, want a second CONNECT to the hub for the heartbeat", got)
	}
	if s := h.site(t, "proxied-1"); s.LastHeartbeat == nil {
		t.Errorf("the hub has no heartbeat from the site: %+v", s)
	}
	// Joined already, loaded from its state: the proxy is used again.
	again, err := join.EnsureJoined(ctx, js.String(), join.Options{Root: root, Proxy: viaProxy})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Beat(ctx, healthy); err != nil {
		t.Fatalf("heartbeat of the loaded site: %v", err)
	}
	if got := p.asked(); len(got) != 3 {
		t.Errorf("the loaded site's heartbeat did not go through the proxy: %q", got)
	}
}
