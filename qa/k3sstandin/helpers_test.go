package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/etoile-os/etoile/internal/syncbuf"
)

// standin is the stand-in running in-process against a temporary root.
type standin struct {
	root    string
	addr    string
	stderr  *syncbuf.Buffer
	signals chan os.Signal
	cancel  context.CancelFunc
	done    chan int
}

func envFunc(root string, env map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		if k == envRoot {
			return root
		}
		return ""
	}
}

// startStandin runs `k3s <args>` in-process and, for a server, waits until
// it listens. The test's cleanup stops it.
func startStandin(t *testing.T, root string, env map[string]string, args ...string) *standin {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &standin{root: root, stderr: &syncbuf.Buffer{}, signals: make(chan os.Signal, 1), cancel: cancel, done: make(chan int, 1)}
	listening := make(chan string, 1)
	go func() {
		s.done <- run(ctx, invocation{
			args: append([]string{"k3s"}, args...), getenv: envFunc(root, env),
			stdout: io.Discard, stderr: s.stderr, signals: s.signals,
			listening: func(a string) { listening <- a },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Error("stand-in did not stop within 10s of its context ending")
		}
		if t.Failed() {
			t.Logf("stand-in log:\n%s", s.stderr.String())
		}
	})
	if args[0] == "server" {
		select {
		case a := <-listening:
			s.addr = a
		case code := <-s.done:
			t.Fatalf("stand-in exited with %d before listening:\n%s", code, s.stderr.String())
		case <-time.After(30 * time.Second):
			t.Fatalf("stand-in did not listen within 30s:\n%s", s.stderr.String())
		}
	}
	return s
}

// runStandin runs `k3s <args>` to completion and returns its exit status
// and log.
func runStandin(t *testing.T, root string, env map[string]string, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr syncbuf.Buffer
	code := run(context.Background(), invocation{
		args: append([]string{"k3s"}, args...), getenv: envFunc(root, env),
		stdout: &stdout, stderr: &stderr, signals: make(chan os.Signal),
	})
	return code, stdout.String() + stderr.String()
}

// kubeconfigFile is the part of a kubeconfig the tests read.
type kubeconfigFile struct {
	Clusters []struct {
		Cluster struct {
			CAData string `yaml:"certificate-authority-data"`
			Server string `yaml:"server"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		User struct {
			CertData string `yaml:"client-certificate-data"`
			KeyData  string `yaml:"client-key-data"`
		} `yaml:"user"`
	} `yaml:"users"`
}

// kubeClient builds an HTTPS client from a kubeconfig the way kubectl
// does: trust its CA, present its client certificate.
func kubeClient(t *testing.T, path string, withCert bool) (*http.Client, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading kubeconfig: %v", err)
	}
	var kc kubeconfigFile
	if err := yaml.Unmarshal(data, &kc); err != nil {
		t.Fatalf("kubeconfig %s: %v", path, err)
	}
	if len(kc.Clusters) != 1 || len(kc.Users) != 1 {
		t.Fatalf("kubeconfig %s: want one cluster and one user:\n%s", path, data)
	}
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("kubeconfig base64: %v", err)
		}
		return b
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(dec(kc.Clusters[0].Cluster.CAData)) {
		t.Fatal("kubeconfig CA is not PEM")
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withCert {
		cert, err := tls.X509KeyPair(dec(kc.Users[0].User.CertData), dec(kc.Users[0].User.KeyData))
		if err != nil {
			t.Fatalf("kubeconfig client certificate: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}, kc.Clusters[0].Cluster.Server
}

func get(t *testing.T, c *http.Client, url, bearer string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// nodeReady fetches a node and returns its Ready condition status and
// labels.
func nodeReady(t *testing.T, c *http.Client, server, name string) (string, map[string]string, []taint) {
	t.Helper()
	code, body := get(t, c, server+"/api/v1/nodes/"+name, "")
	if code != http.StatusOK {
		t.Fatalf("GET node %s: %d %s", name, code, body)
	}
	var n struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Taints []taint `json:"taints"`
		} `json:"spec"`
		Status struct {
			Conditions []struct{ Type, Status string } `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatalf("node JSON: %v\n%s", err, body)
	}
	if n.Kind != "Node" || n.Metadata.Name != name {
		t.Fatalf("got %s %q, want Node %q", n.Kind, n.Metadata.Name, name)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status, n.Metadata.Labels, n.Spec.Taints
		}
	}
	t.Fatalf("node %s has no Ready condition: %s", name, body)
	return "", nil, nil
}

// waitFor polls cond every 50ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, got)
		}
	}
}
