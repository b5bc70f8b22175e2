package k3s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"
)

// Kubeconfigs K3s writes: the admin one on servers, the kubelet's on every
// node (agents have no admin kubeconfig).
const (
	ServerKubeconfig  = KubeconfigPath
	KubeletKubeconfig = "/var/lib/rancher/k3s/agent/kubelet.kubeconfig"
)

// APIProber judges readiness from the Kubernetes API: /readyz answers ok and
// the node's Ready condition is True. It reads the kubeconfig at each probe,
// since K3s writes it only after it has started.
type APIProber struct {
	Root       string // filesystem root the kubeconfig path is under
	Kubeconfig string // e.g. ServerKubeconfig
	NodeName   string
	NoNode     bool // a server without a kubelet (disable-agent): /readyz alone

	runStart atomic.Int64 // Unix nanoseconds: when this K3s run started (RunStarted)
}

// RunStarted tells the prober when this K3s run started: a node whose
// Ready condition was last reported before (by the kubelet of the run
// before, Kubernetes keeping it for 40 s or more) is not ready yet.
func (p *APIProber) RunStarted(t time.Time) { p.runStart.Store(t.UnixNano()) }

// kubeconfig is the part of a kubeconfig file a probe needs.
type kubeconfig struct {
	Clusters []struct {
		Cluster struct {
			Server   string `yaml:"server"`
			CAData   string `yaml:"certificate-authority-data"`
			CAFile   string `yaml:"certificate-authority"`
			Insecure bool   `yaml:"insecure-skip-tls-verify"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		User struct {
			CertData string `yaml:"client-certificate-data"`
			KeyData  string `yaml:"client-key-data"`
			CertFile string `yaml:"client-certificate"`
			KeyFile  string `yaml:"client-key"`
			Token    string `yaml:"token"`
		} `yaml:"user"`
	} `yaml:"users"`
}

// client builds an HTTPS client from the kubeconfig's first cluster and user.
func (p *APIProber) client() (*http.Client, *url.URL, string, error) {
	path := filepath.Join(p.Root, filepath.FromSlash(p.Kubeconfig))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, "", fmt.Errorf("kubeconfig not written yet: %w", err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, nil, "", fmt.Errorf("kubeconfig %s: %w", p.Kubeconfig, err)
	}
	if len(kc.Clusters) == 0 || len(kc.Users) == 0 {
		return nil, nil, "", fmt.Errorf("kubeconfig %s has no cluster or no user", p.Kubeconfig)
	}
	c, u := kc.Clusters[0].Cluster, kc.Users[0].User
	server, err := url.Parse(c.Server)
	if err != nil || server.Scheme != "https" {
		return nil, nil, "", fmt.Errorf("kubeconfig %s: server %q is not an https URL", p.Kubeconfig, c.Server)
	}
	// Files named in a kubeconfig are relative to its folder, under Root.
	read := func(inline, file string) ([]byte, error) {
		if inline != "" {
			return base64.StdEncoding.DecodeString(inline)
		}
		if file == "" {
			return nil, nil
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(filepath.Dir(p.Kubeconfig), file)
		}
		return os.ReadFile(filepath.Join(p.Root, filepath.FromSlash(file)))
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.Insecure} //nolint:gosec // only when the kubeconfig says so
	ca, err := read(c.CAData, c.CAFile)
	if err != nil {
		return nil, nil, "", fmt.Errorf("kubeconfig CA: %w", err)
	}
	if len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, nil, "", errors.New("kubeconfig CA holds no PEM certificate")
		}
		tlsConf.RootCAs = pool
	}
	cert, err := read(u.CertData, u.CertFile)
	if err != nil {
		return nil, nil, "", fmt.Errorf("kubeconfig client certificate: %w", err)
	}
	key, err := read(u.KeyData, u.KeyFile)
	if err != nil {
		return nil, nil, "", fmt.Errorf("kubeconfig client key: %w", err)
	}
	if len(cert) > 0 {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, nil, "", fmt.Errorf("kubeconfig client certificate/key: %w", err)
		}
		tlsConf.Certificates = []tls.Certificate{pair}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf, DisableKeepAlives: true}}
	return hc, server, u.Token, nil
}

// Probe implements Prober.
func (p *APIProber) Probe(ctx context.Context) (State, error) {
	st, _, err := p.ProbeReason(ctx)
	return st, err
}

// ProbeReason implements ReasonProber: a /readyz that fails says so, with
// its status code and the checks it lists as failed.
func (p *APIProber) ProbeReason(ctx context.Context) (State, string, error) {
	hc, server, token, err := p.client()
	if err != nil {
		return "", "", err
	}
	get := func(path string) ([]byte, int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, server.JoinPath(path).String(), nil)
		if err != nil {
			return nil, 0, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return body, resp.StatusCode, err
	}
	body, code, err := get("/readyz")
	if err != nil {
		return "", "", fmt.Errorf("GET /readyz: %w", err)
	}
	if code != http.StatusOK {
		return StateRunning, readyzReason(code, body, p.Kubeconfig), nil
	}
	if p.NoNode {
		return StateReady, "", nil
	}
	if p.NodeName == "" {
		return "", "", errors.New("no node name to check")
	}
	body, code, err = get("/api/v1/nodes/" + url.PathEscape(p.NodeName))
	if err != nil {
		return "", "", fmt.Errorf("GET node %s: %w", p.NodeName, err)
	}
	if code == http.StatusNotFound {
		return StateRunning, "", nil // not registered yet
	}
	if code != http.StatusOK {
		return "", "", fmt.Errorf("GET node %s: HTTP %d: %s", p.NodeName, code, strings.TrimSpace(string(body)))
	}
	var since time.Time
	if ns := p.runStart.Load(); ns != 0 {
		since = time.Unix(0, ns)
	}
	ready, err := nodeReady(body, since)
	if err != nil {
		return "", "", err
	}
	if ready {
		return StateReady, "", nil
	}
	return StateRunning, "", nil
}

// maxReadyzChecks bounds the failed checks' text a /readyz reason carries
// (a K3s coming up lists a dozen post-start hooks).
const maxReadyzChecks = 300

// readyzReason says why /readyz answered code: the checks its body lists
// as failed ("[-]etcd failed: reason withheld"), at most maxReadyzChecks
// bytes of them; for a request refused (401, 403), that the kubeconfig's
// credentials are; else the body's first line (or a Status's message).
func readyzReason(code int, body []byte, kubeconfig string) string {
	var failed []string
	for l := range strings.Lines(string(body)) {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "[-]") {
			failed = append(failed, strings.ToValidUTF8(l, "?"))
		}
	}
	reason := fmt.Sprintf("API not ready: /readyz answers HTTP %d", code)
	if len(failed) > 0 {
		var b strings.Builder
		for i, f := range failed {
			if i > 0 && b.Len()+len(f) > maxReadyzChecks {
				fmt.Fprintf(&b, "; and %d more", len(failed)-i)
				break
			}
			if i > 0 {
				b.WriteString("; ")
			}
			if len(f) > maxReadyzChecks {
				f = strings.ToValidUTF8(f[:maxReadyzChecks], "") + "…"
			}
			b.WriteString(f)
		}
		return reason + ": " + b.String() + " (K3s's log says more: etoile-agent logs k3s)"
	}
	if code == http.StatusUnauthorized || code == http.StatusForbidden {
		return fmt.Sprintf("%s (%s): the API server refuses the credentials in %s, which K3s writes as it starts; "+
			"if this lasts, see why in K3s's log (etoile-agent logs k3s)", reason, http.StatusText(code), kubeconfig)
	}
	text := strings.TrimSpace(string(body))
	var status struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &status) == nil && status.Message != "" {
		text = status.Message
	}
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	}
	if len(text) > maxReadyzChecks {
		text = text[:maxReadyzChecks] + "…"
	}
	if text = strings.ToValidUTF8(strings.TrimSpace(text), ""); text != "" {
		reason += ": " + text
	}
	return reason
}

// nodeReady reads a v1 Node object's Ready condition: True, and (since
// not zero) reported since then — the kubelet sets its heartbeat time at
// each report, the first as it starts. The heartbeat is written to the
// second, so since counts from its second.
func nodeReady(body []byte, since time.Time) (bool, error) {
	var node struct {
		Status struct {
			Conditions []struct {
				Type          string    `json:"type"`
				Status        string    `json:"status"`
				LastHeartbeat time.Time `json:"lastHeartbeatTime"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &node); err != nil {
		return false, fmt.Errorf("node object: %w", err)
	}
	for _, c := range node.Status.Conditions {
		if c.Type == "Ready" {
			if !since.IsZero() && !c.LastHeartbeat.IsZero() && c.LastHeartbeat.Before(since.Truncate(time.Second)) {
				return false, nil // the run before's
			}
			return c.Status == "True", nil
		}
	}
	return false, nil
}
