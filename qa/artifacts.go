package qa

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// EnvOut names the folder holding the build's artifacts (default <repo>/out).
const EnvOut = "ETOILE_OUT"

// Artifact file names in out/, fixed by the build.
const (
	ISOName       = "etoile-amd64.iso"
	RawName       = "etoile-amd64.raw"
	KernelName    = "etoile-amd64-vmlinuz"
	InitramfsName = "etoile-amd64-initramfs.img"
	SystemName    = "etoile-amd64-system.sqfs"
	SumsName      = "SHA256SUMS"
	SPDXName      = "etoile-amd64.spdx.json"
)

// AllArtifacts lists every file a build leaves in out/.
var AllArtifacts = []string{ISOName, RawName, KernelName, InitramfsName, SystemName, SumsName, SPDXName}

// OutDir returns the artifacts folder: $ETOILE_OUT, else out/ at the repository root.
func OutDir() (string, error) {
	if d := os.Getenv(EnvOut); d != "" {
		return filepath.Abs(d)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "out"), nil
}

// Artifacts fails tb unless every named artifact exists, and returns the
// folder holding them.
func Artifacts(tb testing.TB, names ...string) string {
	tb.Helper()
	dir, err := OutDir()
	if err != nil {
		tb.Fatal(err)
	}
	var errs []error
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			errs = append(errs, fmt.Errorf("artifact %s missing in %s (%s): run ./build.sh first, or point %s at a build's output folder", n, dir, err, EnvOut))
		}
	}
	if err := errors.Join(errs...); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// FileSHA256 returns the hex SHA-256 of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ServeDir serves dir over HTTP on 127.0.0.1 until the test ends and returns
// the port. QEMU's user network shows the host's loopback to the guest as
// 10.0.2.2, so nothing leaves the machine.
func ServeDir(tb testing.TB, dir string) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen on loopback for the test HTTP server: %v", err)
	}
	fs := http.FileServer(http.Dir(dir))
	var handlers sync.WaitGroup // a handler logs to tb: none may outlive the test
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		tb.Logf("http: %s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
		fs.ServeHTTP(w, r)
	})}
	go srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed at cleanup
	tb.Cleanup(func() {
		srv.Close() // ends the connections: a handler still writing returns
		handlers.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}
