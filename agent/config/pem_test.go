package config

import (
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/etoile-os/etoile/internal/testca"
)

// yamlQuoted is s as a YAML double-quoted scalar (a PEM's newlines kept).
func yamlQuoted(t *testing.T, s string) string {
	t.Helper()
	b, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		t.Fatal(err)
	}
	n.Content[0].Style = yaml.DoubleQuotedStyle
	out, err := yaml.Marshal(n.Content[0])
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// caDoc is a valid server config whose ca_certificates are entries.
func caDoc(t *testing.T, entries ...string) string {
	var b strings.Builder
	b.WriteString(header + server + "ca_certificates:\n")
	for _, e := range entries {
		b.WriteString("  - " + yamlQuoted(t, e) + "\n")
	}
	return b.String()
}

// TestCACertificatesAccepted: the site's authorities, one per entry or
// several in one (a bundle, with the subject= lines openssl writes around
// them), are a valid config without warnings.
func TestCACertificatesAccepted(t *testing.T) {
	root, issuing := testca.New(t, "Site Root CA"), testca.New(t, "Site Issuing CA")
	bundle := "subject=CN = Site Root CA\n" + string(root.PEM) + "subject=CN = Site Issuing CA\n" + string(issuing.PEM)
	c, w, err := Check([]byte(caDoc(t, string(root.PEM), string(issuing.PEM))))
	if err != nil || len(w) != 0 {
		t.Fatalf("two CAs: err %v, warnings %q", err, w)
	}
	if len(c.CACertificates) != 2 || c.CACertificates[0] != string(root.PEM) {
		t.Errorf("ca_certificates read as %q", c.CACertificates)
	}
	if _, w, err := Check([]byte(caDoc(t, bundle))); err != nil || len(w) != 0 {
		t.Fatalf("a bundle in one entry: err %v, warnings %q", err, w)
	}
	// Written on Windows: CRLF line ends.
	if _, w, err := Check([]byte(caDoc(t, strings.ReplaceAll(string(root.PEM), "\n", "\r\n")))); err != nil || len(w) != 0 {
		t.Fatalf("CRLF line ends: err %v, warnings %q", err, w)
	}
	// The example's commented block is what README shows: uncommented,
	// its placeholder is refused as not PEM, by its path.
	wantRefused(t, exampleWith("", "ca_certificates:"), "ca_certificates[0]", []string{"damaged"})
}

// TestCACertificatesRefused: what is not a certificate is refused at its
// entry's path, saying what to paste, and a private key pasted there is
// never shown.
func TestCACertificatesRefused(t *testing.T) {
	ca := testca.New(t, "Site Root CA")
	_, keyPEM := ca.ClientCertPEM(t, "client")
	keyBody := strings.Split(string(keyPEM), "\n")[1]
	block, _ := pem.Decode(ca.PEM)
	damaged := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes[:len(block.Bytes)/2]})
	lines := strings.Split(strings.TrimSpace(string(ca.PEM)), "\n")
	cut := strings.Join(lines[:len(lines)-1], "\n") + "\n" // no END line
	for _, tc := range []struct {
		name, entry string
		want        []string
	}{
		{"empty", "  ", []string{"empty", "-----BEGIN CERTIFICATE-----"}},
		{"not PEM", "MIIBhTCCASugAwIBAgIQ", []string{"is not PEM (not shown)", "-----BEGIN CERTIFICATE-----"}},
		{"a private key", string(keyPEM), []string{"holds a private key (not shown)", "keep it secret"}},
		{"a certificate and its key", string(ca.PEM) + string(keyPEM), []string{"holds a private key (not shown)"}},
		{"a public key", "-----BEGIN PUBLIC KEY-----\n" + base64.StdEncoding.EncodeToString([]byte("pub")) + "\n-----END PUBLIC KEY-----\n", []string{`holds a "PUBLIC KEY" block`, "only CERTIFICATE blocks"}},
		{"OpenSSL's trusted form", "-----BEGIN TRUSTED CERTIFICATE-----\n" + base64.StdEncoding.EncodeToString(block.Bytes) + "\n-----END TRUSTED CERTIFICATE-----\n", []string{"TRUSTED CERTIFICATE block", "openssl x509 -in FILE"}},
		{"damaged DER", string(damaged), []string{"certificate 1 cannot be read", "paste it again"}},
		{"cut short", string(ca.PEM) + cut, []string{"holds 2 PEM blocks, and only 1 certificates can be read", "cut short or damaged"}},
		{"cut short before another", cut + string(ca.PEM), []string{"holds 2 PEM blocks", "cut short or damaged"}},
		{"damaged base64 before another", strings.Replace(string(ca.PEM), lines[2], "!"+lines[2][1:], 1) + string(ca.PEM), []string{"holds 2 PEM blocks", "cut short or damaged"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wantRefused(t, caDoc(t, string(ca.PEM), tc.entry), "ca_certificates[1]", tc.want)
			if strings.Contains(err.Error(), keyBody) {
				t.Errorf("the private key is in the error:\n%v", err)
			}
		})
	}
	// A private key given where a list is expected: the decoding error
	// does not show it either.
	_, err := Parse([]byte(header + server + "ca_certificates: " + yamlQuoted(t, string(keyPEM)) + "\n"))
	if err == nil || !strings.Contains(err.Error(), "ca_certificates") || strings.Contains(err.Error(), keyBody) {
		t.Errorf("a key as ca_certificates: %v", err)
	}
	var many []string
	for range maxCACertificates + 1 {
		many = append(many, string(ca.PEM))
	}
	wantRefused(t, caDoc(t, many...), "ca_certificates", []string{"65 entries, more than the 64 allowed"})
}

// TestCACertificatesWarned: a certificate given twice, one that is no
// authority's, one expired and one not yet valid are accepted with a
// warning naming it by subject and fingerprint.
func TestCACertificatesWarned(t *testing.T) {
	ca := testca.New(t, "Site Root CA")
	now := time.Now()
	for _, tc := range []struct {
		name    string
		entries []string
		want    []string
	}{
		{"twice", []string{string(ca.PEM), string(ca.PEM)}, []string{"ca_certificates[1]", `"Site Root CA" (sha256 `, "is also ca_certificates[0]: give it once"}},
		{"twice in one entry", []string{string(ca.PEM) + string(ca.PEM)}, []string{"ca_certificates[0] (certificate 2)", "is also ca_certificates[0] (certificate 1)"}},
		{"no authority", []string{string(testca.Custom(t, "registry.site.test", now.Add(-time.Hour), now.Add(time.Hour), false).PEM)},
			[]string{"ca_certificates[0]", `"registry.site.test"`, "is not a certificate authority's", "vouches only for itself"}},
		{"expired", []string{string(testca.Custom(t, "Old CA", now.Add(-48*time.Hour), now.Add(-24*time.Hour), true).PEM)},
			[]string{`"Old CA"`, "expired on " + now.Add(-24*time.Hour).UTC().Format(time.DateOnly), "current certificate"}},
		{"not yet valid", []string{string(testca.Custom(t, "Future CA", now.Add(24*time.Hour), now.Add(48*time.Hour), true).PEM)},
			[]string{`"Future CA"`, "is valid only from", "clock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantOneWarning(t, caDoc(t, tc.entries...), tc.want)
		})
	}
}

// registryTLSDoc is a valid server config with one registry host whose tls
// section is tls (YAML flow mapping entries).
func registryTLSDoc(host, tls string) string {
	return header + server + "registries:\n  configs:\n    " + host + ":\n      tls: {" + tls + "}\n"
}

// TestRegistryTLSInline: a registry's CA and client certificate given as
// PEM are written to files of the agent's (RegistryTLSFiles), which
// registries.yaml names under K3s's own keys; no PEM reaches
// registries.yaml, and the key is redacted.
func TestRegistryTLSInline(t *testing.T) {
	ca := testca.New(t, "Registry CA")
	certPEM, keyPEM := ca.ClientCertPEM(t, "edge-node")
	keyBody := strings.Split(string(keyPEM), "\n")[1]
	doc := registryTLSDoc("registry.site.test:5000", "ca: "+yamlQuoted(t, string(ca.PEM))+", cert: "+yamlQuoted(t, string(certPEM))+", key: "+yamlQuoted(t, string(keyPEM)))
	c, w, err := Check([]byte(doc))
	if err != nil || len(w) != 0 {
		t.Fatalf("err %v, warnings %q", err, w)
	}
	reg, err := c.RegistriesYAML()
	if err != nil {
		t.Fatal(err)
	}
	dir := "/etc/rancher/k3s/registries-tls/registry.site.test:5000/"
	for _, want := range []string{"ca_file: " + dir + "ca.crt", "cert_file: " + dir + "client.crt", "key_file: " + dir + "client.key"} {
		if !strings.Contains(string(reg), want) {
			t.Errorf("registries.yaml lacks %q:\n%s", want, reg)
		}
	}
	if strings.Contains(string(reg), "BEGIN") || strings.Contains(string(reg), "ca: ") {
		t.Errorf("registries.yaml carries PEM, which K3s does not read there:\n%s", reg)
	}
	files := c.RegistryTLSFiles()
	if len(files) != 3 || string(files[strings.TrimPrefix(dir, "/")+"ca.crt"]) != string(ca.PEM) ||
		string(files[strings.TrimPrefix(dir, "/")+"client.crt"]) != string(certPEM) || string(files[strings.TrimPrefix(dir, "/")+"client.key"]) != string(keyPEM) {
		t.Errorf("RegistryTLSFiles = %d files: %v", len(files), func() []string {
			var k []string
			for p := range files {
				k = append(k, p)
			}
			return k
		}())
	}
	if c.Registries.Configs["registry.site.test:5000"].TLS.CA == "" {
		t.Error("RegistriesYAML changed the config it renders")
	}
	if red := redactedYAML(t, c); strings.Contains(red, keyBody) || !strings.Contains(red, "key: "+Redacted) || !strings.Contains(red, "Registry CA") && !strings.Contains(red, "BEGIN CERTIFICATE") {
		t.Errorf("redacted config shows the client key, or lost the certificates:\n%s", red)
	}
	// Files given by path stay as they are.
	c, _, err = Check([]byte(registryTLSDoc("r.site.test", "ca_file: /etc/ssl/site/ca.pem")))
	if err != nil {
		t.Fatal(err)
	}
	if reg, _ := c.RegistriesYAML(); !strings.Contains(string(reg), "ca_file: /etc/ssl/site/ca.pem") || c.RegistryTLSFiles() != nil {
		t.Errorf("a ca_file config: registries.yaml\n%s\nfiles %v", reg, c.RegistryTLSFiles())
	}
}

// TestRegistryTLSInlineRefused: each part given twice (PEM and file), a
// certificate without its key, a key that is not the certificate's, an
// encrypted key, and PEM of the wrong kind are refused at the field's path;
// no error shows the key.
func TestRegistryTLSInlineRefused(t *testing.T) {
	ca := testca.New(t, "Registry CA")
	certPEM, keyPEM := ca.ClientCertPEM(t, "edge-node")
	_, otherKey := ca.ClientCertPEM(t, "other")
	keyBody := strings.Split(string(keyPEM), "\n")[1]
	q := func(s []byte) string { return yamlQuoted(t, string(s)) }
	encrypted := "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n" + base64.StdEncoding.EncodeToString([]byte("secret key bytes")) + "\n-----END RSA PRIVATE KEY-----\n"
	for _, tc := range []struct {
		name, tls, path string
		want            []string
	}{
		{"ca and ca_file", "ca: " + q(ca.PEM) + ", ca_file: /etc/ca.pem", "tls.ca", []string{"given with ca_file", "once"}},
		{"cert without key", "cert: " + q(certPEM), "tls", []string{"give cert and key together"}},
		{"key without cert", "key: " + q(keyPEM), "tls", []string{"give cert and key together"}},
		{"cert and cert_file", "cert: " + q(certPEM) + ", key: " + q(keyPEM) + ", cert_file: /c.pem, key_file: /k.pem", "tls.cert", []string{"given with cert_file and key_file"}},
		{"key of another certificate", "cert: " + q(certPEM) + ", key: " + q(otherKey), "tls.key", []string{"does not go with the certificate in cert (not shown)"}},
		{"encrypted key", "cert: " + q(certPEM) + ", key: " + yamlQuoted(t, encrypted), "tls.key", []string{"is encrypted (not shown)", "openssl pkey"}},
		{"certificate as the key", "cert: " + q(certPEM) + ", key: " + q(certPEM), "tls.key", []string{"holds a certificate (not shown)"}},
		{"key as the certificate", "cert: " + q(keyPEM) + ", key: " + q(keyPEM), "tls.cert", []string{"holds a private key (not shown)", "as key"}},
		{"key in ca", "ca: " + q(keyPEM), "tls.ca", []string{"holds a private key (not shown)"}},
		{"ca not PEM", "ca: notpem", "tls.ca", []string{"is not PEM"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wantRefused(t, registryTLSDoc("r.site.test", tc.tls), "registries.configs.r.site.test."+tc.path, tc.want)
			if strings.Contains(err.Error(), keyBody) || strings.Contains(err.Error(), "secret key bytes") {
				t.Errorf("the key is in the error:\n%v", err)
			}
		})
	}
	now := time.Now()
	old := testca.Custom(t, "Old Registry CA", now.Add(-48*time.Hour), now.Add(-24*time.Hour), true)
	wantOneWarning(t, registryTLSDoc("r.site.test", "ca: "+q(old.PEM)), []string{"registries.configs.r.site.test.tls.ca", `"Old Registry CA"`, "expired on"})
}

// TestRegistryTLSPathKeepsHostsApart: a registry host names its folder as
// it is when it is a plain file name; one that is not ("..", a control
// character, a backslash) gets a folder of its own that stays under
// RegistryTLSDir.
func TestRegistryTLSPathKeepsHostsApart(t *testing.T) {
	seen := map[string]string{}
	for _, host := range []string{"registry.site.test:5000", "*", "..", ".", "a\x01b", "a_b", `a\b`, ""} {
		p := RegistryTLSPath(host, RegistryCAFile)
		if !strings.HasPrefix(p, RegistryTLSDir+"/") || strings.Count(p, "/") != strings.Count(RegistryTLSDir, "/")+2 {
			t.Errorf("host %q: %s is not a folder of its own under %s", host, p, RegistryTLSDir)
		}
		if prev, ok := seen[p]; ok {
			t.Errorf("hosts %q and %q share %s", prev, host, p)
		}
		seen[p] = host
	}
	if p := RegistryTLSPath("registry.site.test:5000", RegistryKeyFile); p != RegistryTLSDir+"/registry.site.test:5000/client.key" {
		t.Errorf("path %s", p)
	}
}
