package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// pki is the stand-in's certificate authority and the admin client
// certificate, kept under <data-dir>/server/tls like K3s's own, so that a
// restarted stand-in serves the same cluster to an existing kubeconfig.
type pki struct {
	caCert     *x509.Certificate
	caKey      *ecdsa.PrivateKey
	caPEM      []byte
	clientPEM  []byte // admin client certificate
	clientKey  []byte // its key, PEM
	serverCert tls.Certificate
}

func loadOrCreatePKI(tlsDir string, sans []string, ips []net.IP) (*pki, error) {
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{}
	caCertPath, caKeyPath := filepath.Join(tlsDir, "server-ca.crt"), filepath.Join(tlsDir, "server-ca.key")
	clientPath, clientKeyPath := filepath.Join(tlsDir, "client-admin.crt"), filepath.Join(tlsDir, "client-admin.key")
	if err := p.loadCA(caCertPath, caKeyPath); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("reading the stand-in CA in %s: %w (remove the folder to start afresh)", tlsDir, err)
		}
		if err := p.createCA(caCertPath, caKeyPath); err != nil {
			return nil, err
		}
	}
	cp, errC := os.ReadFile(clientPath)
	kpData, errK := os.ReadFile(clientKeyPath)
	if errC != nil || errK != nil {
		var err error
		cp, kpData, err = p.issue(pkix.Name{CommonName: "system:admin", Organization: []string{"system:masters"}},
			nil, nil, x509.ExtKeyUsageClientAuth)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(clientPath, cp, 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(clientKeyPath, kpData, 0o600); err != nil {
			return nil, err
		}
	}
	p.clientPEM, p.clientKey = cp, kpData
	// The serving certificate is issued at every start, for today's names
	// and addresses, as K3s extends its own with new SANs.
	certPEM, keyPEM, err := p.issue(pkix.Name{CommonName: "k3s", Organization: []string{"k3s"}}, sans, ips, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	if p.serverCert, err = tls.X509KeyPair(append(certPEM, p.caPEM...), keyPEM); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *pki) loadCA(certPath, keyPath string) error {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return fmt.Errorf("%s or %s is not PEM", certPath, keyPath)
	}
	if p.caCert, err = x509.ParseCertificate(cb.Bytes); err != nil {
		return err
	}
	if p.caKey, err = x509.ParseECPrivateKey(kb.Bytes); err != nil {
		return err
	}
	p.caPEM = certPEM
	return nil
}

func (p *pki) createCA(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("k3s-server-ca@%d", now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	p.caCert, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certPath, p.caPEM, 0o644)
}

func (p *pki) issue(subject pkix.Name, dns []string, ips []net.IP, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// caHash is what K3s puts after "K10" in a secure token: the SHA-256 of the
// CA bundle an agent gets from /cacerts, so the agent can trust it.
func caHash(caPEM []byte) string {
	sum := sha256.Sum256(caPEM)
	return hex.EncodeToString(sum[:])
}

// fullToken builds a K3s secure token: K10<ca hash>::<user>:<password>.
func fullToken(caPEM []byte, user, password string) string {
	return "K10" + caHash(caPEM) + "::" + user + ":" + password
}

// tokenPassword returns the password part of a token given either bare or
// in the secure K10 form.
func tokenPassword(tok string) string {
	tok = strings.TrimSpace(tok)
	if strings.HasPrefix(tok, "K10") {
		if _, creds, ok := strings.Cut(tok, "::"); ok {
			if _, pw, ok := strings.Cut(creds, ":"); ok {
				return pw
			}
		}
	}
	return tok
}

// tokenCAHash returns the CA hash of a K10 token, "" for a bare one.
func tokenCAHash(tok string) string {
	tok = strings.TrimSpace(tok)
	if h, _, ok := strings.Cut(tok, "::"); ok && strings.HasPrefix(h, "K10") {
		return strings.TrimPrefix(h, "K10")
	}
	return ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return fmt.Sprintf("%x", time.Now().UnixNano())
	}
	return hex.EncodeToString(b)
}

// kubeconfig renders K3s's admin kubeconfig (k3s.yaml) for server.
func kubeconfig(server string, p *pki) []byte {
	b64 := base64.StdEncoding.EncodeToString
	return []byte(`apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ` + b64(p.caPEM) + `
    server: ` + server + `
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: ` + b64(p.clientPEM) + `
    client-key-data: ` + b64(p.clientKey) + `
`)
}
