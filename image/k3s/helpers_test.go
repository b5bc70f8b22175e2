package k3s

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etoile-os/etoile/qa/k3sstandin/release"
)

var (
	standinOnce sync.Once
	standinDir  string
	standinErr  error
)

// standinRelease builds, once per test binary, a release folder holding
// the K3s stand-in (qa/k3sstandin, a test double of K3s) and returns it.
// Tests copy it before changing anything.
func standinRelease(t *testing.T) string {
	t.Helper()
	standinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "etoile-k3s-standin-release-")
		if err != nil {
			standinErr = err
			return
		}
		standinDir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		standinErr = release.Write(ctx, dir, DefaultVersion, time.Unix(0, 0).UTC())
	})
	if standinErr != nil {
		t.Fatalf("building the K3s stand-in release (needs the Go toolchain: Debian package golang-go or go on PATH): %v", standinErr)
	}
	return standinDir
}

// copyRelease copies the stand-in release folder into a fresh temp folder.
func copyRelease(t *testing.T) string {
	t.Helper()
	src := standinRelease(t)
	dst := t.TempDir()
	for _, n := range []string{BinaryName, AirgapName, ChecksumName} {
		data, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, n), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// releaseServer serves folder as https://…/<version>/<file>, the way
// GitHub serves release assets, and counts the requests.
type releaseServer struct {
	*httptest.Server
	requests atomic.Int64
}

func serveRelease(t *testing.T, version, folder string) *releaseServer {
	t.Helper()
	rs := &releaseServer{}
	rs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.requests.Add(1)
		// The '+' arrives escaped; RawPath keeps what the client sent.
		want := "/" + strings.ReplaceAll(version, "+", "%2B") + "/"
		rest, ok := strings.CutPrefix(r.URL.EscapedPath(), want)
		if !ok || strings.Contains(rest, "/") {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, filepath.Join(folder, rest))
	}))
	t.Cleanup(rs.Close)
	return rs
}

// testLog returns a logger writing into the test's log and a buffer.
func testLog(t *testing.T) (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}
