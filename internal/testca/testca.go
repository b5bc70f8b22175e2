// Package testca is for tests only: a certificate authority made for one
// test, and HTTPS servers whose certificates it signs (real TLS, verified
// against a pool holding only this CA).
package testca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// CA signs server certificates for a test.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA's certificate, PEM-encoded (an SSL_CERT_FILE).
	PEM []byte
}

var serial atomic.Int64

// New makes a CA named name, valid from an hour ago for a day.
func New(t testing.TB, name string) *CA {
	t.Helper()
	return Custom(t, name, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), true)
}

// Custom makes a self-signed certificate named name, valid from notBefore
// to notAfter, a CA's (basic constraint CA:TRUE) when isCA, for tests of
// what is done with an expired one or one that is no authority's.
func Custom(t testing.TB, name string, notBefore, notAfter time.Time, isCA bool) *CA {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: name}, NotBefore: notBefore, NotAfter: notAfter,
		IsCA: isCA, BasicConstraintsValid: isCA, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	der, key := issue(t, tmpl, nil)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a key and the certificate tmpl describes for it (its serial
// number set here), signed by signer, or by itself when signer is nil.
func issue(t testing.TB, tmpl *x509.Certificate, signer *CA) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	parent, parentKey := tmpl, key
	if signer != nil {
		parent, parentKey = signer.Cert, signer.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// Pool holds only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// ServerCert is a server certificate for hosts (DNS names) and the
// loopback addresses, signed by ca.
func (ca *CA) ServerCert(t testing.TB, hosts ...string) tls.Certificate {
	t.Helper()
	cn := "server"
	if len(hosts) > 0 {
		cn = hosts[0]
	}
	der, key := issue(t, &x509.Certificate{
		Subject:   pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: hosts, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Server serves h over HTTPS with a certificate ca signs for hosts (and
// the loopback addresses); it is closed when the test ends. Refused
// handshakes (the test's own doing) are not logged.
func (ca *CA) Server(t testing.TB, hosts []string, h http.Handler) *httptest.Server {
	t.Helper()
	return Serve(t, ca.ServerCert(t, hosts...), h)
}

// Serve serves h over HTTPS with cert; closed when the test ends.
func Serve(t testing.TB, cert tls.Certificate, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// ClientCertPEM is a client certificate named name that ca signs, and its
// private key (PKCS #8), both PEM-encoded, as a registry's mTLS client
// would be given them.
func (ca *CA) ClientCertPEM(t testing.TB, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	der, key := issue(t, &x509.Certificate{
		Subject:   pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}
