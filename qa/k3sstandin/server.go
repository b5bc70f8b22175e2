package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// node is one node the stand-in's API shows.
type node struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels"`
	Taints   []taint           `json:"taints,omitempty"`
	Ready    bool              `json:"ready"`
	seen     time.Time
	isServer bool
}

type taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// agentTimeout is how long an agent's node stays Ready without a heartbeat.
const agentTimeout = 15 * time.Second

type apiServer struct {
	lg        *logger
	b         behaviour
	start     time.Time
	passwords []string // accepted bearer passwords (server token, agent token)
	caPEM     []byte
	pki       *pki
	clientCAs *x509.CertPool
	version   string

	mu    sync.Mutex
	nodes map[string]*node
	self  string
}

func (s *apiServer) ready() bool {
	return !s.b.Hang && time.Since(s.start) >= s.b.ReadyDelay
}

func parseLabels(vals []string) (map[string]string, error) {
	out := map[string]string{}
	for _, l := range vals {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("invalid node-label %q: want key=value", l)
		}
		out[k] = v
	}
	return out, nil
}

func parseTaints(vals []string) ([]taint, error) {
	var out []taint
	for _, t := range vals {
		kv, effect, ok := strings.Cut(t, ":")
		k, v, _ := strings.Cut(kv, "=")
		switch effect {
		case "NoSchedule", "PreferNoSchedule", "NoExecute":
		default:
			ok = false
		}
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid node-taint %q: want key[=value]:NoSchedule|PreferNoSchedule|NoExecute", t)
		}
		out = append(out, taint{Key: k, Value: v, Effect: effect})
	}
	return out, nil
}

func nodeName(o *options) (string, error) {
	name := o.str("node-name", "")
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("no --node-name and no hostname: %w", err)
		}
		name = strings.ToLower(h)
	}
	if o.boolean("with-node-id") {
		name += "-" + caHash([]byte(name))[:8]
	}
	return name, nil
}

func writeFileMkdir(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readTokenFile(root, path string) (string, error) {
	data, err := os.ReadFile(rooted(root, path))
	if err != nil {
		return "", fmt.Errorf("reading token file: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

func startServer(ctx context.Context, inv invocation, lg *logger, o *options, b behaviour, root, dataDir string) (func(), error) {
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
	token := o.str("token", "")
	if tf := o.str("token-file", ""); tf != "" && token == "" {
		if token, err = readTokenFile(root, tf); err != nil {
			return nil, err
		}
	}
	serverDir := filepath.Join(dataDir, "server")
	password := tokenPassword(token)
	if password == "" {
		// Reuse the token of an earlier start, as K3s does.
		if data, err := os.ReadFile(filepath.Join(serverDir, "token")); err == nil {
			password = tokenPassword(string(data))
		} else {
			password = randomHex(16)
		}
	}
	mode := os.FileMode(0o600)
	if m := o.str("write-kubeconfig-mode", ""); m != "" {
		v, err := strconv.ParseUint(m, 8, 32)
		if err != nil || v > 0o777 {
			return nil, fmt.Errorf("invalid write-kubeconfig-mode %q: want an octal mode like 0644", m)
		}
		mode = os.FileMode(v)
	}

	host, _ := os.Hostname()
	sans := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", name}
	if host != "" {
		sans = append(sans, strings.ToLower(host))
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	for _, s := range append(o.list("tls-san"), append(o.list("node-ip"), o.list("advertise-address")...)...) {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else {
			sans = append(sans, s)
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				ips = append(ips, n.IP)
			}
		}
	}
	p, err := loadOrCreatePKI(filepath.Join(serverDir, "tls"), sans, ips)
	if err != nil {
		return nil, fmt.Errorf("stand-in certificates: %w", err)
	}
	full := fullToken(p.caPEM, "server", password)
	for _, f := range []string{"token", "node-token"} {
		if err := writeFileMkdir(filepath.Join(serverDir, f), []byte(full+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	passwords := []string{password}
	agentTok := o.str("agent-token", "")
	if f := o.str("agent-token-file", ""); f != "" && agentTok == "" {
		if agentTok, err = readTokenFile(root, f); err != nil {
			return nil, err
		}
	}
	if agentTok != "" {
		passwords = append(passwords, tokenPassword(agentTok))
		if err := writeFileMkdir(filepath.Join(serverDir, "agent-token"), []byte(fullToken(p.caPEM, "node", tokenPassword(agentTok))+"\n"), 0o600); err != nil {
			return nil, err
		}
	}

	port := o.integer("https-listen-port", 6443)
	ln, err := net.Listen("tcp", net.JoinHostPort(o.str("bind-address", ""), strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("starting kubernetes: preparing server: listen tcp :%d: %w", port, err)
	}
	actual := ln.Addr().(*net.TCPAddr).Port
	kcPath := rooted(root, o.str("write-kubeconfig", defaultKubeconfig))
	if err := writeFileMkdir(kcPath, kubeconfig(fmt.Sprintf("https://127.0.0.1:%d", actual), p), mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("writing kubeconfig %s: %w", kcPath, err)
	}
	lg.infof("Wrote kubeconfig %s", kcPath)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caPEM)
	nodeLabels := map[string]string{
		"kubernetes.io/hostname":                name,
		"kubernetes.io/os":                      "linux",
		"kubernetes.io/arch":                    "amd64",
		"node.kubernetes.io/instance-type":      "k3s",
		"node-role.kubernetes.io/control-plane": "true",
	}
	if o.boolean("cluster-init") || o.str("server", "") != "" {
		nodeLabels["node-role.kubernetes.io/etcd"] = "true"
	}
	for k, v := range labels {
		nodeLabels[k] = v
	}
	s := &apiServer{
		lg: lg, b: b, start: time.Now(), passwords: passwords, caPEM: p.caPEM, pki: p, clientCAs: pool, version: version,
		nodes: map[string]*node{name: {Name: name, Labels: nodeLabels, Taints: taints, isServer: true}},
		self:  name,
	}
	srv := &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(logWriter{lg}, "", 0),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{p.serverCert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
		},
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			lg.warnf("stand-in API server: %v", err)
		}
	}()
	lg.infof("Running kube-apiserver (standin) on %s, node %s", ln.Addr(), name)
	if inv.listening != nil {
		inv.listening(ln.Addr().String())
	}
	go func() {
		if b.Hang {
			lg.warnf("stand-in: hanging as told (hang): never becoming ready")
			return
		}
		select {
		case <-time.After(b.ReadyDelay):
			lg.infof("k3s is up and running")
		case <-ctx.Done():
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}

func (s *apiServer) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pong") })
	mux.HandleFunc("GET /cacerts", func(w http.ResponseWriter, r *http.Request) { w.Write(s.caPEM) })
	mux.HandleFunc("GET /livez", s.auth(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	mux.HandleFunc("GET /healthz", s.auth(s.readyz))
	mux.HandleFunc("GET /readyz", s.auth(s.readyz))
	mux.HandleFunc("GET /version", s.auth(func(w http.ResponseWriter, r *http.Request) {
		major, minor := "1", ""
		if parts := strings.SplitN(strings.TrimPrefix(s.version, "v"), ".", 3); len(parts) >= 2 {
			major, minor = parts[0], parts[1]
		}
		writeJSON(w, http.StatusOK, map[string]string{"major": major, "minor": minor, "gitVersion": s.version, "platform": "linux/amd64"})
	}))
	mux.HandleFunc("GET /api/v1/nodes", s.auth(s.listNodes))
	mux.HandleFunc("GET /api/v1/nodes/{name}", s.auth(s.getNode))
	mux.HandleFunc("POST /v1-k3s/standin-join", s.auth(s.join))
	mux.HandleFunc("/", s.auth(func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource (the K3s stand-in serves only /readyz, /livez, /version and /api/v1/nodes)")
	}))
	return mux
}

// auth admits the kubeconfig's client certificate (verified by the TLS
// layer against the stand-in CA) or a bearer token with the cluster's
// password, as the Kubernetes API admits certificates and tokens.
func (s *apiServer) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			h(w, r)
			return
		}
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			pw := tokenPassword(tok)
			for _, p := range s.passwords {
				if pw != "" && pw == p {
					h(w, r)
					return
				}
			}
		}
		writeStatus(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
	}
}

func (s *apiServer) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready() {
		w.WriteHeader(http.StatusInternalServerError)
		reason := "starting"
		if s.b.Hang {
			reason = "hanging as told"
		}
		fmt.Fprintf(w, "[-]standin failed: %s\nreadyz check failed\n", reason)
		return
	}
	if _, verbose := r.URL.Query()["verbose"]; verbose {
		io.WriteString(w, "[+]ping ok\n[+]standin ok\nreadyz check passed\n")
		return
	}
	io.WriteString(w, "ok")
}

func (s *apiServer) join(w http.ResponseWriter, r *http.Request) {
	var n node
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&n); err != nil || n.Name == "" {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "want a JSON node with a name")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.nodes[n.Name]; ok && old.isServer {
		writeStatus(w, http.StatusConflict, "AlreadyExists", fmt.Sprintf("node %q is the server's own", n.Name))
		return
	}
	if _, ok := s.nodes[n.Name]; !ok {
		s.lg.infof("stand-in: agent node %s joined", n.Name)
	}
	n.seen = time.Now()
	s.nodes[n.Name] = &n
	// Like K3s's supervisor, hand the agent a kubelet client certificate
	// signed by the cluster CA, for its kubelet.kubeconfig.
	cert, key, err := s.pki.issue(pkix.Name{CommonName: "system:node:" + n.Name, Organization: []string{"system:nodes"}},
		nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, joinAnswer{Cert: string(cert), Key: string(key)})
}

// joinAnswer is what an agent gets back for registering.
type joinAnswer struct {
	Cert string `json:"cert"` // kubelet client certificate, PEM
	Key  string `json:"key"`
}

// nodeObject renders a node as a minimal v1.Node.
func (s *apiServer) nodeObject(n *node) map[string]any {
	ready := s.ready()
	reason, msg := "KubeletReady", "kubelet is posting ready status"
	if !n.isServer {
		ready = n.Ready && time.Since(n.seen) < agentTimeout
	}
	status := "True"
	if !ready {
		status, reason, msg = "False", "KubeletNotReady", "container runtime status check may not have completed yet"
		if !n.isServer && time.Since(n.seen) >= agentTimeout {
			status, reason, msg = "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."
		}
	}
	now := time.Now().UTC().Format(time.RFC3339)
	obj := map[string]any{
		"kind":       "Node",
		"apiVersion": "v1",
		"metadata": map[string]any{
			"name":              n.Name,
			"labels":            n.Labels,
			"creationTimestamp": s.start.UTC().Format(time.RFC3339),
			"annotations":       map[string]string{"etoile.io/k3s-standin": "true"},
		},
		"spec": map[string]any{},
		"status": map[string]any{
			"conditions": []map[string]string{{
				"type": "Ready", "status": status, "reason": reason, "message": msg,
				"lastHeartbeatTime": now, "lastTransitionTime": s.start.UTC().Format(time.RFC3339),
			}},
			"nodeInfo": map[string]string{
				"kubeletVersion": s.version, "kubeProxyVersion": s.version,
				"containerRuntimeVersion": "standin://0", "operatingSystem": "linux", "architecture": "amd64",
			},
		},
	}
	if len(n.Taints) > 0 {
		obj["spec"] = map[string]any{"taints": n.Taints}
	}
	return obj
}

func (s *apiServer) getNode(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.mu.Lock()
	n, ok := s.nodes[name]
	var obj map[string]any
	if ok {
		obj = s.nodeObject(n)
	}
	s.mu.Unlock()
	if !ok {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("nodes %q not found", name))
		return
	}
	writeJSON(w, http.StatusOK, obj)
}

func (s *apiServer) listNodes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	names := make([]string, 0, len(s.nodes))
	for k := range s.nodes {
		names = append(names, k)
	}
	sort.Strings(names)
	items := []map[string]any{}
	for _, k := range names {
		items = append(items, s.nodeObject(s.nodes[k]))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"kind": "NodeList", "apiVersion": "v1", "metadata": map[string]any{}, "items": items})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeStatus answers with a Kubernetes Status object, as the API does.
func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code,
	})
}

// logWriter sends net/http's own messages (TLS handshake errors) to the
// K3s-style log.
type logWriter struct{ lg *logger }

func (l logWriter) Write(p []byte) (int, error) {
	l.lg.warnf("%s", strings.TrimSpace(string(p)))
	return len(p), nil
}
