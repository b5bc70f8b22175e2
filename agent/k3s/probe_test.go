package k3s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type testPKI struct {
	caPEM, serverCert, serverKey, clientCert, clientKey []byte
	ca                                                  *x509.Certificate
	caKey                                               *ecdsa.PrivateKey
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "k3s-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{ca: ca, caKey: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	p.serverCert, p.serverKey = p.issue(t, "kube-apiserver", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = p.issue(t, "system:admin", x509.ExtKeyUsageClientAuth)
	return p
}

func (p *testPKI) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) ([]byte, []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// apiServer is a stand-in for the Kubernetes API: real TLS with client
// certificates, /readyz and one node whose readiness the test sets.
func apiServer(t *testing.T, p *testPKI, readyz *atomic.Int32, nodeReady *atomic.Bool) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(readyz.Load()))
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("GET /api/v1/nodes/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != "node-1" {
			http.NotFound(w, r)
			return
		}
		status := "False"
		if nodeReady.Load() {
			status = "True"
		}
		heartbeat := ""
		if hb := testHeartbeat.Load(); hb != 0 {
			heartbeat = fmt.Sprintf(`,"lastHeartbeatTime":%q`, time.Unix(hb, 0).UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(w, `{"kind":"Node","metadata":{"name":"node-1"},"status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":%q%s}]}}`, status, heartbeat)
	})
	srv := httptest.NewUnstartedServer(mux)
	pair, err := tls.X509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caPEM)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func writeKubeconfig(t *testing.T, root, server string, p *testPKI) {
	b64 := base64.StdEncoding.EncodeToString
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: %s
    server: %s
  name: default
contexts:
- context: {cluster: default, user: default}
  name: default
current-context: default
users:
- name: default
  user:
    client-certificate-data: %s
    client-key-data: %s
`, b64(p.caPEM), server, b64(p.clientCert), b64(p.clientKey))
	path := filepath.Join(root, KubeconfigPath)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAPIProberJudgesFromTheAPI(t *testing.T) {
	p := newPKI(t)
	var readyz atomic.Int32
	var nodeReady atomic.Bool
	readyz.Store(http.StatusServiceUnavailable)
	srv := apiServer(t, p, &readyz, &nodeReady)
	root := t.TempDir()
	prober := &APIProber{Root: root, Kubeconfig: ServerKubeconfig, NodeName: "node-1"}
	ctx := context.Background()

	if _, err := prober.Probe(ctx); err == nil {
		t.Fatal("probe succeeded with no kubeconfig written yet")
	}
	writeKubeconfig(t, root, srv.URL, p)
	steps := []struct {
		readyz    int32
		nodeReady bool
		want      State
	}{
		{http.StatusServiceUnavailable, true, StateRunning},
		{http.StatusOK, false, StateRunning},
		{http.StatusOK, true, StateReady},
	}
	for _, st := range steps {
		readyz.Store(st.readyz)
		nodeReady.Store(st.nodeReady)
		got, err := prober.Probe(ctx)
		if err != nil || got != st.want {
			t.Errorf("readyz=%d nodeReady=%v: got %s, %v; want %s", st.readyz, st.nodeReady, got, err, st.want)
		}
	}
	// Another node name is not registered: running, not ready.
	other := &APIProber{Root: root, Kubeconfig: ServerKubeconfig, NodeName: "node-2"}
	if got, err := other.Probe(ctx); err != nil || got != StateRunning {
		t.Errorf("unregistered node: %s, %v", got, err)
	}
	// A server without a kubelet (disable-agent) has no node: /readyz tells.
	noKubelet := &APIProber{Root: root, Kubeconfig: ServerKubeconfig, NodeName: "node-2", NoNode: true}
	if got, err := noKubelet.Probe(ctx); err != nil || got != StateReady {
		t.Errorf("disable-agent server with /readyz ok: %s, %v; want ready", got, err)
	}
	readyz.Store(http.StatusServiceUnavailable)
	if got, err := noKubelet.Probe(ctx); err != nil || got != StateRunning {
		t.Errorf("disable-agent server with /readyz failing: %s, %v; want running", got, err)
	}
}

// readyAPI serves an API (its certificates from p) that says node-1 is
// ready, and returns a prober for it whose kubeconfig trusts trust's CA.
func readyAPI(t *testing.T, p, trust *testPKI) *APIProber {
	t.Helper()
	var readyz atomic.Int32
	var nodeReady atomic.Bool
	readyz.Store(http.StatusOK)
	nodeReady.Store(true)
	srv := apiServer(t, p, &readyz, &nodeReady)
	root := t.TempDir()
	writeKubeconfig(t, root, srv.URL, trust)
	return &APIProber{Root: root, Kubeconfig: ServerKubeconfig, NodeName: "node-1"}
}

// testHeartbeat is the Unix time apiServer's node reports as its Ready
// condition's lastHeartbeatTime (0: none).
var testHeartbeat atomic.Int64

// TestAPIProberIgnoresTheRunBeforesReady: after K3s restarts, the Node
// object still holds the Ready condition its kubelet reported before
// (Kubernetes keeps it 40 s or more): that is not this run's readiness; a
// report since the run's start is.
func TestAPIProberIgnoresTheRunBeforesReady(t *testing.T) {
	defer testHeartbeat.Store(0)
	p := newPKI(t)
	prober := readyAPI(t, p, p)
	start := time.Now()
	prober.RunStarted(start)
	for _, tc := range []struct {
		heartbeat int64
		want      State
	}{
		{start.Add(-time.Minute).Unix(), StateRunning}, // the run before's
		{start.Unix(), StateReady},                     // this run's first report, in the second it started
		{start.Add(10 * time.Second).Unix(), StateReady},
		{0, StateReady}, // an API that reports no heartbeat: the condition alone
	} {
		testHeartbeat.Store(tc.heartbeat)
		if got, err := prober.Probe(context.Background()); err != nil || got != tc.want {
			t.Errorf("Ready heartbeat at %s (run started %s): %s, %v; want %s", time.Unix(tc.heartbeat, 0).Format(time.TimeOnly), start.Format(time.TimeOnly), got, err, tc.want)
		}
	}
}

func TestAPIProberRefusesAnotherCA(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	prober := readyAPI(t, p, other) // trusts the wrong CA
	if st, err := prober.Probe(context.Background()); err == nil {
		t.Fatalf("probe trusted a server from another CA: %s", st)
	}
}

func TestSupervisorReachesReadyOnlyFromTheAPI(t *testing.T) {
	p := newPKI(t)
	var readyz atomic.Int32
	var nodeReady atomic.Bool
	readyz.Store(http.StatusOK)
	srv := apiServer(t, p, &readyz, &nodeReady)
	root := fakeRoot(t)
	writeKubeconfig(t, root, srv.URL, p)
	s := &Supervisor{Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Env: []string{"ETOILE_FAKE_K3S=hang"}, ProbeEvery: 20 * time.Millisecond, StopTimeout: time.Second,
		Prober: &APIProber{Root: root, Kubeconfig: ServerKubeconfig, NodeName: "node-1"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "running", func() bool { return s.Status().State == StateRunning })
	time.Sleep(100 * time.Millisecond)
	if st := s.Status().State; st != StateRunning {
		t.Fatalf("process alive but node not Ready: state %s, want running", st)
	}
	nodeReady.Store(true)
	waitFor(t, "ready", func() bool { return s.Status().State == StateReady })
	readyz.Store(http.StatusInternalServerError)
	waitFor(t, "back to running", func() bool { return s.Status().State == StateRunning })
	cancel()
	<-done
}

// failingReadyz serves, over real TLS with client certificates as
// apiServer, a /readyz that answers code with body.
func failingReadyz(t *testing.T, p *testPKI, code int, body string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	})
	srv := httptest.NewUnstartedServer(mux)
	pair, err := tls.X509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caPEM)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// etcdDown is what a K3s server's /readyz answers while its etcd is down.
const etcdDown = "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]etcd-readiness ok\n[+]informer-sync ok\n" +
	"[+]poststarthook/start-apiserver-admission-initializer ok\nreadyz check failed\n"

// TestNotReadySaysWhyReadyzFails: while /readyz fails, K3s's state is
// running with a reason that carries the status code and the checks it
// lists as failed, not "node not Ready yet".
func TestNotReadySaysWhyReadyzFails(t *testing.T) {
	p := newPKI(t)
	srv := failingReadyz(t, p, http.StatusInternalServerError, etcdDown)
	root := fakeRoot(t)
	writeKubeconfig(t, root, srv.URL, p)
	s := &Supervisor{Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Env: []string{"ETOILE_FAKE_K3S=hang"}, ProbeEvery: 10 * time.Millisecond, StopTimeout: 10 * time.Second,
		Prober: &APIProber{Root: root, Kubeconfig: ServerKubeconfig, NodeName: "node-1"}}
	stop := runSupervisor(t, s, 30*time.Second)
	waitFor(t, "running", func() bool { return s.Status().State == StateRunning })
	st := s.Status()
	_ = stop()
	if !strings.Contains(st.Reason, "HTTP 500") || !strings.Contains(st.Reason, "[-]etcd failed: reason withheld") ||
		strings.Contains(st.Reason, "[+]") || strings.Contains(st.Reason, "node not Ready yet") {
		t.Errorf("reason %q, want the status code and the failed check, not the ones that passed", st.Reason)
	}
}

// TestReadyzReason: a failing /readyz's reason lists its failed checks
// within a bound, and says what a refused request (401, 403) means.
func TestReadyzReason(t *testing.T) {
	var many strings.Builder
	for i := range 40 {
		fmt.Fprintf(&many, "[-]poststarthook/hook-number-%d failed: reason withheld\n", i)
	}
	for _, c := range []struct {
		code       int
		body       string
		want       []string
		notWant    string
		maxLen     int
		kubeconfig string
	}{
		{500, etcdDown, []string{"API not ready: /readyz answers HTTP 500: [-]etcd failed: reason withheld (", "etoile-agent logs k3s"}, "[+]", 200, ServerKubeconfig},
		{500, many.String(), []string{"[-]poststarthook/hook-number-0 failed", "; and ", " more"}, "hook-number-39", 500, ServerKubeconfig},
		{401, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`,
			[]string{"HTTP 401 (Unauthorized)", "refuses the credentials in " + KubeletKubeconfig, "etoile-agent logs k3s"}, "", 400, KubeletKubeconfig},
		{403, "forbidden", []string{"HTTP 403 (Forbidden)", "refuses the credentials in " + ServerKubeconfig}, "", 400, ServerKubeconfig},
		{503, `{"kind":"Status","message":"the server is currently unable to handle the request"}` + "\n", []string{"HTTP 503: the server is currently unable to handle the request"}, "kind", 200, ServerKubeconfig},
		{500, strings.Repeat("x", 5000), []string{"HTTP 500: xxx", "…"}, "", 400, ServerKubeconfig},
	} {
		got := readyzReason(c.code, []byte(c.body), c.kubeconfig)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("HTTP %d %.40q: reason %q lacks %q", c.code, c.body, got, w)
			}
		}
		if (c.notWant != "" && strings.Contains(got, c.notWant)) || len(got) > c.maxLen {
			t.Errorf("HTTP %d %.40q: reason %q (%d bytes, at most %d), holds %q", c.code, c.body, got, len(got), c.maxLen, c.notWant)
		}
	}
}
