package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/syslogd"
	"github.com/etoile-os/etoile/internal/syncbuf"
	"github.com/etoile-os/etoile/internal/testca"
)

var fast = map[string]string{"ETOILE_K3S_STANDIN_READY_DELAY": "0"}

// TestStandinServerAPI: the server writes K3s's token and kubeconfig, and
// answers /readyz and the node API over real TLS to the kubeconfig's
// client certificate or the token, and to nothing else.
func TestStandinServerAPI(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, defaultConfigPath), "node-label:\n  - etoile.io/site=lab\nnode-taint: dedicated=gpu:NoSchedule\n")
	s := startStandin(t, root, fast, "server", "--https-listen-port", "0", "--node-name", "edge-1",
		"--node-label", "etoile.io/gpu.vendor=nvidia", "--cluster-init")
	kc := filepath.Join(root, defaultKubeconfig)
	waitFor(t, 5*time.Second, "the kubeconfig", func() bool { _, err := os.Stat(kc); return err == nil })
	if st, _ := os.Stat(kc); st.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v, want 0600 (K3s's default)", st.Mode().Perm())
	}
	client, server := kubeClient(t, kc, true)
	if !strings.HasPrefix(server, "https://127.0.0.1:") || !strings.HasSuffix(s.addr, server[strings.LastIndex(server, ":"):]) {
		t.Errorf("kubeconfig server %q does not match the listener %s", server, s.addr)
	}

	waitFor(t, 5*time.Second, "/readyz", func() bool { code, _ := get(t, client, server+"/readyz", ""); return code == 200 })
	if code, body := get(t, client, server+"/readyz", ""); string(body) != "ok" {
		t.Errorf("/readyz = %d %q, want 200 ok", code, body)
	}
	status, labels, taints := nodeReady(t, client, server, "edge-1")
	if status != "True" {
		t.Errorf("node Ready = %s, want True", status)
	}
	for k, v := range map[string]string{"etoile.io/gpu.vendor": "nvidia", "etoile.io/site": "lab", "kubernetes.io/hostname": "edge-1",
		"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/etcd": "true"} {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q (all: %v)", k, labels[k], v, labels)
		}
	}
	if len(taints) != 1 || taints[0] != (taint{Key: "dedicated", Value: "gpu", Effect: "NoSchedule"}) {
		t.Errorf("taints = %+v", taints)
	}
	if code, body := get(t, client, server+"/api/v1/nodes/other", ""); code != 404 || !strings.Contains(string(body), `nodes \"other\" not found`) {
		t.Errorf("unknown node: %d %s", code, body)
	}
	if code, body := get(t, client, server+"/api/v1/nodes", ""); code != 200 || !strings.Contains(string(body), `"NodeList"`) {
		t.Errorf("node list: %d %s", code, body)
	}

	// The token: K10<sha256 of the CA>::server:<password>, in both files.
	tok, err := os.ReadFile(filepath.Join(root, defaultDataDir, "server", "node-token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))
	ca, _ := os.ReadFile(filepath.Join(root, defaultDataDir, "server", "tls", "server-ca.crt"))
	if !strings.HasPrefix(token, "K10"+caHash(ca)+"::server:") {
		t.Errorf("node-token %q is not K10<ca hash>::server:<password>", token)
	}
	if other, _ := os.ReadFile(filepath.Join(root, defaultDataDir, "server", "token")); strings.TrimSpace(string(other)) != token {
		t.Errorf("server/token %q differs from node-token %q", other, token)
	}

	// Without the client certificate: only the token opens the API.
	anon, _ := kubeClient(t, kc, false)
	for _, tc := range []struct {
		bearer string
		want   int
	}{{"", 401}, {"wrong", 401}, {token, 200}, {tokenPassword(token), 200}} {
		if code, body := get(t, anon, server+"/readyz", tc.bearer); code != tc.want {
			t.Errorf("/readyz with bearer %q: %d %s, want %d", tc.bearer, code, body, tc.want)
		}
	}
	if code, _ := get(t, anon, server+"/ping", ""); code != 200 {
		t.Errorf("/ping without credentials: %d, want 200 (K3s serves it to anyone)", code)
	}
	mustContain(t, "log", s.stderr.String(), "k3s is up and running", "(standin)")
}

// TestStandinServerRestartKeepsCluster: a restarted server keeps its CA and
// token, so a supervisor's restart does not invalidate the kubeconfig.
func TestStandinServerRestartKeepsCluster(t *testing.T) {
	root := t.TempDir()
	s := startStandin(t, root, fast, "server", "--https-listen-port", "0", "--node-name", "n1")
	tokPath := filepath.Join(root, defaultDataDir, "server", "node-token")
	waitFor(t, 5*time.Second, "the token", func() bool { _, err := os.Stat(tokPath); return err == nil })
	tok1, _ := os.ReadFile(tokPath)
	ca1, _ := os.ReadFile(filepath.Join(root, defaultDataDir, "server", "tls", "server-ca.crt"))
	s.cancel()
	<-s.done
	s.done <- 0 // for the cleanup
	startStandin(t, root, fast, "server", "--https-listen-port", "0", "--node-name", "n1")
	tok2, _ := os.ReadFile(tokPath)
	ca2, _ := os.ReadFile(filepath.Join(root, defaultDataDir, "server", "tls", "server-ca.crt"))
	if string(tok1) != string(tok2) || string(ca1) != string(ca2) {
		t.Error("the restarted stand-in has a new token or CA")
	}
	client, server := kubeClient(t, filepath.Join(root, defaultKubeconfig), true)
	waitFor(t, 5*time.Second, "/readyz after restart", func() bool { code, _ := get(t, client, server+"/readyz", ""); return code == 200 })
}

// TestStandinAgentJoins: an agent given the server's node-token trusts its
// CA by the token's hash, registers, and its node turns Ready.
func TestStandinAgentJoins(t *testing.T) {
	sroot := t.TempDir()
	s := startStandin(t, sroot, fast, "server", "--https-listen-port", "0", "--node-name", "srv")
	tokPath := filepath.Join(sroot, defaultDataDir, "server", "node-token")
	waitFor(t, 5*time.Second, "the token", func() bool { _, err := os.Stat(tokPath); return err == nil })
	url := "https://127.0.0.1" + s.addr[strings.LastIndex(s.addr, ":"):]

	aroot := t.TempDir()
	writeFile(t, filepath.Join(aroot, "/etc/rancher/k3s/token"), "")
	cp, _ := os.ReadFile(tokPath)
	writeFile(t, filepath.Join(aroot, "/etc/rancher/k3s/token"), string(cp))
	writeFile(t, filepath.Join(aroot, defaultConfigPath), "server: "+url+"\ntoken-file: /etc/rancher/k3s/token\nnode-label: [role=worker]\n")
	startStandin(t, aroot, fast, "agent", "--node-name", "worker-1")

	client, server := kubeClient(t, filepath.Join(sroot, defaultKubeconfig), true)
	var labels map[string]string
	waitFor(t, 10*time.Second, "worker-1 Ready on the server", func() bool {
		code, _ := get(t, client, server+"/api/v1/nodes/worker-1", "")
		if code != 200 {
			return false
		}
		var st string
		st, labels, _ = nodeReady(t, client, server, "worker-1")
		return st == "True"
	})
	if labels["role"] != "worker" {
		t.Errorf("agent node labels %v, want role=worker", labels)
	}
	// The agent's kubelet.kubeconfig opens the API to its own node.
	kkc := filepath.Join(aroot, defaultDataDir, "agent", "kubelet.kubeconfig")
	waitFor(t, 5*time.Second, "kubelet.kubeconfig", func() bool { _, err := os.Stat(kkc); return err == nil })
	kc, kserver := kubeClient(t, kkc, true)
	if kserver != url {
		t.Errorf("kubelet.kubeconfig names %s, want the server %s", kserver, url)
	}
	if code, body := get(t, kc, kserver+"/readyz", ""); code != 200 {
		t.Errorf("/readyz with the agent's kubeconfig: %d %s", code, body)
	}
	if st, _, _ := nodeReady(t, kc, kserver, "worker-1"); st != "True" {
		t.Errorf("worker-1 Ready = %s through the agent's kubeconfig", st)
	}

	// A token for another CA is refused, as K3s refuses it.
	broot := t.TempDir()
	bad := "K10" + strings.Repeat("0", 64) + "::server:" + tokenPassword(string(cp))
	b := startStandin(t, broot, fast, "agent", "--server", url, "--token", bad, "--node-name", "intruder")
	waitFor(t, 5*time.Second, "the CA hash error", func() bool {
		return strings.Contains(b.stderr.String(), "token CA hash does not match")
	})
}

// TestStandinCrashAfter: told to crash, the stand-in exits with the status
// asked for after the delay; with crashTimes, later starts stay up.
func TestStandinCrashAfter(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, standinConfigPath), "crashAfter: 300ms\ncrashTimes: 1\nexitCode: 3\n")
	start := time.Now()
	s := startStandin(t, root, nil, "server", "--https-listen-port", "0")
	select {
	case code := <-s.done:
		s.done <- code
		if code != 3 {
			t.Errorf("exit status %d, want 3", code)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("crashed after %s, before the 300ms it was told", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not crash within 10s")
	}
	mustContain(t, "log", s.stderr.String(), "crashing as told", "level=fatal")

	// Second start: the one allowed crash has happened; it stays up.
	s2 := startStandin(t, root, nil, "server", "--https-listen-port", "0")
	select {
	case code := <-s2.done:
		s2.done <- code
		t.Fatalf("second start exited with %d; crashTimes=1 should keep it up", code)
	case <-time.After(1 * time.Second):
	}
	mustContain(t, "log", s2.stderr.String(), "staying up")
}

// TestStandinHang: told to hang, the server runs and answers but never
// becomes ready, and its node stays NotReady.
func TestStandinHang(t *testing.T) {
	root := t.TempDir()
	s := startStandin(t, root, map[string]string{"ETOILE_K3S_STANDIN_HANG": "1", "ETOILE_K3S_STANDIN_READY_DELAY": "0"},
		"server", "--https-listen-port", "0", "--node-name", "stuck")
	kc := filepath.Join(root, defaultKubeconfig)
	waitFor(t, 5*time.Second, "the kubeconfig", func() bool { _, err := os.Stat(kc); return err == nil })
	client, server := kubeClient(t, kc, true)
	time.Sleep(300 * time.Millisecond)
	if code, body := get(t, client, server+"/readyz", ""); code != 500 || !strings.Contains(string(body), "readyz check failed") {
		t.Errorf("/readyz while hanging: %d %q, want 500 readyz check failed", code, body)
	}
	if code, _ := get(t, client, server+"/livez", ""); code != 200 {
		t.Errorf("/livez while hanging: %d, want 200 (alive, not ready)", code)
	}
	if st, _, _ := nodeReady(t, client, server, "stuck"); st != "False" {
		t.Errorf("node Ready = %s, want False", st)
	}
	select {
	case code := <-s.done:
		s.done <- code
		t.Fatalf("hanging stand-in exited with %d", code)
	default:
	}
	if strings.Contains(s.stderr.String(), "k3s is up and running") {
		t.Error("hanging stand-in logged that it is up and running")
	}
}

// TestStandinSignals: SIGTERM stops it with status 0; told to ignore
// SIGTERM it keeps running.
func TestStandinSignals(t *testing.T) {
	s := startStandin(t, t.TempDir(), fast, "server", "--https-listen-port", "0")
	s.signals <- syscall.SIGTERM
	select {
	case code := <-s.done:
		s.done <- code
		if code != 0 {
			t.Errorf("exit status after SIGTERM %d, want 0", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not stop on SIGTERM")
	}
	s2 := startStandin(t, t.TempDir(), map[string]string{"ETOILE_K3S_STANDIN_IGNORE_SIGTERM": "true"}, "server", "--https-listen-port", "0")
	s2.signals <- syscall.SIGTERM
	waitFor(t, 10*time.Second, "the signal to be ignored", func() bool {
		return strings.Contains(s2.stderr.String(), "ignoring terminated as told")
	})
	select {
	case code := <-s2.done:
		s2.done <- code
		t.Fatalf("exited with %d despite ignoreSigterm", code)
	case <-time.After(time.Second):
	}
}

func TestStandinBehaviourSources(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		file    string
		env     map[string]string
		want    behaviour
		wantErr string
	}{
		{name: "defaults", want: behaviour{ReadyDelay: defaultReadyDelay, ExitCode: 1}},
		{name: "cmdline", cmdline: "quiet k3sstandin.crash_after=5 k3sstandin.crash_times=2 k3sstandin.hang k3sstandin.ignore_sigterm k3sstandin.oom k3sstandin.syslog=hello k3sstandin.fetch=https://a.test/v2/ k3sstandin.fetch=https://b.test:5000/ k3sstandin.kernel_check",
			want: behaviour{CrashAfter: 5 * time.Second, CrashTimes: 2, Hang: true, IgnoreSIGTERM: true, ReadyDelay: defaultReadyDelay, ExitCode: 1, OOM: true, Syslog: "hello",
				Fetch: []string{"https://a.test/v2/", "https://b.test:5000/"}, KernelCheck: true}},
		{name: "file over cmdline", cmdline: "k3sstandin.crash_after=5", file: "crashAfter: 1500ms\nhang: false\nreadyDelay: 2\n",
			want: behaviour{CrashAfter: 1500 * time.Millisecond, ReadyDelay: 2 * time.Second, ExitCode: 1}},
		{name: "env over file", file: "crashAfter: 9\n", env: map[string]string{"ETOILE_K3S_STANDIN_CRASH_AFTER": "0.5", "ETOILE_K3S_STANDIN_EXIT_CODE": "137"},
			want: behaviour{CrashAfter: 500 * time.Millisecond, ReadyDelay: defaultReadyDelay, ExitCode: 137}},
		{name: "unknown file key", file: "crashafter: 1\n", wantErr: "crashafter"},
		{name: "bad duration", env: map[string]string{"ETOILE_K3S_STANDIN_CRASH_AFTER": "soon"}, wantErr: "CRASH_AFTER"},
		{name: "negative", file: "crashAfter: -1\n", wantErr: "negative"},
		{name: "unknown cmdline", cmdline: "k3sstandin.explode=1", wantErr: "k3sstandin.explode"},
		{name: "fetch not https", cmdline: "k3sstandin.fetch=http://a.test/", wantErr: `k3sstandin.fetch: "http://a.test/": give an https:// URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := behaviour{ReadyDelay: defaultReadyDelay, ExitCode: 1}
			err := b.applyCmdline(tt.cmdline)
			if err == nil && tt.file != "" {
				err = b.applyFile([]byte(tt.file))
			}
			if err == nil {
				err = b.applyEnv(envFunc("", tt.env))
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(b, tt.want) {
				t.Errorf("got %+v, want %+v", b, tt.want)
			}
		})
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// standinBinary builds the stand-in once, static as mkrelease builds it.
func standinBinary(t *testing.T) string {
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "k3s-standin-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "k3s")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = err
			binPath = string(out)
		}
	})
	if binErr != nil {
		t.Fatalf("building the stand-in (needs the Go toolchain): %v\n%s", binErr, binPath)
	}
	return binPath
}

// TestStandinProcessCrashAndKill runs the built binary as a supervisor
// would: a crash is a non-zero exit status; a stand-in ignoring SIGTERM
// dies only by SIGKILL.
func TestStandinProcessCrashAndKill(t *testing.T) {
	bin := standinBinary(t)
	root := t.TempDir()
	cmd := exec.Command(bin, "server", "--https-listen-port", "0")
	cmd.Env = []string{envRoot + "=" + root, "ETOILE_K3S_STANDIN_CRASH_AFTER=1"}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("crashing stand-in: %v, want exit status 1\n%s", err, out)
	}
	mustContain(t, "output", string(out), "crashing as told")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd = exec.CommandContext(ctx, bin, "server", "--https-listen-port", "0")
	cmd.Env = []string{envRoot + "=" + t.TempDir(), "ETOILE_K3S_STANDIN_IGNORE_SIGTERM=1"}
	var log syncbuf.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the stand-in to start", func() bool { return strings.Contains(log.String(), "Running kube-apiserver") })
	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waitFor(t, 10*time.Second, "the signal to be ignored", func() bool { return strings.Contains(log.String(), "ignoring terminated as told") })
	select {
	case err := <-exited:
		t.Fatalf("exited on SIGTERM (%v) despite ignoreSigterm", err)
	case <-time.After(time.Second):
	}
	cmd.Process.Kill()
	if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("after SIGKILL: %v, want killed", err)
	}
}

// TestStandinOOMRefusedOutsideAVM: told to be OOM-killed, the stand-in takes
// no memory unless an agent that is PID 1 started it (a test VM): here it
// exits with status 1 and says why.
func TestStandinOOMRefusedOutsideAVM(t *testing.T) {
	// Whatever runs the tests (a container whose PID 1 is go, say), the
	// check says no: the memory is never taken here.
	was := inTestVM
	inTestVM = func() string { return "a unit test" }
	t.Cleanup(func() { inTestVM = was })
	if why := was(); why == "" {
		t.Fatal("this machine passes for a test VM told to be OOM-killed")
	}
	var out syncbuf.Buffer
	lg := &logger{w: &out}
	counter := filepath.Join(t.TempDir(), "standin-crashes")
	code := waitLoop(context.Background(), lg, behaviour{CrashAfter: time.Millisecond, OOM: true, ExitCode: 7}, counter, nil, func() {})
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	mustContain(t, "log", out.String(), "acts only in a test VM", "(a unit test)", "not taking this machine's memory")
}

// TestSendSyslog: the message reaches a syslog socket in the form the
// agent's /dev/log reads (syslog(3)'s).
func TestSendSyslog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := sendSyslog(path, "disk-checked"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := syslogd.Parse(buf[:n])
	if m.App != "k3s-standin" || m.PID != strconv.Itoa(os.Getpid()) || m.SeverityName() != "err" || m.Text != "disk-checked" {
		t.Errorf("parsed %+v from %q", m, buf[:n])
	}
}

// TestFetchOutcome: the stand-in's k3sstandin.fetch reports a trusted
// server's answer, refuses an untrusted certificate at once (as
// containerd's pull does), and gives up on an unreachable server once its
// patience runs out.
func TestFetchOutcome(t *testing.T) {
	ca, other := testca.New(t, "Site CA"), testca.New(t, "Other CA")
	srv := ca.Server(t, nil, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	if got := fetchOutcome(context.Background(), client, srv.URL+"/v2/", time.Minute); got != "standin-fetch-ok url="+srv.URL+"/v2/ status=418" {
		t.Errorf("trusted: %s", got)
	}
	untrusted := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: other.Pool()}}}
	start := time.Now()
	if got := fetchOutcome(context.Background(), untrusted, srv.URL, time.Minute); !strings.HasPrefix(got, "standin-fetch-failed url="+srv.URL+" reason=") ||
		!strings.Contains(got, "certificate signed by unknown authority") || time.Since(start) > 30*time.Second {
		t.Errorf("untrusted: %s (after %s)", got, time.Since(start))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if got := fetchOutcome(context.Background(), client, "https://"+addr+"/", 2*time.Second); !strings.Contains(got, "standin-fetch-failed") || !strings.Contains(got, "connection refused") {
		t.Errorf("unreachable: %s", got)
	}
}

// TestRootShared: the stand-in's check of / as containerd reads it: the
// optional fields of the mount on top at /.
func TestRootShared(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, info string
		ok         bool
	}{
		{"shared", "22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw\n", true},
		{"private", "22 1 0:21 / / rw,relatime - overlay overlay rw\n", false},
		{"private on top of shared", "1 0 0:1 / / rw shared:1 - rootfs rootfs rw\n22 1 0:21 / / rw,relatime - overlay overlay rw\n", false},
		{"slave only", "22 1 0:21 / / rw master:3 - overlay overlay rw\n", false},
		{"no root", "22 1 0:21 / /proc rw shared:2 - proc proc rw\n", false},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
		if err := os.WriteFile(p, []byte(tc.info), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := rootShared(p); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestUnpackData: the stand-in unpacks its data as K3s does (data/<name>,
// the current link, the previous one kept) once, and tells /bin/sh linked
// to the busybox there from any other.
func TestUnpackData(t *testing.T) {
	root := t.TempDir()
	dataDir := filepath.Join(root, "var/lib/rancher/k3s")
	if err := os.MkdirAll(filepath.Join(dataDir, "data", "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dataDir, "data", "old"), filepath.Join(dataDir, "data", "current")); err != nil {
		t.Fatal(err)
	}
	dir, err := unpackData(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if to, _ := os.Readlink(filepath.Join(dataDir, "data", "current")); to != dir {
		t.Errorf("current -> %q, want %s", to, dir)
	}
	if to, _ := os.Readlink(filepath.Join(dataDir, "data", "previous")); to != filepath.Join(dataDir, "data", "old") {
		t.Errorf("previous -> %q", to)
	}
	if again, err := unpackData(dataDir); err != nil || again != dir {
		t.Errorf("a second start: %q, %v", again, err)
	}
	if to, _ := os.Readlink(filepath.Join(dataDir, "data", "previous")); to != filepath.Join(dataDir, "data", "old") {
		t.Errorf("a second start rotated the links: previous -> %q", to)
	}
	if err := shellIsK3s(root, dataDir); err == nil || !strings.Contains(err.Error(), "/bin/sh") {
		t.Errorf("no /bin/sh: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	// As the image links it: an absolute path, resolved inside the machine.
	if err := os.Symlink(filepath.Join(dataDir, "data", "current", "bin", "busybox"), filepath.Join(root, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	if err := shellIsK3s(root, dataDir); err != nil {
		t.Errorf("/bin/sh linked to K3s's busybox: %v", err)
	}
}
