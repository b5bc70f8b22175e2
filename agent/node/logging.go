package node

import (
	"crypto/x509"
	"regexp"
	"strings"
	"time"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/kmsg"
	"github.com/etoile-os/etoile/agent/logfwd"
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
	opts := logfwd.Options{Sources: n.logSources(), Host: n.nodeName, Roots: siteRoots(cfg), Log: n.env.Log}
	if err := n.logFwd.Set(n.ctx, dests, opts); err != nil {
		n.env.Log.Warn("the logs are not sent to the logging destinations", "reason", err.Error())
		return []string{"logging: " + err.Error()}
	}
	if len(dests) > 0 {
		n.env.Log.Info("logs sent to the logging destinations", "destinations", len(dests))
	}
	return nil
}

// siteRoots are the authorities a tls:// log destination is checked
// against: the system's (the image's bundle) and the config's
// ca_certificates.
func siteRoots(cfg *config.MachineConfig) *x509.CertPool {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
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
	if n.env.AgentLogs != nil {
		out = append(out, ringSource("agent", n.env.AgentLogs, agentEntry))
	}
	if n.k3sOut != nil {
		out = append(out, ringSource("k3s", n.k3sOut.Since, k3sEntry))
	}
	if n.env.KernelLog != nil {
		out = append(out, logfwd.Source{Name: "kernel", Read: kernelEntries(n.env.KernelLog)})
	}
	if n.env.SyslogLogs != nil {
		out = append(out, ringSource("syslog", n.env.SyslogLogs, syslogEntry))
	}
	return out
}

// ringSource is a log numbered line by line (logring.Ring.Since) as a
// logfwd.Source, each line made an entry by entry.
func ringSource(name string, since func(uint64) ([]string, uint64, uint64), entry func(string) logfwd.Entry) logfwd.Source {
	return logfwd.Source{Name: name, Read: func(after uint64) ([]logfwd.Entry, uint64, uint64) {
		lines, next, skipped := since(after)
		out := make([]logfwd.Entry, len(lines))
		for i, l := range lines {
			out[i] = entry(l)
			out[i].Pos = next - uint64(len(lines)-1-i)
		}
		return out, next, skipped
	}}
}

// Syslog's facilities and severities used here.
const (
	facilityKern   = 0
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

// syslogLine is a line of the daemons' log as syslogd keeps it:
// 2026-11-28T06:00:01.234Z [pid=12 uid=0 ]daemon.err app[pid]: text.
var syslogLine = regexp.MustCompile(`^(\S+Z) (?:pid=\d+ uid=\d+ )?([a-z0-9-]+)\.([a-z]+) ([^\[:]*?)(?:\[([^\]]*)\])?: (.*)$`)

// syslogEntry is one line of the daemons' log, with the time, facility,
// severity, name and pid its daemon gave.
func syslogEntry(line string) logfwd.Entry {
	m := syslogLine.FindStringSubmatch(line)
	if m == nil {
		return logfwd.Entry{App: "syslog", Facility: 1, Severity: 5, Text: line}
	}
	e := logfwd.Entry{App: m[4], PID: m[5], Facility: 1, Severity: 5, Text: m[6]}
	if e.App == "-" {
		e.App = ""
	}
	if t, err := time.Parse("2006-01-02T15:04:05.000Z", m[1]); err == nil {
		e.Time = t
	}
	for i := range 24 {
		if logfwd.FacilityName(i) == m[2] {
			e.Facility = i
		}
	}
	for i := range 8 {
		if logfwd.SeverityName(i) == m[3] {
			e.Severity = i
		}
	}
	return e
}

// kernelEntries reads the kernel's records (read: kmsg.Read of /dev/kmsg)
// as entries, numbered by their sequence number + 1, each at the time the
// kernel stamped it.
func kernelEntries(read func() ([]kmsg.Record, error)) func(uint64) ([]logfwd.Entry, uint64, uint64) {
	return func(after uint64) ([]logfwd.Entry, uint64, uint64) {
		recs, err := read()
		if err != nil || len(recs) == 0 {
			return nil, after, 0
		}
		boot := bootWallTime()
		var out []logfwd.Entry
		next := after
		for _, r := range recs {
			if r.Seq+1 <= after {
				continue
			}
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
