package pki

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCAFilesAndPin(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")
	ca, created, err := LoadOrCreateCA(dir, nil)
	if err != nil || !created {
		t.Fatalf("first start: created=%v err=%v", created, err)
	}
	for name, mode := range map[string]os.FileMode{CAKeyFile: 0o600, CACertFile: 0o644, ".": 0o700} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v mode %v, want %v", name, err, fi.Mode().Perm(), mode)
		}
	}
	// The pin is the SHA-256 of the SubjectPublicKeyInfo, as openssl computes it
	// (openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum).
	sum := sha256.Sum256(ca.Cert.RawSubjectPublicKeyInfo)
	if ca.Pin() != hex.EncodeToString(sum[:]) || len(ca.Pin()) != 64 {
		t.Fatalf("pin %s", ca.Pin())
	}
	again, created, err := LoadOrCreateCA(dir, nil)
	if err != nil || created || again.Pin() != ca.Pin() {
		t.Fatalf("second start: created=%v err=%v, pin changed=%v", created, err, again.Pin() != ca.Pin())
	}
	// A key others can read is refused with the fix.
	if err := os.Chmod(filepath.Join(dir, CAKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateCA(dir, nil); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable CA key: %v", err)
	}
	// A key without its certificate is not silently replaced.
	os.Chmod(filepath.Join(dir, CAKeyFile), 0o600)
	os.Remove(filepath.Join(dir, CACertFile))
	if _, _, err := LoadOrCreateCA(dir, nil); err == nil || !strings.Contains(err.Error(), "restore") {
		t.Fatalf("key without certificate: %v", err)
	}
}

func TestPinnedVerifier(t *testing.T) {
	ca, _, err := LoadOrCreateCA(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := LoadOrCreateCA(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.ServerCertificate([]string{"hub.example.eu", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.ServerCertificate([]string{"hub.example.eu"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	state := func(c tls.Certificate) tls.ConnectionState {
		var cs tls.ConnectionState
		for _, der := range c.Certificate {
			x, _ := ParseCertPEM(EncodeCert(der))
			cs.PeerCertificates = append(cs.PeerCertificates, x)
		}
		return cs
	}
	tests := []struct {
		name, pin, host string
		cert            tls.Certificate
		want            string
	}{
		{"right pin and name", ca.Pin(), "hub.example.eu", srv, ""},
		{"right pin, IP", ca.Pin(), "127.0.0.1", srv, ""},
		{"wrong pin", other.Pin(), "hub.example.eu", srv, "does not match the pin"},
		{"other CA presenting our name", ca.Pin(), "hub.example.eu", forged, "does not match the pin"},
		{"name not in certificate", ca.Pin(), "evil.example", srv, "does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := PinnedVerifier(tt.pin, tt.host)(state(tt.cert))
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSignCSRKeepsOnlyTheKey(t *testing.T) {
	ca, _, err := LoadOrCreateCA(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewKey()
	csr, _ := CSR(key, "admin") // a site asking to be called admin
	certPEM, keySHA, err := ca.SignCSR(csr, "0123456789abcdef", "etoile-site", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := ParseCertPEM(certPEM)
	want, _ := KeySHA256(&key.PublicKey)
	if c.Subject.CommonName != "0123456789abcdef" || c.Subject.Organization[0] != "etoile-site" || keySHA != want {
		t.Fatalf("subject %v, key %s", c.Subject, keySHA)
	}
	if err := ca.VerifyClient(c, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := ca.VerifyClient(c, time.Now().Add(2*time.Hour)); err == nil {
		t.Fatal("expired certificate verified")
	}
	if _, _, err := ca.SignCSR([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), "x", "y", time.Hour); err == nil {
		t.Fatal("garbage CSR signed")
	}
}
