package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"github.com/etoile-os/etoile/internal/testca"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/config"
)

// The child process of TestStandinNodeConfigURLBeforeVolume: its CA is the
// only one the process trusts.
const configURLChildEnv = "ETOILE_TEST_CONFIG_URL_CA"

// TestStandinNodeConfigURLBeforeVolume: the etoile.config= kernel argument
// (an https URL on a server whose certificate the node verifies) comes
// before an ETOILE-CFG volume that also holds a config; a URL that fails —
// a 404, a server that does not answer, a certificate the node does not
// trust — stops the search with an error naming the URL (README: "A source
// that has a config but cannot deliver it stops the search with its error
// instead of falling back"), K3s is not started from the volume's config,
// and the node takes the URL's config once the server serves it.
//
// The node's HTTPS client trusts what the machine trusts (the system image's
// CA bundle, which Go reads; SSL_CERT_FILE names another): Go loads those
// roots once per process, so the test runs again as a child process whose
// only trusted root is a CA made here.
func TestStandinNodeConfigURLBeforeVolume(t *testing.T) {
	caDir := os.Getenv(configURLChildEnv)
	if caDir == "" {
		dir := t.TempDir()
		ca := testca.New(t, "Site provisioning CA")
		cert := ca.ServerCert(t, "localhost")
		keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{
			"ca.pem":   ca.PEM,
			"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
			"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), configURLChildEnv+"="+dir,
			"SSL_CERT_FILE="+filepath.Join(dir, "ca.pem"), "SSL_CERT_DIR="+filepath.Join(dir, "certs"))
		out, err := cmd.CombinedOutput()
		t.Logf("the test in a process trusting only its own CA:\n%s", out)
		if err != nil {
			t.Fatalf("the child process: %v", err)
		}
		if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
			t.Fatal("the child process did not run the test")
		}
		return
	}

	t.Log(standinNotice)
	cert, err := tls.LoadX509KeyPair(filepath.Join(caDir, "cert.pem"), filepath.Join(caDir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	const head = "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\ntime: {disabled: true}\nk3s:\n  https-listen-port: 0\n"
	var serve atomic.Bool
	var reads atomic.Int32
	srv := testca.Serve(t, cert, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reads.Add(1)
		if r.URL.Path != "/nodes/edge-7.yaml" || r.URL.Query().Get("sig") != "s3cr3t" || !serve.Load() {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(head + "hostname: from-url\n"))
	}))
	configURL := srv.URL + "/nodes/edge-7.yaml?sig=s3cr3t"
	shown := "kernel argument etoile.config=" + srv.URL + "/nodes/edge-7.yaml?xxxxx"

	startNode := func(t *testing.T, url string) (*Node, *consoleLines, string, context.CancelFunc) {
		t.Helper()
		root := t.TempDir()
		buildStandin(t, root)
		vol := configVolume(t, root, head+"hostname: from-volume\n")
		con := &consoleLines{}
		ctx, cancel := context.WithCancel(context.Background())
		n := Start(ctx, Env{
			Root: root, ConfigURL: url, ConfigVolume: func() config.Source { return config.VolumeSource(vol) },
			Broadcast: con.add, ConfigRetry: 50 * time.Millisecond,
			K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root}, Socket: filepath.Join(root, "agent.sock"),
		})
		t.Cleanup(func() { cancel(); n.Wait() })
		return n, con, root, cancel
	}
	nodeName := func(root string) string {
		cfg, _ := os.ReadFile(filepath.Join(root, config.K3sConfigPath))
		for _, l := range strings.Split(string(cfg), "\n") {
			if v, ok := strings.CutPrefix(l, "node-name: "); ok {
				return strings.Trim(v, `"`)
			}
		}
		return ""
	}

	t.Run("the URL's config wins over the volume's", func(t *testing.T) {
		serve.Store(true)
		n, con, root, _ := startNode(t, configURL)
		// The sources are read before Start returns.
		if st := n.Status(context.Background()); st.Config != shown {
			t.Fatalf("config from %q, want %q; console:\n%s", st.Config, shown, con.all())
		}
		waitUntil(t, "k3s=ready", 60*time.Second, func() bool { return n.K3sState() == "ready" })
		if got := nodeName(root); got != "from-url" {
			t.Errorf("K3s's node-name = %q, want the URL config's from-url", got)
		}
		if strings.Contains(con.all(), "s3cr3t") {
			t.Errorf("the URL's signature is on the console:\n%s", con.all())
		}
	})

	t.Run("a 404 stops the search, then the corrected URL is taken", func(t *testing.T) {
		serve.Store(false)
		n, con, root, _ := startNode(t, configURL)
		if !con.has("etoile: error step=config") || !con.has(srv.URL+"/nodes/edge-7.yaml") || !con.has("404 Not Found") {
			t.Fatalf("the console does not show the download's error naming the URL:\n%s", con.all())
		}
		before := reads.Load()
		waitUntil(t, "the URL read again", 10*time.Second, func() bool { return reads.Load() >= before+3 })
		st := n.Status(context.Background())
		if n.K3sState() != "stopped" || strings.Contains(st.Config, config.VolumeLabel) || nodeName(root) != "" {
			t.Fatalf("with the URL failing: k3s=%s, config from %q, K3s node-name %q: the volume's config was taken\n%s",
				n.K3sState(), st.Config, nodeName(root), con.all())
		}
		if !strings.Contains(st.K3s.Reason, "404") {
			t.Errorf("the status does not say why K3s is stopped: %+v", st.K3s)
		}
		if got := con.count("404 Not Found"); got != 1 {
			t.Errorf("the same failure shown %d times, want once:\n%s", got, con.all())
		}
		if strings.Contains(con.all(), "s3cr3t") {
			t.Errorf("the URL's signature is on the console:\n%s", con.all())
		}
		serve.Store(true)
		waitUntil(t, "k3s=ready from the served config", 60*time.Second, func() bool { return n.K3sState() == "ready" })
		if st := n.Status(context.Background()); st.Config != shown || nodeName(root) != "from-url" {
			t.Errorf("once served: config from %q, K3s node-name %q", st.Config, nodeName(root))
		}
	})

	// The other ways a download fails, where the search ends (no K3s needed).
	serve.Store(true)
	other := testca.New(t, "Some other CA")
	untrusted := testca.Serve(t, other.ServerCert(t, "localhost"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(head + "hostname: from-untrusted\n"))
	}))
	closed := testca.Serve(t, cert, http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct{ name, url, want string }{
		{"a certificate the node does not trust", untrusted.URL + "/c.yaml", "certificate signed by unknown authority"},
		{"a server that does not answer", closed.URL + "/c.yaml", "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			vol := configVolume(t, root, head+"hostname: from-volume\n")
			n := &Node{env: Env{Root: root, ConfigURL: tc.url, ConfigVolume: func() config.Source { return config.VolumeSource(vol) }}}
			data, from, err := n.findConfig(context.Background())
			if err == nil || data != nil {
				t.Fatalf("findConfig = %q from %q, %v; want the download's error, not the volume's config", data, from, err)
			}
			for _, w := range []string{tc.url, tc.want} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// The same node with no URL: the volume's.
	root := t.TempDir()
	vol := configVolume(t, root, head+"hostname: from-volume\n")
	n := &Node{env: Env{Root: root, ConfigVolume: func() config.Source { return config.VolumeSource(vol) }}}
	if data, from, err := n.findConfig(context.Background()); err != nil || !strings.Contains(string(data), "from-volume") || !strings.Contains(from, config.VolumeLabel) {
		t.Errorf("without etoile.config=: findConfig = %q from %q, %v", data, from, err)
	}
}
