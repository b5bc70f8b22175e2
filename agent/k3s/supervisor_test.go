package k3s

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/kmsg"
)

// The test binary doubles as a misbehaving K3s (a stand-in process, not
// K3s) when ETOILE_FAKE_K3S is set: "exit:<ms>" prints and exits 1 after
// ms; "hang" runs until SIGTERM; "stubborn" ignores SIGTERM.
func TestMain(m *testing.M) {
	switch mode := os.Getenv("ETOILE_FAKE_K3S"); {
	case strings.HasPrefix(mode, "exit:"):
		ms, _ := strconv.Atoi(strings.TrimPrefix(mode, "exit:"))
		fmt.Println("fake k3s starting", strings.Join(os.Args[1:], " "))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Println("fake k3s crashing")
		os.Exit(1)
	case mode == "fatal":
		fmt.Println(`time="2026-11-26T10:00:00Z" level=info msg="Starting k3s"`)
		fmt.Println(`time="2026-11-26T10:00:01Z" level=fatal msg="unable to find suitable network address: no default routes found in \"/proc/net/route\""`)
		os.Exit(1)
	case mode == "hang":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("fake k3s up")
		<-c
		fmt.Println("fake k3s got SIGTERM")
		os.Exit(0)
	case mode == "limits":
		var nofile, nproc, core unix.Rlimit
		unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile)
		unix.Getrlimit(unix.RLIMIT_NPROC, &nproc)
		unix.Getrlimit(unix.RLIMIT_CORE, &core)
		limit := func(v uint64) string {
			if v == unix.RLIM_INFINITY {
				return "unlimited"
			}
			return strconv.FormatUint(v, 10)
		}
		fmt.Printf("fake k3s limits nofile=%d/%d nproc_unlimited=%v core=%s/%s\n", nofile.Cur, nofile.Max,
			nproc.Cur == unix.RLIM_INFINITY && nproc.Max == unix.RLIM_INFINITY, limit(core.Cur), limit(core.Max))
		time.Sleep(time.Hour)
	case mode == "sigkill":
		fmt.Println("fake k3s killed")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour)
	case mode == "longline":
		fmt.Println("before")
		fmt.Println(strings.Repeat("x", 2<<20))
		fmt.Println("after")
		fmt.Println(`time="2026-11-27T10:00:01Z" level=fatal msg="the last words"`)
		os.Exit(1)
	case mode == "daemonizes":
		// A daemon of its own in another session, holding the output pipe
		// for a minute after K3s exits.
		d := exec.Command("sleep", "61.5")
		d.Stdout, d.Stderr = os.Stdout, os.Stderr
		d.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := d.Start(); err != nil {
			fmt.Println("fake k3s: starting its daemon:", err)
		}
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("fake k3s up, daemon", d.Process.Pid)
		<-c
		os.Exit(0)
	case mode == "clientcert":
		fmt.Println(`E1127 10:00:00.000000 1 authentication.go:73] "Unable to authenticate the request" err="[x509: certificate has expired or is not yet valid: current time 2026-11-27T10:00:00Z is after 2026-11-26T00:00:00Z]"`)
		fmt.Println("fake k3s up")
		time.Sleep(time.Hour)
	case mode == "pwrejected":
		for range 3 {
			fmt.Println(`time="2026-11-27T10:00:00Z" level=info msg="Waiting to retrieve agent configuration; server is not ready: Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag"`)
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Hour)
	case mode == "stubborn":
		// Ignores SIGTERM; with ETOILE_FAKE_DIR set, writes the marker
		// sigterm there when one comes, and starts a child in its process
		// group (as K3s's containerd) that ignores SIGTERM too.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		dir := os.Getenv("ETOILE_FAKE_DIR")
		if dir != "" {
			child := exec.Command(os.Args[0])
			child.Env = append(os.Environ(), "ETOILE_FAKE_K3S=stubborn-child")
			child.Stdout, child.Stderr = os.Stdout, os.Stderr
			if err := child.Start(); err != nil {
				fmt.Println("fake k3s: starting its child:", err)
			} else {
				fmt.Println("fake k3s started its child, pid", child.Process.Pid)
			}
		}
		fmt.Println("fake k3s ignoring SIGTERM")
		for range c {
			if dir != "" {
				os.WriteFile(filepath.Join(dir, "sigterm"), []byte(time.Now().Format(time.RFC3339Nano)), 0o644)
			}
			fmt.Println("fake k3s got SIGTERM, ignoring it")
		}
	case mode == "stubborn-child":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("fake k3s child up, ignoring SIGTERM")
		time.Sleep(time.Hour)
		os.Exit(0)
	case strings.HasPrefix(mode, "healthy:"):
		// Runs 1 to n (counted in ETOILE_FAKE_DIR/runs) crash at once;
		// the next one runs until the test creates ETOILE_FAKE_DIR/exit,
		// then exits 1; later ones run until stopped.
		n, _ := strconv.Atoi(strings.TrimPrefix(mode, "healthy:"))
		dir := os.Getenv("ETOILE_FAKE_DIR")
		runs := filepath.Join(dir, "runs")
		if f, err := os.OpenFile(runs, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			f.WriteString("run\n")
			f.Close()
		}
		b, _ := os.ReadFile(runs)
		run := strings.Count(string(b), "\n")
		fmt.Println("fake k3s run", run)
		if run <= n {
			fmt.Println("fake k3s crashing")
			os.Exit(1)
		}
		for {
			if os.Remove(filepath.Join(dir, "exit")) == nil {
				fmt.Println("fake k3s exiting after its healthy run")
				os.Exit(1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	case mode == "path":
		// What K3s's own process finds, under ETOILE_FAKE_ROOT: its PATH;
		// the NVIDIA runtimes as K3s looks for them (its runtimesPath,
		// /usr/local/nvidia/toolkit:/opt/kwasm/bin, before its PATH:
		// k3s-io/k3s pkg/agent/containerd/config_linux.go); and, on its
		// PATH alone (which K3s restores after that search, and hands
		// containerd and so the runtime), the toolkit's CLI and hook.
		root := os.Getenv("ETOILE_FAKE_ROOT")
		path := os.Getenv("PATH")
		fmt.Println("fake k3s PATH=" + path)
		find := func(list, name string) string {
			for _, dir := range filepath.SplitList(list) {
				st, err := os.Stat(filepath.Join(root, dir, name))
				if err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
					return filepath.Join(dir, name)
				}
			}
			return "nowhere"
		}
		for _, name := range []string{"nvidia-container-runtime", "nvidia-container-runtime.cdi"} {
			fmt.Printf("fake k3s finds runtime %s at %s\n", name, find("/usr/local/nvidia/toolkit:/opt/kwasm/bin:"+path, name))
		}
		for _, name := range []string{"nvidia-container-cli", "nvidia-container-runtime-hook"} {
			fmt.Printf("fake k3s's containerd finds %s at %s\n", name, find(path, name))
		}
		time.Sleep(time.Hour)
	}
	os.Exit(m.Run())
}

// fakeRoot makes a root folder whose /usr/local/bin/k3s is this test binary.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "usr/local/bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(bin, "k3s")); err != nil {
		t.Fatal(err)
	}
	return root
}

type transitions struct {
	mu  sync.Mutex
	got []string
}

func (tr *transitions) record(from, to State, _ string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.got = append(tr.got, string(from)+"->"+string(to))
}

func (tr *transitions) list() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSupervisorRestartsWithBackoffAndReportsCrashloop(t *testing.T) {
	root := fakeRoot(t)
	var tr transitions
	var execs atomic.Int32
	s := &Supervisor{
		Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Env:     []string{"ETOILE_FAKE_K3S=exit:50"},
		Config:  []byte("cluster-init: true\n"),
		Backoff: Backoff{Initial: 20 * time.Millisecond, Max: 80 * time.Millisecond, ResetAfter: time.Minute, Crashloop: 3},
		OnState: tr.record,
		OnExec: func(pid int, err error) {
			if pid <= 0 || err != nil {
				t.Errorf("OnExec(%d, %v) for a start that succeeded", pid, err)
			}
			execs.Add(1)
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "crashloop", func() bool { return s.Status().State == StateCrashloop })
	waitFor(t, "5 restarts", func() bool { return s.Status().Restarts >= 5 })
	cancel()
	if n := execs.Load(); n < 5 {
		t.Errorf("OnExec called %d times over 5 starts", n)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := s.Status().State; st != StateStopped {
		t.Errorf("state after stop = %s", st)
	}
	got := strings.Join(tr.list(), " ")
	if !strings.HasPrefix(got, "stopped->starting") || !strings.Contains(got, "starting->crashloop") {
		t.Errorf("transitions = %s", got)
	}
	logs := strings.Join(s.Logs(), "\n")
	if !strings.Contains(logs, "fake k3s crashing") || !strings.Contains(logs, "fake k3s starting server") {
		t.Errorf("recent log lacks the process output:\n%s", logs)
	}
	onDisk, err := os.ReadFile(filepath.Join(root, LogPath))
	if err != nil || !strings.Contains(string(onDisk), "fake k3s crashing") {
		t.Errorf("log file: %v\n%s", err, onDisk)
	}
	cfg, err := os.ReadFile(filepath.Join(root, ConfigPath))
	if err != nil || string(cfg) != "cluster-init: true\n" {
		t.Errorf("config.yaml = %q, %v", cfg, err)
	}
	if st, err := os.Stat(filepath.Join(root, ConfigPath)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("config.yaml mode: %v %v (it holds the cluster token: 0600)", st.Mode(), err)
	}
}

func TestBackoffDoublesUpToTheCap(t *testing.T) {
	root := fakeRoot(t)
	var mu sync.Mutex
	var waits []string
	s := &Supervisor{
		Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"agent"},
		Env:     []string{"ETOILE_FAKE_K3S=exit:0"},
		Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond, ResetAfter: time.Minute, Crashloop: 100},
		OnState: func(from, to State, reason string) {
			if _, wait, ok := strings.Cut(reason, "restarting in "); ok {
				mu.Lock()
				waits = append(waits, wait)
				mu.Unlock()
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "5 restarts", func() bool { mu.Lock(); defer mu.Unlock(); return len(waits) >= 5 })
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(waits[:5], ","); got != "10ms,20ms,40ms,40ms,40ms" {
		t.Errorf("announced waits = %s, want doubling capped at 40ms", got)
	}
}

// runHourBackoff runs s (fake K3s mode mode, an hour's backoff: nothing
// restarts it on its own during a test) until the test ends.
func runHourBackoff(t *testing.T, mode string, s *Supervisor) *Supervisor {
	t.Helper()
	s.Root, s.Binary, s.Args = fakeRoot(t), "/usr/local/bin/k3s", []string{"server"}
	s.Env = []string{"ETOILE_FAKE_K3S=" + mode}
	s.Backoff = Backoff{Initial: time.Hour, Max: time.Hour, ResetAfter: time.Hour, Crashloop: 3}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// TestRetryNowEndsTheBackoff: with an hour's backoff, RetryNow starts K3s
// again at once after an exit, and does nothing while K3s runs.
func TestRetryNowEndsTheBackoff(t *testing.T) {
	var execs atomic.Int32
	s := runHourBackoff(t, "exit:0", &Supervisor{OnExec: func(int, error) { execs.Add(1) }})
	waitFor(t, "the first exit", func() bool { return strings.Contains(s.Status().Reason, "restarting in 1h0m0s") })
	if !s.RetryNow("an address came") {
		t.Fatal("RetryNow during the backoff did nothing")
	}
	waitFor(t, "the second start", func() bool { return execs.Load() >= 2 })
	waitFor(t, "the second exit", func() bool { return s.Status().Restarts >= 2 })
	if n := execs.Load(); n != 2 {
		t.Errorf("%d starts, want 2 (one RetryNow, one restart)", n)
	}

	// Told while K3s runs (the address came during a start): its next
	// exit is not waited out either.
	brief := runHourBackoff(t, "exit:5000", &Supervisor{})
	waitFor(t, "K3s up", func() bool { return strings.Contains(strings.Join(brief.Logs(), "\n"), "fake k3s starting") })
	if brief.RetryNow("an address came") {
		t.Error("RetryNow while K3s runs said it ended a wait")
	}
	waitFor(t, "the start after the exit", func() bool {
		return brief.Status().Restarts >= 1 && brief.Status().State == StateStarting &&
			strings.Count(strings.Join(brief.Logs(), "\n"), "fake k3s starting") >= 2
	})
}

// TestRestartStopsK3sAndStartsItAtOnce: Restart asks the running K3s to
// stop (SIGTERM) and starts it again without the backoff (an hour here),
// counting the restart and saying why; during a backoff it ends the wait.
func TestRestartStopsK3sAndStartsItAtOnce(t *testing.T) {
	var execs atomic.Int32
	var reasons []string
	var mu sync.Mutex
	s := runHourBackoff(t, "hang", &Supervisor{
		StopTimeout: 10 * time.Second,
		OnExec:      func(int, error) { execs.Add(1) },
		OnState: func(_, _ State, reason string) {
			mu.Lock()
			reasons = append(reasons, reason)
			mu.Unlock()
		},
	})
	waitFor(t, "K3s up", func() bool { return strings.Contains(strings.Join(s.Logs(), "\n"), "fake k3s up") })
	if !s.Restart("the node's address changed from 10.0.0.5 to 10.0.0.9") {
		t.Fatal("Restart of a running K3s did nothing")
	}
	waitFor(t, "the second start", func() bool {
		return strings.Count(strings.Join(s.Logs(), "\n"), "fake k3s up") >= 2
	})
	logs := strings.Join(s.Logs(), "\n")
	if !strings.Contains(logs, "fake k3s got SIGTERM") {
		t.Errorf("K3s was not stopped with SIGTERM:\n%s", logs)
	}
	if st := s.Status(); st.Restarts != 1 || st.State != StateStarting || execs.Load() != 2 {
		t.Errorf("after Restart: %+v, %d starts; want one restart, starting, two starts", st, execs.Load())
	}
	mu.Lock()
	told := strings.Join(reasons, "\n")
	mu.Unlock()
	if !strings.Contains(told, "restarting: the node's address changed from 10.0.0.5 to 10.0.0.9") {
		t.Errorf("the restart's reason was not told:\n%s", told)
	}

	// During a backoff: the wait ends.
	brief := runHourBackoff(t, "exit:0", &Supervisor{})
	waitFor(t, "the first exit", func() bool { return strings.Contains(brief.Status().Reason, "restarting in 1h0m0s") })
	if !brief.Restart("an address came") {
		t.Fatal("Restart during the backoff did nothing")
	}
	waitFor(t, "the start after the backoff", func() bool { return brief.Status().Restarts >= 2 })
}

// TestExitReasonHasK3sFatalMessage: the reason of a restart (on the
// console) carries what K3s said as it stopped.
func TestExitReasonHasK3sFatalMessage(t *testing.T) {
	s := &Supervisor{
		Root: fakeRoot(t), Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Env:     []string{"ETOILE_FAKE_K3S=fatal"},
		Backoff: Backoff{Initial: time.Hour, Max: time.Hour, ResetAfter: time.Hour, Crashloop: 3},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the exit", func() bool { return s.Status().Restarts >= 1 })
	want := `exit status 1: unable to find suitable network address: no default routes found in "/proc/net/route"; restarting in 1h0m0s`
	if r := s.Status().Reason; !strings.Contains(r, want) {
		t.Errorf("reason %q, want it to hold %q", r, want)
	}
}

func TestFatalMessage(t *testing.T) {
	for line, want := range map[string]string{
		`time="x" level=fatal msg="failed to start: \"a\" b"`:         `failed to start: "a" b`,
		`time="x" level=error msg="not fatal"`:                        "",
		`time="x" level=fatal msg=interrupted`:                        "interrupted",
		`plain output`:                                                "",
		`time="x" level=fatal msg="` + strings.Repeat("é", 200) + `"`: strings.Repeat("é", 150) + "…",
	} {
		got, ok := fatalMessage(line)
		if got != want || ok != (want != "") {
			t.Errorf("fatalMessage(%q) = %q, %v; want %q", line, got, ok, want)
		}
	}
}

// TestStopSendsTermThenKill: at shutdown K3s is asked to stop (SIGTERM);
// one that stops is not waited for further, one that does not is killed
// (SIGKILL, its whole process group: K3s's containerd with it) once
// StopTimeout has passed, and not before; no process of it is left.
func TestStopSendsTermThenKill(t *testing.T) {
	// "hang" stops on SIGTERM: its timeout is long enough for a loaded
	// machine to deliver it and let it print. "stubborn" ignores it, as
	// does the child it starts, and both are killed after its short one.
	for mode, stop := range map[string]time.Duration{"hang": 10 * time.Second, "stubborn": time.Second} {
		t.Run(mode, func(t *testing.T) {
			root := fakeRoot(t)
			dir := t.TempDir()
			var pid atomic.Int64
			s := &Supervisor{
				Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
				Env: []string{"ETOILE_FAKE_K3S=" + mode, "ETOILE_FAKE_DIR=" + dir}, StopTimeout: stop,
				OnExec: func(p int, _ error) { pid.Store(int64(p)) },
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			var returned atomic.Bool
			t.Cleanup(func() { // a test that failed before the stop: K3s stopped all the same
				if cancel(); !returned.Load() {
					select {
					case <-done:
					case <-time.After(30 * time.Second):
					}
				}
			})
			child := 0
			if mode == "stubborn" {
				// Both ignore SIGTERM from here on.
				waitFor(t, "K3s and its child up", func() bool {
					logs := strings.Join(s.Logs(), "\n")
					return strings.Contains(logs, "fake k3s ignoring SIGTERM") && strings.Contains(logs, "fake k3s child up")
				})
				for _, l := range s.Logs() {
					if p, ok := strings.CutPrefix(l, "fake k3s started its child, pid "); ok {
						child, _ = strconv.Atoi(p)
					}
				}
				if child <= 0 {
					t.Fatalf("no child pid in K3s's output: %q", s.Logs())
				}
				t.Cleanup(func() { // should it outlive the stop
					if st := procState(child); st != "" && st != "Z" {
						_ = syscall.Kill(child, syscall.SIGKILL)
					}
				})
			} else {
				waitFor(t, "process output", func() bool { return len(s.Logs()) > 0 })
			}
			began := time.Now()
			cancel()
			select {
			case err := <-done:
				returned.Store(true)
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("supervisor did not stop K3s")
			}
			took := time.Since(began)
			logs := strings.Join(s.Logs(), "\n")
			if !strings.Contains(logs, "got SIGTERM") {
				t.Errorf("K3s was not asked to stop with SIGTERM:\n%s", logs)
			}
			if mode == "stubborn" {
				if _, err := os.Stat(filepath.Join(dir, "sigterm")); err != nil {
					t.Errorf("K3s got no SIGTERM before it was killed: %v", err)
				}
				if took < stop {
					t.Errorf("a K3s ignoring SIGTERM was killed %v after the stop began, before its StopTimeout %v", took, stop)
				}
				// Reparented when K3s died, the child is gone, or a zombie
				// left to a PID 1 that does not reap (a test container's).
				// Killed, it may still be exiting as the stop ends (its
				// output closed): it is given a few seconds for that.
				deadline := time.Now().Add(5 * time.Second)
				st := procState(child)
				for st != "" && st != "Z" && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
					st = procState(child)
				}
				if st != "" && st != "Z" {
					t.Errorf("K3s's child %d outlived the stop (state %s): the SIGKILL was not sent to K3s's process group", child, st)
				}
			}
			if p := int(pid.Load()); p <= 0 {
				t.Error("no K3s pid was told")
			} else if err := syscall.Kill(p, 0); err != syscall.ESRCH {
				t.Errorf("K3s (pid %d) still there after the stop: kill(0) = %v", p, err)
			}
			if s.Status().State != StateStopped || s.Status().Restarts != 0 {
				t.Errorf("status after stop = %+v", s.Status())
			}
		})
	}
}

// procState is the state letter of process pid (R, S, Z, …), or "" when
// there is none.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// pid (comm) state …: comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}

// TestStopDoesNotWaitForADaemonHoldingTheOutput: a process K3s started in
// another session keeps K3s's output pipe open after K3s exits; the stop
// ends a few seconds after K3s's exit all the same (it waited for the
// daemon's minute before).
func TestStopDoesNotWaitForADaemonHoldingTheOutput(t *testing.T) {
	root := fakeRoot(t)
	s := &Supervisor{Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Env: []string{"ETOILE_FAKE_K3S=daemonizes"}, StopTimeout: 10 * time.Second}
	t.Cleanup(func() { _ = exec.Command("pkill", "-f", "^sleep 61.5$").Run() })
	stop := runSupervisor(t, s, 40*time.Second) // the daemon holds the pipe for 61.5 s
	waitFor(t, "process output", func() bool { return len(s.Logs()) > 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestStoppingIsNotReady: while a K3s that ignores SIGTERM is being
// stopped (its timeout running), the status no longer says it is running.
func TestStoppingIsNotReady(t *testing.T) {
	root := fakeRoot(t)
	var stateLines transitions
	s := &Supervisor{Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Env: []string{"ETOILE_FAKE_K3S=stubborn"}, StopTimeout: 3 * time.Second, OnState: stateLines.record}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "process output", func() bool { return len(s.Logs()) > 0 })
	cancel()
	waitFor(t, "the stopped state", func() bool { return s.Status().State == StateStopped })
	select {
	case <-done:
		t.Fatal("the supervisor returned before K3s's stop timeout: the state was not seen during the stop")
	default:
	}
	<-done
	// One state line for the stop: its reason the same from the SIGTERM on.
	if n := strings.Count(strings.Join(stateLines.list(), "\n"), "->stopped"); n != 1 {
		t.Errorf("transitions %q, want one to stopped", stateLines.list())
	}
}

// TestNoStartAfterTheEnd: a supervisor whose context has ended (a
// shutdown begun while a config apply waited) does not start K3s.
func TestNoStartAfterTheEnd(t *testing.T) {
	root := fakeRoot(t)
	var execs atomic.Int32
	s := &Supervisor{Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Env: []string{"ETOILE_FAKE_K3S=hang"}, StopTimeout: time.Second, OnExec: func(int, error) { execs.Add(1) }}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := execs.Load(); n != 0 || len(s.Logs()) > 0 {
		t.Errorf("K3s started %d times after the context ended; its output: %q", n, s.Logs())
	}
	if st := s.Status(); st.State != StateStopped {
		t.Errorf("status = %+v, want stopped", st)
	}
}

// TestLongLineDoesNotSilenceTheLog: a 2 MB line of K3s's output is kept
// cut short, and what K3s says after it (its fatal message) is kept too.
func TestLongLineDoesNotSilenceTheLog(t *testing.T) {
	root := fakeRoot(t)
	s := &Supervisor{Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Env: []string{"ETOILE_FAKE_K3S=longline"}, StopTimeout: time.Second, Backoff: Backoff{Initial: time.Hour, Max: time.Hour}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "the exit", func() bool { return strings.Contains(s.Status().Reason, "the last words") })
	cancel()
	<-done
	logs := s.Logs()
	if len(logs) != 4 || logs[0] != "before" || logs[2] != "after" || len(logs[1]) != MaxLineLen+len("…") || !strings.HasSuffix(logs[1], "…") {
		short := make([]string, len(logs))
		for i, l := range logs {
			short[i] = fmt.Sprintf("%.40q (%d bytes)", l, len(l))
		}
		t.Errorf("K3s's lines = %v", short)
	}
	file, err := os.ReadFile(filepath.Join(root, LogPath))
	if err != nil || !strings.Contains(string(file), "after\n") || !strings.Contains(string(file), "the last words") {
		t.Errorf("the log file lacks what came after the long line (%v): %d bytes", err, len(file))
	}
}

func TestReadLines(t *testing.T) {
	var got []string
	readLines(strings.NewReader("a\r\nbbbbbbbbbb\ncc\n\nééééé\ntail"), 4, func(l string) { got = append(got, l) })
	want := []string{"a", "bbbb…", "cc", "", "éé…", "tail"}
	if !slices.Equal(got, want) {
		t.Errorf("readLines = %q, want %q", got, want)
	}
}

func TestMissingBinaryIsReportedAndRetried(t *testing.T) {
	root := t.TempDir()
	var execErr atomic.Value
	s := &Supervisor{Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond, ResetAfter: time.Minute, Crashloop: 2},
		OnExec:  func(_ int, err error) { execErr.Store(fmt.Sprint(err)) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "crashloop", func() bool { return s.Status().State == StateCrashloop })
	if r := s.Status().Reason; !strings.Contains(r, filepath.Join(root, "usr/local/bin/k3s")) {
		t.Errorf("reason does not name the missing binary: %q", r)
	}
	if e, _ := execErr.Load().(string); !strings.Contains(e, "usr/local/bin/k3s") {
		t.Errorf("OnExec was not told the start failed: %q", e)
	}
	cancel()
	<-done
}

// TestBackoffResetsOnlyAfterHealthyTime: a K3s that runs longer than
// ResetAfter but is never ready (no API answers) is still crash-looping:
// the wait is not reset by running time alone.
func TestBackoffResetsOnlyAfterHealthyTime(t *testing.T) {
	root := fakeRoot(t)
	s := &Supervisor{
		Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Env:     []string{"ETOILE_FAKE_K3S=exit:150"},
		Config:  []byte("cluster-init: true\n"),
		Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond, ResetAfter: 50 * time.Millisecond, Crashloop: 3},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "crashloop", func() bool { return s.Status().State == StateCrashloop })
	cancel()
	<-done
}

// TestBackoffResetsAfterAHealthyRun: after quick crashes have doubled the
// wait and put K3s in crashloop, a run the Kubernetes API reports ready for
// longer than ResetAfter resets it: its exit is waited out Initial, not the
// doubled wait, and K3s is starting again, not crash-looping.
func TestBackoffResetsAfterAHealthyRun(t *testing.T) {
	p := newPKI(t)
	var readyz atomic.Int32
	var nodeReady atomic.Bool
	readyz.Store(http.StatusOK)
	srv := apiServer(t, p, &readyz, &nodeReady)
	root := fakeRoot(t)
	writeKubeconfig(t, root, srv.URL, p)
	dir := t.TempDir()
	const resetAfter = 300 * time.Millisecond
	type told struct {
		at     time.Time
		to     State
		reason string
	}
	var mu sync.Mutex
	var states []told
	s := &Supervisor{
		Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		// Three quick crashes, then a run that lasts until the test ends it.
		Env:        []string{"ETOILE_FAKE_K3S=healthy:3", "ETOILE_FAKE_DIR=" + dir},
		Backoff:    Backoff{Initial: 10 * time.Millisecond, Max: time.Second, ResetAfter: resetAfter, Crashloop: 3},
		ProbeEvery: 20 * time.Millisecond, StopTimeout: time.Second,
		Prober: &APIProber{Root: root, Kubeconfig: ServerKubeconfig, NodeName: "node-1"},
		OnState: func(_, to State, reason string) {
			mu.Lock()
			states = append(states, told{time.Now(), to, reason})
			mu.Unlock()
		},
	}
	// exits are the states told as K3s exited, with the wait announced.
	type exit struct {
		to   State
		wait string
	}
	exits := func() []exit {
		mu.Lock()
		defer mu.Unlock()
		var out []exit
		for _, st := range states {
			if _, wait, ok := strings.Cut(st.reason, "restarting in "); ok {
				out = append(out, exit{st.to, wait})
			}
		}
		return out
	}
	// readyFor is how long the states told say K3s has been ready.
	readyFor := func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		var total time.Duration
		var since time.Time
		for _, st := range states {
			switch {
			case st.to == StateReady && since.IsZero():
				since = st.at
			case st.to != StateReady && !since.IsZero():
				total += st.at.Sub(since)
				since = time.Time{}
			}
		}
		if !since.IsZero() {
			total += time.Since(since)
		}
		return total
	}
	stop := runSupervisor(t, s, 30*time.Second)
	waitFor(t, "three quick crashes", func() bool { return len(exits()) >= 3 })
	want := []exit{{StateStarting, "10ms"}, {StateStarting, "20ms"}, {StateCrashloop, "40ms"}}
	if got := exits(); !slices.Equal(got[:3], want) {
		t.Fatalf("quick crashes: %v, want %v", got[:3], want)
	}
	waitFor(t, "the fourth run", func() bool { return slices.Contains(s.Logs(), "fake k3s run 4") })
	if r := readyFor(); r != 0 {
		t.Fatalf("ready for %v before the API said so", r)
	}
	nodeReady.Store(true)
	waitFor(t, "ready, per the API, for twice ResetAfter", func() bool { return readyFor() >= 2*resetAfter })
	if err := os.WriteFile(filepath.Join(dir, "exit"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the healthy run's exit", func() bool { return len(exits()) >= 4 })
	if got := exits()[3]; got != (exit{StateStarting, "10ms"}) {
		t.Errorf("after a run ready for %v (ResetAfter %v): %s, restarting in %s; want starting, restarting in 10ms (Initial, not 80ms)",
			2*resetAfter, resetAfter, got.to, got.wait)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestK3sFindsTheNvidiaRuntimes: the PATH K3s's own process gets lets it
// find the NVIDIA container runtimes as K3s searches (its runtimesPath,
// then its PATH): the GPU Operator's in /usr/local/nvidia/toolkit and the
// system image's in /usr/bin; and lets its containerd (K3s's PATH alone)
// find the toolkit's CLI and hook there. What K3s finds is what the agent
// says it will (Runtimes).
func TestK3sFindsTheNvidiaRuntimes(t *testing.T) {
	root := fakeRoot(t)
	for _, f := range []string{
		"usr/local/nvidia/toolkit/nvidia-container-runtime", // the GPU Operator's
		"usr/local/nvidia/toolkit/nvidia-container-cli",
		"usr/local/nvidia/toolkit/nvidia-container-runtime-hook",
		"usr/bin/nvidia-container-runtime",     // the system image's: the toolkit's wins
		"usr/bin/nvidia-container-runtime.cdi", // the system image's
	} {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := &Supervisor{Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"agent"},
		Env: []string{"ETOILE_FAKE_K3S=path", "ETOILE_FAKE_ROOT=" + root}, StopTimeout: time.Second}
	stop := runSupervisor(t, s, 30*time.Second)
	waitFor(t, "what K3s found", func() bool { return len(s.Logs()) >= 5 })
	_ = stop()
	logs := strings.Join(s.Logs(), "\n")
	for _, want := range []string{
		"fake k3s finds runtime nvidia-container-runtime at /usr/local/nvidia/toolkit/nvidia-container-runtime",
		"fake k3s finds runtime nvidia-container-runtime.cdi at /usr/bin/nvidia-container-runtime.cdi",
		"fake k3s's containerd finds nvidia-container-cli at /usr/local/nvidia/toolkit/nvidia-container-cli",
		"fake k3s's containerd finds nvidia-container-runtime-hook at /usr/local/nvidia/toolkit/nvidia-container-runtime-hook",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("K3s's process did not find what it needs; want %q in:\n%s", want, logs)
		}
	}
	var rts []string
	for _, r := range Runtimes(root) {
		rts = append(rts, r.Name+"="+r.Path)
	}
	if got, want := strings.Join(rts, " "), "nvidia=/usr/local/nvidia/toolkit/nvidia-container-runtime nvidia-cdi=/usr/bin/nvidia-container-runtime.cdi"; got != want {
		t.Errorf("the agent says K3s finds %s, want %s (what K3s found)", got, want)
	}
}

// TestLogFileRotates: past MaxLogSize the log becomes k3s.log.1 and a new
// one starts; neither passes the bound by more than a line.
func TestLogFileRotates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "var/log/k3s.log")
	l, err := openLog(p, 1000)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 99) // 100 bytes with its newline
	for i := 0; i < 25; i++ {
		l.writeLine(line)
	}
	l.Close()
	for _, f := range []string{p, p + ".1"} {
		st, err := os.Stat(f)
		if err != nil || st.Size() == 0 || st.Size() > 1000 {
			t.Errorf("%s: %v, size %d (want 1..1000)", f, err, st.Size())
		}
	}
	if st, _ := os.Stat(p); st.Size() != 500 {
		t.Errorf("current log holds %d bytes after 25 lines, want 500 (2500 bytes = two full files and half a third)", st.Size())
	}
}

// TestK3sGetsItsLimits: K3s runs with its systemd unit's limits (1048576
// open files, unlimited processes), which containers inherit, not the soft
// limits Go hands its children by default; and with no core files (soft
// limit 0) unless a container raises its own (hard limit unlimited): with
// the kernel's default core_pattern a crashing container's process would
// write its whole memory into its root filesystem, in RAM. Where this test
// runs without the right to raise hard limits (a container), K3s gets the
// hard limits as soft ones (no core files still), and the test checks that
// instead.
func TestK3sGetsItsLimits(t *testing.T) {
	// A low soft file limit, as init's 1024, to see it raised.
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 1024, Max: orig.Max}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	// And core files on, as the kernel starts init with (soft 0) or a shell
	// gives (ulimit -c unlimited), to see them turned off.
	var origCore unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &origCore); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: origCore.Max, Max: origCore.Max}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_CORE, &origCore) })
	canRaise := unix.Prlimit(0, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 1024, Max: NoFileLimit}, nil) == nil
	root := fakeRoot(t)
	s := &Supervisor{Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Env: []string{"ETOILE_FAKE_K3S=limits"}, StopTimeout: 300 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "the limits line", func() bool { return strings.Contains(strings.Join(s.Logs(), "\n"), "fake k3s limits") })
	cancel()
	<-done
	want := []string{fmt.Sprintf("fake k3s limits nofile=%d/%d nproc_unlimited=true core=0/unlimited", NoFileLimit, NoFileLimit)}
	if !canRaise {
		t.Logf("this process cannot raise hard limits (no CAP_SYS_RESOURCE): checking that K3s gets the hard ones")
		want = []string{fmt.Sprintf("fake k3s limits nofile=%d/%d", orig.Max, orig.Max), " core=0/"}
	}
	logs := strings.Join(s.Logs(), "\n")
	for _, w := range want {
		if !strings.Contains(logs, w) {
			t.Errorf("K3s's limits:\n%s\nwant %q", logs, w)
		}
	}
}

// fakeTail is the kernel's log of a run, for the supervisor: what read
// returns, built once K3s's pid is known.
type fakeTail struct {
	read   func() []kmsg.Record
	closed *atomic.Int32
}

func (f fakeTail) Read() ([]kmsg.Record, error) { return f.read(), nil }
func (f fakeTail) Close() error                 { f.closed.Add(1); return nil }

// TestOOMKillIsNamed: an exit the kernel's log of that run puts down to its
// OOM killer is named as such — K3s itself killed (the whole machine's
// memory, or its memory cgroup's), or, the machine out of memory, its
// containerd — and nothing else is: a SIGKILL whose OOM record names
// another process (a pod's), or a pod's own containerd at its cgroup's limit.
func TestOOMKillIsNamed(t *testing.T) {
	for _, c := range []struct {
		name, mode, msg string // msg: the kernel's record, %d the K3s's pid
		want, notWant   string
	}{
		{"oom", "sigkill", "Out of memory: Killed process %d (k3s) total-vm:2119756kB, anon-rss:850704kB",
			"signal: killed (killed by the kernel's out-of-memory killer: the machine ran out of memory", ""},
		{"memcg", "sigkill", "Memory cgroup out of memory: Killed process %d (k3s-server) total-vm:1kB",
			"signal: killed (killed by the kernel's out-of-memory killer: its memory cgroup's limit was reached)", ""},
		{"a pod's", "sigkill", "Memory cgroup out of memory: Killed process 1%d (python3) total-vm:1kB",
			"signal: killed; restarting in", "out-of-memory"},
		{"containerd", "exit:0", "Out of memory: Killed process 4242 (containerd) total-vm:1kB",
			"exit status 1 (the kernel's out-of-memory killer ended its containerd, pid 4242", ""},
		{"a pod's containerd", "exit:0", "Memory cgroup out of memory: Killed process 4242 (containerd) total-vm:1kB",
			"exit status 1; restarting in", "out-of-memory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Supervisor{
				Root: fakeRoot(t), Binary: "/usr/local/bin/k3s", Args: []string{"server"},
				Env:     []string{"ETOILE_FAKE_K3S=" + c.mode},
				Backoff: Backoff{Initial: time.Hour, Max: time.Hour, ResetAfter: time.Hour, Crashloop: 3},
			}
			var opened, closed atomic.Int32
			s.OpenKernelLog = func() (KernelTail, error) {
				opened.Add(1)
				return fakeTail{closed: &closed, read: func() []kmsg.Record {
					s.mu.Lock()
					pid := s.pid
					s.mu.Unlock()
					msg := c.msg
					if strings.Contains(msg, "%d") {
						msg = fmt.Sprintf(msg, pid)
					}
					return []kmsg.Record{{Seq: 1, Msg: "oom-kill:constraint=CONSTRAINT_NONE"}, {Seq: 2, Msg: msg}}
				}}, nil
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			waitFor(t, "the first exit's reason", func() bool { return strings.Contains(s.Status().Reason, "restarting in") })
			reason := s.Status().Reason
			cancel()
			<-done
			if !strings.Contains(reason, c.want) {
				t.Errorf("reason %q, want it to hold %q", reason, c.want)
			}
			if c.notWant != "" && strings.Contains(reason, c.notWant) {
				t.Errorf("reason %q holds %q", reason, c.notWant)
			}
			if o, cl := opened.Load(), closed.Load(); o != 1 || cl != 1 {
				t.Errorf("the kernel's log opened %d times and closed %d times for one run, want once each", o, cl)
			}
		})
	}
}

// TestTroubleK3sKeepsRetrying: K3s retrying on a refused node password
// (it does not exit) shows in the status, with what to do.
func TestTroubleK3sKeepsRetrying(t *testing.T) {
	root := fakeRoot(t)
	s := &Supervisor{Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"agent"},
		Env: []string{"ETOILE_FAKE_K3S=pwrejected"}, StopTimeout: time.Second}
	stop := runSupervisor(t, s, 30*time.Second)
	waitFor(t, "the trouble in the status", func() bool { return s.Status().Trouble != "" })
	if tr := s.Status().Trouble; !strings.Contains(tr, "node-password.k3s") || !strings.Contains(tr, "kubectl -n kube-system delete secret") {
		t.Errorf("trouble %q", tr)
	}
	_ = stop()
	if tr := s.Status().Trouble; tr != "" {
		t.Errorf("trouble %q after the stop", tr)
	}
}

// TestAClientsBadCertificateIsNoTrouble: the API server refusing a client
// with an expired certificate is not this machine's clock.
func TestAClientsBadCertificateIsNoTrouble(t *testing.T) {
	root := fakeRoot(t)
	s := &Supervisor{Root: root, Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Env: []string{"ETOILE_FAKE_K3S=clientcert"}, StopTimeout: time.Second}
	stop := runSupervisor(t, s, 30*time.Second)
	waitFor(t, "both lines", func() bool { return len(s.Logs()) >= 2 })
	if tr := s.Status().Trouble; tr != "" {
		t.Errorf("trouble %q from a client's certificate", tr)
	}
	_ = stop()
}

// runSupervisor runs s until the returned stop is called; stop returns
// Run's error, failing the test when Run does not return within limit.
func runSupervisor(t *testing.T, s *Supervisor, limit time.Duration) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(cancel)
	return func() error {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(limit):
			t.Fatalf("the supervisor did not stop within %v", limit)
			return nil
		}
	}
}

// stoppedMidProbe answers ready at its first probe; at the next it says it
// is in flight (inFlight) and answers only once its context ends, with the
// error a request cancelled gets.
type stoppedMidProbe struct {
	calls    atomic.Int32
	inFlight chan struct{}
}

func (p *stoppedMidProbe) Probe(ctx context.Context) (State, error) {
	if p.calls.Add(1) == 1 {
		return StateReady, nil
	}
	select {
	case p.inFlight <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return "", fmt.Errorf("GET /readyz: %w", ctx.Err())
}

// TestStopDuringAProbeIsNotAnAPIDown: a stop (a shutdown, a config
// applied) while a probe is in flight ends the probe's request; that is not
// K3s's API failing: the state goes from ready to stopped, never to running
// with "API not answering".
func TestStopDuringAProbeIsNotAnAPIDown(t *testing.T) {
	var mu sync.Mutex
	var told []string
	prober := &stoppedMidProbe{inFlight: make(chan struct{}, 1)}
	s := &Supervisor{Root: fakeRoot(t), Binary: "/usr/local/bin/k3s", Args: []string{"server"},
		Env: []string{"ETOILE_FAKE_K3S=hang"}, ProbeEvery: 10 * time.Millisecond, StopTimeout: 10 * time.Second,
		Prober: prober,
		OnState: func(from, to State, reason string) {
			mu.Lock()
			told = append(told, fmt.Sprintf("%s->%s %q", from, to, reason))
			mu.Unlock()
		}}
	stop := runSupervisor(t, s, 30*time.Second)
	waitFor(t, "ready", func() bool { return s.Status().State == StateReady })
	select {
	case <-prober.inFlight:
	case <-time.After(20 * time.Second):
		t.Fatal("no second probe")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	all := strings.Join(told, "\n")
	if strings.Contains(all, "API not answering") || !strings.Contains(all, `ready->stopped "agent shutting down"`) {
		t.Errorf("states told:\n%s\nwant ready->stopped, with no API not answering", all)
	}
}

// TestRestartAsK3sExitsIsNotLost: a Restart asked for as K3s exits on its
// own (its process has ended, the supervisor has not seen it yet: here from
// Release, called then) says it will restart K3s, and does, at once: not
// after the backoff (an hour here).
func TestRestartAsK3sExitsIsNotLost(t *testing.T) {
	var execs atomic.Int32
	accepted := make(chan bool, 1)
	s := &Supervisor{OnExec: func(int, error) { execs.Add(1) }}
	s.Release = func(int) {
		if execs.Load() == 1 { // the first run's exit
			select {
			case accepted <- s.Restart("the node's address changed from 10.0.0.5 to 10.0.0.9"):
			default:
			}
		}
	}
	runHourBackoff(t, "exit:0", s)
	select {
	case ok := <-accepted:
		if !ok {
			t.Fatal("Restart as K3s exited said it would not restart it")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("K3s's first run did not end")
	}
	waitFor(t, "the second start, at once", func() bool { return execs.Load() >= 2 })
}
