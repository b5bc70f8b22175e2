package image

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/etoile-os/etoile/image/debian"
)

// TestFetchCABundle makes the system image's CA bundle from Debian's
// ca-certificates package (with the host's apt, as the build does): every
// block is a certificate, Let's Encrypt's root is among them, and the
// package is the one the SBOM will name.
func TestFetchCABundle(t *testing.T) {
	f := &debian.Fetcher{CacheDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Architecture: "amd64"}
	path, pkg, err := fetchCABundle(context.Background(), f, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if pkg.Name != "ca-certificates" || pkg.Version == "" {
		t.Errorf("package %s %s", pkg.Name, pkg.Version)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	n, isrg := 0, false
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("certificate %d: %v", n, err)
		}
		pool.AddCert(cert)
		n++
		isrg = isrg || cert.Subject.CommonName == "ISRG Root X1"
	}
	if n < 100 || !isrg {
		t.Errorf("bundle holds %d certificates (ISRG Root X1: %v); Debian's has about 150", n, isrg)
	}
	t.Logf("%d certificates from %s %s", n, pkg.Name, pkg.Version)
}
