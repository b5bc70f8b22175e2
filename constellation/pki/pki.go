// Package pki is the hub's certificate authority: ECDSA P-256 keys kept 0600
// in the hub's data folder, the server certificate for the listen names,
// short-lived site certificates signed from CSRs, the admin certificate, and
// the CA pin (SHA-256 of the SubjectPublicKeyInfo) that join strings carry.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names inside the hub's data folder.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// CA signs every certificate of one hub.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
	now     func() time.Time
}

// LoadOrCreateCA reads dir/ca.crt and dir/ca.key, creating both on first
// use. created tells the caller to write the admin config.
func LoadOrCreateCA(dir string, now func() time.Time) (ca *CA, created bool, err error) {
	if now == nil {
		now = time.Now
	}
	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if err == nil {
		key, err := LoadKey(keyPath)
		if err != nil {
			return nil, false, fmt.Errorf("hub CA key: %w", err)
		}
		cert, err := ParseCertPEM(certPEM)
		if err != nil {
			return nil, false, fmt.Errorf("hub CA certificate %s: %w", certPath, err)
		}
		if !key.PublicKey.Equal(cert.PublicKey) {
			return nil, false, fmt.Errorf("hub CA key %s does not match %s: restore both from the same backup", keyPath, certPath)
		}
		return &CA{Cert: cert, CertPEM: certPEM, key: key, now: now}, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("reading hub CA certificate: %w", err)
	}
	if _, err := os.Stat(keyPath); err == nil {
		return nil, false, fmt.Errorf("hub CA key %s exists without %s: restore the certificate rather than making a new CA (every site would have to rejoin)", keyPath, certPath)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("creating hub data folder: %w", err)
	}
	key, err := NewKey()
	if err != nil {
		return nil, false, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, false, err
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Étoile constellation hub CA", Organization: []string{"etoile"}},
		NotBefore:             t.Add(-time.Hour),
		NotAfter:              t.AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, false, fmt.Errorf("creating hub CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, false, fmt.Errorf("parsing new hub CA certificate: %w", err)
	}
	// Key first: a crash between the two writes leaves a key without a
	// certificate, which the next start reports instead of silently replacing.
	if err := WriteKey(keyPath, key); err != nil {
		return nil, false, err
	}
	certPEM = EncodeCert(der)
	if err := WriteFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, false, err
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key, now: now}, true, nil
}

// Pin returns the CA pin that join strings carry.
func (ca *CA) Pin() string { return Pin(ca.Cert) }

// Pin returns the lowercase hex SHA-256 of a certificate's SubjectPublicKeyInfo.
func Pin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// KeySHA256 returns the same hash for a bare public key.
func KeySHA256(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encoding public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Backdate is how far certificates' NotBefore is dated back from their
// issue, for clocks a little behind the hub's.
const Backdate = 5 * time.Minute

// ServerCertificate issues the hub's TLS certificate for hosts (DNS names or
// IP addresses). It is made at every start so that --san changes apply.
func (ca *CA) ServerCertificate(hosts []string, lifetime time.Duration) (tls.Certificate, error) {
	key, err := NewKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl, err := ca.template("Étoile hub", "etoile-hub", lifetime)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing hub server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing hub server certificate: %w", err)
	}
	// The CA travels in the chain: the site finds it there and checks its pin.
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// ClientCertificate signs a client certificate for pub with subject cn/org.
func (ca *CA) ClientCertificate(pub crypto.PublicKey, cn, org string, lifetime time.Duration) ([]byte, *x509.Certificate, error) {
	tmpl, err := ca.template(cn, org, lifetime)
	if err != nil {
		return nil, nil, err
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing client certificate for %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing client certificate for %s: %w", cn, err)
	}
	return EncodeCert(der), cert, nil
}

// SignCSR checks a PEM CSR's signature and signs a client certificate for
// its key with the hub's choice of subject; nothing else from the CSR is
// copied. It returns the certificate PEM and the key's SHA-256.
func (ca *CA) SignCSR(csrPEM []byte, cn, org string, lifetime time.Duration) (certPEM []byte, keySHA string, err error) {
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return nil, "", err
	}
	keySHA, err = KeySHA256(csr.PublicKey)
	if err != nil {
		return nil, "", err
	}
	certPEM, _, err = ca.ClientCertificate(csr.PublicKey, cn, org, lifetime)
	return certPEM, keySHA, err
}

// ParseCSR decodes and verifies a PEM certificate request with a P-256 key.
func ParseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("csr is not a PEM CERTIFICATE REQUEST block")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature does not verify: %w", err)
	}
	k, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, errors.New("csr key is not ECDSA P-256")
	}
	return csr, nil
}

// VerifyClient checks that cert was issued by this CA for client use at
// time at; it returns a message fit for the client on failure.
func (ca *CA) VerifyClient(cert *x509.Certificate, at time.Time) error {
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       ca.Pool(),
		CurrentTime: at,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("client certificate %q is not valid for this hub's CA (%s): %w", cert.Subject.CommonName, ca.Pin()[:16], err)
	}
	return nil
}

func (ca *CA) template(cn, org string, lifetime time.Duration) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	t := ca.now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{org}},
		// Five minutes back absorbs clock skew between hub and site.
		NotBefore: t.Add(-Backdate),
		NotAfter:  t.Add(lifetime),
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return s, nil
}

// NewKey makes an ECDSA P-256 key.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating P-256 key: %w", err)
	}
	return k, nil
}

// EncodeKey returns a key as PKCS#8 PEM.
func EncodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteKey writes a key 0600, atomically.
func WriteKey(path string, key *ecdsa.PrivateKey) error {
	b, err := EncodeKey(key)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b, 0o600)
}

// ParseKeyPEM reads a PKCS#8 PEM ECDSA key.
func ParseKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("key is not ECDSA")
	}
	return ek, nil
}

// LoadKey reads a key written by WriteKey and refuses one others can read.
func LoadKey(path string) (*ecdsa.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key %s has mode %v: run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	k, err := ParseKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return k, nil
}

// EncodeCert returns DER as PEM.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ParseCertPEM parses the first certificate in b.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// CSR makes a PEM certificate request for key.
func CSR(key *ecdsa.PrivateKey, cn string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		return nil, fmt.Errorf("creating CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// PinnedVerifier returns a tls.Config.VerifyConnection that trusts the
// server only if its chain holds a CA whose SPKI hash is pin and the leaf
// verifies against that CA for serverName. There is no trust on first use:
// a hub with another CA is refused before any byte of the request is sent.
func PinnedVerifier(pin, serverName string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("hub presented no certificate")
		}
		var ca *x509.Certificate
		for _, c := range cs.PeerCertificates[1:] {
			if c.IsCA && Pin(c) == pin {
				ca = c
				break
			}
		}
		if ca == nil {
			return fmt.Errorf("hub CA does not match the pin sha256:%s from the join string: this is not the hub that issued the token (or the string was mistyped)", pin)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: serverName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			var inv x509.CertificateInvalidError
			if errors.As(err, &inv) && inv.Reason == x509.Expired {
				return fmt.Errorf("hub certificate is not valid at this machine's time %s (is the clock right?): %w", time.Now().UTC().Format(time.RFC3339), err)
			}
			return fmt.Errorf("hub certificate does not verify against the pinned CA for %q: %w", serverName, err)
		}
		return nil
	}
}

// WriteFileAtomic writes through a temporary file, fsync and rename, so a
// crash leaves the old file or the new one.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// LoadCA reads an existing CA from dir and never creates one, for commands
// that must not mint a new trust root by accident.
func LoadCA(dir string) (*CA, error) {
	if _, err := os.Stat(filepath.Join(dir, CACertFile)); err != nil {
		return nil, fmt.Errorf("no hub CA in %s (%w): start the hub there first with `etoile hub serve --data %s`", dir, err, dir)
	}
	ca, _, err := LoadOrCreateCA(dir, nil)
	return ca, err
}
