package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	yaml2 "gopkg.in/yaml.v2"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/internal/syncbuf"
	"github.com/etoile-os/etoile/internal/testca"
)

// handshake reports whether a client trusting roots (and presenting
// client, when given) completes a real TLS exchange with srv.
func handshake(srv string, roots *x509.CertPool, client []tls.Certificate) error {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: client}}}
	resp, err := c.Get(srv)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// poolFrom reads a PEM bundle as Go's crypto/x509 reads the system's (what
// K3s and its containerd do with /etc/ssl/certs/ca-certificates.crt).
func poolFrom(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		t.Fatalf("%s holds no certificate", path)
	}
	return p
}

// TestStandinNodeTrustsTheSiteCAs: a node (K3s played by the stand-in)
// whose machine config has ca_certificates and a registry's TLS given as
// PEM has, before K3s starts, the site's CA in the system bundle beside the
// image's (a real TLS server its CA signs is then trusted through the
// bundle, as K3s's Go code reads it), and the registry's CA, client
// certificate and key in files registries.yaml names (a real mutual-TLS
// exchange succeeds with them, as containerd makes it); a ca_file the node
// lacks is warned about. A config without them puts the image's bundle
// back byte for byte and removes the files.
func TestStandinNodeTrustsTheSiteCAs(t *testing.T) {
	root := t.TempDir()
	buildStandin(t, root)
	imageCA, siteCA, registryCA := testca.New(t, "Image Root"), testca.New(t, "Site Root CA"), testca.New(t, "Registry CA")
	bundle := filepath.Join(root, config.CABundlePath)
	if err := os.MkdirAll(filepath.Dir(bundle), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, imageCA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	site := siteCA.Server(t, []string{"proxy.site.test"}, http.NotFoundHandler())
	if err := handshake(site.URL, poolFrom(t, bundle), nil); err == nil {
		t.Fatal("the image's bundle already trusts the site's server: the test proves nothing")
	}
	// The registry asks for a client certificate its CA signed.
	registry := testca.Serve(t, registryCA.ServerCert(t, "registry.site.test"), http.NotFoundHandler())
	registry.TLS.ClientAuth, registry.TLS.ClientCAs = tls.RequireAndVerifyClientCert, registryCA.Pool()
	certPEM, keyPEM := registryCA.ClientCertPEM(t, "edge-node")

	q := func(b []byte) string { return strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "\n      ") }
	const head = "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: ca-1\nrole: server\ncluster: {init: true}\ntime: {disabled: true}\nk3s:\n  https-listen-port: 0\n"
	doc := head + "ca_certificates:\n  - |\n      " + q(siteCA.PEM) + "\n" +
		"registries:\n  configs:\n    registry.site.test:\n      tls:\n        ca: |\n          " + strings.ReplaceAll(q(registryCA.PEM), "\n      ", "\n          ") +
		"\n        cert: |\n          " + strings.ReplaceAll(q(certPEM), "\n      ", "\n          ") +
		"\n        key: |\n          " + strings.ReplaceAll(q(keyPEM), "\n      ", "\n          ") +
		"\n    other.site.test:\n      tls: {ca_file: /etc/ssl/site/missing.pem}\n"
	vol := configVolume(t, root, doc)
	var logs syncbuf.Buffer
	var con consoleLines
	ctx, cancel := context.WithCancel(context.Background())
	n := Start(ctx, Env{
		Root: root, ConfigVolume: func() config.Source { return config.VolumeSource(vol) },
		Broadcast: con.add, K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root},
		Socket: filepath.Join(root, "agent.sock"), Log: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	defer n.Wait()
	defer cancel()
	waitUntil(t, "k3s=ready", 60*time.Second, func() bool { return n.K3sState() == "ready" })

	// The system bundle: the image's certificates first, as they were,
	// then the site's.
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, imageCA.PEM) || !strings.Contains(string(data), `# "Site Root CA" (sha256 `) {
		t.Errorf("the bundle lost the image's certificates or names no site CA:\n%s", data)
	}
	if st, err := os.Stat(bundle); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("bundle mode: %v %v, want 0644 (every program reads it)", st.Mode(), err)
	}
	if err := handshake(site.URL, poolFrom(t, bundle), nil); err != nil {
		t.Errorf("a server the site's CA signs is not trusted through the bundle: %v", err)
	}
	if !strings.Contains(logs.String(), "certificate authorities trusted") {
		t.Errorf("no log line for the CAs added:\n%s", logs.String())
	}

	// The registry's files, through registries.yaml as K3s reads it.
	reg, err := os.ReadFile(filepath.Join(root, config.K3sRegistriesPath))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Configs map[string]struct {
			TLS struct {
				CertFile string `yaml:"cert_file"`
				KeyFile  string `yaml:"key_file"`
				CAFile   string `yaml:"ca_file"`
			} `yaml:"tls"`
		} `yaml:"configs"`
	}
	if err := yaml2.UnmarshalStrict(reg, &got); err != nil {
		t.Fatalf("registries.yaml does not parse as K3s's: %v\n%s", err, reg)
	}
	ft := got.Configs["registry.site.test"].TLS
	for _, p := range []string{ft.CAFile, ft.CertFile, ft.KeyFile} {
		st, err := os.Stat(filepath.Join(root, p))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v: want a 0600 file (the key is a secret)", p, err, st)
		}
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(root, ft.CertFile), filepath.Join(root, ft.KeyFile))
	if err != nil {
		t.Fatalf("the client certificate files as containerd loads them: %v", err)
	}
	if err := handshake(registry.URL, poolFrom(t, filepath.Join(root, ft.CAFile)), []tls.Certificate{pair}); err != nil {
		t.Errorf("mutual TLS with the registry through the written files: %v", err)
	}
	if err := handshake(registry.URL, poolFrom(t, filepath.Join(root, ft.CAFile)), nil); err == nil {
		t.Error("the registry let a client without a certificate in: the test proves nothing")
	}
	st := n.Status(ctx)
	if w := strings.Join(st.Warnings, "\n"); !strings.Contains(w, "registries.configs.other.site.test.tls.ca_file: /etc/ssl/site/missing.pem is not on this node") ||
		!strings.Contains(w, "as tls.ca") {
		t.Errorf("status warnings do not name the missing ca_file:\n%s", w)
	}
	if strings.Contains(con.all()+logs.String(), strings.Split(string(keyPEM), "\n")[1]) {
		t.Error("the client key is on the console or in the log")
	}

	// Without them: the image's bundle as it was, no TLS files left.
	if _, err := n.ApplyConfig(ctx, []byte(head)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "k3s=ready after the apply without CAs", 60*time.Second, func() bool { return n.K3sState() == "ready" })
	if data, err := os.ReadFile(bundle); err != nil || !bytes.Equal(data, imageCA.PEM) {
		t.Errorf("the bundle after a config without ca_certificates is not the image's: %v\n%s", err, data)
	}
	if _, err := os.Stat(filepath.Join(root, config.RegistryTLSDir, "registry.site.test")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the registry's TLS files are left after a config without them: %v", err)
	}
}
