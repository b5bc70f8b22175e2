package hub

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/pki"
	"github.com/etoile-os/etoile/constellation/store"
)

// AdminCertOf is the record of an admin certificate: its serial in
// lowercase hex, its name (common name), its key's SHA-256 (as the audit
// actor shows its first 12 digits) and its issue (NotBefore is dated back
// pki.Backdate from it) and expiry.
func AdminCertOf(leaf *x509.Certificate) (api.AdminCert, error) {
	keySHA, err := pki.KeySHA256(leaf.PublicKey)
	if err != nil {
		return api.AdminCert{}, err
	}
	return api.AdminCert{Serial: serialOf(leaf), Name: leaf.Subject.CommonName, KeySHA256: keySHA,
		IssuedAt: leaf.NotBefore.Add(pki.Backdate).UTC(), NotAfter: leaf.NotAfter.UTC()}, nil
}

func serialOf(leaf *x509.Certificate) string { return fmt.Sprintf("%x", leaf.SerialNumber) }

// checkAdmin refuses a revoked admin certificate (store.AdmitAdmin): one
// indexed read, on every admin request.
func (s *Service) checkAdmin(ctx context.Context, serial, name string, notBefore time.Time) error {
	st, err := s.Store.AdminStatus(ctx, serial, name)
	if err != nil {
		return err
	}
	return store.AdmitAdmin(st, name, notBefore)
}

// RecordAdminCert records an admin certificate the hub has no record of
// (the hub's own admin.yaml, issued before the hub recorded them), with an
// admin.issue event by actor.
func (s *Service) RecordAdminCert(ctx context.Context, c api.AdminCert, actor, detail string) error {
	c.IssuedBy = actor
	ev := api.AuditEvent{At: s.now(), Actor: actor, Action: api.AuditAdminIssue, Subject: c.Name,
		Detail: strings.TrimSpace(fmt.Sprintf("serial=%s key=%s expires=%s %s", c.Serial, c.KeySHA256[:16], c.NotAfter.Format(time.RFC3339), detail))}
	return s.Store.RecordAdminCert(ctx, c, ev)
}

// AdminConfigRequest asks IssueAdminConfig for an admin config.
type AdminConfigRequest struct {
	Path     string // the file to write, 0600
	HubURL   string
	Name     string // the certificate's name, the actor of what is done with it
	Lifetime time.Duration
	IssuedBy string // the audit actor of the issue
	// Replace lets an existing file be replaced (atomically); without it an
	// existing file is refused.
	Replace bool
	Detail  string // added to the admin.issue event's detail
}

// IssueAdminConfig issues an admin certificate, records it with its
// admin.issue event in one transaction, then writes the config (hub URL,
// CA, certificate and key) atomically, 0600. Nothing is written unless the
// certificate was recorded: a credential the hub has no record of, and so
// cannot revoke one by one, is never made.
func (s *Service) IssueAdminConfig(ctx context.Context, r AdminConfigRequest) (api.AdminCert, error) {
	if err := api.ValidateName("admin name", r.Name); err != nil {
		return api.AdminCert{}, err
	}
	if !r.Replace {
		if _, err := os.Stat(r.Path); err == nil {
			return api.AdminCert{}, fmt.Errorf("admin config %s exists: choose another --out", r.Path)
		} else if !errors.Is(err, os.ErrNotExist) {
			return api.AdminCert{}, fmt.Errorf("admin config %s: %w", r.Path, err)
		}
	}
	key, err := pki.NewKey()
	if err != nil {
		return api.AdminCert{}, err
	}
	certPEM, leaf, err := s.CA.ClientCertificate(&key.PublicKey, r.Name, api.OrgAdmin, r.Lifetime)
	if err != nil {
		return api.AdminCert{}, err
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return api.AdminCert{}, err
	}
	b, err := yaml.Marshal(ClientConfig{APIVersion: "etoile.io/v1alpha1", Kind: "HubClientConfig", Hub: r.HubURL, CA: string(s.CA.CertPEM), Cert: string(certPEM), Key: string(keyPEM)})
	if err != nil {
		return api.AdminCert{}, fmt.Errorf("encoding admin config: %w", err)
	}
	c, err := AdminCertOf(leaf)
	if err != nil {
		return c, err
	}
	detail := strings.TrimSpace(fmt.Sprintf("ttl=%s %s", r.Lifetime, r.Detail))
	if err := s.RecordAdminCert(ctx, c, r.IssuedBy, detail); err != nil {
		return c, fmt.Errorf("recording the admin certificate (nothing written): %w", err)
	}
	c.IssuedBy = r.IssuedBy
	if err := pki.WriteFileAtomic(r.Path, b, 0o600); err != nil {
		return c, fmt.Errorf("%w (certificate %s is recorded but its key was not kept: it cannot be used)", err, c.Serial)
	}
	return c, nil
}

// LoadAdminCert reads the certificate of the admin config at path.
func LoadAdminCert(path string) (*x509.Certificate, error) {
	c, err := LoadClientConfig(path)
	if err != nil {
		return nil, err
	}
	leaf, err := pki.ParseCertPEM([]byte(c.Cert))
	if err != nil {
		return nil, fmt.Errorf("admin config %s cert: %w", path, err)
	}
	return leaf, nil
}
