package node

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/kmsg"
	"github.com/etoile-os/etoile/agent/logring"
)

// TestLogsSentToTheDestination: with logging.destinations, the agent's
// lines, K3s's, the kernel's records and the daemons' syslog messages
// reach a collector over UDP as syslog messages with their own app,
// facility and severity; a config without the section stops it.
func TestLogsSentToTheDestination(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var (
		mu  sync.Mutex
		got []string
	)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, string(buf[:n]))
			mu.Unlock()
		}
	}()
	agent, daemons := logring.New(10), logring.New(10)
	agent.Add("etoile: warning: DHCP lease ran out iface=eth0")
	daemons.Add("2026-11-28T06:00:01.234Z pid=42 uid=0 daemon.err chronyd[42]: no server reachable")
	kernel := []kmsg.Record{{Seq: 7, Stamp: time.Second, Msg: "e1000e: eth0 NIC Link is Down", Prio: 3}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.Sleep(20 * time.Millisecond)
	applied := time.Now()
	n := &Node{ctx: ctx, k3sOut: logring.New(10), env: Env{NodeName: "edge-1", AgentLogs: agent.Since, AgentLogsAt: agent.SinceAt, SyslogLogs: daemons.Since,
		KernelLog: func() ([]kmsg.Record, error) { return kernel, nil }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	n.k3sOut.Add(`time="2026-11-28T06:00:02Z" level=error msg="Failed to connect to proxy"`)
	cfg, err := config.Parse([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\nlogging: {destinations: [{endpoint: 'udp://" + pc.LocalAddr().String() + "'}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := n.relog(cfg); len(w) != 0 {
		t.Fatal(w)
	}
	defer n.logFwd.Stop()
	want := []string{
		" edge-1 etoile-agent - - - etoile: warning: DHCP lease ran out iface=eth0",                  // daemon.warning: <28>
		` edge-1 k3s - - - time="2026-11-28T06:00:02Z" level=error msg="Failed to connect to proxy"`, // daemon.err: <27>
		" edge-1 kernel - - - e1000e: eth0 NIC Link is Down",                                         // kern.err: <3>
		"<27>1 2026-11-28T06:00:01.234000Z edge-1 chronyd 42 - - no server reachable",                // the daemon's own
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		all := slices.Clone(got)
		mu.Unlock()
		if len(all) >= 4 || time.Now().After(deadline) {
			if len(all) != 4 {
				t.Fatalf("the collector got:\n%s", strings.Join(all, "\n"))
			}
			for i, w := range want {
				if !strings.HasSuffix(all[i], w) && !strings.HasPrefix(all[i], w) {
					t.Errorf("message %d:\n%s\nwant it to hold %q", i, all[i], w)
				}
			}
			// The agent's line at the time it was written, before the
			// config was applied.
			if f := strings.Fields(all[0]); len(f) < 2 {
				t.Errorf("message 0: %q", all[0])
			} else if at, err := time.Parse("2006-01-02T15:04:05.000000Z", f[1]); err != nil || !at.Before(applied) {
				t.Errorf("the agent's line carries %s (%v), not the time it was written (before %s)", f[1], err, applied.UTC())
			}
			for i, pri := range []string{"<28>1 ", "<27>1 ", "<3>1 "} {
				if !strings.HasPrefix(all[i], pri) {
					t.Errorf("message %d: %s, want priority %s", i, all[i], pri)
				}
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Without the section: nothing more is sent.
	cfg.Logging = nil
	n.relog(cfg)
	agent.Add("etoile: ready")
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 {
		t.Errorf("sent after the section went: %q", got[4:])
	}
}

func TestK3sAndSyslogEntries(t *testing.T) {
	for line, sev := range map[string]int{
		`time="…" level=info msg="Running kubelet"`: 6, `level=warning msg=x`: 4, `level=fatal msg=x`: 2, `level=debug msg=x`: 7,
		"E1128 06:00:00.000000    1234 pod_workers.go:1301] error": 3, "W1128 06:00:00.000000 x": 4, "I1128 06:00:00.000000 x": 6,
		"plain text": 6, "Errors: level=error inside": 3,
	} {
		if e := k3sEntry(line); e.Severity != sev || e.App != "k3s" {
			t.Errorf("k3sEntry(%q) = %+v, want severity %d", line, e, sev)
		}
	}
	e := syslogEntry("2026-11-28T06:00:01.234Z local3.notice -: text")
	if e.Facility != 19 || e.Severity != 5 || e.App != "" || e.Text != "text" || e.Time.IsZero() {
		t.Errorf("syslogEntry without an app: %+v", e)
	}
}

// TestWaitSendsTheLastLines: as the machine stops (Wait, once the services
// have), what the agent said last reaches the collector, the forwarders
// having outlived the node's context.
func TestWaitSendsTheLastLines(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	agent := logring.New(10)
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{ctx: ctx, k3sOut: logring.New(10), env: Env{NodeName: "edge-1", AgentLogsAt: agent.SinceAt, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	cfg, err := config.Parse([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\nlogging: {destinations: [{endpoint: 'udp://" + pc.LocalAddr().String() + "'}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := n.relog(cfg); len(w) != 0 {
		t.Fatal(w)
	}
	cancel() // the machine stops
	agent.Add("etoile: k3s stopped pid=92 took=1.2s")
	n.Wait()
	if err := pc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	k, _, err := pc.ReadFrom(buf)
	if err != nil || !strings.HasSuffix(string(buf[:k]), " etoile: k3s stopped pid=92 took=1.2s") {
		t.Errorf("the last line: %q, %v", buf[:k], err)
	}
}
