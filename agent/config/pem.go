package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
)

// The most certificates one PEM value may hold: a whole bundle pasted as
// one entry of ca_certificates (Debian's has about 150) fits.
const maxPEMCertificates = 512

// pemWant is what a PEM value of the config should hold, for the messages
// that say it does not.
const pemWant = "paste the certificate's PEM, from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----"

// PEMCertificates reads the certificates of text, a PEM value of the config:
// one or more CERTIFICATE blocks, with whatever text around them tools such
// as openssl put there (a subject= line). The problem it returns instead
// says what is wrong without quoting text, which may be a private key
// pasted in the wrong place. A key block is named with keyAdvice.
func PEMCertificates(text, keyAdvice string) ([]*x509.Certificate, string) {
	if strings.TrimSpace(text) == "" {
		return nil, "empty: " + pemWant
	}
	var certs []*x509.Certificate
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			return nil, "holds a private key (not shown): " + keyAdvice
		case b.Type == "TRUSTED CERTIFICATE":
			return nil, "holds a TRUSTED CERTIFICATE block (OpenSSL's own form, which Go's programs, K3s's among them, skip): convert it with openssl x509 -in FILE and paste the CERTIFICATE block it prints"
		case b.Type != "CERTIFICATE":
			return nil, fmt.Sprintf("holds a %q block: only CERTIFICATE blocks belong here", clip(b.Type, 40))
		}
		if len(certs) == maxPEMCertificates {
			return nil, fmt.Sprintf("holds more than %d certificates: give the ones this node needs", maxPEMCertificates)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Sprintf("certificate %d cannot be read (%v): paste it again from its file, whole", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	// pem.Decode steps over a block it cannot read (an END line missing,
	// base64 damaged by the editor) to the next one it can: every BEGIN
	// line must have given a block.
	begins := 0
	for line := range strings.Lines(text) {
		if strings.HasPrefix(strings.TrimSpace(line), "-----BEGIN") {
			begins++
		}
	}
	switch {
	case begins > len(certs):
		return nil, fmt.Sprintf("holds %d PEM blocks, and only %d certificates can be read: a block is cut short or damaged (not shown): paste it again from its file, whole", begins, len(certs))
	case len(certs) == 0:
		return nil, "is not PEM (not shown): " + pemWant
	}
	return certs, ""
}

// CertName names a certificate in messages: its subject's common name (or
// the whole subject) and the start of its SHA-256 fingerprint, as
// `openssl x509 -fingerprint -sha256` prints it.
func CertName(c *x509.Certificate) string {
	return fmt.Sprintf("%q (sha256 %s)", CertSubject(c), CertFingerprint(c))
}

// CertSubject is a certificate's subject as messages show it: its common
// name, or else the whole subject, at most 80 bytes.
func CertSubject(c *x509.Certificate) string {
	name := c.Subject.CommonName
	if name == "" {
		name = c.Subject.String()
	}
	if name == "" {
		name = "(no subject)"
	}
	return clip(name, 80)
}

// CertFingerprint is the start of a certificate's SHA-256 fingerprint, in
// the upper-case hex of `openssl x509 -fingerprint -sha256`, marked as cut.
func CertFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:6])) + "…"
}

// certValidity says what is wrong with c's validity period at now, or "".
func certValidity(c *x509.Certificate, now time.Time) string {
	switch {
	case now.After(c.NotAfter):
		return fmt.Sprintf("expired on %s", c.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(c.NotBefore):
		return fmt.Sprintf("is valid only from %s (check the node's clock too)", c.NotBefore.UTC().Format(time.DateOnly))
	}
	return ""
}

// keyPairProblem checks a client certificate's private key: PEM, not
// encrypted, and the one that goes with certPEM's first certificate. The
// problem it returns never quotes the key.
func keyPairProblem(certPEM, keyPEM string) string {
	var b *pem.Block
	rest := []byte(keyPEM)
	for {
		b, rest = pem.Decode(rest)
		if b == nil || strings.HasSuffix(b.Type, "PRIVATE KEY") {
			break
		}
		if b.Type == "CERTIFICATE" {
			return "holds a certificate (not shown): give the certificate as cert, and its private key here"
		}
	}
	switch {
	case b == nil:
		return "is not a PEM private key (not shown): paste it from -----BEGIN PRIVATE KEY----- to -----END PRIVATE KEY-----"
	case b.Headers["Proc-Type"] != "" || b.Type == "ENCRYPTED PRIVATE KEY":
		return "is encrypted (not shown): containerd cannot ask for its passphrase: give it decrypted (openssl pkey -in key.pem)"
	}
	if _, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM)); err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return "does not go with the certificate in cert (not shown): give the private key made with it"
		}
		return "cannot be read as a private key (not shown): give the key in PKCS #8, PKCS #1 or SEC 1 PEM, unencrypted"
	}
	return ""
}

// clip shortens s to at most n bytes for a message, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
