// Command k3sstandin is a TEST DOUBLE of the K3s command line. It is not
// K3s and runs no Kubernetes: it exists because the real K3s cannot be
// downloaded in Étoile's test environment, and it is never shipped in a
// default image (`make k3s-standin` writes it to out/k3s-standin/, laid out
// like a K3s release, only for tests that ask for it by name).
//
// What it does, so that Étoile's agent can be tested end to end:
//
//   - `k3s --version` prints "k3s version <v> (standin)" like K3s, plus a line
//     saying it is the stand-in.
//   - `k3s server` and `k3s agent` take K3s's flags and config file (--config,
//     default /etc/rancher/k3s/config.yaml, and config.yaml.d/*.yaml) and
//     refuse any flag or config key that K3s v1.34 does not have, with
//     K3s's wording ("flag provided but not defined: -foo").
//   - `k3s server` writes <data-dir>/server/token and node-token (K3s's
//     K10<ca hash>::server:<password> form) and the admin kubeconfig
//     /etc/rancher/k3s/k3s.yaml (its own CA, an admin client certificate),
//     and serves HTTPS on --https-listen-port (6443; 0 picks a free port):
//     /ping, /cacerts, /livez, /readyz, /version, /api/v1/nodes and
//     /api/v1/nodes/<name> showing the Ready condition, with node labels
//     from --node-label and taints from --node-taint. Everything but /ping
//     and /cacerts needs the kubeconfig's client certificate or the token.
//   - `k3s agent --server URL --token T` trusts the server's CA through the
//     token's hash, registers its node there and keeps it Ready, and writes
//     <data-dir>/agent/kubelet.kubeconfig (a client certificate the server
//     issued; it names the server itself, where K3s names its local load
//     balancer 127.0.0.1:6444).
//   - Run as the machine's K3s (no ETOILE_K3S_STANDIN_ROOT), it checks, as
//     K3s's containerd does, that its default overlayfs snapshotter can
//     mount an overlay in <data-dir>/agent/containerd, and exits with
//     K3s's error when it cannot (a data dir on an overlay root).
//   - Run as the machine's K3s, it stops as K3s does when it must pick the
//     node's address (no node-ip, advertise-address or bind-address) and no
//     interface carries a default route.
//   - It misbehaves on request, to test supervision: crash after N seconds
//     (optionally only the first N starts), hang (run but never become
//     ready), become ready after a delay, ignore SIGTERM. See behaviour.
//
// ETOILE_K3S_STANDIN_ROOT (default "/") prefixes every absolute path it
// reads or writes, so tests run it unprivileged in a temporary folder.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// marker tells Étoile's build that this binary is the stand-in, not K3s
// (image/k3s.StandinMarker: the same text).
const marker = "etoile-k3s-standin: a test double of the K3s command line, not K3s"

// version is the K3s version the stand-in claims; mkrelease sets it with
// -ldflags "-X main.version=…" to the release it imitates.
var version = "v1.34.9+k3s1"

const (
	defaultConfigPath = "/etc/rancher/k3s/config.yaml"
	standinConfigPath = "/etc/rancher/k3s/standin.yaml"
	defaultDataDir    = "/var/lib/rancher/k3s"
	defaultKubeconfig = "/etc/rancher/k3s/k3s.yaml"
	envRoot           = "ETOILE_K3S_STANDIN_ROOT"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	os.Exit(run(context.Background(), invocation{
		args: os.Args, getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr, signals: sig,
	}))
}

// invocation is everything run needs from the process, so tests can call
// it in-process.
type invocation struct {
	args    []string
	getenv  func(string) string
	stdout  io.Writer
	stderr  io.Writer
	signals <-chan os.Signal
	// ready, when set, is called with the server's address once it listens.
	listening func(addr string)
}

// logger writes logrus-style lines, as K3s does, so log readers written
// against K3s's output work on the stand-in's.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logger) log(level, format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := fmt.Sprintf(format, a...)
	fmt.Fprintf(l.w, "time=%q level=%s msg=%q\n", time.Now().UTC().Format(time.RFC3339), level, msg)
}

func (l *logger) infof(format string, a ...any)  { l.log("info", format, a...) }
func (l *logger) warnf(format string, a ...any)  { l.log("warning", format, a...) }
func (l *logger) fatalf(format string, a ...any) { l.log("fatal", format, a...) }

func run(ctx context.Context, inv invocation) int {
	lg := &logger{w: inv.stderr}
	prog := "k3s"
	if len(inv.args) > 0 {
		prog = filepath.Base(inv.args[0])
	}
	switch prog {
	case "kubectl", "crictl", "ctr":
		lg.fatalf("%s is not part of the K3s stand-in (a test double of the K3s command line): use the real K3s", prog)
		return 1
	}
	args := inv.args[1:]
	if len(args) == 0 {
		usage(inv.stdout)
		return 0
	}
	switch args[0] {
	case "--version", "-v", "version":
		fmt.Fprintf(inv.stdout, "k3s version %s (standin)\ngo version %s\n", version, runtime.Version())
		fmt.Fprintln(inv.stdout, "stand-in: a test double of the K3s command line (Étoile qa/k3sstandin), not K3s")
		fmt.Fprintln(inv.stdout, marker)
		return 0
	case "--help", "-h", "help":
		usage(inv.stdout)
		return 0
	case "server", "agent":
		return runSub(ctx, inv, lg, args[0], args[1:])
	default:
		if strings.HasPrefix(args[0], "-") {
			lg.fatalf("flag provided but not defined: %s", args[0])
		} else {
			lg.fatalf("No help topic for '%s'", args[0])
		}
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `NAME:
   k3s - Kubernetes, but small and simple (STAND-IN: a test double, not K3s)

USAGE:
   k3s [global options] command [command options]

VERSION:
   %s (standin)

COMMANDS:
   server   Run management server
   agent    Run node agent
`, version)
}

// envFlags are the K3S_* variables K3s reads for its flags; a flag given on
// the command line or in the config wins.
var envFlags = map[string]string{
	"K3S_TOKEN":              "token",
	"K3S_TOKEN_FILE":         "token-file",
	"K3S_URL":                "server",
	"K3S_NODE_NAME":          "node-name",
	"K3S_KUBECONFIG_OUTPUT":  "write-kubeconfig",
	"K3S_KUBECONFIG_MODE":    "write-kubeconfig-mode",
	"K3S_AGENT_TOKEN":        "agent-token",
	"K3S_CLUSTER_INIT":       "cluster-init",
	"K3S_DATASTORE_ENDPOINT": "datastore-endpoint",
	"K3S_RESOLV_CONF":        "resolv-conf",
	"K3S_SELINUX":            "selinux",
}

// rooted places an absolute path under the test root. A path already
// inside the root (a test's temporary file) is left alone.
func rooted(root, p string) string {
	if root == "" || root == "/" || !filepath.IsAbs(p) {
		return p
	}
	if p == root || strings.HasPrefix(p, strings.TrimSuffix(root, "/")+"/") {
		return p
	}
	return filepath.Join(root, p)
}

// parseOptions reads the config file(s) and the command line into options.
func parseOptions(sub string, cli []string, root string, getenv func(string) string) (*options, error) {
	fs := newFlagSet(sub)
	o := &options{vals: map[string][]string{}, set: map[string]bool{}}
	// A first pass over the command line alone finds --config and rejects
	// unknown flags before any file is read.
	cliOpts := &options{vals: map[string][]string{}, set: map[string]bool{}}
	if err := fs.parseArgs(cli, cliOpts); err != nil {
		return nil, err
	}
	cfg := cliOpts.str("config", "")
	if cfg == "" {
		cfg = getenv("K3S_CONFIG_FILE")
	}
	explicit := cfg != ""
	if !explicit {
		cfg = defaultConfigPath
	}
	cfg = rooted(root, cfg)
	if explicit {
		if _, err := os.Stat(cfg); err != nil {
			return nil, fmt.Errorf("unable to read config file %s: %w", cfg, err)
		}
	}
	fileArgs, err := fs.configArgs(cfg)
	if err != nil {
		return nil, err
	}
	// K3s puts the config file's flags before the command line's, so the
	// command line wins for single values and adds to lists.
	if err := fs.parseArgs(append(fileArgs, cli...), o); err != nil {
		return nil, err
	}
	for env, name := range envFlags {
		if _, ok := fs.byName[name]; !ok || o.set[name] {
			continue
		}
		if v := getenv(env); v != "" {
			if err := checkValue(fs.byName[name], v); err != nil {
				return nil, fmt.Errorf("%s: %w", env, err)
			}
			o.vals[name] = []string{v}
			o.set[name] = true
		}
	}
	return o, nil
}

func runSub(ctx context.Context, inv invocation, lg *logger, sub string, cli []string) int {
	root := inv.getenv(envRoot)
	if root == "" {
		root = "/"
	}
	o, err := parseOptions(sub, cli, root, inv.getenv)
	if err == nil {
		err = checkAddresses(o)
	}
	if err != nil {
		lg.fatalf("%v", err)
		return 1
	}
	b, err := loadBehaviour(root, inv.getenv)
	if err != nil {
		lg.fatalf("stand-in behaviour: %v", err)
		return 1
	}
	lg.infof("Starting k3s %s %s (standin): a test double of K3s, not K3s", sub, version)
	dataDir := rooted(root, o.str("data-dir", defaultDataDir))
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		lg.fatalf("creating data dir %s: %v", dataDir, err)
		return 1
	}
	if _, err := unpackData(dataDir); err != nil {
		lg.fatalf("preparing data dir %s: %v", dataDir, err)
		return 1
	}
	// As K3s's containerd, on the machine itself (not under a test root).
	if root == "/" && o.str("snapshotter", "overlayfs") == "overlayfs" {
		if err := checkOverlaySnapshotter(dataDir); err != nil {
			lg.fatalf("%v", err)
			return 1
		}
	}
	// As K3s picking the node's address, on the machine itself.
	if root == "/" {
		if err := checkHostAddress(o, "/proc/net", nil); err != nil {
			lg.fatalf("%v", err)
			return 1
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stop func()
	if sub == "server" {
		stop, err = startServer(runCtx, inv, lg, o, b, root, dataDir)
	} else {
		stop, err = startAgent(runCtx, inv, lg, o, b, root, dataDir)
	}
	if err != nil {
		lg.fatalf("%v", err)
		return 1
	}
	if b.Syslog != "" && root == "/" {
		if err := sendSyslog("/dev/log", b.Syslog); err != nil {
			lg.warnf("stand-in: sending to syslog: %v", err)
		}
	}
	if b.KernelCheck && root == "/" {
		go func() {
			text := kernelCheck(runCtx, "/sbin/modprobe", dataDir)
			lg.infof("stand-in: %s", text)
			if err := sendSyslog("/dev/log", text); err != nil {
				lg.warnf("stand-in: sending to syslog: %v", err)
			}
		}()
	}
	if b.Deploy && root == "/" && sub == "server" {
		text := deployCheck(filepath.Join(dataDir, "server", "manifests"))
		lg.infof("stand-in: %s", text)
		if err := sendSyslog("/dev/log", text); err != nil {
			lg.warnf("stand-in: sending to syslog: %v", err)
		}
	}
	if len(b.Fetch) > 0 && root == "/" {
		go func() {
			for _, u := range b.Fetch {
				text := fetchOutcome(runCtx, http.DefaultClient, u, 30*time.Second)
				lg.infof("stand-in: %s", text)
				if err := sendSyslog("/dev/log", text); err != nil {
					lg.warnf("stand-in: sending to syslog: %v", err)
				}
			}
		}()
	}
	return waitLoop(ctx, lg, b, filepath.Join(dataDir, "standin-crashes"), inv.signals, func() { cancel(); stop() })
}

// fetchOutcome GETs url with client and says how it went, in one line:
// standin-fetch-ok url=… status=N, or standin-fetch-failed url=…
// reason=…. A connection that fails is tried again until patience runs
// out (the network may still be coming up); a certificate that is not
// trusted is an answer at once.
func fetchOutcome(ctx context.Context, client *http.Client, url string, patience time.Duration) string {
	deadline := time.Now().Add(patience)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Sprintf("standin-fetch-failed url=%s reason=%q", url, err.Error())
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return fmt.Sprintf("standin-fetch-ok url=%s status=%d", url, resp.StatusCode)
		}
		var unknown x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		var host x509.HostnameError
		if errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &host) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Sprintf("standin-fetch-failed url=%s reason=%q", url, err.Error())
		}
		time.Sleep(time.Second)
	}
}

// sendSyslog sends text to the syslog socket at path as the C library's
// syslog(3) does: one datagram, user facility, severity err, RFC 3164 with
// the tag and pid and no host name.
func sendSyslog(path, text string) error {
	c, err := net.Dial("unixgram", path)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = fmt.Fprintf(c, "<11>%s k3s-standin[%d]: %s", time.Now().Format(time.Stamp), os.Getpid(), text)
	return err
}

// waitLoop runs until the context ends, a signal stops the process, or the
// behaviour says to crash.
func waitLoop(ctx context.Context, lg *logger, b behaviour, counter string, sig <-chan os.Signal, stop func()) int {
	var crash <-chan time.Time
	if b.CrashAfter > 0 {
		n := readCount(counter)
		if b.CrashTimes == 0 || n < b.CrashTimes {
			crash = time.After(b.CrashAfter)
		} else {
			lg.infof("stand-in: crashed %d time(s) already, as told (crashTimes=%d); staying up", n, b.CrashTimes)
		}
	}
	for {
		select {
		case <-ctx.Done():
			stop()
			return 0
		case s := <-sig:
			if s == syscall.SIGTERM && b.IgnoreSIGTERM {
				lg.warnf("stand-in: ignoring %v as told (ignoreSigterm); only SIGKILL stops me", s)
				continue
			}
			lg.infof("Received %v signal, shutting down", s)
			stop()
			return 0
		case <-crash:
			n := readCount(counter) + 1
			_ = os.WriteFile(counter, fmt.Appendf(nil, "%d\n", n), 0o644)
			if b.OOM {
				if why := inTestVM(); why != "" {
					lg.fatalf("stand-in: k3sstandin.oom acts only in a test VM, under an agent that is PID 1 and booted with it on the kernel command line (%s): not taking this machine's memory", why)
					stop()
					return 1
				}
				lg.warnf("stand-in: taking memory until the kernel's OOM killer ends me, as told (k3sstandin.oom, crash %d)", n)
				exhaustMemory()
				lg.fatalf("stand-in: the OOM killer did not come")
				stop()
				return 1
			}
			lg.fatalf("stand-in: crashing as told (crashAfter=%s, crash %d), exit status %d", b.CrashAfter, n, b.ExitCode)
			stop()
			return b.ExitCode
		}
	}
}

// inTestVM says why this is not a test VM whose agent started the stand-in
// told to be OOM-killed, "" when it is: the parent is PID 1, PID 1 is the
// agent (run as /init) and the kernel's command line asks for it. A
// variable: the tests make it refuse whatever runs them.
var inTestVM = func() string {
	if os.Getppid() != 1 {
		return "the parent is not PID 1"
	}
	if comm, err := os.ReadFile("/proc/1/comm"); err != nil || strings.TrimSpace(string(comm)) != "init" {
		return "PID 1 is not the agent run as /init"
	}
	if cmdline, err := os.ReadFile("/proc/cmdline"); err != nil || !slices.Contains(strings.Fields(string(cmdline)), "k3sstandin.oom") {
		return "k3sstandin.oom is not on the kernel command line"
	}
	return ""
}

// exhaustMemory takes and touches memory, 16 MiB at a time, until the
// kernel kills the process; it returns only after the machine's whole memory
// (MemTotal) and 1 GiB more were taken without that.
func exhaustMemory() {
	limit := uint64(1 << 30)
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb uint64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			limit += kb << 10
		}
	}
	var held [][]byte
	for taken := uint64(0); taken < limit; taken += 16 << 20 {
		chunk := make([]byte, 16<<20)
		for i := 0; i < len(chunk); i += 4096 {
			chunk[i] = 1
		}
		held = append(held, chunk)
	}
	_ = len(held)
}

func readCount(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var n int
	fmt.Sscan(string(data), &n)
	return n
}
