package node

import (
	"cmp"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/kmsg"
	"github.com/etoile-os/etoile/agent/logfwd"
	"github.com/etoile-os/etoile/agent/logring"
	"github.com/etoile-os/etoile/agent/syslogd"
	"golang.org/x/sys/unix"
)

// relog has the node's logs sent to cfg's logging destinations from now
// on (none: to none): a destination the config applied before had goes on
// where it was.
func (n *Node) relog(cfg *config.MachineConfig) []string {
	var dests []logfwd.Destination
	if cfg.Logging != nil {
		for _, d := range cfg.Logging.Destinations {
			dests = append(dests, logfwd.Destination{Endpoint: d.Endpoint, Format: d.Format})
		}
	}
	opts := logfwd.Options{Sources: n.logSources(), Host: n.nodeName, Roots: n.siteRoots(cfg), Log: n.env.Log}
	// Not ended with the node's context: what the machine says as it
	// stops is sent at the end (Wait, logFwd.Close).
	if err := n.logFwd.Set(context.WithoutCancel(n.ctx), dests, opts); err != nil {
		n.env.Log.Warn("the logs are not sent to the logging destinations", "reason", err.Error())
		return []string{"logging: " + err.Error()}
	}
	if len(dests) > 0 {
		n.env.Log.Info("logs sent to the logging destinations", "destinations", len(dests))
	}
	return nil
}

// siteRoots are the authorities a tls:// log destination is checked
// against: the system's bundle as it is now (the image's, with the block
// applyTrust keeps of this config's ca_certificates) and cfg's
// ca_certificates; read again at each apply (Go's system pool is read once
// per process: an authority a later config removes would stay in it).
func (n *Node) siteRoots(cfg *config.MachineConfig) *x509.CertPool {
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(filepath.Join(cmp.Or(n.env.Root, "/"), config.CABundlePath)); err == nil {
		pool.AppendCertsFromPEM(b)
	} else if sys, err := x509.SystemCertPool(); err == nil && sys != nil {
		pool = sys
	}
	for _, pem := range cfg.CACertificates {
		pool.AppendCertsFromPEM([]byte(pem))
	}
	return pool
}

// logSources are the node's logs as logfwd reads them: the agent's
// (its console lines), K3s's output, the kernel's records and what
// daemons sent to /dev/log.
func (n *Node) logSources() []logfwd.Source {
	var out []logfwd.Source
	switch {
	case n.env.AgentLogsAt != nil:
		out = append(out, ringSource("agent", n.env.AgentLogsAt, agentEntry))
	case n.env.AgentLogs != nil:
		out = append(out, ringSource("agent", untimed(n.env.AgentLogs), agentEntry))
	}
	if n.k3sOut != nil {
		out = append(out, ringSource("k3s", n.k3sOut.SinceAt, k3sEntry))
	}
	if read := n.kernelFollower(); read != nil {
		out = append(out, logfwd.Source{Name: "kernel", Read: kernelEntries(read)})
	}
	if n.env.SyslogLogs != nil {
		// Its lines hold their daemon's own time.
		out = append(out, ringSource("syslog", untimed(n.env.SyslogLogs), syslogEntry))
	}
	return out
}

// untimed is a log without its lines' times as one with them (zero).
func untimed(since func(uint64) ([]string, uint64, uint64)) func(uint64) ([]logring.Line, uint64, uint64) {
	return func(after uint64) ([]logring.Line, uint64, uint64) {
		lines, next, skipped := since(after)
		out := make([]logring.Line, len(lines))
		for i, l := range lines {
			out[i].Text = l
		}
		return out, next, skipped
	}
}

// ringSource is a log numbered line by line (logring.Ring.SinceAt) as a
// logfwd.Source, each line made an entry by entry, at the time it was
// written when known.
func ringSource(name string, since func(uint64) ([]logring.Line, uint64, uint64), entry func(string) logfwd.Entry) logfwd.Source {
	return logfwd.Source{Name: name, Read: func(after uint64) ([]logfwd.Entry, uint64, uint64) {
		lines, next, skipped := since(after)
		out := make([]logfwd.Entry, len(lines))
		for i, l := range lines {
			out[i] = entry(l.Text)
			out[i].Pos = next - uint64(len(lines)-1-i)
			if out[i].Time.IsZero() {
				out[i].Time = l.At
			}
		}
		return out, next, skipped
	}}
}

// Syslog's facilities and severities used here.
const (
	facilityDaemon = 3
	sevCrit        = 2
	sevErr         = 3
	sevWarning     = 4
	sevInfo        = 6
	sevDebug       = 7
)

// agentEntry is one of the agent's console lines: an error, a warning,
// else information.
func agentEntry(line string) logfwd.Entry {
	sev := sevInfo
	switch {
	case strings.HasPrefix(line, "etoile: error"):
		sev = sevErr
	case strings.HasPrefix(line, "etoile: warning"):
		sev = sevWarning
	}
	return logfwd.Entry{App: "etoile-agent", Facility: facilityDaemon, Severity: sev, Text: line}
}

// k3sLevel finds the level of one of K3s's lines: logrus's level=… or
// klog's leading letter (E1128 12:00:00.000000 …).
var k3sLevel = regexp.MustCompile(`(?:^|\s)level=([a-z]+)|^([IWEF])\d{4} `)

// k3sEntry is one line of K3s's output.
func k3sEntry(line string) logfwd.Entry {
	sev := sevInfo
	if m := k3sLevel.FindStringSubmatch(line); m != nil {
		switch m[1] + m[2] {
		case "fatal", "panic", "F":
			sev = sevCrit
		case "error", "E":
			sev = sevErr
		case "warning", "warn", "W":
			sev = sevWarning
		case "debug", "trace":
			sev = sevDebug
		}
	}
	return logfwd.Entry{App: "k3s", Facility: facilityDaemon, Severity: sev, Text: line}
}

// syslogEntry is one line of the daemons' log, with the time, facility,
// severity, name and pid its daemon gave.
func syslogEntry(line string) logfwd.Entry {
	m, at, ok := syslogd.ParseLine(line)
	if !ok {
		return logfwd.Entry{App: "syslog", Facility: 1, Severity: 5, Text: line}
	}
	return logfwd.Entry{Time: at, App: m.App, PID: m.PID, Facility: m.Facility, Severity: m.Severity, Text: m.Text}
}

// kernelFollower is the kernel's log as the logging destinations read
// it: on the machine, one /dev/kmsg reader kept open for every destination
// (reading only what is new each time); elsewhere env.KernelLog, read
// whole (tests). Nil when there is none.
func (n *Node) kernelFollower() func(after uint64) ([]kmsg.Record, error) {
	if n.env.Root == "/" {
		n.kfollowOnce.Do(func() {
			if f, err := kmsg.OpenFollower("/dev/kmsg", kernelHeld); err == nil {
				n.kfollow = f
			} else {
				n.env.Log.Warn("the kernel's log is not sent to the logging destinations", "reason", err.Error())
			}
		})
		if n.kfollow == nil {
			return nil
		}
		return n.kfollow.Since
	}
	if n.env.KernelLog == nil {
		return nil
	}
	return func(after uint64) ([]kmsg.Record, error) {
		recs, err := n.env.KernelLog()
		i := 0
		for i < len(recs) && recs[i].Seq+1 <= after {
			i++
		}
		return recs[i:], err
	}
}

// kernelHeld is how many of the kernel's newest records the logging
// destinations' reader holds.
const kernelHeld = 2000

// kernelEntries reads the kernel's records after a position as entries,
// numbered by their sequence number + 1, each at the time the kernel
// stamped it.
func kernelEntries(read func(after uint64) ([]kmsg.Record, error)) func(uint64) ([]logfwd.Entry, uint64, uint64) {
	return func(after uint64) ([]logfwd.Entry, uint64, uint64) {
		recs, err := read(after)
		if err != nil && len(recs) == 0 {
			return nil, after, 0
		}
		boot := bootWallTime()
		out := make([]logfwd.Entry, 0, len(recs))
		next := after
		for _, r := range recs {
			e := logfwd.Entry{Pos: r.Seq + 1, App: "kernel", Facility: r.Prio >> 3, Severity: r.Prio & 7, Text: r.Msg}
			if !boot.IsZero() {
				e.Time = boot.Add(r.Stamp)
			}
			out = append(out, e)
			next = r.Seq + 1
		}
		return out, next, 0
	}
}

// bootWallTime is when the kernel's log clock started (its records' stamps
// count from it), by the wall clock now; zero when unknown.
func bootWallTime() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Time{}
	}
	return time.Now().Add(-time.Duration(ts.Nano()))
}
