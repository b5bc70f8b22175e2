package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// heartbeat is how often an agent re-registers its node with the server.
const heartbeat = 3 * time.Second

// startAgent joins the server named by --server the way a K3s agent
// begins: it fetches /cacerts, trusts it only if its hash matches the
// token's (for K10 tokens), then registers its node and keeps it fresh.
func startAgent(ctx context.Context, inv invocation, lg *logger, o *options, b behaviour, root, dataDir string) (func(), error) {
	server := o.str("server", "")
	if server == "" {
		return nil, errors.New("--server is required")
	}
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("invalid --server %q: want https://host:6443", server)
	}
	token := o.str("token", "")
	if tf := o.str("token-file", ""); tf != "" && token == "" {
		if token, err = readTokenFile(root, tf); err != nil {
			return nil, err
		}
	}
	if token == "" {
		return nil, errors.New("--token is required")
	}
	name, err := nodeName(o)
	if err != nil {
		return nil, err
	}
	labels, err := parseLabels(o.list("node-label"))
	if err != nil {
		return nil, err
	}
	taints, err := parseTaints(o.list("node-taint"))
	if err != nil {
		return nil, err
	}
	nodeLabels := map[string]string{
		"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		"node.kubernetes.io/instance-type": "k3s",
	}
	for k, v := range labels {
		nodeLabels[k] = v
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "agent"), 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var client *agentConn
		joined := false
		kubeletKC := filepath.Join(dataDir, "agent", "kubelet.kubeconfig")
		for {
			if client == nil {
				c, err := agentClient(ctx, server, token)
				if err != nil {
					lg.infof("Waiting to retrieve agent configuration; server is not ready: %v", err)
				}
				client = c
			}
			if client != nil {
				ready := !b.Hang && time.Since(start) >= b.ReadyDelay
				n := node{Name: name, Labels: nodeLabels, Taints: taints, Ready: ready}
				ans, err := register(ctx, client.http, server, token, n)
				switch {
				case err != nil:
					lg.infof("Waiting to register node %s with the server: %v", name, err)
				case !joined:
					if err := writeKubeletKubeconfig(kubeletKC, server, client.ca, ans); err != nil {
						lg.warnf("writing %s: %v", kubeletKC, err)
						break
					}
					joined = true
					lg.infof("stand-in agent: node %s registered with %s; wrote %s", name, server, kubeletKC)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(heartbeat):
			}
		}
	}()
	if b.Hang {
		lg.warnf("stand-in: hanging as told (hang): the node will stay NotReady")
	}
	return func() { <-done }, nil
}

// agentConn is a client that trusts the server's CA, and that CA.
type agentConn struct {
	http *http.Client
	ca   []byte
}

// agentClient fetches the server's CA and returns a client that trusts it.
func agentClient(ctx context.Context, server, token string) (*agentConn, error) {
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// The CA is not known yet; the token's hash checks it below.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(server, "/")+"/cacerts", nil)
	if err != nil {
		return nil, err
	}
	resp, err := insecure.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	ca, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /cacerts: %s %v", resp.Status, err)
	}
	if h := tokenCAHash(token); h != "" && h != caHash(ca) {
		return nil, fmt.Errorf("token CA hash does not match the Cluster CA certificate hash: %s != %s", h, caHash(ca))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("GET /cacerts: no certificate in the answer")
	}
	return &agentConn{ca: ca, http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}}, nil
}

func register(ctx context.Context, c *http.Client, server, token string, n node) (*joinAnswer, error) {
	body, err := json.Marshal(n)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(server, "/")+"/v1-k3s/standin-join", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tokenPassword(token))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("server answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	var ans joinAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ans); err != nil {
		return nil, fmt.Errorf("server's join answer: %w", err)
	}
	return &ans, nil
}

// writeKubeletKubeconfig writes <data-dir>/agent/kubelet.kubeconfig, which
// K3s agents keep for their kubelet, so a supervisor on an agent node can
// ask the API about its own node. Unlike K3s (which points it at its local
// load balancer, 127.0.0.1:6444) it names the server directly.
func writeKubeletKubeconfig(path, server string, caPEM []byte, ans *joinAnswer) error {
	p := &pki{caPEM: caPEM, clientPEM: []byte(ans.Cert), clientKey: []byte(ans.Key)}
	return writeFileMkdir(path, kubeconfig(server, p), 0o600)
}
