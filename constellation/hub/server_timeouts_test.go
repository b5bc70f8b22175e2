package hub

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/pki"
)

// TestStatusListenerClosesIdleConnections: a client that keeps a
// connection to the status page open without asking anything is closed
// after the idle timeout, as site connections are, instead of holding a
// file descriptor of the hub for ever.
func TestStatusListenerClosesIdleConnections(t *testing.T) {
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	apiL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	statusL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Service: &Service{CA: ca}, IdleTimeout: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, Listeners{API: apiL, Status: statusL}, cert) }()
	defer func() { cancel(); <-done }()

	c, err := net.Dial("tcp", statusL.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Idle now: the hub closes the connection (EOF), long before this
	// read's own deadline.
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = br.ReadByte()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the status listener kept an idle connection open")
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("reading an idle connection: %v, want EOF", err)
	}
}
