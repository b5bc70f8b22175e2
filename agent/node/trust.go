package node

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/etoile-os/etoile/agent/config"
)

// The machine config's certificate authorities sit in the system's CA
// bundle between these lines; the image's own certificates, outside them,
// stay as they are. PEM readers (Go's, OpenSSL's) skip lines outside a
// certificate.
const (
	caBegin = "# BEGIN machine config ca_certificates (etoile): written by the agent, replaced at each apply\n"
	caEnd   = "# END machine config ca_certificates (etoile)\n"
)

// applyTrust adds the config's ca_certificates to the system's CA bundle
// (config.CABundlePath), replacing those an earlier config added (none: the
// block goes), before K3s starts: K3s, its containerd and the node's other
// programs then trust the site's authorities (a registry's, a proxy's that
// inspects TLS) beside the image's. Each certificate is written as its own
// PEM block under a comment naming it; the text around the PEM in the
// config is not copied. It returns a warning when the bundle could not be
// written, and for each registry TLS file the config names by a path this
// node does not have (registryFileWarnings).
func (n *Node) applyTrust(cfg *config.MachineConfig) []string {
	var body bytes.Buffer
	var names []string
	if cfg != nil {
		for _, text := range cfg.CACertificates {
			certs, problem := config.PEMCertificates(text, "")
			if problem != "" {
				continue // validation refuses such a config
			}
			for _, c := range certs {
				names = append(names, config.CertSubject(c)+" sha256="+config.CertFingerprint(c))
				fmt.Fprintf(&body, "# %s\n", config.CertName(c)) // %q: one line
				_ = pem.Encode(&body, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
			}
		}
	}
	path := filepath.Join(n.env.Root, config.CABundlePath)
	changed, err := config.ReplaceBlock(path, caBegin, caEnd, body.Bytes(), 0o644)
	if err != nil {
		n.env.Log.Warn("certificate authorities not added", "file", "/"+config.CABundlePath, "reason", err.Error())
		return append(n.registryFileWarnings(cfg), fmt.Sprintf("ca_certificates: not added to /%s: %v (K3s and containerd do not trust them: check the system's overlay, dmesg says more)", config.CABundlePath, err))
	}
	if changed {
		n.env.Log.Info("certificate authorities trusted", "file", "/"+config.CABundlePath, "added", len(names), "certificates", strings.Join(names, ", "))
	}
	return n.registryFileWarnings(cfg)
}

// registryFileWarnings names the files registries.configs' tls gives by
// path (ca_file, cert_file, key_file) that this node does not have:
// containerd would then fail every pull from that registry. A file the
// system image or an extension carries is there; otherwise the PEM can
// be given in the config itself (tls.ca, tls.cert, tls.key).
func (n *Node) registryFileWarnings(cfg *config.MachineConfig) []string {
	if cfg == nil || cfg.Registries == nil {
		return nil
	}
	var warns []string
	for _, host := range slices.Sorted(maps.Keys(cfg.Registries.Configs)) {
		t := cfg.Registries.Configs[host].TLS
		if t == nil {
			continue
		}
		for _, f := range []struct{ name, path, inline string }{{"ca_file", t.CAFile, "ca"}, {"cert_file", t.CertFile, "cert"}, {"key_file", t.KeyFile, "key"}} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(filepath.Join(n.env.Root, f.path)); err != nil {
				w := fmt.Sprintf("registries.configs.%s.tls.%s: %s is not on this node (%v): containerd cannot reach %s over TLS: give the PEM itself as tls.%s, or add the file to the system image (an extension)",
					host, f.name, f.path, errors.Unwrap(err), host, f.inline)
				n.env.Log.Warn("registry TLS file missing", "registry", host, "field", f.name, "path", f.path)
				warns = append(warns, w)
			}
		}
	}
	return warns
}
