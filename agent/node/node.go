// Package node runs what an Étoile node does once it has booted: it finds
// and validates the machine config, runs K3s under supervision, and serves
// the local API. It never stops the agent: an invalid config is shown on
// the console with its field errors and K3s is simply not started, so the
// machine stays up to be fixed.
package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/inventory"
	"github.com/etoile-os/etoile/agent/k3s"
	"github.com/etoile-os/etoile/agent/kmsg"
	"github.com/etoile-os/etoile/agent/logfwd"
	"github.com/etoile-os/etoile/agent/logring"
	"github.com/etoile-os/etoile/agent/nvpersist"
	"github.com/etoile-os/etoile/agent/safego"
	"github.com/etoile-os/etoile/agent/timesync"
)

// Env is what the booted machine hands over.
type Env struct {
	// Root is the node's root: "/" on a node, a folder in tests.
	Root string
	// ConfigURL is etoile.config= from the kernel command line.
	ConfigURL string
	// ConfigVolume returns the ETOILE-CFG volume's config source, nil when
	// there is none (finding it, and mounting it where it must be, is the
	// boot's: the machine's ConfigVolume); nil in tests that have none.
	ConfigVolume func() config.Source
	// BootMedia are folders of the mounted boot medium (the ISO).
	BootMedia []string
	// ESP is /etoile/config.yaml on the boot disk's EFI system partition
	// (a raw or installed disk's); nil for other boots. Read only when no
	// earlier source has a config.
	ESP config.Source
	// State mounts the STATE partition of an installed machine and
	// returns its folder; an error wrapping config.ErrNotFound means there
	// is none. It is called only when no earlier source has a config. Nil
	// in tests that have none.
	State func() (string, error)
	// Broadcast prints one line on every console.
	Broadcast func(line string)
	// ReadyLine is the boot's ready line without the k3s field.
	ReadyLine func() string
	// Status fills the parts of the local API's status the boot knows.
	Status func() api.Status
	// Start and Release let PID 1's reaper leave K3s's exit to the supervisor.
	Start   func(*exec.Cmd) error
	Release func(pid int)
	// K3sEnv is extra environment for K3s (tests point the stand-in's root).
	K3sEnv []string
	// PersistencedEnv, when not nil, is the environment of NVIDIA's
	// persistence daemon (tests point its stand-in); nil gives it K3s's
	// PATH.
	PersistencedEnv []string
	// Slot is the booted slot (a, b or none), for heartbeats.
	Slot string
	// BootDevice is the block device the boot found the system image on
	// (/dev/sr0, /dev/sda for a stick, /dev/vda2 for a slot), "" for a
	// netboot: the inventory marks that disk as the boot medium, where its
	// own rules (labels) could match several, or a stick left in.
	BootDevice string
	// NodeName is the system's hostname.
	NodeName string
	// ApplyNetwork configures the machine config's network section and
	// hostname (the boot's Machine.ApplyNetwork); nil leaves the network
	// as the boot made it.
	ApplyNetwork func(ctx context.Context, cfg *config.MachineConfig) error
	// DriversLoaded, when not nil, is closed once the drivers the system
	// image's own modules add are loaded (an extension's GPU driver): the
	// GPU's inventory waits for it (at most a minute).
	DriversLoaded <-chan struct{}
	// DriversSettled, when not nil, is closed once those drivers have
	// really finished loading: DriversLoaded stops waiting for a slow one
	// (a GPU driver on a machine with many GPUs) after a while.
	DriversSettled <-chan struct{}
	// AgentLogs returns the agent's log lines (its console log) after a
	// line number, as logring.Ring.Since does; nil when not kept.
	AgentLogs func(after uint64) (lines []string, next, skipped uint64)
	// AgentLogsAt is AgentLogs with each line's time (logring.Ring.SinceAt),
	// for the logs sent to the config's logging destinations; nil: AgentLogs
	// without times.
	AgentLogsAt func(after uint64) (lines []logring.Line, next, skipped uint64)
	// SyslogLogs returns what daemons wrote to /dev/log (package syslogd),
	// as AgentLogs; nil when nothing listens there.
	SyslogLogs func(after uint64) (lines []string, next, skipped uint64)
	// KernelLog reads the kernel's log records (kmsg.Read of /dev/kmsg on
	// a node); nil when there is none to read.
	KernelLog func() ([]kmsg.Record, error)
	// Clock is the clock the time service keeps (timesync.KernelClock on a
	// node); nil runs no time service (tests must not change the host's).
	Clock timesync.Clock
	// TimeFloor is the image's build time: a clock before it is wrong.
	TimeFloor time.Time
	// TimeBehind says the boot found the clock before TimeFloor (and set
	// it to it): K3s waits a little for an NTP answer.
	TimeBehind bool
	// NTPServers returns the NTP servers DHCP gave.
	NTPServers func() []string
	// Power starts the machine's reboot or power-off ("reboot",
	// "poweroff"); nil when this agent cannot (not PID 1).
	Power func(action string) error
	// ConfigRetry is how often a node without a usable machine config
	// reads its sources again (0: DefaultConfigRetry).
	ConfigRetry time.Duration
	// NodeAddress returns the address K3s would take for its node now, ""
	// for none (network.NodeAddress); nil when K3s is not to follow the
	// machine's address (tests without a network).
	NodeAddress func() string
	// NodeNetworks returns the networks of the machine's own addresses
	// now (10.0.0.0/24, 2001:db8::/64; network.NodeNetworks): K3s's
	// NO_PROXY gets them, as K3s's documentation asks, so that the nodes
	// reach each other (kubelets, etcd) without the proxy. nil: none.
	NodeNetworks func() []string
	// Socket is the local API's socket ("" for api.DefaultSocket).
	Socket string
	Log    *slog.Logger
}

// Node is the running node services.
type Node struct {
	env Env
	ctx context.Context
	wg  sync.WaitGroup
	// k3sMu serialises K3s's starts and stops: the boot's (from reading the
	// config to K3s's exec) and each config applied through the local API,
	// so that two never run two supervisors.
	k3sMu sync.Mutex

	mu          sync.Mutex
	configFrom  string
	cfg         *config.MachineConfig
	warnings    []string
	sup         *k3s.Supervisor
	stopK3s     func(reason error)
	supDone     chan struct{}
	k3sNote     string         // why K3s is not running, when it is not
	k3sAddr     string         // the node address K3s took at its last start (Env.NodeAddress)
	k3sName     string         // the node name K3s was last started with
	addrWarning string         // the status's warning that K3s could not follow the address ("" for none)
	k3sOut      *logring.Ring  // K3s's output, across its supervisors
	logFwd      logfwd.Manager // the logs sent to the config's logging destinations
	kfollow     *kmsg.Follower // the kernel's log, for logFwd (kernelFollower)
	kfollowOnce sync.Once
	powering    string // the reboot or power-off asked through the API
	inv         *inventory.Inventory
	invDone     <-chan struct{} // closed once inv is collected
	nvidiaGPU   bool            // K3s was started with NVIDIA GPU labels, on its own containerd
	runtimes    []k3s.Runtime   // the container runtimes K3s found when it was started
	time        *timesync.Service
	stopTime    context.CancelFunc // ends time's rounds
	persist     *nvpersist.Daemon  // NVIDIA's persistence daemon, when the node runs it
	cdiWaits    bool               // the CDI specification waits for NVIDIA's driver (ensureCDISpec)
	cdiNote     string             // why the CDI specification is missing though the image has nvidia-ctk ("" for none)
	conWarning  string             // the status's warning about the constellation ("" for none)

	cdiMu sync.Mutex // serialises the CDI specification's generations

	conMu sync.Mutex // serialises setConstellation
	con   *conRunner // the constellation client, when one runs

	// apiDone is closed once the local API stopped serving: after the
	// services (n.wg), so that status, logs and a second power request
	// are answered while K3s stops.
	apiDone chan struct{}
}

// Wait returns once everything Start began has stopped (after its context
// ended), the local API last.
func (n *Node) Wait() {
	n.wg.Wait()
	// What the machine said as it stopped (K3s's stop among it) to the
	// logging destinations, 3 s at most.
	n.logFwd.Close(3 * time.Second)
	if n.apiDone != nil {
		<-n.apiDone
	}
}

// K3sState is the k3s= value of the ready line.
func (n *Node) K3sState() string {
	n.mu.Lock()
	sup := n.sup
	n.mu.Unlock()
	if sup == nil {
		return string(k3s.StateStopped)
	}
	return string(sup.Status().State)
}

// AddressChanged is told of a link's address that came, changed or went
// after the boot's network step (addr "" when its lease ran out). K3s picks
// its node address once, as it starts, from the default route (unless its
// config names node-ip, or flannel-iface): a K3s that exited for want of
// one and waits out a restart's backoff starts again at once; a K3s running
// with an address the machine would not give it now (a renewal gave
// another, the cable moved) is restarted, so that the node, flannel and the
// API's certificate follow. Losing the address alone restarts nothing: there is none to give.
// Nor is a server with embedded etcd restarted: its etcd member keeps the
// address it joined with, and K3s would wait for it for ever; the status
// says so instead.
func (n *Node) AddressChanged(iface, addr string) {
	n.mu.Lock()
	sup, was, cfg := n.sup, n.k3sAddr, n.cfg
	if addr != "" {
		// A dhcp: true entry's warning that it is asked again is over.
		n.warnings = slices.DeleteFunc(slices.Clone(n.warnings), func(w string) bool {
			return strings.HasPrefix(w, "network: ") && strings.Contains(w, ": DHCP on "+iface+": ") &&
				strings.HasSuffix(w, "asking again in the background")
		})
	}
	n.mu.Unlock()
	if sup == nil {
		return
	}
	if n.env.NodeAddress == nil {
		if addr != "" {
			sup.RetryNow(fmt.Sprintf("%s got the address %s", iface, addr))
		}
		return
	}
	now := n.env.NodeAddress()
	warn := ""
	switch {
	case now == "" || now == was:
	case was == "":
		sup.RetryNow(fmt.Sprintf("%s got the address %s", iface, cmp.Or(addr, now)))
	case k3sNames(cfg, "node-ip") || k3sNames(cfg, "flannel-iface"):
		// K3s takes flannel-iface's address when node-ip is not given.
		n.env.Log.Info("K3s keeps the address its config names (node-ip, flannel-iface)", "was", was, "now", now, "iface", iface)
	case etcdMember(cfg):
		warn = fmt.Sprintf("network: the node's address changed from %s to %s (%s), but K3s keeps %s: its embedded etcd member "+
			"cannot change its address by itself (k3s server --cluster-reset does); give this machine a fixed address "+
			"(a DHCP reservation, or a static address in the machine config)", was, now, iface, was)
		n.env.Log.Warn("the node's address changed; K3s keeps its own: its embedded etcd member cannot follow",
			"was", was, "now", now, "iface", iface)
	default:
		sup.Restart(fmt.Sprintf("the node's address changed from %s to %s (%s)", was, now, iface))
	}
	n.mu.Lock()
	if n.sup == sup && now != "" {
		n.addrWarning = warn
	}
	n.mu.Unlock()
}

// k3sNames reports whether cfg's k3s section gives key a value (key+ too).
func k3sNames(cfg *config.MachineConfig, key string) bool {
	if cfg == nil {
		return false
	}
	return strings.Join(append(cfg.K3s[key].Strings(), cfg.K3s[key+"+"].Strings()...), "") != ""
}

// etcdMember reports whether cfg makes K3s a server with embedded etcd: one
// that starts the cluster, or joins one without a datastore of its own.
func etcdMember(cfg *config.MachineConfig) bool {
	return cfg != nil && cfg.Role == "server" && cfg.Cluster != nil && (cfg.Cluster.Init || cfg.Cluster.Server != "") &&
		!k3sNames(cfg, "datastore-endpoint")
}

// Start loads the machine config, starts K3s when the config asks for it,
// and serves the local API; it returns once K3s has been executed (or
// left stopped), with everything else running in the background until ctx
// ends.
func Start(ctx context.Context, env Env) *Node {
	if env.Root == "" {
		env.Root = "/"
	}
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	if env.Broadcast == nil {
		env.Broadcast = func(string) {}
	}
	n := &Node{env: env, ctx: ctx, k3sOut: logring.New(500), apiDone: make(chan struct{})}
	n.k3sMu.Lock() // an apply through the API waits for the boot's start
	defer n.k3sMu.Unlock()
	// The local API outlives ctx: it serves until the services have
	// stopped (K3s takes up to 30 s), so that a second reboot is refused
	// naming the first and status and logs still answer meanwhile.
	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(n.apiDone)
		defer n.recovered("local API")
		n.serveAPI(apiCtx)
	}()
	go func() {
		defer n.recovered("local API's stop")
		defer stopAPI()
		<-ctx.Done()
		n.wg.Wait()
	}()

	// The inventory is collected once K3s has been started, so that the
	// two do not compete for the CPU: only a machine with a GPU, whose K3s
	// needs the GPU labels, collects it first and makes K3s wait for it.
	invDone := make(chan struct{})
	n.invDone = invDone
	collect := sync.OnceFunc(func() {
		n.background("hardware inventory", func() {
			defer close(invDone)
			if inventoryHook != nil {
				inventoryHook()
			}
			// With NVIDIA's driver loaded, its persistence daemon first:
			// nvidia-smi then finds the GPUs set up and persistence on.
			n.startPersistenced(ctx)
			settledBefore := isClosed(env.DriversSettled)
			began := time.Now()
			inv, err := inventory.Collect(ctx, n.inventoryOptions())
			switch {
			case err != nil && ctx.Err() != nil:
				// The machine is shutting down: the inventory was stopped, not failed.
			case err != nil:
				env.Log.Warn("hardware inventory failed", "reason", err.Error())
			case inv != nil:
				env.Log.Info("hardware inventory", inventorySummary(inv, time.Since(began))...)
				for _, w := range inv.Warnings { // what it could not read: on the console too
					env.Log.Info("hardware inventory incomplete", "what", w)
				}
			}
			n.mu.Lock()
			n.inv = inv
			n.mu.Unlock()
			if !settledBefore && nvidiaWithoutDriver(inv) {
				n.inventoryAgain(ctx)
			}
		})
	})
	defer collect()
	data, from, err := n.findConfig(ctx)
	gpu := inventory.HasGPU(n.rootOrEmpty(), "nvidia") // the only GPUs the node's labels describe
	if gpu {
		if env.DriversLoaded != nil {
			// The driver names the GPU's model and answers nvidia-smi.
			select {
			case <-env.DriversLoaded:
			case <-time.After(time.Minute):
				env.Log.Warn("the GPU's driver is still loading: the inventory goes on without it")
			case <-ctx.Done():
			}
		}
		collect()
	}
	switch {
	case errors.Is(err, config.ErrNotFound):
		n.withoutConfig(ctx)
		n.note("no machine config found (etoile.config=, an ETOILE-CFG volume, or /etoile/config.yaml on the boot medium): K3s not started")
		n.watchConfig(ctx, nil, "", nil)
		return n
	case err != nil:
		n.withoutConfig(ctx)
		n.fail("config", err.Error(), fixSource)
		n.watchConfig(ctx, nil, from, err)
		return n
	}
	n.mu.Lock() // the local API already serves
	n.configFrom = from
	n.mu.Unlock()
	cfg, warns, err := config.Check(data)
	for _, w := range warns {
		env.Log.Warn("machine config", "from", from, "warning", w)
	}
	if err != nil {
		n.withoutConfig(ctx)
		n.showInvalid(from, err)
		n.watchConfig(ctx, data, "", nil)
		return n
	}
	env.Log.Info("machine config loaded", "from", from, "role", cfg.Role)
	warns = append(warns, n.applyNetwork(ctx, cfg)...)
	n.mu.Lock()
	n.cfg, n.warnings = cfg, warns
	n.mu.Unlock()
	n.startTime(ctx, cfg)
	warns = append(warns, n.applySysctls(cfg)...)
	warns = append(warns, n.applyTrust(cfg)...)
	n.setWarnings(append(warns, n.relog(cfg)...))
	if gpu {
		_ = n.waitInventory(ctx)
	}
	n.waitForTime(ctx)
	_ = n.startK3s(ctx, cfg, false) // a failure is on the consoles
	n.background("hardware inventory", collect)
	// Here, not once the inventory is done: a config applied meanwhile
	// sets the constellation after this one. Its client waits for the
	// inventory, which its join reports.
	n.setConstellation(cfg)
	return n
}

// DefaultConfigRetry is how often a node without a usable machine config
// reads its sources again.
const DefaultConfigRetry = 10 * time.Second

// fixSource is the fix for a config source that cannot deliver its config.
const fixSource = "fix the source named above, or remove it so the next one is used"

// showInvalid shows an invalid machine config's field errors on every console.
func (n *Node) showInvalid(from string, err error) {
	n.fail("config", fmt.Sprintf("machine config from %s is invalid: %s", from, oneLine(err.Error())),
		"correct the fields named above in its source: it is read again every "+n.configRetry().String()+
			" (or check a file with etoile-agent config validate FILE and apply it with etoile-agent config apply FILE)")
	for _, l := range strings.Split(err.Error(), "\n") {
		n.env.Broadcast("etoile: config error " + l)
	}
}

func (n *Node) configRetry() time.Duration {
	if n.env.ConfigRetry > 0 {
		return n.env.ConfigRetry
	}
	return DefaultConfigRetry
}

// watchConfig reads the config sources again, every ConfigRetry, while the
// node has no usable machine config — a USB stick labelled ETOILE-CFG
// plugged in, a config corrected on its server or volume, the network that
// was down when the boot fetched etoile.config= — and applies the first
// valid config found as the boot would have; then it ends, as it does once a
// config is applied through the local API. seen is the invalid config the
// boot found, errFrom the source whose read failed with errWas: neither is
// shown again while it stays so. A source's failure is shown again when
// it fails differently (its numbers aside, which may change from read to
// read: a port, a counter) and, the same, after remindConfigError.
func (n *Node) watchConfig(ctx context.Context, seen []byte, errFrom string, errWas error) {
	every := n.configRetry()
	n.env.Broadcast(fmt.Sprintf("etoile: waiting for a machine config: its sources are read again every %s", every))
	n.background("watching for a machine config", func() {
		var errShown time.Time
		errText := ""
		if errFrom != "" {
			errShown = time.Now()
			if errWas != nil {
				errText = sameFailure(errWas.Error())
			}
		}
		// A timer set again after each read: a download that takes its
		// whole 30 s is followed by a pause too.
		timer := time.NewTimer(every)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			n.mu.Lock()
			applied := n.cfg != nil
			n.mu.Unlock()
			if applied {
				return // through the local API
			}
			data, from, err := n.findConfig(ctx)
			timer.Reset(every)
			// A config applied through the local API while the sources were
			// read (a slow download) wins: nothing found is said or kept.
			setFrom := func(v string) bool {
				n.mu.Lock()
				defer n.mu.Unlock()
				if n.cfg != nil {
					return false
				}
				n.configFrom = v
				return true
			}
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, config.ErrNotFound):
				if errFrom != "" || seen != nil {
					// What was shown is gone (the stick pulled out).
					errFrom, errText, seen = "", "", nil
					if !setFrom("") {
						return
					}
					n.note("no machine config found (etoile.config=, an ETOILE-CFG volume, or /etoile/config.yaml on the boot medium): K3s not started")
				}
				continue
			case err != nil:
				text := sameFailure(err.Error())
				if from != errFrom || text != errText || time.Since(errShown) >= remindConfigError {
					n.fail("config", err.Error(), fixSource)
					errShown = time.Now()
				}
				errFrom, errText, seen = from, text, nil
				continue
			}
			errFrom, errText = "", ""
			if string(data) == string(seen) {
				continue
			}
			seen = data
			cfg, warns, err := config.Check(data)
			for _, w := range warns {
				n.env.Log.Warn("machine config", "from", from, "warning", w)
			}
			if err != nil {
				if !setFrom(from) {
					return
				}
				n.showInvalid(from, err)
				continue
			}
			if n.applyFound(ctx, cfg, warns, from) {
				return
			}
		}
	})
}

// remindConfigError is how often the same config source's failure is shown
// again while the node waits for a config.
const remindConfigError = 10 * time.Minute

// digits are what sameFailure leaves out.
var digits = regexp.MustCompile(`[0-9]+`)

// sameFailure is a config source's error as watchConfig compares it: its
// numbers left out, which change from read to read for the same failure
// (a connection's local port, a sector, a timeout's time).
func sameFailure(msg string) string { return digits.ReplaceAllString(msg, "#") }

// applyFound applies a valid config the watch found in its source, unless
// one was applied through the local API meanwhile (false then).
//
// k3sMu is released by a defer, so that a panic below (caught higher up)
// cannot leave it held and every later apply waiting for ever; the
// constellation is set before it is released, so that an apply through the
// API cannot come between and leave the client following this older config.
func (n *Node) applyFound(ctx context.Context, cfg *config.MachineConfig, warns []string, from string) bool {
	n.k3sMu.Lock()
	defer n.k3sMu.Unlock()
	n.mu.Lock()
	applied := n.cfg != nil
	n.mu.Unlock()
	if applied {
		return false
	}
	n.env.Log.Info("machine config loaded", "from", from, "role", cfg.Role)
	if _, err := n.applyLocked(ctx, cfg, warns, from); err != nil {
		if !errors.Is(err, api.ErrK3sNotStarted) {
			return false
		}
		// The config is the node's; K3s's state and the console say why
		// it is not running.
		n.env.Log.Warn("machine config applied, K3s not started", "reason", err.Error())
	}
	n.setConstellation(cfg) // its client waits for the inventory, which its join reports
	return true
}

// withoutConfig is what a node runs with no usable machine config: the
// clock kept, and Étoile's default kernel parameters.
func (n *Node) withoutConfig(ctx context.Context) {
	n.startTime(ctx, nil)
	n.setWarnings(n.applySysctls(nil))
}

func (n *Node) setWarnings(w []string) {
	n.mu.Lock()
	n.warnings = w
	n.mu.Unlock()
}

// startTime starts keeping the clock (cfg may be nil: no usable config),
// unless the config says time.disabled or the node has no clock to keep.
func (n *Node) startTime(ctx context.Context, cfg *config.MachineConfig) {
	if n.env.Clock == nil {
		return
	}
	if cfg.TimeDisabled() {
		n.env.Log.Info("clock left alone (time.disabled in the machine config)")
		return
	}
	tctx, stop := context.WithCancel(ctx)
	svc := timesync.Start(tctx, timesync.Options{
		Servers: n.timeServers,
		Clock:   n.env.Clock,
		Floor:   n.env.TimeFloor,
		Behind:  n.env.TimeBehind,
		Log:     n.env.Log,
	})
	n.mu.Lock()
	n.time, n.stopTime = svc, stop
	n.mu.Unlock()
}

// retime follows a config applied through the local API: time.disabled
// stops the rounds, its removal starts them (changed servers need nothing:
// the next round asks them).
func (n *Node) retime(cfg *config.MachineConfig) {
	n.mu.Lock()
	running, stop := n.time != nil, n.stopTime
	n.mu.Unlock()
	switch {
	case cfg.TimeDisabled() && running:
		stop()
		n.mu.Lock()
		n.time, n.stopTime = nil, nil
		n.mu.Unlock()
		n.env.Log.Info("clock left alone from now on (time.disabled in the applied config)")
	case !cfg.TimeDisabled() && !running:
		n.startTime(n.ctx, cfg)
	}
}

// timeServers are the NTP servers to ask now: the machine config's (an
// applied one's included), else DHCP's, else timesync.DefaultServer.
func (n *Node) timeServers() []string {
	n.mu.Lock()
	cfg := n.cfg
	n.mu.Unlock()
	if s := cfg.TimeServers(); len(s) > 0 {
		return s
	}
	if n.env.NTPServers != nil {
		if s := n.env.NTPServers(); len(s) > 0 {
			return s
		}
	}
	return []string{timesync.DefaultServer}
}

// TimeWait bounds how long K3s waits for an NTP answer when the clock was
// found before the image's build time: certificates made with a clock that
// is certainly wrong fail once it is right.
const TimeWait = 10 * time.Second

// waitForTime waits (TimeWait at most) for the first NTP answer, only when
// the clock was certainly wrong at boot.
func (n *Node) waitForTime(ctx context.Context) {
	n.mu.Lock()
	svc := n.time
	n.mu.Unlock()
	if svc == nil || !svc.Behind() {
		return
	}
	select {
	case <-svc.Synced():
		return
	default:
	}
	n.env.Log.Info("waiting for the time: the clock was before the image's build time", "at_most", TimeWait)
	select {
	case <-svc.Synced():
	case <-time.After(TimeWait):
		n.env.Log.Warn("starting K3s with an unsynchronised clock: its certificates may not be valid once the clock is right",
			"fix", "give the machine an NTP server it reaches (time.servers in the machine config, or DHCP option 42) or set its clock in the firmware")
	case <-ctx.Done():
	}
}

// criticalK3sValues are K3s's "Critical Configuration Values"
// (docs.k3s.io/cli/server): options every server of a cluster must give
// the same, or a server joining with another value fails to join (embedded
// etcd) or the cluster runs incorrectly (an external datastore). K3s keeps
// them in the cluster's data: a node that has K3s state already does not
// take a new value by a config alone. Each with what its change means;
// flag is a boolean option (K3sFlag: true, True and 1 are one value),
// secret one whose value is never shown.
var criticalK3sValues = []struct {
	key          string
	flag, secret bool
	what         string
}{
	{key: "cluster-cidr", what: networksFixed},
	{key: "service-cidr", what: networksFixed},
	{key: "cluster-dns", what: networksFixed},
	{key: "cluster-domain", what: "a cluster's DNS domain is fixed when it is created: every server must give the same, and running pods and services keep the names they got; changing it means rebuilding the cluster"},
	{key: "flannel-backend", what: "every server of a cluster must use the same flannel backend, and K3s does not move the running nodes and pods to another: change it on every server together and restart every node, or rebuild the cluster"},
	{key: "agent-token", secret: true, what: "the agents of the cluster join with it: change it with k3s token rotate --token-type agent on a server (K3s's documentation: k3s token), give every server the new value, and the agents too"},
	{key: "agent-token-file", what: "the agents of the cluster join with the token it holds: change it with k3s token rotate --token-type agent on a server (K3s's documentation: k3s token), and give every server the same"},
	{key: "secrets-encryption", flag: true, what: "every server must give the same; encryption of a running cluster's secrets is turned on or off with k3s secrets-encrypt (K3s's documentation: Secrets Encryption), not by the config alone"},
	{key: "secrets-encryption-provider", what: "every server must give the same; a running cluster's secrets are moved to another provider with k3s secrets-encrypt (K3s's documentation: Secrets Encryption), not by the config alone"},
	{key: "egress-selector-mode", what: sameOnEveryServer},
	{key: "embedded-registry", flag: true, what: sameOnEveryServer},
	{key: "disable-network-policy", flag: true, what: sameOnEveryServer},
	{key: "disable-helm-controller", flag: true, what: sameOnEveryServer},
	{key: "disable-cloud-controller", flag: true, what: sameOnEveryServer},
	{key: "flannel-external-ip", flag: true, what: sameOnEveryServer},
	{key: "flannel-ipv6-masq", flag: true, what: sameOnEveryServer},
}

const (
	networksFixed     = "a cluster's pod and service networks are fixed when it is created: K3s cannot move a running cluster to others, and every server must give the same; changing them means rebuilding the cluster"
	sameOnEveryServer = "K3s requires the same value on every server of a cluster (its \"Critical Configuration Values\", docs.k3s.io/cli/server): change it on every server together and restart them, or a server with another value fails to join (embedded etcd) or the cluster runs incorrectly"
)

// criticalK3sWarnings says which of K3s's critical configuration values
// (criticalK3sValues, and disable: servicelb) change from prev to next,
// two configs of a server.
func criticalK3sWarnings(prev, next *config.MachineConfig) []string {
	text := func(c *config.MachineConfig, key string) string {
		return strings.Join(append(c.K3s[key].Strings(), c.K3s[key+"+"].Strings()...), ",")
	}
	var w []string
	for _, cv := range criticalK3sValues {
		was, now := text(prev, cv.key), text(next, cv.key)
		if cv.flag {
			was, now = strconv.FormatBool(prev.K3sFlag(cv.key)), strconv.FormatBool(next.K3sFlag(cv.key))
		}
		if was == now {
			continue
		}
		if cv.secret {
			w = append(w, fmt.Sprintf("k3s.%s: changes: %s", cv.key, cv.what))
			continue
		}
		w = append(w, fmt.Sprintf("k3s.%s: changes from %s to %s: %s", cv.key, cmp.Or(was, "K3s's default"), cmp.Or(now, "K3s's default"), cv.what))
	}
	// Of the packaged components disable names, servicelb alone must be
	// the same on every server; the others may differ between servers.
	disables := func(c *config.MachineConfig) bool {
		for _, v := range strings.Split(text(c, "disable"), ",") {
			if strings.TrimSpace(v) == "servicelb" {
				return true
			}
		}
		return false
	}
	if was, now := disables(prev), disables(next); was != now {
		change := "now disables servicelb"
		if was {
			change = "no longer disables servicelb"
		}
		w = append(w, "k3s.disable: "+change+": "+sameOnEveryServer)
	}
	return w
}

// withNoProxy adds the entries of extra that env's NO_PROXY does not hold
// yet to its end.
func withNoProxy(env, extra []string) []string {
	out := slices.Clone(env)
	for i, kv := range out {
		v, ok := strings.CutPrefix(kv, "NO_PROXY=")
		if !ok {
			continue
		}
		have := strings.Split(v, ",")
		for _, e := range extra {
			if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, e) }) {
				have = append(have, e)
			}
		}
		out[i] = "NO_PROXY=" + strings.Join(have, ",")
	}
	return out
}

// machineIdentity is what tells this machine from others across reboots:
// its SMBIOS UUID; where the firmware gives none or a placeholder that many
// boards share, the lowest permanent MAC address of its NICs (those whose
// address the hardware gives: addr_assign_type 0, not a VF's or a virtual
// NIC's random one). "" when neither can be read.
func machineIdentity(root string) string {
	if b, err := os.ReadFile(filepath.Join(root, "sys/class/dmi/id/product_uuid")); err == nil {
		u := strings.ToLower(strings.TrimSpace(string(b)))
		switch u {
		case "", "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
			"03000200-0400-0500-0006-000700080009", // a placeholder many boards ship with
			"00020003-0004-0005-0006-000700080009": // the same, as SMBIOS before 2.6 reads it
		default:
			return u
		}
	}
	var macs []string
	ents, _ := os.ReadDir(filepath.Join(root, "sys/class/net"))
	for _, e := range ents {
		dir := filepath.Join(root, "sys/class/net", e.Name())
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
			continue // virtual: lo, bridges, VLANs
		}
		if b, err := os.ReadFile(filepath.Join(dir, "bonding_slave/perm_hwaddr")); err == nil {
			// A bond's member shows the bond's address (assign type 3,
			// stolen): its own is kept here, and is the same on every
			// boot, bonded or not yet.
			if m := strings.TrimSpace(string(b)); m != "" && m != "00:00:00:00:00:00" {
				macs = append(macs, m)
			}
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, "addr_assign_type")); err == nil && strings.TrimSpace(string(b)) != "0" {
			continue // a random or stolen address
		}
		if b, err := os.ReadFile(filepath.Join(dir, "address")); err == nil {
			if m := strings.TrimSpace(string(b)); m != "" && m != "00:00:00:00:00:00" {
				macs = append(macs, m)
			}
		}
	}
	if len(macs) == 0 {
		return ""
	}
	slices.Sort(macs)
	return macs[0]
}

// registeredNodeWarnings says what an applied config cannot change on a
// node K3s has registered already, or changes with consequences K3s leaves
// to people: K3s sets node-taint only when the node registers, and adds or
// updates node-label on each start but never removes one; a new node name
// registers a second Node; a server's role, cluster and token, and the
// cluster's networks, are fixed by the data K3s keeps. prevName and
// nextName are the node names K3s was started with and will be.
func registeredNodeWarnings(prev, next *config.MachineConfig, prevName, nextName string) []string {
	if prev == nil || prev.Role == "" {
		return nil
	}
	var w []string
	if prevName != "" && nextName != "" && prevName != nextName {
		w = append(w, fmt.Sprintf("hostname: the node's name changes from %s to %s: K3s registers a new Node %s and leaves %s behind (NotReady, its pods unscheduled only after the eviction timeout): once %s is Ready, delete the old one (kubectl delete node %s)",
			prevName, nextName, nextName, prevName, nextName, prevName))
	}
	if prev.Role == config.RoleServer && next.Role == config.RoleAgent {
		w = append(w, "role: this server becomes an agent, but K3s keeps its server data (/var/lib/rancher/k3s/server) and, with embedded etcd, the cluster keeps counting its etcd member: remove the node from its cluster first (kubectl delete node NAME on another server) and reset it (a fresh install, or its K3s state wiped) before it joins as an agent")
	}
	pc, nc := prev.Cluster, next.Cluster
	if prev.Role == config.RoleServer && next.Role == config.RoleServer && pc != nil && nc != nil {
		switch {
		case pc.Init && !nc.Init && nc.Server != "":
			w = append(w, "cluster: this server started its own cluster (init) and is now told to join another (server): K3s goes on with the cluster its data holds (/var/lib/rancher/k3s/server/db): to join another cluster, remove the node from its cluster and reset its K3s data first")
		case !pc.Init && pc.Server != "" && nc.Init:
			w = append(w, "cluster: this server joined a cluster (server) and is now told to start one (init): K3s goes on with the cluster its data holds: to start a new cluster, remove the node from its cluster and reset its K3s data first")
		}
	}
	if pc != nil && nc != nil && pc.Token != nc.Token && pc.Token != "" {
		msg := "cluster.token: the token changes: this node's password (/etc/rancher/node/password) is derived from it and changes at the next boot, when the servers refuse the node (\"Node password rejected\") until its secret is deleted (kubectl -n kube-system delete secret NAME.node-password.k3s)"
		if prev.Role == config.RoleServer && next.Role == config.RoleServer {
			msg += "; a server's data is encrypted with the old token and K3s refuses to start with another one: change a cluster's token with k3s token rotate on a server (K3s's documentation: k3s token), then give every node the new one"
		}
		w = append(w, msg)
	}
	if prev.Role == config.RoleServer && next.Role == config.RoleServer {
		w = append(w, criticalK3sWarnings(prev, next)...)
	}
	if !slices.Equal(slices.Sorted(slices.Values(prev.Taints)), slices.Sorted(slices.Values(next.Taints))) {
		w = append(w, "taints: K3s sets a node's taints only when it first registers: change them on the registered node (kubectl taint nodes NAME …)")
	}
	var gone []string
	for k := range prev.Labels {
		if _, ok := next.Labels[k]; !ok {
			gone = append(gone, k)
		}
	}
	if prev.Site != "" && next.Site == "" {
		gone = append(gone, config.SiteLabel)
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		w = append(w, fmt.Sprintf("labels: K3s does not remove labels a config no longer has (%s): remove them on the node (kubectl label nodes NAME %s-)", strings.Join(gone, ", "), gone[0]))
	}
	return w
}

// nodeName is the name K3s registers the node under when the config names
// none: the machine's host name now (an earlier config may have set it),
// NodeName in tests.
func (n *Node) nodeName() string {
	if n.env.Root == "/" {
		if h, err := os.Hostname(); err == nil && h != "" {
			return h
		}
	}
	return n.env.NodeName
}

// inventorySummary is the inventory's console line: what a technician checks
// first (are the disks, NICs and GPUs all seen; which disk is the boot
// medium, which an installer must not take).
func inventorySummary(inv *inventory.Inventory, took time.Duration) []any {
	boot := "none"
	for _, d := range inv.Disks {
		if d.Boot {
			boot = d.Name
			break
		}
	}
	return []any{"disks", len(inv.Disks), "nics", len(inv.NICs), "gpus", len(inv.GPUs), "boot_medium", boot,
		"warnings", len(inv.Warnings), "took", took.Round(time.Millisecond)}
}

// inventoryOptions are the inventory's options on this node.
func (n *Node) inventoryOptions() inventory.Options {
	return inventory.Options{Root: n.rootOrEmpty(), BootDevice: n.env.BootDevice, Logger: n.env.Log, Start: n.env.Start, Release: n.env.Release}
}

func (n *Node) rootOrEmpty() string {
	if n.env.Root == "/" {
		return ""
	}
	return n.env.Root
}

func (n *Node) note(msg string) {
	n.mu.Lock()
	n.k3sNote = msg
	n.mu.Unlock()
	n.env.Log.Info(msg)
}

// fail shows a problem on every console without stopping anything.
func (n *Node) fail(step, reason, fix string) {
	n.mu.Lock()
	n.k3sNote = reason
	n.mu.Unlock()
	n.env.Broadcast(fmt.Sprintf("etoile: error step=%s reason=%q fix=%q", step, reason, fix))
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

// findConfig tries the sources in their documented order.
func (n *Node) findConfig(ctx context.Context) ([]byte, string, error) {
	var sources []config.Source
	if n.env.ConfigURL != "" {
		sources = append(sources, config.URLSource{URL: n.env.ConfigURL, Client: &http.Client{Timeout: config.DefaultURLTimeout}})
	}
	if n.env.ConfigVolume != nil {
		if src := n.env.ConfigVolume(); src != nil {
			sources = append(sources, src)
		}
	}
	for _, m := range n.env.BootMedia {
		sources = append(sources, config.BootMediumSource(m))
	}
	if n.env.ESP != nil {
		sources = append(sources, n.env.ESP)
	}
	if n.env.State != nil {
		sources = append(sources, lazySource{name: "state partition " + config.StateLabel, mount: n.env.State, source: config.StateSource})
	}
	return config.FirstFound(ctx, sources...)
}

// lazySource is a config file on a partition mounted only when the sources
// before it had none.
type lazySource struct {
	name   string
	mount  func() (string, error)
	source func(dir string) config.FileSource
}

func (s lazySource) Name() string { return s.name }

func (s lazySource) Read(ctx context.Context) ([]byte, error) {
	dir, err := s.mount()
	if err != nil {
		if errors.Is(err, config.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("mounting the %s: %w", s.name, err)
	}
	return s.source(dir).Read(ctx)
}

// execWait bounds how long a config applied through the local API waits
// for K3s to be executed: a failed exec is tried again by the supervisor
// (1 s, then 2 s…), and only an exec that succeeded ends the wait. Tests
// shorten it.
var execWait = 5 * time.Second

// k3sSettle is how long an apply watches a K3s it executed (within
// execWait): one that exits in that time (a server that refuses its data,
// given another token) did not start. Tests shorten it.
var k3sSettle = 2 * time.Second

// keepsTrying is startK3s's error for a K3s that was not executed while
// its supervisor goes on trying: nothing to correct, nothing to apply
// again.
type keepsTrying struct {
	err   error     // the last exec's failure
	state k3s.State // the supervisor's state then
	next  string    // when it tries again (nextTry)
}

func (e *keepsTrying) Error() string {
	return fmt.Sprintf("K3s could not be executed: %v; its supervisor keeps trying (k3s state %s, %s)", e.err, e.state, e.next)
}
func (e *keepsTrying) Unwrap() error { return e.err }

// nextTry says when sup starts K3s again ("next try in 2s").
func nextTry(sup *k3s.Supervisor) string {
	at := sup.NextStart()
	if at.IsZero() {
		return "trying again now"
	}
	d := time.Until(at)
	switch {
	case d <= 0:
		return "trying again now"
	case d < time.Second:
		d = d.Round(100 * time.Millisecond)
	default:
		d = d.Round(time.Second)
	}
	return "next try in " + d.String()
}

// noSupervisor forgets the supervisor of the K3s an apply stopped, when
// none replaces it: the status then says why (k3sNote), not the old one's
// "stopped to start again".
func (n *Node) noSupervisor() {
	n.mu.Lock()
	n.sup, n.stopK3s, n.supDone = nil, nil, nil
	n.mu.Unlock()
}

// startK3s starts K3s's supervisor for cfg, or returns an error when it
// cannot be started at all. At boot (apply false) it returns once K3s's
// first exec has been tried (or 5 s passed): the ready line, and what the
// boot starts after it, do not share the CPU with K3s's exec. For a config
// applied (apply true) it waits for an exec that succeeds (a failed one is
// tried again by the supervisor), execWait at most, and watches that run
// k3sSettle: an error then says K3s was not executed (a *keepsTrying) or
// exited at once.
func (n *Node) startK3s(ctx context.Context, cfg *config.MachineConfig, apply bool) error {
	if n.env.Root == "/" {
		mounted, err := k3s.PrepareContainerdDir("/")
		switch {
		case err != nil:
			n.noSupervisor()
			n.fail("k3s", err.Error(), "K3s cannot keep containers on the system's overlay: check the kernel's messages (dmesg)")
			return err
		case mounted:
			n.env.Log.Info("containerd's root in memory", "dir", k3s.ContainerdDir, "fs", "tmpfs",
				"why", "its overlayfs snapshotter cannot stack layers on the system's overlay")
		}
	}
	// The kubelet reports it as the Node's machineID.
	if source, err := ensureMachineID(n.env.Root); err != nil {
		n.env.Log.Warn("machine id not written", "reason", err.Error())
	} else if source != "" {
		n.env.Log.Info("machine id written", "file", "/"+machineIDPath, "from", source)
	}
	name := cfg.Hostname
	if name == "" {
		name = n.nodeName()
	}
	n.mu.Lock()
	n.k3sName = name
	n.mu.Unlock()
	if cfg.Cluster != nil && cfg.Cluster.Token != "" {
		if wrote, err := k3s.EnsureNodePassword(n.env.Root, cfg.Cluster.Token, name, machineIdentity(n.env.Root)); err != nil {
			n.env.Log.Warn("K3s node password", "reason", err.Error())
		} else if wrote {
			n.env.Log.Info("K3s node password derived from the cluster token and this machine", "path", k3s.NodePasswordPath)
		}
	}
	if _, err := k3s.LinkAirgapImages(n.env.Root); err != nil {
		n.env.Log.Warn("airgap images", "reason", err.Error())
	}
	labels := map[string]string{}
	n.mu.Lock()
	inv := n.inv
	n.mu.Unlock()
	if inv != nil {
		labels = inventory.NodeLabels(inv)
	}
	if labels[inventory.LabelNvidiaPresent] == "true" && ownContainerd(cfg) {
		n.ensureCDISpec(ctx)
	}
	n.checkRuntimes(cfg, labels)
	sup, err := k3s.ForConfig(n.env.Root, cfg, n.nodeName(), labels, n.env.Log)
	if err != nil {
		n.noSupervisor()
		n.fail("k3s", err.Error(), "rebuild the image with K3s (etoile build --k3s-dir DIR), or fix the machine config")
		return err
	}
	sup.Start, sup.Release = n.env.Start, n.env.Release
	// The proxy's variables (ForConfig's), the node's own networks in
	// NO_PROXY, then the tests' own.
	if cfg.Proxy != nil && n.env.NodeNetworks != nil {
		sup.Env = withNoProxy(sup.Env, n.env.NodeNetworks())
	}
	sup.Env = append(sup.Env, n.env.K3sEnv...)
	if n.env.Root == "/" {
		sup.OpenKernelLog = func() (k3s.KernelTail, error) { return kmsg.OpenTail("/dev/kmsg") }
	}
	sup.SinceBoot = bootTime
	sup.Output = n.k3sOut
	// What the supervisor's callbacks tell of K3s's first execs: tried
	// closes once one was tried, executed once one succeeded, exited once
	// a run that was executed ended on its own.
	tried, executed, exited := make(chan struct{}), make(chan struct{}), make(chan struct{})
	triedOnce, executedOnce, exitedOnce := sync.OnceFunc(func() { close(tried) }),
		sync.OnceFunc(func() { close(executed) }), sync.OnceFunc(func() { close(exited) })
	var (
		wmu      sync.Mutex
		execFail error     // the last exec that failed
		execAt   time.Time // when the first exec succeeded
		exitErr  error     // why the first run executed ended
	)
	sup.OnExec = func(_ int, err error) {
		if err == nil && n.env.NodeAddress != nil {
			// What K3s takes for its node address (AddressChanged).
			addr := n.env.NodeAddress()
			n.mu.Lock()
			// An embedded etcd member keeps the address it first took,
			// whichever K3s starts later find.
			if !etcdMember(cfg) || n.k3sAddr == "" {
				n.k3sAddr = addr
			}
			if addr == n.k3sAddr {
				n.addrWarning = ""
			}
			n.mu.Unlock()
		}
		wmu.Lock()
		if err != nil {
			execFail = err
		} else if execAt.IsZero() {
			execAt = time.Now()
		}
		wmu.Unlock()
		if err == nil {
			executedOnce()
		}
		triedOnce()
	}
	sup.OnExit = func(_ int, err error) {
		wmu.Lock()
		if exitErr == nil {
			exitErr = err
		}
		wmu.Unlock()
		exitedOnce()
	}
	sup.OnState = func(from, to k3s.State, reason string) {
		msg := fmt.Sprintf("etoile: k3s state=%s was=%s t=%s agent_rss=%s", to, from, sinceBoot(), agentRSS())
		if reason != "" {
			msg += fmt.Sprintf(" reason=%q", reason)
		}
		n.env.Broadcast(msg)
		// The first start is on the boot's own ready line.
		if to != from && from != k3s.StateStopped && n.env.ReadyLine != nil {
			n.env.Broadcast(n.env.ReadyLine() + " k3s=" + string(to))
		}
	}
	sctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	n.mu.Lock()
	n.sup, n.stopK3s, n.supDone = sup, cancel, done
	n.mu.Unlock()
	var runErr error // read once done is closed
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				runErr = fmt.Errorf("the K3s supervisor crashed: %v", r)
				n.fail("k3s", runErr.Error(), "report this as a bug with the agent's log (etoile-agent logs)")
			}
		}()
		if runErr = sup.Run(sctx); runErr != nil {
			n.fail("k3s", runErr.Error(), "check /etc/rancher/k3s and the disk space")
		}
	}()
	failed := func() error {
		wmu.Lock()
		defer wmu.Unlock()
		return execFail
	}
	if !apply {
		select {
		case <-tried:
		case <-done:
			return runErr
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
		}
		if err := failed(); err != nil && !isClosed(executed) {
			return fmt.Errorf("executing K3s failed (its supervisor tries again): %w", err)
		}
		return nil
	}
	deadline := time.NewTimer(execWait)
	defer deadline.Stop()
	select {
	case <-executed:
	case <-done:
		if runErr == nil && ctx.Err() != nil {
			return errors.New("K3s was stopped before it was executed: the machine is shutting down")
		}
		return runErr
	case <-deadline.C:
		err := failed()
		if err == nil {
			return nil // not tried yet: its state says what comes
		}
		return &keepsTrying{err: err, state: sup.Status().State, next: nextTry(sup)}
	case <-ctx.Done():
		return nil
	}
	settle := time.NewTimer(k3sSettle)
	defer settle.Stop()
	select {
	case <-exited:
		wmu.Lock()
		why, ran := exitErr, time.Since(execAt)
		wmu.Unlock()
		st := sup.Status()
		return fmt.Errorf("K3s exited %s after it was executed: %w; its supervisor starts it again (k3s state %s, %s)",
			ran.Round(time.Millisecond), why, st.State, nextTry(sup))
	case <-settle.C:
	case <-deadline.C:
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// noNvidiaRuntime is the warning of a node with an NVIDIA GPU and no NVIDIA
// container runtime where K3s looks for one.
const noNvidiaRuntime = "an NVIDIA GPU is present, but no NVIDIA container runtime is on K3s's PATH: pods cannot use runtimeClassName: nvidia"

// nvidiaRuntimeLate is the status's warning once an NVIDIA container
// runtime is there that K3s did not find when it started.
const nvidiaRuntimeLate = "an NVIDIA container runtime was installed after K3s started: K3s adds it when it next starts (runtimeClassName: nvidia fails until then)"

// nvidiaRuntimeIncomplete is the warning of a GPU node whose NVIDIA
// container runtime lacks what it runs (k3s.NvidiaRuntimeProblems).
const nvidiaRuntimeIncomplete = "the NVIDIA container runtime lacks what it needs: pods with runtimeClassName: nvidia will fail to start"

// ownContainerd reports whether cfg has K3s use its own containerd, to
// which it adds the runtimes it finds (not Docker, not another CRI).
func ownContainerd(cfg *config.MachineConfig) bool {
	if cfg == nil {
		return true
	}
	endpoint := strings.Join(cfg.K3s["container-runtime-endpoint"].Strings(), "")
	return !cfg.K3sFlag("docker") && strings.TrimSpace(endpoint) == ""
}

// runtimeWarning is the status's warning about NVIDIA's container runtime
// on a GPU node ("" for none): none where K3s looks, or one K3s has not
// found yet.
func (n *Node) runtimeWarning() string {
	n.mu.Lock()
	gpu, atStart := n.nvidiaGPU, n.runtimes
	n.mu.Unlock()
	if !gpu {
		return ""
	}
	if k3s.HasNvidia(atStart) {
		if problems := n.nvidiaRuntimeProblems(atStart); len(problems) > 0 {
			return nvidiaRuntimeIncomplete + ": " + strings.Join(problems, "; ")
		}
		return ""
	}
	if k3s.HasNvidia(k3s.Runtimes(n.env.Root)) {
		return nvidiaRuntimeLate
	}
	return noNvidiaRuntime
}

// checkRuntimes says, as K3s starts, which container runtimes it will add
// to its containerd (found as K3s finds them), and warns when the node has
// an NVIDIA GPU (its labels say so) and none of them is NVIDIA's. The
// status says so for as long as it lasts (see Status).
func (n *Node) checkRuntimes(cfg *config.MachineConfig, labels map[string]string) {
	if !ownContainerd(cfg) {
		n.mu.Lock()
		n.nvidiaGPU, n.runtimes = false, nil
		n.mu.Unlock()
		return
	}
	gpu := labels[inventory.LabelNvidiaPresent] == "true"
	rts := k3s.Runtimes(n.env.Root)
	n.mu.Lock()
	n.nvidiaGPU, n.runtimes = gpu, rts
	n.mu.Unlock()
	if len(rts) > 0 {
		var found []string
		for _, r := range rts {
			found = append(found, r.Name+"="+r.Path)
		}
		n.env.Log.Info("container runtimes K3s adds to its containerd (runtimeClassName)", "runtimes", strings.Join(found, ","))
	}
	if gpu && k3s.HasNvidia(rts) {
		if problems := n.nvidiaRuntimeProblems(rts); len(problems) > 0 {
			n.env.Log.Warn(nvidiaRuntimeIncomplete, "missing", strings.Join(problems, "; "),
				"fix", "add what is named to the image's NVIDIA extension (see the README's Image extensions)")
		}
	}
	if gpu && !k3s.HasNvidia(rts) {
		n.env.Log.Warn(noNvidiaRuntime, "looked_in", k3s.SystemPath,
			"fix", "add NVIDIA's container toolkit (nvidia-container-runtime, its hook and nvidia-container-cli) to the image as an extension, with the driver's libraries (see the README's Image extensions); K3s finds it when it next starts")
	}
}

// isClosed reports whether c is closed (false for nil: never).
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return c != nil
	default:
		return false
	}
}

// nvidiaWithoutDriver reports whether inv lists an NVIDIA GPU without what
// its driver tells (the driver was not loaded when it was collected).
func nvidiaWithoutDriver(inv *inventory.Inventory) bool {
	return inv != nil && slices.ContainsFunc(inv.GPUs, func(g inventory.GPU) bool { return g.Vendor == "nvidia" && g.DriverVersion == "" })
}

// inventoryAgain collects the inventory again, in the background, once the
// image's drivers have settled (DriversSettled) and NVIDIA's driver is
// loaded: a large driver still loading when the inventory ran (its wait is
// bounded) would otherwise leave the GPUs without driver version, memory
// and MIG mode in the status until the next boot. The running K3s keeps
// the labels it started with (the model as pci.ids names it); a K3s started
// again for a config applied later takes the driver's model name.
func (n *Node) inventoryAgain(ctx context.Context) {
	settled := n.env.DriversSettled
	if settled == nil {
		return
	}
	n.env.Log.Info("the hardware inventory lists the GPUs without their driver; it runs again once the image's drivers have loaded")
	n.background("hardware inventory", func() {
		select {
		case <-settled:
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil || !nvpersist.DriverLoaded(n.env.Root) {
			return // the persistence daemon's warning says the driver did not load
		}
		// The persistence daemon, started on the same signal when the
		// image has it, first: nvidia-smi then finds the GPUs set up.
		if nvpersist.Find(n.env.Root, filepath.SplitList(k3s.SystemPath)) != "" {
			deadline := time.Now().Add(PersistencedWait)
			for n.persistenced() == nil && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
			}
			if d := n.persistenced(); d != nil {
				select {
				case <-d.Started():
				case <-time.After(time.Until(deadline)):
				case <-ctx.Done():
					return
				}
			}
		}
		inv, err := inventory.Collect(ctx, n.inventoryOptions())
		if err != nil && ctx.Err() == nil { // (stopped by a shutdown: not a failure)
			n.env.Log.Warn("hardware inventory failed", "reason", err.Error())
		}
		if inv == nil {
			return
		}
		n.mu.Lock()
		n.inv = inv
		n.mu.Unlock()
		var versions []string
		for _, g := range inv.GPUs {
			if g.Vendor == "nvidia" && g.DriverVersion != "" && !slices.Contains(versions, g.DriverVersion) {
				versions = append(versions, g.DriverVersion)
			}
		}
		n.env.Log.Info("hardware inventory again: NVIDIA's driver is loaded", "driver", strings.Join(versions, ","), "gpus", len(inv.GPUs))
	})
}

// PersistencedWait bounds how long the inventory (and so a GPU node's K3s)
// waits for the first start of NVIDIA's persistence daemon; a slower start
// goes on in the background.
var PersistencedWait = 30 * time.Second

// startPersistenced starts NVIDIA's persistence daemon (package nvpersist)
// when NVIDIA's driver is loaded and the system image carries the daemon,
// and waits for its first start (PersistencedWait at most). A driver still
// loading (a large one, many GPUs) is waited for in the background, until
// DriversSettled.
func (n *Node) startPersistenced(ctx context.Context) {
	root := n.env.Root
	path := nvpersist.Find(root, filepath.SplitList(k3s.SystemPath))
	if path == "" {
		return
	}
	if nvpersist.DriverLoaded(root) {
		d := n.runPersistenced(ctx, path)
		select {
		case <-d.Started():
		case <-time.After(PersistencedWait):
			n.env.Log.Warn("NVIDIA persistence daemon still starting: the inventory goes on", "waited", PersistencedWait)
		case <-ctx.Done():
		}
		return
	}
	if !inventory.HasGPU(root, "nvidia") {
		return
	}
	noDriver := func() {
		n.env.Log.Warn("NVIDIA persistence daemon not started: NVIDIA's driver is not loaded", "daemon", path,
			"fix", "the image's NVIDIA driver did not load for this GPU: read the console's module lines and the kernel's log (etoile-agent logs kernel)")
	}
	settled := n.env.DriversSettled
	if settled == nil || isClosed(settled) {
		noDriver()
		return
	}
	n.env.Log.Info("NVIDIA persistence daemon waits for the image's drivers, still loading", "daemon", path)
	n.background("NVIDIA persistence daemon", func() {
		select {
		case <-settled:
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil {
			return // both came: the machine is going down
		}
		if !nvpersist.DriverLoaded(root) {
			noDriver()
			return
		}
		n.runPersistenced(ctx, path)
	})
}

// persistenced is NVIDIA's persistence daemon, nil when the node does not
// run it (yet).
func (n *Node) persistenced() *nvpersist.Daemon {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.persist
}

// runPersistenced starts the daemon at path and keeps it for the status
// and the shutdown.
func (n *Node) runPersistenced(ctx context.Context, path string) *nvpersist.Daemon {
	env := n.env.PersistencedEnv
	if env == nil {
		// PID 1's own environment has no PATH: the driver's libraries
		// run nvidia-modprobe from it when a device file is missing.
		env = []string{"PATH=" + k3s.SystemPath}
	}
	d := nvpersist.Start(ctx, nvpersist.Options{
		Path:    filepath.Join(n.env.Root, path),
		PIDFile: filepath.Join(n.env.Root, nvpersist.PIDFile),
		Env:     env,
		Start:   n.env.Start,
		Release: n.env.Release,
		Log:     n.env.Log,
	})
	n.mu.Lock()
	n.persist = d
	n.mu.Unlock()
	n.background("NVIDIA persistence daemon", func() {
		<-d.Done() // the shutdown waits for its SIGTERM
	})
	return d
}

// persistStatus is NVIDIA's persistence daemon's line of the status, and
// its warning ("" when it runs); nil when the node does not run it.
func (n *Node) persistStatus() (*api.DaemonStatus, string) {
	n.mu.Lock()
	d := n.persist
	n.mu.Unlock()
	if d == nil {
		return nil, ""
	}
	st := &api.DaemonStatus{Name: nvpersist.Name, State: d.State(), PID: d.PID(), Restarts: d.Restarts()}
	if st.State != "restarting" {
		return st, ""
	}
	if err := d.Err(); err != nil {
		st.Reason = err.Error()
	}
	return st, "NVIDIA persistence daemon not running: " + st.Reason + " (etoile-agent logs syslog)"
}

// --- the local API's backend ------------------------------------------

func (n *Node) serveAPI(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			n.env.Log.Warn("local API crashed", "reason", fmt.Sprint(r))
		}
	}()
	sock := n.env.Socket
	if sock == "" {
		sock = filepath.Join(n.env.Root, api.DefaultSocket)
	}
	if err := api.Serve(ctx, sock, n, n.env.Log); err != nil {
		n.env.Log.Warn("local API stopped", "reason", err.Error())
	}
}

// Status implements api.Backend.
func (n *Node) Status(ctx context.Context) api.Status {
	var st api.Status
	if n.env.Status != nil {
		st = n.env.Status()
	}
	runtimeWarn := n.runtimeWarning() // looks at files: not under n.mu
	persist, persistWarn := n.persistStatus()
	n.mu.Lock()
	defer n.mu.Unlock()
	st.Config = "none"
	if n.configFrom != "" {
		st.Config = n.configFrom
	}
	st.K3s = api.K3sStatus{State: string(k3s.StateStopped), Reason: n.k3sNote}
	if n.sup != nil {
		s := n.sup.Status()
		st.K3s = api.K3sStatus{State: string(s.State), Reason: s.Reason, Restarts: s.Restarts}
		if s.Trouble != "" {
			st.Warnings = append(st.Warnings, "k3s: "+s.Trouble)
		}
	}
	st.Warnings = append(st.Warnings, n.warnings...)
	if n.addrWarning != "" {
		st.Warnings = append(st.Warnings, n.addrWarning)
	}
	if runtimeWarn != "" {
		st.Warnings = append(st.Warnings, runtimeWarn)
	}
	if n.conWarning != "" {
		st.Warnings = append(st.Warnings, n.conWarning)
	}
	if persist != nil {
		st.Daemons = append(st.Daemons, *persist)
	}
	if persistWarn != "" {
		st.Warnings = append(st.Warnings, persistWarn)
	}
	if n.time != nil {
		ts := n.time.Status()
		st.Time = &ts
		switch {
		case ts.Failing && ts.Synced:
			st.Warnings = append(st.Warnings, "time: no NTP server has answered for a while, the clock runs on its own since "+ts.Last.Format(time.RFC3339)+" ("+ts.Error+")")
		case ts.Failing:
			st.Warnings = append(st.Warnings, "time: no NTP server answered, the clock is not synchronised ("+ts.Error+")")
		}
	}
	if n.inv != nil {
		var b strings.Builder
		if err := inventory.WriteJSON(&b, n.inv); err == nil {
			st.Inventory = []byte(b.String())
		}
	}
	if st.Warnings == nil {
		st.Warnings = []string{}
	}
	return st
}

// Logs implements api.Backend.
func (n *Node) Logs(source string, lines int, after uint64) (api.LogPage, error) {
	var since func(uint64) ([]string, uint64, uint64)
	switch source {
	case "k3s":
		if n.k3sOut != nil {
			since = n.k3sOut.Since
		}
	case "agent", "":
		since = n.env.AgentLogs
	case "syslog":
		since = n.env.SyslogLogs
	case "kernel":
		if n.env.KernelLog != nil {
			recs, err := n.env.KernelLog()
			if err != nil {
				return api.LogPage{}, fmt.Errorf("reading the kernel's log: %w", err)
			}
			since = func(after uint64) ([]string, uint64, uint64) { return kernelSince(recs, after) }
		}
	default:
		return api.LogPage{}, fmt.Errorf("no log named %q: use agent, k3s, kernel or syslog", source)
	}
	if since == nil {
		return api.LogPage{Lines: []string{}}, nil
	}
	all, next, skipped := since(after)
	if len(all) > lines {
		skipped += uint64(len(all) - lines)
		all = all[len(all)-lines:]
	}
	if after == 0 {
		skipped = 0 // the last lines were asked for, not all of them
	}
	return api.LogPage{Lines: all, Next: next, Skipped: skipped}, nil
}

// kernelSince numbers the kernel's records as the other logs number their
// lines (the record's sequence number + 1, so that 0 asks for the last
// ones) and returns those after a number, as dmesg prints them.
func kernelSince(recs []kmsg.Record, after uint64) (lines []string, next, skipped uint64) {
	if len(recs) == 0 {
		return []string{}, after, 0
	}
	next = recs[len(recs)-1].Seq + 1
	if after > next {
		after = 0 // a number this log never gave: another log's; start over
	}
	// The sequence number of the record after line number "after" is
	// "after"; a record further on means those between are gone (the
	// kernel's ring moved on, or they were overwritten while being read).
	expect := after
	if after == 0 {
		expect = recs[0].Seq // the last lines, or from the start: none counted as skipped
	}
	lines = []string{}
	for _, r := range recs {
		if r.Seq < expect {
			continue
		}
		skipped += r.Seq - expect
		expect = r.Seq + 1
		lines = append(lines, fmt.Sprintf("[%5d.%06d] %s", r.Stamp/time.Second, (r.Stamp%time.Second)/time.Microsecond, r.Msg))
	}
	return lines, next, skipped
}

// Power implements api.Backend. Only the first request is carried out: a
// second, while the machine shuts down, is refused naming the first.
func (n *Node) Power(action string) error {
	if n.env.Power == nil {
		return fmt.Errorf("this agent does not run the machine (it is not PID 1): %s it with the system's own tools", action)
	}
	n.mu.Lock()
	first := n.powering
	signalled := first == "" && n.ctx.Err() != nil
	if first == "" && !signalled {
		n.powering = action
	}
	n.mu.Unlock()
	switch {
	case first != "":
		return refused(fmt.Sprintf("already shutting down (%s asked first)", first))
	case signalled:
		// A signal (Ctrl-Alt-Del, the power button) began it.
		return refused("already shutting down (asked by a signal or the power button, not through this API)")
	}
	if err := n.env.Power(action); err != nil {
		n.mu.Lock()
		n.powering = "" // not shutting down after all: a later request may try again
		n.mu.Unlock()
		return err
	}
	return nil
}

// refused is a power request turned down because the machine shuts down
// already: its message as given, and api.ErrShuttingDown to errors.Is.
type refused string

func (r refused) Error() string { return string(r) }
func (r refused) Unwrap() error { return api.ErrShuttingDown }

// Config implements api.Backend: the running config with its secrets
// redacted.
func (n *Node) Config() (api.RunningConfig, error) {
	n.mu.Lock()
	cfg, from, note := n.cfg, n.configFrom, n.k3sNote
	n.mu.Unlock()
	if cfg == nil {
		if note == "" {
			note = "no machine config found"
		}
		return api.RunningConfig{}, fmt.Errorf("%w (%s)", api.ErrNoConfig, note)
	}
	r, err := cfg.Redacted()
	if err != nil {
		return api.RunningConfig{}, err
	}
	data, err := r.Marshal()
	if err != nil {
		return api.RunningConfig{}, err
	}
	return api.RunningConfig{From: from, YAML: string(data)}, nil
}

// ValidateConfig implements api.Backend.
func (n *Node) ValidateConfig(data []byte) ([]string, error) {
	_, warns, err := config.Check(data)
	return warns, err
}

// applyNetwork configures the config's network section before K3s starts
// (K3s takes the node's address from it). A failure is shown on every
// console and returned as warnings: K3s still starts, on the addresses the
// boot's DHCP gave.
func (n *Node) applyNetwork(ctx context.Context, cfg *config.MachineConfig) []string {
	if n.env.ApplyNetwork == nil {
		return nil
	}
	err := n.env.ApplyNetwork(ctx, cfg)
	if err == nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		fix := "correct network.interfaces in the machine config (etoile-agent status lists the links) and apply it again"
		if strings.HasPrefix(l, "hosts: ") {
			fix = "the node's /etc/hosts could not be written: read the reason (a full or read-only root); the config's other settings are applied"
		}
		if strings.HasSuffix(l, "asking again in the background") {
			// A dhcp: true entry without a lease yet: nothing to correct
			// in the config, perhaps.
			fix = "it is asked again, up to every minute: check the cable, the switch port (and its VLAN) and that a DHCP server serves it, or give the entry static addresses"
		}
		n.env.Broadcast(fmt.Sprintf("etoile: error step=network reason=%q fix=%q", l, fix))
		out = append(out, "network: "+l)
	}
	return out
}

// errReplaced is why K3s stops when a config is applied through the API.
var errReplaced = errors.New("stopped to start again with the config applied through the local API")

// ApplyConfig implements api.Backend: a valid config replaces the running
// one and K3s is restarted with it (stopped cleanly first). Until the state
// partition exists it lasts until the next boot.
//
// While the machine shuts down the config is refused (api.ErrShuttingDown);
// a config applied whose K3s does not start again is the node's all the
// same, and the error wraps api.ErrK3sNotStarted.
func (n *Node) ApplyConfig(ctx context.Context, data []byte) ([]string, error) {
	cfg, warns, err := config.Check(data)
	if err != nil {
		return warns, err
	}
	if err := n.shuttingDown(); err != nil {
		return warns, err
	}
	n.k3sMu.Lock()
	defer n.k3sMu.Unlock()
	if err := n.shuttingDown(); err != nil {
		return warns, err // began while an earlier apply held k3sMu
	}
	// The applied config is held in memory (config show, the status): it
	// lasts until the next boot, and nothing reads a copy of it.
	// Finished even if the caller goes away: half an apply (the network
	// set, K3s not restarted) would be worse than either.
	warns, err = n.applyLocked(context.WithoutCancel(ctx), cfg, warns, "local API")
	if err != nil && !errors.Is(err, api.ErrK3sNotStarted) {
		return warns, err
	}
	n.setConstellation(cfg) // joins, stops or moves with the config's constellation section
	return append(warns, "applied until the next boot: keep it in the machine config's source to make it last"), err
}

// shuttingDown is api.ErrShuttingDown, naming what began it, once the
// machine shuts down; nil before.
func (n *Node) shuttingDown() error {
	n.mu.Lock()
	powering := n.powering
	n.mu.Unlock()
	switch {
	case powering != "":
		return fmt.Errorf("%w (%s asked through the local API): the config is not applied; apply it once the machine is back", api.ErrShuttingDown, powering)
	case n.ctx.Err() != nil:
		return fmt.Errorf("%w: the config is not applied; apply it once the machine is back", api.ErrShuttingDown)
	}
	return nil
}

// inventoryHook, tests', runs before the hardware inventory is collected:
// a stand-in for an inventory that takes long (nvidia-smi stuck).
var inventoryHook func()

// inventoryWait is how long K3s's start waits for the hardware inventory
// (its GPU labels); tests shorten it.
var inventoryWait = time.Minute

// waitInventory waits for the hardware inventory, which K3s's GPU labels
// come from, a minute at most: nvidia-smi stuck in the driver (a GPU that
// fell off the bus) must not keep K3s from starting. It returns ctx's
// error when ctx ends first.
func (n *Node) waitInventory(ctx context.Context) error {
	if n.invDone == nil {
		return nil
	}
	select {
	case <-n.invDone:
	case <-time.After(inventoryWait):
		n.env.Log.Warn("the hardware inventory is not done: K3s starts without the GPU labels",
			"fix", "etoile-agent inventory shows what the inventory reads; a GPU whose nvidia-smi hangs needs the machine's attention")
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// applyLocked makes cfg the node's config (from names where it came from):
// its network, kernel parameters and clock, then K3s restarted with it. The
// caller holds k3sMu.
func (n *Node) applyLocked(ctx context.Context, cfg *config.MachineConfig, warns []string, from string) ([]string, error) {
	// Under the node's context, not the request's: DHCP renewals outlive it.
	warns = append(warns, n.applyNetwork(n.ctx, cfg)...)
	if len(cfg.Network.Interfaces) > 0 {
		warns = append(warns, "network: the interfaces listed are configured now; what an earlier config set and this one no longer lists stays until the next boot")
	}
	if inventory.HasGPU(n.rootOrEmpty(), "nvidia") {
		// K3s's GPU labels come from the inventory, which may still run
		// (nvidia-smi) when an apply comes soon after the boot.
		if err := n.waitInventory(ctx); err != nil {
			return warns, err
		}
	}
	n.mu.Lock()
	prev, prevName := n.cfg, n.k3sName
	n.mu.Unlock()
	nextName := cmp.Or(cfg.Hostname, n.nodeName()) // after applyNetwork, which sets the host name
	registered := registeredNodeWarnings(prev, cfg, prevName, nextName)
	for _, w := range registered {
		n.env.Broadcast("etoile: warning: config applied: " + w)
	}
	warns = append(warns, registered...)
	if prevName != "" && prevName != nextName {
		// The node password is derived from the node's name: one derived
		// for the new name, kept across boots, matches what the servers
		// record when the new Node registers.
		if err := os.Remove(filepath.Join(n.env.Root, k3s.NodePasswordPath)); err != nil && !errors.Is(err, os.ErrNotExist) {
			n.env.Log.Warn("K3s node password not renewed for the new node name", "reason", err.Error())
		}
	}
	// Parameters an earlier config set and this one drops keep their value
	// until the next boot.
	warns = append(warns, n.applySysctls(cfg)...)
	warns = append(warns, n.applyTrust(cfg)...)
	n.retime(cfg)
	warns = append(warns, n.relog(cfg)...)
	n.mu.Lock()
	stop, done := n.stopK3s, n.supDone
	n.cfg, n.warnings, n.configFrom, n.k3sNote = cfg, slices.Clone(warns), from, ""
	n.nvidiaGPU, n.runtimes = false, nil // until K3s is started for this config
	n.mu.Unlock()
	if stop != nil {
		stop(errReplaced)
		<-done
	}
	if n.ctx.Err() != nil {
		// The machine shuts down (it began while the old K3s stopped):
		// no new K3s only to be stopped.
		return warns, fmt.Errorf("%w: the machine is shutting down; the config is kept until then", api.ErrK3sNotStarted)
	}
	// The supervisor outlives this request: it runs under the node's context.
	if err := n.startK3s(n.ctx, cfg, true); err != nil {
		// The config is the node's now (its network and parameters are set):
		// K3s's state says why it is not running.
		if kt := (*keepsTrying)(nil); errors.As(err, &kt) {
			// Nothing to correct: applying the config again would only
			// stop a supervisor about to succeed.
			return warns, fmt.Errorf("%w: K3s could not be executed: %w; the config stays applied and %w (k3s state %s, %s): etoile-agent status says how it goes",
				api.ErrK3sNotStarted, kt.err, api.ErrK3sRetrying, kt.state, kt.next)
		}
		return warns, fmt.Errorf("%w: %w; the config stays applied: correct what is named here (etoile-agent status and etoile-agent logs k3s say more) and apply it again", api.ErrK3sNotStarted, err)
	}
	return warns, nil
}

// sinceBoot is the time since the kernel started, as the console's t=.
func sinceBoot() string {
	d := bootTime()
	if d < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// bootTime is the time since the kernel started (CLOCK_BOOTTIME), -1 if unknown.
func bootTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return -1
	}
	return time.Duration(ts.Nano())
}

// agentRSS is this process's resident memory, for the console and the
// benchmark (target ≤ 40 MB while supervising).
func agentRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err == nil {
				return fmt.Sprintf("%.1fMB", float64(kb)/1024)
			}
		}
	}
	return "unknown"
}

// background runs f in a goroutine the node's Wait waits for; a panic in
// it is shown (recovered), never PID 1's end.
func (n *Node) background(what string, f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.recovered(what)
		f()
	}()
}

// recovered, deferred at the top of a goroutine, turns a panic in it into
// an `etoile: error` line on every console (safego.Line) instead of
// the end of PID 1; what names the goroutine's work.
func (n *Node) recovered(what string) {
	if r := recover(); r != nil {
		n.env.Broadcast(safego.Line(what, r))
	}
}
