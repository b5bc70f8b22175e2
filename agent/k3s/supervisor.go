// Package k3s runs K3s on an Étoile node: it writes K3s's own configuration
// files, starts `k3s server` or `k3s agent`, restarts it with capped
// exponential backoff, keeps its recent log, and judges readiness from the
// Kubernetes API — never from the process merely being alive.
package k3s

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/kmsg"
	"github.com/etoile-os/etoile/agent/logring"
	"github.com/etoile-os/etoile/agent/safego"
)

// State is K3s's state as the agent reports it.
type State string

const (
	StateStopped   State = "stopped"   // not started, or stopped on purpose
	StateStarting  State = "starting"  // process launched, API not answering yet
	StateRunning   State = "running"   // process up, API answers, node not Ready
	StateReady     State = "ready"     // /readyz ok and the node's Ready condition is True
	StateCrashloop State = "crashloop" // exited again and again; waiting out a backoff
	StateInvalid   State = "invalid"   // configuration refused: not started until fixed
)

// Backoff is the restart policy.
type Backoff struct {
	Initial    time.Duration // first wait after an exit
	Max        time.Duration // cap
	ResetAfter time.Duration // a run ready this long resets the wait to Initial
	Crashloop  int           // this many quick exits in a row → crashloop
}

// DefaultBackoff waits 1 s, doubling up to 1 min; 2 min of health resets it.
var DefaultBackoff = Backoff{Initial: time.Second, Max: time.Minute, ResetAfter: 2 * time.Minute, Crashloop: 3}

// RunAware is a Prober told when each K3s run starts: what the API says of
// the node from before (a Ready condition the last run's kubelet left,
// which Kubernetes keeps for 40 s or more) does not make this run ready.
type RunAware interface {
	RunStarted(time.Time)
}

// Prober tells whether K3s is ready; errors say why not.
type Prober interface {
	// Probe returns StateReady, StateRunning (API up, node not Ready) or an
	// error when the API does not answer.
	Probe(ctx context.Context) (State, error)
}

// ReasonProber is a Prober that also says why K3s is not ready while its
// API answers (a failing /readyz's status code and checks): the state's
// reason. An empty reason is "node not Ready yet".
type ReasonProber interface {
	ProbeReason(ctx context.Context) (State, string, error)
}

// SystemPath is the PATH of the machine's programs: K3s's, and PID 1's own
// (the kernel starts init with none), where K3s looks for the container
// runtimes (after RuntimesPath) and the inventory for nvidia-smi. The last
// folder is where NVIDIA's GPU Operator installs the container toolkit on a
// node, so that its nvidia-container-cli and hook are found too.
const SystemPath = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/nvidia/toolkit"

// Supervisor keeps one K3s process running.
type Supervisor struct {
	Root       string   // filesystem root: "/" on a node, a temp folder in tests
	Binary     string   // k3s binary, absolute path inside Root's view (e.g. /usr/local/bin/k3s)
	Args       []string // "server" or "agent" and flags; the config file carries the rest
	Env        []string // extra environment, appended to PATH=… and HOME=/root
	Config     []byte   // /etc/rancher/k3s/config.yaml
	Registries []byte   // /etc/rancher/k3s/registries.yaml, nil for none
	// TLSFiles are the registries' PEM given inline (config.RegistryTLSFiles),
	// by path relative to Root under config.RegistryTLSDir; what else that
	// folder holds (an earlier config's) is removed.
	TLSFiles map[string][]byte
	// Manifests are the machine config's manifests (config.ManifestFiles),
	// by path relative to Root: written to K3s's manifests folder, where
	// an earlier config's that are not among them are removed.
	Manifests map[string][]byte
	Prober    Prober
	Backoff   Backoff
	// ProbeEvery is the readiness poll period (default 2 s).
	ProbeEvery time.Duration
	// StopTimeout is how long a SIGTERM gets before SIGKILL (default 30 s).
	StopTimeout time.Duration
	Log         *slog.Logger
	// Start starts the process; as PID 1 it is the reaper's Start, so that
	// K3s's exit status is left for this supervisor's Wait. Default: cmd.Start.
	Start func(*exec.Cmd) error
	// Release is called with the pid once its Wait returned (the reaper's
	// Release). Default: nothing.
	Release func(pid int)
	// OpenKernelLog, when set, opens the kernel's log where it ends
	// (kmsg.OpenTail of /dev/kmsg) as each run starts: an exit the
	// kernel's OOM killer caused is named as such.
	OpenKernelLog func() (KernelTail, error)
	// SinceBoot, when set, adds t= (time since the kernel started) to the
	// "k3s started" line: the moment K3s's exec succeeded, which the boot
	// benchmarks measure.
	SinceBoot func() time.Duration
	// OnState is called (from the supervisor's goroutine) on every change
	// of state or of reason.
	OnState func(from, to State, reason string)
	// OnExec is called (from the supervisor's goroutine) once each start
	// of K3s has been tried: with its pid once the exec succeeded, or the
	// error.
	OnExec func(pid int, err error)
	// OnExit is called (from the supervisor's goroutine) when a run whose
	// exec succeeded ended on its own (not stopped, not restarted), with
	// why, once the state says so (restarting in…; NextStart).
	OnExit func(pid int, err error)
	// Output keeps K3s's recent output lines (default: a new ring of 500).
	// The node hands each supervisor it starts the same ring, so that K3s's
	// log read through the local API carries on, numbered, across a config
	// applied (a new supervisor).
	Output *logring.Ring

	mu       sync.Mutex
	state    State
	readyAt  time.Time     // when the state last became ready (zero when not ready)
	readyFor time.Duration // time spent ready in the current run, before readyAt
	reason   string
	trouble  string // what K3s keeps saying that it cannot get past, with what to do (troubles)
	restarts int
	pid      int // the running (or last) K3s's process id
	ring     *logring.Ring
	// retry, while Run waits out a backoff (non-nil), ends the wait;
	// retryWhy is a RetryNow's reason while K3s ran (until it is ready).
	retry    chan string
	retryWhy string
	nextAt   time.Time // when K3s is started next, while Run waits out a backoff
	// restart, while a K3s process runs (non-nil), stops it to start it
	// again at once (Restart).
	restart chan string
	// exitedOwn is true from the moment runOnce saw K3s exit on its own
	// until Run waits out the backoff (retry set): a Restart or RetryNow
	// then is kept in retryWhy, so that the wait ends at once.
	exitedOwn bool
}

// Restart stops the running K3s (SIGTERM, then SIGKILL after StopTimeout,
// as at shutdown) and starts it again at once, without a backoff, saying
// why: something K3s took when it started has changed (the node's
// address, which K3s picks once). The restart is counted, not as a crash.
// Waiting out a backoff, or as K3s exits on its own, K3s starts at once
// instead (RetryNow). It reports whether it did either.
func (s *Supervisor) Restart(why string) bool {
	s.mu.Lock()
	if ch := s.restart; ch != nil {
		// Sent under the lock: runOnce clears s.restart and takes what is
		// in ch under it too, so that a restart asked for as K3s exits on
		// its own is not lost.
		defer s.mu.Unlock()
		select {
		case ch <- why:
			return true
		default:
			return false // one is under way
		}
	}
	s.mu.Unlock()
	return s.RetryNow(why)
}

// restarted is runOnce's error when Restart stopped K3s.
type restarted struct{ why string }

func (r *restarted) Error() string { return "restarted: " + r.why }

// RetryNow ends the wait before K3s's next start, when Run is waiting out
// a backoff after an exit, and says why: something K3s lacked may be there
// now (an address: K3s picks its node IP from the default route). It
// returns true then. While K3s is starting (launched, its API not up yet:
// when it would find the address missing), its next exit is not waited out
// either, unless it becomes ready first (it did not lack it). At any other
// time it does nothing. Between K3s's exit on its own and the wait, it is
// kept for the wait, which then ends at once: it returns true then too.
func (s *Supervisor) RetryNow(why string) bool {
	s.mu.Lock()
	ch := s.retry
	if ch == nil && s.exitedOwn {
		if s.retryWhy == "" {
			s.retryWhy = why
		}
		s.mu.Unlock()
		return true
	}
	if ch == nil && s.state == StateStarting {
		s.retryWhy = why
	}
	s.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case ch <- why:
		return true
	default:
		return false
	}
}

// NextStart is when K3s is started again while the supervisor waits out a
// backoff after an exit or a failed exec; zero at any other time.
func (s *Supervisor) NextStart() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextAt
}

// execFailed is runOnce's error when K3s could not be executed at all.
type execFailed struct{ err error }

func (e *execFailed) Error() string { return e.err.Error() }
func (e *execFailed) Unwrap() error { return e.err }

// KillWait bounds the wait for K3s's exit after its SIGKILL: a process
// stuck in the kernel (state D, storage that does not answer) may never
// exit, and a stop (a config applied, the shutdown) must not wait for it
// for ever. Tests shorten it.
var KillWait = 10 * time.Second

// LeftBehind is stop's error when K3s did not exit after its SIGKILL
// within KillWait: its process is left behind.
type LeftBehind struct {
	Pid    int
	Waited time.Duration
}

func (e *LeftBehind) Error() string {
	return fmt.Sprintf("K3s (pid %d) did not exit %s after SIGKILL: its process is left behind (stuck in the kernel)", e.Pid, e.Waited)
}

// KernelTail is the kernel's log from a moment on (*kmsg.Tail).
type KernelTail interface {
	Read() ([]kmsg.Record, error)
	Close() error
}

// Status is a snapshot for the local API and the console.
type Status struct {
	State    State  `json:"state"`
	Reason   string `json:"reason,omitempty"`
	Restarts int    `json:"restarts"`
	// Trouble is what K3s keeps logging while it retries, in Étoile's
	// words with what to do, until it is ready.
	Trouble string `json:"trouble,omitempty"`
}

// troubles are messages K3s logs, and retries after, for something it
// cannot get past by itself, with what to do.
var troubles = []struct{ in, say string }{
	{"Node password rejected", "K3s's servers refuse this node's password (the cluster token changed, or another machine registered this name): " +
		"delete its secret on a server, kubectl -n kube-system delete secret <this node's name>.node-password.k3s, or give this machine another hostname"},
	{"x509: certificate has expired or is not yet valid", "a certificate is not valid at this machine's time: check the clock (etoile-agent status, time)"},
}

// notTrouble are lines that hold a trouble's words about someone else: a
// client whose certificate the API server refused.
var notTrouble = []string{"Unable to authenticate the request", "TLS handshake error from"}

func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	if st == "" {
		st = StateStopped
	}
	return Status{State: st, Reason: s.reason, Restarts: s.restarts, Trouble: s.trouble}
}

// Logs returns K3s's most recent output lines, oldest first.
func (s *Supervisor) Logs() []string {
	s.mu.Lock()
	r := s.ring
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	return r.Lines()
}

func (s *Supervisor) setState(to State, reason string) {
	s.mu.Lock()
	if to == StateReady || to == StateRunning || to == StateStopped {
		s.retryWhy = "" // K3s's API answers: it lacked nothing; or it was stopped
	}
	if to == StateReady || to == StateStopped {
		s.trouble = ""
	}
	from := s.state
	if from == "" {
		from = StateStopped
	}
	// A new reason in the same state (another restart) is news too.
	changed := from != to || s.reason != reason
	now := time.Now()
	switch {
	case to == StateReady && s.readyAt.IsZero():
		s.readyAt = now
	case to != StateReady && !s.readyAt.IsZero():
		s.readyFor += now.Sub(s.readyAt)
		s.readyAt = time.Time{}
	}
	s.state, s.reason = to, reason
	cb := s.OnState
	s.mu.Unlock()
	if changed && cb != nil {
		cb(from, to, reason)
	}
}

func (s *Supervisor) path(p string) string { return filepath.Join(s.Root, filepath.FromSlash(p)) }

// Paths K3s reads; they are K3s's documented defaults.
const (
	ConfigPath     = "/etc/rancher/k3s/config.yaml"
	RegistriesPath = "/etc/rancher/k3s/registries.yaml"
	KubeconfigPath = "/etc/rancher/k3s/k3s.yaml"
	LogPath        = "/var/log/k3s.log"
)

// WriteConfig writes config.yaml and registries.yaml (or removes a stale
// registries.yaml), each replaced atomically (config.ReplaceFile).
func (s *Supervisor) WriteConfig() error {
	if _, err := config.ReplaceFile(s.path(ConfigPath), s.Config); err != nil {
		return fmt.Errorf("writing K3s config: %w", err)
	}
	var reg []byte
	if len(s.Registries) > 0 {
		reg = s.Registries
	}
	if err := s.writeTLSFiles(); err != nil {
		return fmt.Errorf("writing the registries' TLS files: %w", err)
	}
	if _, err := config.ReplaceFile(s.path(RegistriesPath), reg); err != nil {
		return fmt.Errorf("writing K3s registries: %w", err)
	}
	if err := s.writeManifests(); err != nil {
		return fmt.Errorf("writing the machine config's manifests: %w", err)
	}
	return nil
}

// writeManifests writes Manifests (mode 0600: a manifest may hold a
// Secret) and removes the files of config.ManifestDir an earlier config's
// manifests were written to that are not among them. K3s does not delete
// what a removed file deployed (kubectl delete does). A file that is the
// same is left alone: K3s applies a file again when it changes.
func (s *Supervisor) writeManifests() error {
	for _, rel := range slices.Sorted(maps.Keys(s.Manifests)) {
		if path.Dir(rel) != config.ManifestDir || !strings.HasPrefix(path.Base(rel), config.ManifestPrefix) {
			return fmt.Errorf("%s is not a manifest file of the machine config", rel)
		}
		if _, err := config.ReplaceFile(s.path(rel), s.Manifests[rel]); err != nil {
			return err
		}
	}
	files, err := os.ReadDir(s.path(config.ManifestDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		rel := path.Join(config.ManifestDir, f.Name())
		if _, keep := s.Manifests[rel]; keep || !f.Type().IsRegular() || !strings.HasPrefix(f.Name(), config.ManifestPrefix) || !strings.HasSuffix(f.Name(), ".yaml") {
			continue
		}
		if err := os.Remove(s.path(rel)); err != nil {
			errs = append(errs, err)
			continue
		}
		if s.Log != nil {
			s.Log.Info("manifest file removed: the machine config no longer lists it; what it deployed stays (kubectl delete removes it)", "file", "/"+rel)
		}
	}
	return errors.Join(errs...)
}

// writeTLSFiles writes TLSFiles (mode 0600: a client key is among them) and
// removes the other files and the emptied folders of config.RegistryTLSDir,
// before registries.yaml names them.
func (s *Supervisor) writeTLSFiles() error {
	dir := s.path(config.RegistryTLSDir)
	for _, rel := range slices.Sorted(maps.Keys(s.TLSFiles)) {
		if !strings.HasPrefix(rel, config.RegistryTLSDir+"/") {
			return fmt.Errorf("%s is not under %s", rel, config.RegistryTLSDir)
		}
		if _, err := config.ReplaceFile(s.path(rel), s.TLSFiles[rel]); err != nil {
			return err
		}
	}
	hosts, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var errs []error
	for _, h := range hosts {
		hdir := filepath.Join(dir, h.Name())
		rel := path.Join(config.RegistryTLSDir, h.Name())
		if !h.IsDir() {
			errs = append(errs, os.Remove(hdir)) // TLSFiles are all in a host's folder
			continue
		}
		files, err := os.ReadDir(hdir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		left := 0
		for _, f := range files {
			if _, keep := s.TLSFiles[path.Join(rel, f.Name())]; keep {
				left++
				continue
			}
			if err := os.RemoveAll(filepath.Join(hdir, f.Name())); err != nil {
				errs = append(errs, err)
				left++
			}
		}
		if left == 0 {
			errs = append(errs, os.Remove(hdir))
		}
	}
	return errors.Join(errs...)
}

// Run supervises K3s until ctx is done, then stops it cleanly. It returns
// only then, or when the configuration cannot be written.
func (s *Supervisor) Run(ctx context.Context) error {
	s.defaults()
	if err := s.WriteConfig(); err != nil {
		s.setState(StateInvalid, err.Error())
		return err
	}
	wait := s.Backoff.Initial
	quick := 0
	for {
		started := time.Now()
		s.mu.Lock()
		s.readyAt, s.readyFor = time.Time{}, 0
		s.mu.Unlock()
		// The kernel's log from this run's start: what its OOM killer ended.
		var klog KernelTail
		if s.OpenKernelLog != nil {
			if t, kerr := s.OpenKernelLog(); kerr == nil {
				klog = t
			} else {
				s.Log.Debug("kernel log not followed", "reason", kerr.Error())
			}
		}
		err := s.runOnce(ctx)
		if klog != nil {
			if err != nil && ctx.Err() == nil {
				if recs, kerr := klog.Read(); kerr == nil {
					s.mu.Lock()
					pid := s.pid
					s.mu.Unlock()
					err = explainExit(err, pid, recs)
				}
			}
			klog.Close()
		}
		if ctx.Err() != nil {
			s.mu.Lock()
			s.exitedOwn = false
			s.mu.Unlock()
			reason := stopReason(ctx)
			if lb := (*LeftBehind)(nil); errors.As(err, &lb) {
				reason += "; " + lb.Error()
			}
			s.setState(StateStopped, reason)
			return nil
		}
		ran := time.Since(started)
		// Only a run that was healthy (ready, from the Kubernetes API) for
		// ResetAfter resets the wait: a K3s that dies after minutes
		// without ever being ready is still crash-looping.
		s.mu.Lock()
		healthy := s.readyFor
		if !s.readyAt.IsZero() {
			healthy += time.Since(s.readyAt)
		}
		s.mu.Unlock()
		if healthy >= s.Backoff.ResetAfter {
			wait, quick = s.Backoff.Initial, 0
		}
		if r := (*restarted)(nil); errors.As(err, &r) {
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
			continue // no backoff: it did not fail
		}
		if healthy < s.Backoff.ResetAfter {
			quick++
		}
		var reason string
		ef := (*execFailed)(nil)
		notExecuted := errors.As(err, &ef)
		if notExecuted {
			// Not a restart: K3s never ran.
			reason = fmt.Sprintf("could not start K3s: %v; trying again in %s", err, wait)
			s.Log.Warn("k3s could not be started", "err", err, "retry_in", wait)
		} else {
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
			reason = fmt.Sprintf("k3s exited after %s: %v; restarting in %s", ran.Round(time.Millisecond), err, wait)
			s.Log.Warn("k3s exited", "after", ran.Round(time.Millisecond), "err", err, "restart_in", wait)
		}
		retry := make(chan string, 1)
		s.mu.Lock()
		if s.retryWhy != "" {
			retry <- s.retryWhy // told while it started, or as it exited
			s.retryWhy = ""
		}
		s.retry, s.exitedOwn = retry, false
		s.nextAt = time.Now().Add(wait)
		pid := s.pid
		s.mu.Unlock()
		if quick >= s.Backoff.Crashloop {
			s.setState(StateCrashloop, reason)
		} else {
			s.setState(StateStarting, reason)
		}
		if !notExecuted && s.OnExit != nil {
			s.OnExit(pid, err)
		}
		select {
		case <-ctx.Done():
		case why := <-retry:
			s.Log.Info("k3s restarting now", "why", why)
		case <-time.After(wait):
		}
		s.mu.Lock()
		s.retry, s.nextAt = nil, time.Time{}
		s.mu.Unlock()
		if ctx.Err() != nil {
			s.setState(StateStopped, stopReason(ctx))
			return nil
		}
		wait = min(wait*2, s.Backoff.Max)
	}
}

// fatalRE finds a fatal message in K3s's log lines (logrus's text form:
// time="…" level=fatal msg="…", or msg=word).
var fatalRE = regexp.MustCompile(`\blevel=fatal msg=("(?:[^"\\]|\\.)*"|[^"\s]\S*)`)

// fatalMessage returns the message of a fatal log line, cut at 300 bytes.
func fatalMessage(line string) (string, bool) {
	m := fatalRE.FindStringSubmatch(line)
	if m == nil {
		return "", false
	}
	msg := m[1] // logrus quotes only what needs it
	if strings.HasPrefix(msg, `"`) {
		if u, err := strconv.Unquote(msg); err == nil {
			msg = u
		} else {
			msg = strings.Trim(msg, `"`)
		}
	}
	if len(msg) > 300 {
		msg = strings.ToValidUTF8(msg[:300], "") + "…"
	}
	return msg, true
}

// oomKillRE finds the kernel's OOM killer's record of a process it ended
// ("Out of memory: Killed process 93 (k3s) total-vm:…", "Memory cgroup out
// of memory: Killed process …").
var oomKillRE = regexp.MustCompile(`Killed process (\d+) \(([^)]*)\)`)

// errOOMKilled explains a K3s the kernel's out-of-memory killer ended.
var errOOMKilled = errors.New("killed by the kernel's out-of-memory killer: the machine ran out of memory; " +
	"K3s and its pods need more than it has, or a pod without a memory limit took it")

// explainExit says when the kernel's OOM killer caused K3s's exit, from the
// kernel's records of the run: K3s itself (pid) died of SIGKILL and the OOM
// killer's record names it, or the machine ran out of memory (not a memory
// cgroup's limit, which a pod's own containerd may hit) and the record names
// a containerd (K3s then exits on its own).
func explainExit(err error, pid int, recs []kmsg.Record) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	sigkill := false
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		sigkill = true
	}
	for _, r := range recs {
		if !strings.Contains(r.Msg, "out of memory") && !strings.Contains(r.Msg, "Out of memory") {
			continue
		}
		m := oomKillRE.FindStringSubmatch(r.Msg)
		if m == nil {
			continue
		}
		victim, _ := strconv.Atoi(m[1])
		switch {
		case sigkill && victim == pid && strings.HasPrefix(r.Msg, "Memory cgroup"):
			return fmt.Errorf("%w (killed by the kernel's out-of-memory killer: its memory cgroup's limit was reached)", err)
		case sigkill && victim == pid:
			return fmt.Errorf("%w (%w)", err, errOOMKilled)
		case m[2] == "containerd" && strings.HasPrefix(r.Msg, "Out of memory"):
			return fmt.Errorf("%w (the kernel's out-of-memory killer ended its containerd, pid %d: the machine ran out of memory)", err, victim)
		}
	}
	return err
}

// stopReason says why ctx ended: its cause when one was given (a config
// applied through the local API), else the agent's shutdown.
func stopReason(ctx context.Context) string {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) && !errors.Is(c, context.DeadlineExceeded) {
		return c.Error()
	}
	return "agent shutting down"
}

func (s *Supervisor) defaults() {
	if s.Log == nil {
		s.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.Backoff == (Backoff{}) {
		s.Backoff = DefaultBackoff
	}
	if s.ProbeEvery == 0 {
		s.ProbeEvery = 2 * time.Second
	}
	if s.StopTimeout == 0 {
		s.StopTimeout = 30 * time.Second
	}
	s.mu.Lock()
	if s.ring == nil {
		s.ring = s.Output
	}
	if s.ring == nil {
		s.ring = logring.New(500)
	}
	s.mu.Unlock()
}

// runOnce starts K3s, watches readiness while it runs, and returns when it
// exits (its exit error) or when ctx ends (after stopping it).
func (s *Supervisor) runOnce(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		// Shutting down (or a new config coming) since this run was
		// decided: K3s is not started only to be stopped.
		return err
	}
	if pgid, pid := stillBehind("/proc"); pgid != 0 {
		err := fmt.Errorf("the K3s an earlier run left behind has not exited (process %d of its group %d, stuck in the kernel): "+
			"another is not started beside it, where its ports and files would clash; reboot the machine", pid, pgid)
		// A start tried and failed, as an exec that failed: whoever waits
		// for it (a config applied) is told.
		if s.OnExec != nil {
			s.OnExec(0, err)
		}
		return &execFailed{err}
	}
	bin := s.Binary
	if s.Root != "/" && s.Root != "" {
		bin = s.path(s.Binary)
	}
	if err := raiseLimits(); err != nil {
		s.Log.Warn("K3s keeps this process's limits", "reason", err.Error())
	}
	cmd := exec.Command(bin, s.Args...)
	cmd.Env = append([]string{"PATH=" + SystemPath, "HOME=/root"}, s.Env...)
	cmd.Dir = s.Root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Once K3s has exited, its output is read 5 s more at most: a process
	// of its own that left its group with the pipe (a daemon it forked)
	// must not hold the wait, and the stop, for as long as it lives.
	cmd.WaitDelay = 5 * time.Second
	logs, err := openLog(s.path(LogPath), MaxLogSize)
	if err != nil {
		// Its lines stay in memory (etoile-agent logs k3s): not a reason
		// to keep K3s from running.
		s.Log.Warn("K3s's log is kept in memory only", "file", LogPath, "reason", err.Error())
		logs = &logFile{}
	}
	defer logs.Close()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	copied := make(chan struct{})
	var fatal string // the run's last fatal log message (read once copied is closed)
	go func() {
		defer close(copied)
		// The pipe is read until it is closed whatever happens: a K3s
		// whose output is not read blocks writing it. A line whose
		// handling crashes (logged) is passed over and reading goes on,
		// with the same reader (nothing it holds is lost); after 10
		// crashes in a run the lines are only read, not kept.
		defer func() { _, _ = io.Copy(io.Discard, pr) }()
		// (readLines itself, outside the handler's safego.Run, must not
		// take PID 1 down either: the pipe is then drained above.)
		defer safego.Recover(s.Log, "reading K3s's output")
		crashes := 0
		readLines(pr, MaxLineLen, func(line string) { // until the pipe is closed
			if crashes >= 10 {
				return
			}
			if safego.Run(s.Log, "reading K3s's output", func() {
				s.ring.Add(line)
				logs.writeLine(line)
				if m, ok := fatalMessage(line); ok {
					fatal = m
				}
				for _, tr := range troubles {
					if strings.Contains(line, tr.in) && !slices.ContainsFunc(notTrouble, func(n string) bool { return strings.Contains(line, n) }) {
						s.noteTrouble(tr.say)
					}
				}
			}) {
				if crashes++; crashes == 10 {
					s.Log.Error("K3s's output is no longer kept: handling it crashed 10 times in this run", "fix", "report this as a bug with the error lines above")
				}
			}
		})
	}()
	s.setState(StateStarting, "")
	began := time.Now()
	start := cmd.Start
	if s.Start != nil {
		start = func() error { return s.Start(cmd) }
	}
	if err := start(); err != nil {
		pw.Close()
		<-copied
		if !strings.Contains(err.Error(), bin) {
			err = fmt.Errorf("%s: %w", bin, err) // exec's own error names it
		}
		if s.OnExec != nil {
			s.OnExec(0, err)
		}
		return &execFailed{err}
	}
	s.mu.Lock()
	s.pid = cmd.Process.Pid
	s.mu.Unlock()
	if ra, ok := s.Prober.(RunAware); ok {
		ra.RunStarted(began)
	}
	attrs := []any{"pid", cmd.Process.Pid}
	if s.SinceBoot != nil {
		attrs = append(attrs, "t", fmt.Sprintf("%.2fs", s.SinceBoot().Seconds()))
	}
	s.Log.Info("k3s started", append(attrs, "args", s.Args)...)
	if s.OnExec != nil {
		s.OnExec(cmd.Process.Pid, nil)
	}
	// Restart acts from now on: after OnExec, which may record what this
	// run took (the node's address).
	restart := make(chan string, 1)
	s.mu.Lock()
	s.restart = restart
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.restart = nil
		s.mu.Unlock()
	}()
	// endedOwn is called once K3s has exited on its own: Restart stops
	// sending to restart, and a restart asked for meanwhile (why, or one
	// still in restart) ends the wait before the next start at once, as
	// Restart promised when it returned true.
	endedOwn := func(why string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.restart, s.exitedOwn = nil, true
		select {
		case w := <-restart:
			why = cmp.Or(why, w)
		default:
		}
		if why != "" && s.retryWhy == "" {
			s.retryWhy = why
		}
	}
	exited := make(chan error, 1)
	go func() {
		err := errors.New("waiting for it crashed")
		defer func() { exited <- err }()
		defer safego.Recover(s.Log, "waiting for K3s")
		err = cmd.Wait()
		if s.Release != nil {
			s.Release(cmd.Process.Pid)
		}
	}()

	tick := time.NewTicker(s.ProbeEvery)
	defer tick.Stop()
	var lastErr string
	probe := func() {
		if s.Prober == nil || ctx.Err() != nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var (
			st  State
			why string
			err error
		)
		if rp, ok := s.Prober.(ReasonProber); ok {
			st, why, err = rp.ProbeReason(pctx)
		} else {
			st, err = s.Prober.Probe(pctx)
		}
		cancel()
		if ctx.Err() != nil {
			// Stopped meanwhile (a shutdown, a config applied): what the
			// probe found, or its cancelled request, says nothing of K3s.
			return
		}
		if err != nil && err.Error() != lastErr {
			s.Log.Info("k3s not answering yet", "reason", err.Error())
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
		switch {
		case err != nil && s.Status().State == StateStarting:
			// Still coming up: logged above when the reason changes.
		case err != nil:
			s.setState(StateRunning, "API not answering: "+err.Error())
		case st == StateReady:
			if s.Status().State != StateReady {
				s.Log.Info("k3s ready", "since_start", time.Since(began).Round(time.Millisecond))
			}
			s.setState(StateReady, "")
		case why != "":
			s.setState(StateRunning, why)
		default:
			s.setState(StateRunning, "node not Ready yet")
		}
	}
	exit := func(err error) error {
		pw.Close()
		<-copied
		if err == nil {
			err = errors.New("exit status 0")
		}
		if fatal != "" {
			// Why K3s stopped, in its own words, on the console too.
			err = fmt.Errorf("%w: %s", err, fatal)
		}
		return err
	}
	for {
		select {
		case err := <-exited:
			endedOwn("")
			return exit(err)
		case <-tick.C:
			probe()
		case why := <-restart:
			select {
			case err := <-exited: // it ended on its own meanwhile
				endedOwn(why)
				return exit(err)
			default:
			}
			s.Log.Info("k3s restarting", "why", why)
			s.setState(StateStarting, "restarting: "+why)
			_ = s.stop(cmd, exited, nil)
			pw.Close()
			<-copied
			return &restarted{why: why}
		case <-ctx.Done():
			// The reason Run gives once K3s has exited: one state line.
			err := s.stop(cmd, exited, func() { s.setState(StateStopped, stopReason(ctx)) })
			pw.Close()
			<-copied
			return err
		}
	}
}

// stop sends SIGTERM to K3s's process group, waits, then SIGKILLs it and
// waits KillWait at most more (a *LeftBehind error then: logged, and the
// stop goes on without it). signalled, when not nil, runs once the SIGTERM
// is sent; the end is logged ("k3s stopped"), so that the console shows
// K3s gone before what comes after (a power-off).
func (s *Supervisor) stop(cmd *exec.Cmd, exited <-chan error, signalled func()) error {
	pgid := cmd.Process.Pid
	start := time.Now()
	s.Log.Info("stopping k3s", "pid", pgid, "timeout", s.StopTimeout)
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	if signalled != nil {
		signalled()
	}
	var err error
	select {
	case err = <-exited:
	case <-time.After(s.StopTimeout):
		s.Log.Warn("k3s did not stop in time: killing it", "timeout", s.StopTimeout)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case err = <-exited:
		case <-time.After(KillWait):
			lb := &LeftBehind{Pid: pgid, Waited: KillWait}
			noteLeftBehind(pgid)
			s.Log.Error("k3s did not exit after SIGKILL: its process is left behind", "pid", pgid, "waited", KillWait,
				"fix", "it is stuck in the kernel (state D in /proc/"+strconv.Itoa(pgid)+"/stat; often storage that does not answer): check the kernel's messages (etoile-agent logs kernel) and reboot the machine")
			return lb
		}
	}
	s.Log.Info("k3s stopped", "pid", pgid, "took", time.Since(start).Round(time.Millisecond))
	return err
}

// MaxLineLen bounds one line of K3s's output kept (in memory and in its
// log file): a longer one is cut, marked with "…", and the reading goes on.
const MaxLineLen = 16 << 10

// readLines calls line with each line r holds, without its newline, each
// cut to max bytes (a longer one ends in "…"), until r ends.
func readLines(r io.Reader, limit int, line func(string)) {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	cut := false
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			end := chunk[len(chunk)-1] == '\n'
			if end {
				chunk = chunk[:len(chunk)-1]
			}
			if room := limit - len(buf); len(chunk) > room {
				chunk, cut = chunk[:max(room, 0)], true
			}
			buf = append(buf, chunk...)
			if end {
				l := strings.TrimSuffix(string(buf), "\r")
				if cut {
					l = strings.ToValidUTF8(l, "") + "…"
				}
				line(l)
				buf, cut = buf[:0], false
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			if len(buf) > 0 || cut {
				l := string(buf)
				if cut {
					l = strings.ToValidUTF8(l, "") + "…"
				}
				line(l)
			}
			return
		}
	}
}

// MaxLogSize bounds /var/log/k3s.log: past it the file becomes k3s.log.1
// (replacing the previous one) and a new one starts, so that a node up for
// months keeps at most twice this of K3s's output, in the overlay's RAM
// until the state partition holds /var.
const MaxLogSize = 4 << 20

// logFile appends lines to a file rotated at max bytes.
type logFile struct {
	path string
	max  int64
	f    *os.File
	size int64
}

func openLog(path string, max int64) (*logFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	l := &logFile{path: path, max: max}
	return l, l.open()
}

func (l *logFile) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, st.Size()
	return nil
}

// writeLine appends line, rotating first when it would pass max. A write
// that fails is dropped: the lines stay in the ring.
func (l *logFile) writeLine(line string) {
	if l.f == nil {
		return
	}
	if l.size > 0 && l.size+int64(len(line))+1 > l.max {
		l.f.Close()
		l.f = nil
		if err := os.Rename(l.path, l.path+".1"); err != nil || l.open() != nil {
			return
		}
	}
	n, _ := fmt.Fprintln(l.f, line)
	l.size += int64(n)
}

func (l *logFile) Close() error {
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}

// noteTrouble records what K3s cannot get past, saying it once on the log.
func (s *Supervisor) noteTrouble(say string) {
	news := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.state == StateReady || s.state == StateStopped || s.state == "" {
			return false // ready: it got past it; stopped: the last words of a run
		}
		news := s.trouble != say
		s.trouble = say
		return news
	}()
	if news {
		s.Log.Warn("K3s keeps failing", "reason", say)
	}
}
