package network

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/internal/syncbuf"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// The DHCP test runs the agent's Up in a network namespace of its own,
// wired by a veth pair to a namespace running a DHCP server: the real
// netlink and raw-socket code, without touching the host's network. The
// test binary plays both roles, chosen by ETOILE_NETTEST_ROLE.
func TestMain(m *testing.M) {
	switch os.Getenv("ETOILE_NETTEST_ROLE") {
	case "server":
		os.Exit(dhcpServer())
	case "client":
		os.Exit(dhcpClient())
	case "nodeaddr":
		fmt.Println(NodeAddress())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// dhcpServer answers on vs (ETOILE_NETTEST_SRV_IFACE) with 10.99.0.50 and
// the host name rack1-node4; ETOILE_NETTEST_SRV_NET=98 gives 10.98.0.50
// from 10.98.0.1 instead, ETOILE_NETTEST_SRV_HOSTNAME another name, and
// ETOILE_NETTEST_SRV_DELAY holds each answer back (a slow server).
func dhcpServer() int {
	iface, netByte, hostname := "vs", byte(99), "rack1-node4"
	if v := os.Getenv("ETOILE_NETTEST_SRV_IFACE"); v != "" {
		iface = v
	}
	if v := os.Getenv("ETOILE_NETTEST_SRV_NET"); v == "98" {
		netByte = 98
	}
	if v, ok := os.LookupEnv("ETOILE_NETTEST_SRV_HOSTNAME"); ok {
		hostname = v
	}
	delay, _ := time.ParseDuration(os.Getenv("ETOILE_NETTEST_SRV_DELAY"))
	// ETOILE_NETTEST_SRV_LEASE: the lease time in seconds (3600);
	// ETOILE_NETTEST_SRV_MOVE: after the first lease, 10.x.0.51 (a server
	// that forgot the machine, or the cable moved to another network).
	leaseTime := uint32(3600)
	if v, err := strconv.Atoi(os.Getenv("ETOILE_NETTEST_SRV_LEASE")); err == nil {
		leaseTime = uint32(v)
	}
	move := os.Getenv("ETOILE_NETTEST_SRV_MOVE") != ""
	// ETOILE_NETTEST_SRV_STICKY (with MOVE): a server without bindings,
	// which gives the address a DISCOVER asks for (option 50).
	sticky := os.Getenv("ETOILE_NETTEST_SRV_STICKY") != ""
	// ETOILE_NETTEST_SRV_NO_UNICAST: a server that its clients' unicast
	// does not reach (renewals must rebind, broadcasting).
	noUnicast := os.Getenv("ETOILE_NETTEST_SRV_NO_UNICAST") != ""
	// ETOILE_NETTEST_SRV_DROP_FIRST: the first DISCOVER is lost.
	var dropFirst atomic.Bool
	dropFirst.Store(os.Getenv("ETOILE_NETTEST_SRV_DROP_FIRST") != "")
	var acked atomic.Bool
	// ETOILE_NETTEST_SRV_MASK: the subnet mask given (255.255.255.0).
	mask := net.CIDRMask(24, 32)
	if v := net.ParseIP(os.Getenv("ETOILE_NETTEST_SRV_MASK")).To4(); v != nil {
		mask = net.IPMask(v)
	}
	srvIP := net.IPv4(10, netByte, 0, 1)
	// ETOILE_NETTEST_SRV_ROUTER: the router given (option 3), the
	// server's address otherwise.
	router := srvIP
	if v := net.ParseIP(os.Getenv("ETOILE_NETTEST_SRV_ROUTER")).To4(); v != nil {
		router = v
	}
	// ETOILE_NETTEST_SRV_MTU: the interface MTU given (option 26), when
	// asked for.
	mtu, _ := strconv.Atoi(os.Getenv("ETOILE_NETTEST_SRV_MTU"))
	// ETOILE_NETTEST_SRV_CLASSLESS: option 121 with a default route via
	// the server and routes to these comma-separated prefixes via it,
	// written as given (10.0.15.0/20 keeps its bits past the prefix).
	var classless []*dhcpv4.Route
	if v := os.Getenv("ETOILE_NETTEST_SRV_CLASSLESS"); v != "" {
		classless = append(classless, &dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Router: srvIP})
		for _, c := range strings.Split(v, ",") {
			ip, n, err := net.ParseCIDR(c)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			classless = append(classless, &dhcpv4.Route{Dest: &net.IPNet{IP: ip.To4(), Mask: n.Mask}, Router: srvIP})
		}
	}
	handler := func(via string) server4.Handler {
		return func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
			time.Sleep(delay)
			// The test reads what came and how (stderr).
			fmt.Fprintf(os.Stderr, "etoile-test-srv: %s via=%s ciaddr=%s want=%v sid=%v\n", m.MessageType(), via,
				m.ClientIPAddr, m.RequestedIPAddress(), m.ServerIdentifier())
			if via == "unicast" && noUnicast {
				return
			}
			if m.MessageType() == dhcpv4.MessageTypeDiscover && dropFirst.CompareAndSwap(true, false) {
				return
			}
			host := byte(50)
			if move && acked.Load() {
				host = 51
			}
			asked := m.RequestedIPAddress() // a DISCOVER's or a selecting REQUEST's (option 50)
			if asked.To4() == nil || asked.IsUnspecified() {
				asked = m.ClientIPAddr // a renewal's
			}
			if sticky && asked.To4() != nil && !asked.IsUnspecified() {
				host = asked.To4()[3]
			}
			var typ dhcpv4.MessageType
			switch m.MessageType() {
			case dhcpv4.MessageTypeDiscover:
				typ = dhcpv4.MessageTypeOffer
			case dhcpv4.MessageTypeRequest:
				typ = dhcpv4.MessageTypeAck
				if !asked.Equal(net.IPv4(10, netByte, 0, host)) {
					typ = dhcpv4.MessageTypeNak // as a server that gave the address to another machine
				}
			default:
				return
			}
			reply, err := dhcpv4.NewReplyFromRequest(m,
				dhcpv4.WithMessageType(typ),
				dhcpv4.WithServerIP(srvIP),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvIP)),
			)
			if err == nil && typ != dhcpv4.MessageTypeNak {
				for _, mod := range []dhcpv4.Modifier{
					dhcpv4.WithYourIP(net.IPv4(10, netByte, 0, host)),
					dhcpv4.WithNetmask(mask),
					dhcpv4.WithRouter(router),
					dhcpv4.WithDNS(net.IPv4(10, netByte, 0, 53)),
					dhcpv4.WithLeaseTime(leaseTime),
					dhcpv4.WithOption(dhcpv4.OptHostName(hostname)),
					dhcpv4.WithOption(dhcpv4.OptDomainName("site.test")),
				} {
					mod(reply)
				}
				if m.IsOptionRequested(dhcpv4.OptionNTPServers) {
					// As dnsmasq and Kea do: NTP servers only when asked for.
					reply.UpdateOption(dhcpv4.OptNTPServers(net.IPv4(10, netByte, 0, 123)))
				}
				if len(classless) > 0 {
					reply.UpdateOption(dhcpv4.OptClasslessStaticRoute(classless...))
				}
				if mtu != 0 && m.IsOptionRequested(dhcpv4.OptionInterfaceMTU) {
					reply.UpdateOption(dhcpv4.Option{Code: dhcpv4.OptionInterfaceMTU, Value: dhcpv4.Uint16(mtu)})
				}
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return
			}
			// RFC 2131 §4.1: to a client that has its address (ciaddr),
			// unicast; a NAK, broadcast (§4.3.2).
			to := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
			if typ != dhcpv4.MessageTypeNak && !m.ClientIPAddr.IsUnspecified() && m.ClientIPAddr.To4() != nil {
				to.IP = m.ClientIPAddr
			}
			if _, err := conn.WriteTo(reply.ToBytes(), to); err != nil {
				fmt.Fprintln(os.Stderr, err)
			} else if typ == dhcpv4.MessageTypeAck {
				acked.Store(true)
			}
		}
	}
	// Two sockets: broadcasts come to the first, messages sent to the
	// server's address (a renewal's) to the second, where the server's
	// link has that address (not the 10.98 server's: its clients' unicast
	// reaches no one).
	s, err := server4.NewServer(iface, &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, handler("broadcast"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if u, err := server4.NewServer(iface, &net.UDPAddr{IP: srvIP, Port: dhcpv4.ServerPort}, handler("unicast")); err == nil {
		go u.Serve()
	} else if !strings.Contains(err.Error(), syscall.EADDRNOTAVAIL.Error()) { // server4 wraps it with %v
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("listening")
	if err := s.Serve(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// upReturned is the client's line on stderr once Up has returned.
const upReturned = "etoile-test: Up returned"

type clientResult struct {
	IP, Hostname, SetHostname string
	NTP                       []string // NTPServers of the leases
	Links                     []string
	Err                       string
	BeforeSettled             bool // Up returned before the drivers settled
	// With ETOILE_NETTEST_APPLY (a JSON list of config.Interface): Apply's.
	Applied         []Applied
	ApplyErr        string
	IPAfterApply    string
	LinksAfterApply []string
	Leases          int    // after ETOILE_NETTEST_APPLY2
	NodeAddr        string // NodeAddress after Up
	// NodeAddrAfterApply is NodeAddress after the last config applied.
	NodeAddrAfterApply string
	// LeaseFrom is how long after Up began the first lease's times count
	// from (the REQUEST that got it).
	LeaseFrom time.Duration
}

func dhcpClient() int {
	var r clientResult
	// ETOILE_NETTEST_EARLY: the drivers settle 4 s (ETOILE_NETTEST_SETTLE) after Up starts, Up
	// may return before, and links vc2… that appear meanwhile are set up
	// in the background; the client stays until they settle, and 1 s more.
	early := os.Getenv("ETOILE_NETTEST_EARLY") != ""
	var settled chan struct{}
	only := []string{"vc"}
	if early {
		settled = make(chan struct{})
		after := 4 * time.Second
		if d, err := time.ParseDuration(os.Getenv("ETOILE_NETTEST_SETTLE")); err == nil {
			after = d
		}
		time.AfterFunc(after, func() { close(settled) })
		only = append(only, "vc2")
	}
	dhcpTimeout := 20 * time.Second
	if d, err := time.ParseDuration(os.Getenv("ETOILE_NETTEST_DHCP_TIMEOUT")); err == nil {
		dhcpTimeout = d
	}
	// ETOILE_NETTEST_ONLY: the links to configure (comma-separated).
	if o := os.Getenv("ETOILE_NETTEST_ONLY"); o != "" {
		only = strings.Split(o, ",")
	}
	grace, _ := time.ParseDuration(os.Getenv("ETOILE_NETTEST_LEASE_GRACE"))
	// ETOILE_NETTEST_RETRY: Config.Retry. A lease that comes after Up
	// returned rewrites resolv.conf in ETOILE_NETTEST_ETC, as the boot does,
	// and is logged with the NTP servers known then.
	retry, _ := time.ParseDuration(os.Getenv("ETOILE_NETTEST_RETRY"))
	// ETOILE_NETTEST_RETRY_MAX: Config.RetryMax (twice RETRY otherwise).
	retryMax, perr := time.ParseDuration(os.Getenv("ETOILE_NETTEST_RETRY_MAX"))
	if perr != nil {
		retryMax = 2 * retry
	}
	var (
		res     Result
		haveRes = make(chan struct{})
	)
	onLate := func(l Lease) {
		<-haveRes
		WriteResolv(os.Getenv("ETOILE_NETTEST_ETC"), res, slog.Default())
		fmt.Fprintf(os.Stderr, "etoile-test: late lease iface=%s addr=%s ntp=%s node=%s\n", l.Iface, l.Addr.String(),
			strings.Join(NTPServers(res.AllLeases()), ","), NodeAddress())
	}
	// ETOILE_NETTEST_FOLLOW_SIGNALS: SIGUSR1 ends the links' carrier
	// subscription (as an ENOBUFS does), SIGUSR2 has it made again.
	if os.Getenv("ETOILE_NETTEST_FOLLOW_SIGNALS") != "" {
		followEnd, followResume = make(chan struct{}), make(chan struct{})
		sigs := make(chan os.Signal, 2)
		signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
		go func() {
			for sig := range sigs {
				if sig == syscall.SIGUSR1 {
					followEnd <- struct{}{}
				} else {
					followResume <- struct{}{}
				}
			}
		}()
	}
	// ETOILE_NETTEST_RENEW: renew the leases, a renewal's REQUESTs that
	// long apart at least (RFC 2131's minute).
	resend, _ := time.ParseDuration(os.Getenv("ETOILE_NETTEST_RENEW"))
	start := time.Now()
	res, err := Up(context.Background(), Config{
		Renew:     resend > 0,
		resendMin: resend,
		OnRenewed: func(l Lease) {
			<-haveRes
			// As the boot does: a lost lease's name servers go too.
			if l.Addr.IP == nil {
				RewriteResolv(os.Getenv("ETOILE_NETTEST_ETC"), res, slog.Default())
			} else {
				WriteResolv(os.Getenv("ETOILE_NETTEST_ETC"), res, slog.Default())
			}
			fmt.Fprintf(os.Stderr, "etoile-test: renewed iface=%s addr=%s ip=%s\n", l.Iface, l.Addr.String(), FirstIPv4(res.AllLeases()))
		},
		Retry:        retry,
		RetryMax:     retryMax,
		OnLateLease:  onLate,
		Settled:      settled,
		EarlyReturn:  early,
		Log:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
		CarrierWait:  3 * time.Second,
		CarrierGrace: 200 * time.Millisecond,
		DHCPTimeout:  dhcpTimeout,
		LeaseGrace:   grace,
		EtcDir:       os.Getenv("ETOILE_NETTEST_ETC"),
		SetHostname:  func(h string) error { r.SetHostname = h; return nil },
		Only:         only,
	})
	close(haveRes)
	fmt.Fprintln(os.Stderr, upReturned)
	if err != nil {
		r.Err = err.Error()
	}
	if early {
		select {
		case <-settled:
		default:
			r.BeforeSettled = true
		}
	}
	r.IP, r.Hostname, r.Links, r.NTP = FirstIPv4(res.Leases), res.Hostname, res.Links, NTPServers(res.AllLeases())
	r.NodeAddr = NodeAddress()
	if len(res.Leases) > 0 {
		r.LeaseFrom = res.Leases[0].asked.Sub(start)
	}
	// ETOILE_NETTEST_APPLY_AFTER: wait that long before applying (a
	// lease that comes in the background lands first).
	if d, err := time.ParseDuration(os.Getenv("ETOILE_NETTEST_APPLY_AFTER")); err == nil {
		time.Sleep(d)
	}
	if spec := os.Getenv("ETOILE_NETTEST_APPLY"); spec != "" {
		var ifaces []config.Interface
		if err := json.Unmarshal([]byte(spec), &ifaces); err != nil {
			r.ApplyErr = err.Error()
		} else {
			applied, err := Apply(context.Background(), ifaces, &res, Config{
				Log:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
				DHCPTimeout: dhcpTimeout, EtcDir: os.Getenv("ETOILE_NETTEST_ETC"), Renew: true,
				Retry: retry, RetryMax: 2 * retry, OnLateLease: onLate,
			})
			r.Applied = applied
			if err != nil {
				r.ApplyErr = err.Error()
			}
		}
		r.IPAfterApply, r.LinksAfterApply = FirstIPv4(res.Leases), res.Links
		// ETOILE_NETTEST_APPLY2, then ETOILE_NETTEST_APPLY3: more configs,
		// as applied later through the local API.
		for _, env := range []string{"ETOILE_NETTEST_APPLY2", "ETOILE_NETTEST_APPLY3"} {
			spec2 := os.Getenv(env)
			if spec2 == "" || r.ApplyErr != "" {
				break
			}
			var ifaces2 []config.Interface
			if err := json.Unmarshal([]byte(spec2), &ifaces2); err != nil {
				r.ApplyErr = err.Error()
			} else if _, err := Apply(context.Background(), ifaces2, &res, Config{
				Log:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
				DHCPTimeout: dhcpTimeout, EtcDir: os.Getenv("ETOILE_NETTEST_ETC"), Renew: true,
			}); err != nil {
				r.ApplyErr = err.Error()
			}
			r.IPAfterApply = FirstIPv4(res.Leases)
			r.Leases = len(res.Leases)
		}
		r.NodeAddrAfterApply = NodeAddress()
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
	// ETOILE_NETTEST_LINGER: stay that long for what goes on in the background.
	if d, err := time.ParseDuration(os.Getenv("ETOILE_NETTEST_LINGER")); err == nil {
		time.Sleep(d)
	}
	if early {
		// The background set-up logs what it did once the drivers settle:
		// stay until then, and a little after.
		<-settled
		time.Sleep(time.Second)
	}
	return 0
}

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	b, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return string(b)
}

var nsCount atomic.Int64

// dhcpNamespaces makes a server and a client namespace joined by the veth
// pair vs (server, 10.99.0.1/24) – vc (client), starts the DHCP server on
// vs, and returns the two namespaces' names and this test binary's path.
func dhcpNamespaces(t *testing.T) (srv, cli, exe string) {
	return namespaces(t, true)
}

// namespaces is dhcpNamespaces, with or without the DHCP server.
func namespaces(t *testing.T, dhcpServer bool) (srv, cli, exe string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("making network namespaces needs root: run the tests as root (make test does, as CI)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("the ip command is needed: apt-get install -y iproute2")
	}
	suffix := fmt.Sprintf("%d-%d", os.Getpid(), nsCount.Add(1))
	srv, cli = "etoile-dhcp-srv-"+suffix, "etoile-dhcp-cli-"+suffix
	ipCmd(t, "netns", "add", srv)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", srv).Run() })
	ipCmd(t, "netns", "add", cli)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", cli).Run() })
	ipCmd(t, "-n", cli, "link", "add", "vc", "type", "veth", "peer", "name", "vs", "netns", srv)
	ipCmd(t, "-n", srv, "addr", "add", "10.99.0.1/24", "dev", "vs")
	ipCmd(t, "-n", srv, "link", "set", "vs", "up")
	cableUp(t, cli, "vc", srv, "vs")

	var err error
	exe, err = os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !dhcpServer {
		return srv, cli, exe
	}
	startServer(t, srv, exe)
	return srv, cli, exe
}

// startServer starts the test's DHCP server (dhcpServer) in namespace srv,
// with more environment; the returned function stops it.
func startServer(t *testing.T, srv, exe string, env ...string) (stop func()) {
	t.Helper()
	stop, _ = startServerLog(t, srv, exe, env...)
	return stop
}

// startServerLog is startServer, also returning the server's log: a line
// "etoile-test-srv: TYPE via=unicast|broadcast ciaddr=… want=… sid=…" for
// each message that came.
func startServerLog(t *testing.T, srv, exe string, env ...string) (stop func(), log *syncbuf.Buffer) {
	t.Helper()
	server := exec.Command("ip", "netns", "exec", srv, exe)
	server.Env = append(append(os.Environ(), "ETOILE_NETTEST_ROLE=server"), env...)
	out, err := server.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	log = &syncbuf.Buffer{}
	server.Stderr = io.MultiWriter(os.Stderr, log)
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	stop = sync.OnceFunc(func() { server.Process.Kill(); server.Wait() })
	t.Cleanup(stop)
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "listening\n" {
		t.Fatalf("DHCP server did not start: %q %v", line, err)
	}
	return stop, log
}

// runClient runs the DHCP client role in namespace cli with more
// environment, and returns its result and its log.
func runClient(t *testing.T, cli, exe string, env ...string) (clientResult, string) {
	t.Helper()
	client := exec.Command("ip", "netns", "exec", cli, exe)
	client.Env = append(append(os.Environ(), "ETOILE_NETTEST_ROLE=client"), env...)
	var stderr strings.Builder
	client.Stderr = &stderr
	b, err := client.Output()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, stderr.String())
	}
	var r clientResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("client output %q: %v", b, err)
	}
	return r, stderr.String()
}

// streamClient starts the client role in namespace cli with more
// environment, runs meanwhile (when not nil) while the client works, and
// returns the client's result line (printed once Up and Apply are done:
// the client may go on after), the running client and its log.
func streamClient(t *testing.T, cli, exe string, meanwhile func(), env ...string) (*exec.Cmd, clientResult, *syncbuf.Buffer) {
	t.Helper()
	client := exec.Command("ip", "netns", "exec", cli, exe)
	client.Env = append(append(os.Environ(), "ETOILE_NETTEST_ROLE=client"), env...)
	stderr := &syncbuf.Buffer{} // read while the client writes it
	client.Stderr = stderr
	out, err := client.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Process.Kill(); client.Wait() })
	if meanwhile != nil {
		meanwhile()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("client: %v\n%s", err, stderr.String())
	}
	var r clientResult
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("client output %q: %v\n%s", line, err, stderr.String())
	}
	return client, r, stderr
}

// waitLog waits (d at most) until log holds text; it reports whether it does.
func waitLog(log *syncbuf.Buffer, text string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !strings.Contains(log.String(), text) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// carrierGap takes vc's carrier away for 2 s (its peer vs down in srv):
// longer than the kernel's link watch, which tells a carrier change up to a
// second late and only its last state.
func carrierGap(t *testing.T, srv string) {
	t.Helper()
	carrierGapOn(t, srv, "vs")
}

// carrierGapOn is carrierGap for the client's link whose peer in srv is peer.
func carrierGapOn(t *testing.T, srv, peer string) {
	t.Helper()
	ipCmd(t, "-n", srv, "link", "set", peer, "down")
	time.Sleep(2 * time.Second)
	ipCmd(t, "-n", srv, "link", "set", peer, "up")
}

// onlyAddress checks that link vc in namespace cli has the IPv4 address
// cidr and no other, and (gw not "") its default route through gw.
func onlyAddress(t *testing.T, cli, cidr, gw, when string) {
	t.Helper()
	if addrs := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc"); !strings.Contains(addrs, "inet "+cidr) || strings.Count(addrs, "inet ") != 1 {
		t.Errorf("vc's addresses %s:\n%s\nwant %s only", when, addrs, cidr)
	}
	if gw == "" {
		return
	}
	if route := ipCmd(t, "-n", cli, "route", "show", "default"); !strings.Contains(route, "default via "+gw+" dev vc") {
		t.Errorf("default route %s:\n%s\nwant via %s", when, route, gw)
	}
}

// waitCount waits (d at most) until log holds text n times.
func waitCount(log *syncbuf.Buffer, text string, n int, d time.Duration) {
	deadline := time.Now().Add(d)
	for strings.Count(log.String(), text) < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
}

func TestUpDHCP(t *testing.T) {
	_, cli, exe := dhcpNamespaces(t)
	etc := t.TempDir()
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+etc)
	if r.Err != "" || r.IP != "10.99.0.50" || r.Hostname != "rack1-node4" || r.SetHostname != "rack1-node4" || r.NodeAddr != "10.99.0.50" {
		t.Errorf("client got %+v, want 10.99.0.50 (K3s's node address too) and host name rack1-node4\n%s", r, stderr)
	}
	// The server sends NTP servers only when the request asks for them.
	if strings.Join(r.NTP, ",") != "10.99.0.123" {
		t.Errorf("NTP servers %q, want 10.99.0.123 (is option 42 in the parameter request list?)", r.NTP)
	}
	addr := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc")
	if !strings.Contains(addr, "inet 10.99.0.50/24") {
		t.Errorf("address not applied:\n%s", addr)
	}
	// It lives as long as the lease (an hour), not for ever: the kernel
	// removes it should its renewal die.
	if m := regexp.MustCompile(`valid_lft (\d+)sec preferred_lft (\d+)sec`).FindStringSubmatch(addr); m == nil {
		t.Errorf("the address's lifetime is not the lease's:\n%s", addr)
	} else if v, _ := strconv.Atoi(m[1]); v > 3600 || v < 3500 {
		t.Errorf("the address's lifetime is %ss, want the lease's hour:\n%s", m[1], addr)
	}
	if route := ipCmd(t, "-n", cli, "route", "show", "default"); !strings.Contains(route, "default via 10.99.0.1 dev vc") {
		t.Errorf("default route not applied:\n%s", route)
	}
	resolv, _ := os.ReadFile(filepath.Join(etc, "resolv.conf"))
	if want := "search site.test\nnameserver 10.99.0.53\n"; !strings.Contains(string(resolv), want) {
		t.Errorf("resolv.conf:\n%s\nwant it to hold\n%s", resolv, want)
	}
	if h, _ := os.ReadFile(filepath.Join(etc, "hostname")); string(h) != "rack1-node4\n" {
		t.Errorf("hostname file holds %q", h)
	}
}

// TestUpEarlyReturn: with EarlyReturn, Up returns with vc's lease before the
// drivers have settled, and a link that appears afterwards (vc2, as a NIC
// whose driver loads late) is still set up, in the background.
func TestUpEarlyReturn(t *testing.T) {
	srv, cli, exe := dhcpNamespaces(t)
	// The drivers settle late (8 s): the lease, even after a lost DHCP
	// DISCOVER on a loaded machine, and vc2 both come before.
	client, r, stderr := streamClient(t, cli, exe, nil, "ETOILE_NETTEST_EARLY=1", "ETOILE_NETTEST_SETTLE=8s", "ETOILE_NETTEST_ETC="+t.TempDir())
	if r.Err != "" || r.IP != "10.99.0.50" || !r.BeforeSettled {
		t.Fatalf("client got %+v, want 10.99.0.50 before the drivers settled\n%s", r, stderr.String())
	}
	// A NIC appears after Up returned: its peer is up, so it gets carrier once set up.
	ipCmd(t, "-n", cli, "link", "add", "vc2", "type", "veth", "peer", "name", "vs2", "netns", srv)
	ipCmd(t, "-n", srv, "link", "set", "vs2", "up")
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(ipCmd(t, "-n", cli, "link", "show", "vc2"), ",UP") {
		if time.Now().After(deadline) {
			t.Fatalf("vc2 was never set up:\n%s\n%s", ipCmd(t, "-n", cli, "link", "show", "vc2"), stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := client.Wait(); err != nil {
		t.Fatalf("client: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "network links that appeared after the boot's network step") {
		t.Errorf("the late link is not logged:\n%s", stderr.String())
	}
}

// TestUpNoEarlyReturnWithoutLease: with EarlyReturn, a link with carrier but
// no DHCP answer does not end the wait: Up waits for the drivers to settle
// (a NIC whose driver loads later could still get an address).
func TestUpNoEarlyReturnWithoutLease(t *testing.T) {
	_, cli, exe := namespaces(t, false)
	// The drivers settle after DHCP on vc has given up.
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_EARLY=1", "ETOILE_NETTEST_DHCP_TIMEOUT=2s", "ETOILE_NETTEST_SETTLE=5s",
		"ETOILE_NETTEST_ETC="+t.TempDir())
	if r.BeforeSettled || r.IP != "none" {
		t.Errorf("client got %+v, want no address and a return only once the drivers settled\n%s", r, stderr)
	}
}

// silentPort adds the link vc2 to the client namespace, cabled (its peer
// vs2 up in the server's namespace) to a network where no DHCP server
// answers: a server's second port on a storage network.
func silentPort(t *testing.T, srv, cli string) {
	t.Helper()
	ipCmd(t, "-n", cli, "link", "add", "vc2", "type", "veth", "peer", "name", "vs2", "netns", srv)
	ipCmd(t, "-n", srv, "link", "set", "vs2", "up")
	cableUp(t, cli, "vc2", srv, "vs2")
}

// cableUp sets the client's end c of a veth pair up and waits until the
// server's end s, which was up, is UP too: the kernel's link watch has seen
// its carrier and enabled its queue. Until then s drops what it sends —
// the server's first OFFER would be lost, as a switch port that is not
// forwarding yet loses it — and the test would wait for the client's resend.
// The client's Up still sets c up (no change) and waits for its carrier.
func cableUp(t *testing.T, cli, c, srv, s string) {
	t.Helper()
	ipCmd(t, "-n", cli, "link", "set", c, "up")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ipCmd(t, "-n", srv, "-o", "link", "show", s), " state UP ") {
		if time.Now().After(deadline) {
			t.Fatalf("%s never came UP after %s did:\n%s", s, c, ipCmd(t, "-n", srv, "-o", "link", "show", s))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUpSilentPortDoesNotHoldTheBoot: with a lease and its default route on
// vc, Up returns after LeaseGrace while vc2, which has carrier but no DHCP
// server, is still asking (DHCPTimeout is longer); vc2's exchange goes on in
// the background and ends in its own time, after Up returned.
func TestUpSilentPortDoesNotHoldTheBoot(t *testing.T) {
	srv, cli, exe := dhcpNamespaces(t)
	silentPort(t, srv, cli)
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ONLY=vc,vc2", "ETOILE_NETTEST_LEASE_GRACE=1s",
		"ETOILE_NETTEST_DHCP_TIMEOUT=6s", "ETOILE_NETTEST_LINGER=8s", "ETOILE_NETTEST_ETC="+t.TempDir())
	if r.Err != "" || r.IP != "10.99.0.50" || len(r.Links) != 2 {
		t.Fatalf("client got %+v, want vc's 10.99.0.50 and both links\n%s", r, stderr)
	}
	returned := strings.Index(stderr, upReturned)
	background := strings.Index(stderr, "DHCP goes on in the background")
	gaveUp := strings.Index(stderr, "no DHCP lease")
	switch {
	case background < 0 || !strings.Contains(stderr[background:], "links=vc2"):
		t.Errorf("Up did not say that vc2's DHCP goes on in the background:\n%s", stderr)
	case gaveUp < 0 || !strings.Contains(stderr[gaveUp:], "iface=vc2"):
		t.Errorf("vc2's exchange did not end with its timeout in the background:\n%s", stderr)
	case returned < 0 || gaveUp < returned:
		t.Errorf("Up waited for vc2's DHCP timeout before returning:\n%s", stderr)
	}
}

// TestUpSlowServerLeaseAppliedLater: vc2's DHCP server answers 5 s late,
// well after the grace (even if vc's first DISCOVER is lost): Up returns with vc's lease, and vc2's comes in the
// background — applied to the link with its default route behind vc's,
// and its host name, which comes after the machine was named, is not used
// and says so.
func TestUpSlowServerLeaseAppliedLater(t *testing.T) {
	srv, cli, exe := dhcpNamespaces(t)
	silentPort(t, srv, cli)
	slowServer(t, srv, exe, 2500*time.Millisecond)
	etc := t.TempDir()
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ONLY=vc,vc2", "ETOILE_NETTEST_LEASE_GRACE=500ms",
		"ETOILE_NETTEST_DHCP_TIMEOUT=12s", "ETOILE_NETTEST_LINGER=8s", "ETOILE_NETTEST_ETC="+etc)
	if r.Err != "" || r.IP != "10.99.0.50" || r.Hostname != "rack1-node4" {
		t.Fatalf("client got %+v, want vc's lease and name\n%s", r, stderr)
	}
	if addr := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc2"); !strings.Contains(addr, "inet 10.98.0.50/24") {
		t.Errorf("vc2's late lease was not applied:\n%s\n%s", addr, stderr)
	}
	// Its default route is behind the boot's, whatever the links' order.
	routes := strings.Split(strings.TrimSpace(ipCmd(t, "-n", cli, "route", "show", "default")), "\n")
	lateRoute := regexp.MustCompile(`^default via 10\.98\.0\.1 dev vc2 .*metric (\d+)`)
	metric := -1
	if m := lateRoute.FindStringSubmatch(routes[len(routes)-1]); m != nil {
		metric, _ = strconv.Atoi(m[1])
	}
	if len(routes) != 2 || !strings.HasPrefix(routes[0], "default via 10.99.0.1 dev vc ") || metric < lateMetric {
		t.Errorf("default routes:\n%s\nwant vc's first and vc2's behind it (metric %d + its index)", strings.Join(routes, "\n"), lateMetric)
	}
	// Its name server behind the boot lease's; its NTP server known.
	if b, err := os.ReadFile(filepath.Join(etc, "resolv.conf")); err != nil || !strings.Contains(string(b), "nameserver 10.99.0.53\nnameserver 10.98.0.53\n") {
		t.Errorf("resolv.conf after the late lease: %q %v", b, err)
	}
	// K3s's node address stays vc's: vc2's default route is behind.
	if !strings.Contains(stderr, "etoile-test: late lease iface=vc2 addr=10.98.0.50/24 ntp=10.99.0.123,10.98.0.123 node=10.99.0.50\n") {
		t.Errorf("the late lease was not told, or its NTP server is not known:\n%s", stderr)
	}
	returned := strings.Index(stderr, upReturned)
	notUsed := strings.Index(stderr, "DHCP host name not used")
	if notUsed < returned || !strings.Contains(stderr[notUsed:], "hostname=slow-name") {
		t.Errorf("the late lease's host name was not reported as unused after Up returned:\n%s", stderr)
	}
}

// TestUpAsksAgainAfterNoLease: no DHCP server answers during the boot's
// exchange (a rack powered on at once, the switch port or the DHCP server
// up later): Up returns without an address, the link is asked again in
// the background, and once the server is there the lease is applied, with
// its default route, name servers in resolv.conf and NTP servers.
func TestUpAsksAgainAfterNoLease(t *testing.T) {
	srv, cli, exe := namespaces(t, false)
	etc := t.TempDir()
	_, r, stderr := streamClient(t, cli, exe, nil, "ETOILE_NETTEST_DHCP_TIMEOUT=2s", "ETOILE_NETTEST_RETRY=1s",
		"ETOILE_NETTEST_ETC="+etc, "ETOILE_NETTEST_LINGER=20s")
	if r.Err != "" || r.IP != "none" {
		t.Fatalf("client got %+v, want no address from the boot's exchange\n%s", r, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(etc, "resolv.conf")); err == nil {
		t.Errorf("resolv.conf written without a lease")
	}
	startServer(t, srv, exe)
	waitLog(stderr, "etoile-test: late lease", 15*time.Second)
	log := stderr.String()
	if !strings.Contains(log, "etoile-test: late lease iface=vc addr=10.99.0.50/24 ntp=10.99.0.123 node=10.99.0.50") {
		t.Fatalf("no lease after the server came up (or not its NTP servers):\n%s", log)
	}
	if !strings.Contains(log, "no DHCP lease; asking again in the background") || !regexp.MustCompile(`msg="dhcp lease" iface=vc .* tries=\d+`).MatchString(log) {
		t.Errorf("the retries are not logged:\n%s", log)
	}
	if route := ipCmd(t, "-n", cli, "route", "show", "default"); !strings.Contains(route, "default via 10.99.0.1 dev vc") {
		t.Errorf("default route not applied:\n%s", route)
	}
	b, err := os.ReadFile(filepath.Join(etc, "resolv.conf"))
	if err != nil || !strings.Contains(string(b), "nameserver 10.99.0.53\n") || !strings.Contains(string(b), "search site.test\n") {
		t.Errorf("resolv.conf after the lease: %q %v", b, err)
	}
}

// TestUpRefusesALeaseWithAnInvalidMask: a DHCP server that gives a subnet
// mask that is not contiguous (255.0.255.0) gets its lease refused, with a
// warning naming the server and the mask, instead of a crash (the netlink
// library panics on such a mask); the link goes on asking, and gets the
// lease a fixed server gives.
func TestUpRefusesALeaseWithAnInvalidMask(t *testing.T) {
	srv, cli, exe := namespaces(t, false)
	stop := startServer(t, srv, exe, "ETOILE_NETTEST_SRV_MASK=255.0.255.0")
	_, r, stderr := streamClient(t, cli, exe, nil, "ETOILE_NETTEST_DHCP_TIMEOUT=3s", "ETOILE_NETTEST_RETRY=1s",
		"ETOILE_NETTEST_LINGER=20s", "ETOILE_NETTEST_ETC="+t.TempDir())
	if r.IP != "none" {
		t.Errorf("client got %+v, want no address from a lease with an invalid mask\n%s", r, stderr.String())
	}
	if !regexp.MustCompile(`level=WARN msg="DHCP answer refused: its subnet mask is not valid" iface=vc server=10\.99\.0\.1 addr=10\.99\.0\.50 mask=255\.0\.255\.0`).MatchString(stderr.String()) {
		t.Errorf("the refusal is not logged with the server and the mask:\n%s", stderr.String())
	}
	if addrs := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc"); strings.Contains(addrs, "inet ") {
		t.Errorf("vc has an address from the refused lease:\n%s", addrs)
	}
	stop()
	startServer(t, srv, exe) // the server's mask fixed
	if !waitLog(stderr, "etoile-test: late lease iface=vc addr=10.99.0.50/24", 15*time.Second) {
		t.Fatalf("no lease once the server's mask was fixed:\n%s", stderr.String())
	}
}

// TestCableAfterTheBoot: vc has no cable while the boot looks (its switch
// port is down), so Up returns without an address; the cable comes a few
// seconds later, and the link is asked for a lease then — a late lease,
// with its default route and name servers — not at the next reboot.
func TestCableAfterTheBoot(t *testing.T) {
	srv, cli, exe := dhcpNamespaces(t)
	ipCmd(t, "-n", srv, "link", "set", "vs", "down") // vc: no carrier
	etc := t.TempDir()
	_, r, stderr := streamClient(t, cli, exe, nil, "ETOILE_NETTEST_RENEW=1s", "ETOILE_NETTEST_ETC="+etc, "ETOILE_NETTEST_LINGER=20s")
	if r.Err != "" || r.IP != "none" {
		t.Fatalf("client got %+v, want no address without a cable\n%s", r, stderr.String())
	}
	// Waited for: the client's log (stderr) and its result (stdout) are two
	// pipes, read in no fixed order.
	if !waitLog(stderr, `msg="no carrier" iface=vc`, 5*time.Second) {
		t.Errorf("the link without a cable is not logged:\n%s", stderr.String())
	}
	ipCmd(t, "-n", srv, "link", "set", "vs", "up") // the cable comes
	if !waitLog(stderr, "etoile-test: late lease", 15*time.Second) {
		t.Fatalf("no lease after the cable came:\n%s", stderr.String())
	}
	log := stderr.String()
	if !strings.Contains(log, `msg="link has carrier: asking DHCP" iface=vc`) ||
		!strings.Contains(log, "etoile-test: late lease iface=vc addr=10.99.0.50/24 ntp=10.99.0.123 node=10.99.0.50") {
		t.Errorf("the late lease is not logged, or not with its NTP server and as the node's address:\n%s", log)
	}
	onlyAddress(t, cli, "10.99.0.50/24", "10.99.0.1", "after the cable came")
	if b, err := os.ReadFile(filepath.Join(etc, "resolv.conf")); err != nil || !strings.Contains(string(b), "nameserver 10.99.0.53\n") {
		t.Errorf("resolv.conf after the late lease: %q %v", b, err)
	}
}

// TestNICAppearsAfterTheBoot: a NIC that registers after the boot's network
// step (a USB NIC plugged in, a driver loaded late) is set up, and once it
// has carrier it is asked for a lease, as a late one; unplugged and plugged
// in again (the same name, another index), it is asked again.
func TestNICAppearsAfterTheBoot(t *testing.T) {
	srv, cli, exe := dhcpNamespaces(t)
	_, r, stderr := streamClient(t, cli, exe, nil, "ETOILE_NETTEST_RENEW=1s", "ETOILE_NETTEST_ONLY=vc,vc3",
		"ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_LINGER=20s")
	if r.Err != "" || r.IP != "10.99.0.50" {
		t.Fatalf("client got %+v\n%s", r, stderr.String())
	}
	ipCmd(t, "-n", cli, "link", "add", "vc3", "type", "veth", "peer", "name", "vs3", "netns", srv)
	ipCmd(t, "-n", srv, "addr", "add", "10.98.0.1/24", "dev", "vs3")
	ipCmd(t, "-n", srv, "link", "set", "vs3", "up")
	startServer(t, srv, exe, "ETOILE_NETTEST_SRV_IFACE=vs3", "ETOILE_NETTEST_SRV_NET=98")
	if !waitLog(stderr, "etoile-test: late lease iface=vc3", 15*time.Second) {
		t.Fatalf("no lease on the NIC that appeared:\n%s", stderr.String())
	}
	if log := stderr.String(); !strings.Contains(log, `msg="network link appeared: set up" iface=vc3`) ||
		!strings.Contains(log, "etoile-test: late lease iface=vc3 addr=10.98.0.50/24") || !strings.Contains(log, "node=10.99.0.50\n") {
		t.Errorf("the NIC's set-up or late lease is not logged, or it took the node's address:\n%s", log)
	}
	// Unplugged, and plugged in again (its DHCP server on a fresh port).
	ipCmd(t, "-n", cli, "link", "del", "vc3")
	ipCmd(t, "-n", cli, "link", "add", "vc3", "type", "veth", "peer", "name", "vs3", "netns", srv)
	ipCmd(t, "-n", srv, "addr", "add", "10.98.0.1/24", "dev", "vs3")
	ipCmd(t, "-n", srv, "link", "set", "vs3", "up")
	startServer(t, srv, exe, "ETOILE_NETTEST_SRV_IFACE=vs3", "ETOILE_NETTEST_SRV_NET=98")
	waitCount(stderr, "etoile-test: late lease iface=vc3 addr=10.98.0.50/24", 2, 15*time.Second)
	if strings.Count(stderr.String(), "etoile-test: late lease iface=vc3 addr=10.98.0.50/24") < 2 {
		t.Fatalf("no lease on the NIC plugged in again:\n%s", stderr.String())
	}
	if addrs := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc3"); !strings.Contains(addrs, "inet 10.98.0.50/24") {
		t.Errorf("vc3's addresses after it came back:\n%s", addrs)
	}
}

// TestApplyDHCPAsksAgain: the machine config lists vc2 with dhcp: true and
// its DHCP server is not up yet: Apply says so and asks again in the
// background; once the server answers, the lease is applied and told, its
// name server in resolv.conf behind the boot lease's.
func TestApplyDHCPAsksAgain(t *testing.T) {
	srv, cli, exe := dhcpNamespaces(t)
	silentPort(t, srv, cli)
	etc := t.TempDir()
	_, r, stderr := streamClient(t, cli, exe, nil, "ETOILE_NETTEST_DHCP_TIMEOUT=2s", "ETOILE_NETTEST_RETRY=1s",
		"ETOILE_NETTEST_APPLY="+`[{"name":"vc2","dhcp":true,"dns":["10.96.0.53"]}]`, "ETOILE_NETTEST_ETC="+etc, "ETOILE_NETTEST_LINGER=20s")
	if r.IP != "10.99.0.50" || !strings.Contains(r.ApplyErr, "network.interfaces[0]: DHCP on vc2:") || !strings.Contains(r.ApplyErr, "asking again in the background") {
		t.Fatalf("client got %+v, want vc's lease and vc2's error\n%s", r, stderr.String())
	}
	slowServer(t, srv, exe, 10*time.Millisecond)
	waitLog(stderr, "etoile-test: late lease", 15*time.Second)
	if log := stderr.String(); !strings.Contains(log, "etoile-test: late lease iface=vc2 addr=10.98.0.50/24 ntp=10.99.0.123,10.98.0.123") {
		t.Fatalf("no lease on vc2 after its server came up:\n%s", log)
	}
	if addr := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc2"); !strings.Contains(addr, "inet 10.98.0.50/24") {
		t.Errorf("vc2's lease not applied:\n%s", addr)
	}
	// The entry's own name server first, then the boot lease's, then vc2's.
	if b, err := os.ReadFile(filepath.Join(etc, "resolv.conf")); err != nil || !strings.Contains(string(b), "nameserver 10.96.0.53\nnameserver 10.99.0.53\nnameserver 10.98.0.53\n") {
		t.Errorf("resolv.conf after vc2's lease: %q %v", b, err)
	}
	// Its default route behind vc's (K3s chose its address by vc's).
	routes := strings.Split(strings.TrimSpace(ipCmd(t, "-n", cli, "route", "show", "default")), "\n")
	if len(routes) != 2 || !strings.HasPrefix(routes[0], "default via 10.99.0.1 dev vc ") || !strings.Contains(routes[1], "dev vc2") {
		t.Errorf("default routes:\n%s\nwant vc's first", strings.Join(routes, "\n"))
	}
}

// renewingTest is a DHCP server (its log in server) and a client that got
// 10.99.0.50 from it and renews it (its log in client), /etc in etc.
type renewingTest struct {
	srv, cli, exe, etc string
	proc               *exec.Cmd // the client
	stopServer         func()
	server, client     *syncbuf.Buffer
}

// renewing starts the test's DHCP server with srvEnv and a client that
// renews its leases (resent at least a second apart, staying 20 s after Up
// unless cliEnv says otherwise), and checks that it got 10.99.0.50.
func renewing(t *testing.T, srvEnv []string, cliEnv ...string) renewingTest {
	t.Helper()
	var rt renewingTest
	rt.srv, rt.cli, rt.exe = namespaces(t, false)
	rt.stopServer, rt.server = startServerLog(t, rt.srv, rt.exe, srvEnv...)
	rt.etc = t.TempDir()
	env := append([]string{"ETOILE_NETTEST_RENEW=1s", "ETOILE_NETTEST_LINGER=20s", "ETOILE_NETTEST_ETC=" + rt.etc}, cliEnv...)
	var r clientResult
	rt.proc, r, rt.client = streamClient(t, rt.cli, rt.exe, nil, env...)
	if r.IP != "10.99.0.50" {
		t.Fatalf("client got %+v\n%s", r, rt.client.String())
	}
	return rt
}

// TestRenewalGivesANewAddress: the DHCP server refuses the renewal (NAK:
// it gave the address to another machine, or the cable moved) and offers
// another address: the link keeps the new address only, and its default
// route.
func TestRenewalGivesANewAddress(t *testing.T) {
	rt := renewing(t, []string{"ETOILE_NETTEST_SRV_LEASE=4", "ETOILE_NETTEST_SRV_MOVE=1"})
	cli, srvLog, stderr := rt.cli, rt.server, rt.client
	// Told that the address went (the NAK), then of the new one, which
	// the Result's lease shows as renewed.
	waitLog(stderr, "etoile-test: renewed iface=vc addr=10.99.0.51/24", 15*time.Second)
	waitLog(stderr, "etoile-test: renewed iface=vc addr=<nil> ip=", 5*time.Second)
	log := stderr.String()
	nak := `msg="DHCP server refused the lease's renewal: its address and routes are removed; asking for a new lease" iface=vc addr=10.99.0.50/24 server=10.99.0.1`
	// (OnRenewed runs in a goroutine of its own: the new lease may be in
	// AllLeases by the time the loss is told.)
	if !strings.Contains(log, nak) || !strings.Contains(log, "etoile-test: renewed iface=vc addr=<nil> ip=") {
		t.Errorf("the server's NAK is not logged, or the address it refused was not dropped and told:\n%s", log)
	}
	if !strings.Contains(log, "etoile-test: renewed iface=vc addr=10.99.0.51/24 ip=10.99.0.51\n") {
		t.Errorf("the new lease was not told, or AllLeases does not show it:\n%s", log)
	}
	// The DISCOVER after the NAK does not ask for the refused address.
	if slog := srvLog.String(); strings.Count(slog, "DISCOVER via=broadcast ciaddr=0.0.0.0 want=<nil>") < 2 || strings.Contains(slog, "want=10.99.0.50 sid=<nil>") {
		t.Errorf("want two DISCOVERs asking for no address (the boot's, the one after the NAK), the server got:\n%s", slog)
	}
	onlyAddress(t, cli, "10.99.0.51/24", "10.99.0.1", "after the renewal")
}

// TestCarrierBackAsksForItsAddress: after the carrier came back, the
// DISCOVER asks for the address the link has (option 50): a server without
// bindings, which would give another one otherwise, gives it back, and the
// address stays.
func TestCarrierBackAsksForItsAddress(t *testing.T) {
	rt := renewing(t, []string{"ETOILE_NETTEST_SRV_MOVE=1", "ETOILE_NETTEST_SRV_STICKY=1"})
	cli, srvLog, stderr := rt.cli, rt.server, rt.client
	carrierGap(t, rt.srv)
	if !waitLog(srvLog, "DISCOVER via=broadcast ciaddr=0.0.0.0 want=10.99.0.50", 15*time.Second) {
		t.Fatalf("no DISCOVER asking for 10.99.0.50 after the carrier came back:\nserver:\n%s\nclient:\n%s", srvLog.String(), stderr.String())
	}
	// The boot's exchange, then the one after the carrier came back.
	waitCount(stderr, `msg="dhcp done" iface=vc`, 2, 10*time.Second)
	if log := stderr.String(); strings.Contains(log, "DHCP gave a new address") {
		t.Errorf("the address changed:\n%s", log)
	}
	onlyAddress(t, cli, "10.99.0.50/24", "", "after the carrier came back")
}

// discoversAfterBoot counts the DISCOVERs in a test server's log after the
// boot's exchange (its first REQUEST). The boot's own may be more than
// one: the server's end of the veth pair drops what it sends until the
// kernel's link watch has seen its carrier, and its first OFFER can go.
func discoversAfterBoot(serverLog string) int {
	_, after, ok := strings.Cut(serverLog, "REQUEST via=broadcast ciaddr=0.0.0.0")
	if !ok {
		return 0
	}
	return strings.Count(after, "DISCOVER")
}

// TestLeaseCountsFromItsRequest: the first DISCOVER is lost and resent
// 2 s later: the lease's times count from the REQUEST that got it (RFC
// 2131 §4.4.1), not from the lost DISCOVER — a short lease does not run
// out, or come due for renewal, as soon as it came.
func TestLeaseCountsFromItsRequest(t *testing.T) {
	srv, cli, exe := namespaces(t, false)
	_, srvLog := startServerLog(t, srv, exe, "ETOILE_NETTEST_SRV_LEASE=4", "ETOILE_NETTEST_SRV_DROP_FIRST=1")
	r, log := runClient(t, cli, exe, "ETOILE_NETTEST_RENEW=1s", "ETOILE_NETTEST_LINGER=1s", "ETOILE_NETTEST_ETC="+t.TempDir())
	if r.IP != "10.99.0.50" {
		t.Fatalf("client got %+v\n%s", r, log)
	}
	if slog := srvLog.String(); strings.Count(slog, "DISCOVER") < 2 || !strings.Contains(slog, "REQUEST via=broadcast ciaddr=0.0.0.0 want=10.99.0.50") {
		t.Errorf("want a lost DISCOVER, then the exchange, the server got:\n%s", slog)
	}
	// nclient4 resends a DISCOVER after 2 s without an OFFER: the REQUEST
	// cannot have gone before.
	if r.LeaseFrom < 2*time.Second {
		t.Errorf("the lease counts from %v after DHCP began, before its REQUEST went (2 s at the soonest)", r.LeaseFrom)
	}
	if strings.Contains(log, "lease ran out") {
		t.Errorf("the lease ran out as it came:\n%s", log)
	}
}

// TestRenewalIsUnicastToItsServer: at T1 the lease is renewed with a
// REQUEST sent to the server that gave it (RFC 2131's RENEWING: its
// address in ciaddr, no option 50 or server identifier), not with a
// broadcast DISCOVER; the address and its default route stay.
func TestRenewalIsUnicastToItsServer(t *testing.T) {
	rt := renewing(t, []string{"ETOILE_NETTEST_SRV_LEASE=4"})
	cli, srvLog, stderr := rt.cli, rt.server, rt.client
	// T1 is 2 s: three renewals within 8 s.
	renewal := "REQUEST via=unicast ciaddr=10.99.0.50 want=<nil> sid=<nil>"
	waitCount(srvLog, renewal, 3, 10*time.Second)
	log := srvLog.String()
	if strings.Count(log, renewal) < 3 || discoversAfterBoot(log) != 0 {
		t.Errorf("want three unicast renewals and the boot's one DISCOVER, the server got:\n%s\nclient:\n%s", log, stderr.String())
	}
	if !strings.Contains(stderr.String(), `msg="dhcp lease renewed" iface=vc addr=10.99.0.50/24 how=renewing`) {
		t.Errorf("the client did not renew:\n%s", stderr.String())
	}
	onlyAddress(t, cli, "10.99.0.50/24", "10.99.0.1", "after the renewals")
}

// TestRenewalRebindsWhenItsServerIsUnreachable: the server that gave the
// lease does not get unicast (gone, or a route that broke): at T2 the
// REQUEST is broadcast (REBINDING), a server answers, and the lease goes on
// with the same address.
func TestRenewalRebindsWhenItsServerIsUnreachable(t *testing.T) {
	rt := renewing(t, []string{"ETOILE_NETTEST_SRV_LEASE=8", "ETOILE_NETTEST_SRV_NO_UNICAST=1"}, "ETOILE_NETTEST_DHCP_TIMEOUT=2s")
	cli, srvLog, stderr := rt.cli, rt.server, rt.client
	// T1 4 s, T2 7 s.
	if !waitLog(stderr, "how=rebinding", 15*time.Second) {
		t.Fatalf("no rebinding:\n%s\nserver:\n%s", stderr.String(), srvLog.String())
	}
	log, slog := stderr.String(), srvLog.String()
	if !strings.Contains(log, `msg="DHCP renewal from its server failed" iface=vc to=10.99.0.1`) ||
		!strings.Contains(slog, "REQUEST via=unicast ciaddr=10.99.0.50") ||
		!strings.Contains(slog, "REQUEST via=broadcast ciaddr=10.99.0.50 want=<nil> sid=<nil>") {
		t.Errorf("want an unanswered unicast renewal, then a broadcast one:\nclient:\n%s\nserver:\n%s", log, slog)
	}
	if discoversAfterBoot(slog) != 0 || strings.Contains(log, "ran out") {
		t.Errorf("the lease was lost or asked for anew:\nclient:\n%s\nserver:\n%s", log, slog)
	}
	if addrs := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc"); !strings.Contains(addrs, "inet 10.99.0.50/24") {
		t.Errorf("vc's addresses after rebinding:\n%s", addrs)
	}
}

// TestLeaseRunsOut: no server answers the renewals; when the lease runs out
// its address and default route leave the link, the machine is told (no
// address any more), the link's MTU from before the lease's option 26
// comes back (as systemd-networkd does), and once a server answers again
// the link gets its address back.
func TestLeaseRunsOut(t *testing.T) {
	rt := renewing(t, []string{"ETOILE_NETTEST_SRV_LEASE=4", "ETOILE_NETTEST_SRV_MTU=1400"}, "ETOILE_NETTEST_LINGER=30s",
		"ETOILE_NETTEST_DHCP_TIMEOUT=2s", "ETOILE_NETTEST_RETRY=1s")
	srv, cli, exe, etc, stderr := rt.srv, rt.cli, rt.exe, rt.etc, rt.client
	mtuOf := func() string {
		return regexp.MustCompile(`mtu \d+`).FindString(ipCmd(t, "-n", cli, "link", "show", "vc"))
	}
	if got := mtuOf(); got != "mtu 1400" {
		t.Errorf("vc has %s with the lease, want DHCP's mtu 1400", got)
	}
	rt.stopServer()
	if !waitLog(stderr, "etoile-test: renewed iface=vc addr=<nil> ip=none", 15*time.Second) {
		t.Fatalf("the lost lease was not told:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `msg="DHCP lease ran out: its address and routes are removed; asking DHCP again" iface=vc addr=10.99.0.50/24`) {
		t.Errorf("the lease's end is not logged:\n%s", stderr.String())
	}
	if addrs := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc"); strings.Contains(addrs, "inet ") {
		t.Errorf("vc keeps an address after its lease ran out:\n%s", addrs)
	}
	if route := ipCmd(t, "-n", cli, "route", "show", "default"); strings.TrimSpace(route) != "" {
		t.Errorf("a default route is left:\n%s", route)
	}
	if got := mtuOf(); got != "mtu 1500" || !strings.Contains(stderr.String(), `msg="MTU back from DHCP's" iface=vc mtu=1500 was=1400 why="the lease is lost"`) {
		t.Errorf("vc has %s once its lease ran out, want its own mtu 1500 back, and told:\n%s", got, stderr.String())
	}
	if b, err := os.ReadFile(filepath.Join(etc, "resolv.conf")); err != nil || strings.Contains(string(b), "nameserver") {
		t.Errorf("resolv.conf once the lease ran out: %q %v, want no name server", b, err)
	}
	startServer(t, srv, exe, "ETOILE_NETTEST_SRV_LEASE=3600")
	if !waitLog(stderr, "etoile-test: renewed iface=vc addr=10.99.0.50/24 ip=10.99.0.50", 15*time.Second) {
		t.Fatalf("no lease after the server came back:\n%s", stderr.String())
	}
	if route := ipCmd(t, "-n", cli, "route", "show", "default"); !strings.Contains(route, "default via 10.99.0.1 dev vc") {
		t.Errorf("default route once the lease came again:\n%s", route)
	}
}

// TestCarrierBackAsksAgain: the link loses its carrier and gets it back (a
// cable moved to another network, here a server that then gives another
// address): the lease, good for an hour, is asked again at once, and the
// link has the new address only.
func TestCarrierBackAsksAgain(t *testing.T) {
	rt := renewing(t, []string{"ETOILE_NETTEST_SRV_MOVE=1"})
	cli, stderr := rt.cli, rt.client
	carrierGap(t, rt.srv)
	waitLog(stderr, "etoile-test: renewed", 15*time.Second)
	log := stderr.String()
	if !strings.Contains(log, `msg="link has carrier again: asking DHCP again" iface=vc`) || !strings.Contains(log, "etoile-test: renewed iface=vc addr=10.99.0.51/24") {
		t.Fatalf("the lease was not asked again when the carrier came back:\n%s", log)
	}
	onlyAddress(t, cli, "10.99.0.51/24", "", "after the carrier came back")
}

// TestCarrierChangesWhileTheWatchWasAway: the kernel ends the links'
// carrier subscription (its buffer overrun in a burst of link events), and
// the carrier changes before it is made again — it comes back (its loss
// seen before the gap), or goes and comes back (both unseen: the link's
// carrier_up_count tells). The new subscription acts on what changed in
// the gap: the lease is asked again at once, as if it had been seen.
func TestCarrierChangesWhileTheWatchWasAway(t *testing.T) {
	for name, gap := range map[string]struct {
		before, during func(t *testing.T, srv string)
	}{
		"came back": {
			before: func(t *testing.T, srv string) {
				ipCmd(t, "-n", srv, "link", "set", "vs", "down")
				time.Sleep(2 * time.Second) // the link watch tells the carrier's loss
			},
			during: func(t *testing.T, srv string) { ipCmd(t, "-n", srv, "link", "set", "vs", "up") },
		},
		"went and came back": {
			before: func(*testing.T, string) {},
			during: carrierGap,
		},
	} {
		t.Run(name, func(t *testing.T) {
			rt := renewing(t, []string{"ETOILE_NETTEST_SRV_MOVE=1"}, "ETOILE_NETTEST_FOLLOW_SIGNALS=1", "ETOILE_NETTEST_LINGER=30s")
			stderr := rt.client
			gap.before(t, rt.srv)
			rt.proc.Process.Signal(syscall.SIGUSR1)
			if !waitLog(stderr, "following the links' carrier stopped", 5*time.Second) {
				t.Fatalf("the subscription did not end:\n%s", stderr.String())
			}
			gap.during(t, rt.srv)
			time.Sleep(2 * time.Second) // the carrier's return is told to no one
			rt.proc.Process.Signal(syscall.SIGUSR2)
			waitLog(stderr, "etoile-test: renewed", 15*time.Second)
			log := stderr.String()
			if !strings.Contains(log, `msg="link has carrier again: asking DHCP again" iface=vc`) || !strings.Contains(log, "etoile-test: renewed iface=vc addr=10.99.0.51/24") {
				t.Fatalf("the carrier change in the gap was not acted on:\n%s", log)
			}
			onlyAddress(t, rt.cli, "10.99.0.51/24", "", "after the carrier came back")
		})
	}
}

// TestCableMovedWhileAskingAgain: no DHCP server answers the boot's
// exchange, and the background retries have grown 8 s apart; the cable is
// then moved (the carrier goes and comes): DHCP is asked at once. The new
// port does not forward yet (its server comes 4.5 s later), so that try
// fails too: the retries start again from their first wait (2 s), and the
// lease comes soon after the server — not after a wait of 16 s.
func TestCableMovedWhileAskingAgain(t *testing.T) {
	srv, cli, exe := namespaces(t, false)
	_, r, stderr := streamClient(t, cli, exe, nil, "ETOILE_NETTEST_DHCP_TIMEOUT=2s", "ETOILE_NETTEST_RETRY=2s", "ETOILE_NETTEST_RETRY_MAX=60s",
		"ETOILE_NETTEST_RENEW=1s", "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_LINGER=60s")
	if r.Err != "" || r.IP != "none" {
		t.Fatalf("client got %+v, want no address from the boot's exchange\n%s", r, stderr.String())
	}
	if !waitLog(stderr, "next_in=8s", 30*time.Second) {
		t.Fatalf("the retries did not grow to 8 s apart:\n%s", stderr.String())
	}
	carrierGap(t, srv)
	time.Sleep(4500 * time.Millisecond) // the try the carrier's return started fails: no server yet
	if !strings.Contains(stderr.String(), `msg="link has carrier again: asking DHCP now" iface=vc`) {
		t.Fatalf("the carrier's return did not start a try:\n%s", stderr.String())
	}
	startServer(t, srv, exe)
	if !waitLog(stderr, "etoile-test: late lease iface=vc addr=10.99.0.50/24", 8*time.Second) {
		t.Fatalf("no lease soon after the server came (the retries did not start again from their first wait):\n%s", stderr.String())
	}
	onlyAddress(t, cli, "10.99.0.50/24", "10.99.0.1", "after the cable moved")
}

// TestApplyDHCPCableMoved: the machine config's DHCP link vc2 got no lease
// and is asked again a minute apart; its cable moved to a port with a
// DHCP server is asked at once.
func TestApplyDHCPCableMoved(t *testing.T) {
	srv, cli, exe := dhcpNamespaces(t)
	silentPort(t, srv, cli)
	_, r, stderr := streamClient(t, cli, exe, nil, "ETOILE_NETTEST_DHCP_TIMEOUT=2s", "ETOILE_NETTEST_RETRY=60s", "ETOILE_NETTEST_RENEW=1s",
		"ETOILE_NETTEST_APPLY="+`[{"name":"vc2","dhcp":true}]`, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_LINGER=30s")
	if r.IP != "10.99.0.50" || !strings.Contains(r.ApplyErr, "asking again in the background") {
		t.Fatalf("client got %+v, want vc's lease and vc2's error\n%s", r, stderr.String())
	}
	slowServer(t, srv, exe, 10*time.Millisecond)
	carrierGapOn(t, srv, "vs2")
	if !waitLog(stderr, "etoile-test: late lease iface=vc2 addr=10.98.0.50/24", 15*time.Second) {
		t.Fatalf("no lease on vc2 soon after its cable moved:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `msg="link has carrier again: asking DHCP now" iface=vc2`) {
		t.Errorf("the carrier's return is not logged:\n%s", stderr.String())
	}
}

// TestCarrierBackAsksAgainUntilAnswered: when the carrier comes back the
// DHCP server does not answer yet (a switch port that does not forward
// yet); the lease is asked again soon after, not at its renewal an hour
// later, and the server's answer, once it is back, is applied.
func TestCarrierBackAsksAgainUntilAnswered(t *testing.T) {
	rt := renewing(t, []string{"ETOILE_NETTEST_SRV_MOVE=1"}, "ETOILE_NETTEST_LINGER=40s", "ETOILE_NETTEST_DHCP_TIMEOUT=2s")
	srv, exe, stderr := rt.srv, rt.exe, rt.client
	rt.stopServer()
	carrierGap(t, srv)
	waitLog(stderr, "asking DHCP after the carrier came back failed", 15*time.Second)
	// The server back, on another network (the cable moved).
	startServer(t, srv, exe, "ETOILE_NETTEST_SRV_NET=98")
	waitLog(stderr, "etoile-test: renewed", 30*time.Second)
	log := stderr.String()
	if !strings.Contains(log, `msg="asking DHCP after the carrier came back failed; the lease is kept" iface=vc`) || !strings.Contains(log, "next_in=10s") {
		t.Errorf("the failed try after the carrier came back is not asked again soon:\n%s", log)
	}
	if !strings.Contains(log, "etoile-test: renewed iface=vc addr=10.98.0.50/24") {
		t.Errorf("no lease after the server came back:\n%s", log)
	}
}

// TestUpSilentPortFirstThenALeaseLater: the silent port vc2 is the only
// link with carrier when the watch first returns (vc's cable comes 1 s
// later, as a NIC whose driver probes last): vc's DHCP starts as soon as it
// has carrier, while vc2's still asks, and Up returns with vc's lease
// before the drivers settle — not after vc2's DHCP timeout.
func TestUpSilentPortFirstThenALeaseLater(t *testing.T) {
	srv, cli, exe := dhcpNamespaces(t)
	ipCmd(t, "-n", srv, "link", "set", "vs", "down") // vc: no carrier yet
	silentPort(t, srv, cli)
	cableComes := func() {
		// After the client's first look (it sets the links up) and the
		// carrier grace after it, so that vc2 is the only link asking.
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(ipCmd(t, "-n", cli, "link", "show", "vc2"), ",UP") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Second)
		ipCmd(t, "-n", srv, "link", "set", "vs", "up")
	}
	_, r, stderr := streamClient(t, cli, exe, cableComes, "ETOILE_NETTEST_EARLY=1", "ETOILE_NETTEST_SETTLE=12s",
		"ETOILE_NETTEST_LEASE_GRACE=500ms", "ETOILE_NETTEST_DHCP_TIMEOUT=10s", "ETOILE_NETTEST_ETC="+t.TempDir())
	// Before the drivers settle (12 s): not after vc2's DHCP timeout (10 s),
	// which waiting for vc2 first would have taken, then the settling.
	if r.Err != "" || r.IP != "10.99.0.50" || !r.BeforeSettled {
		t.Errorf("client got %+v, want vc's lease before the drivers settled\n%s", r, stderr.String())
	}
}

// TestUpWaitsForEveryLinkWithoutGrace: without LeaseGrace, Up waits for
// every exchange, vc2's timeout included (the behaviour the grace changes).
func TestUpWaitsForEveryLinkWithoutGrace(t *testing.T) {
	srv, cli, exe := dhcpNamespaces(t)
	silentPort(t, srv, cli)
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ONLY=vc,vc2", "ETOILE_NETTEST_DHCP_TIMEOUT=3s", "ETOILE_NETTEST_ETC="+t.TempDir())
	if r.IP != "10.99.0.50" {
		t.Fatalf("client got %+v\n%s", r, stderr)
	}
	if gaveUp, returned := strings.Index(stderr, "no DHCP lease"), strings.Index(stderr, upReturned); gaveUp < 0 || returned < gaveUp {
		t.Errorf("Up returned before vc2's exchange ended:\n%s", stderr)
	}
}

// slowServer gives vc2 (made by silentPort) a DHCP server that answers
// with 10.98.0.50, each answer delay late: a lease 2×delay after the ask.
func slowServer(t *testing.T, srv, exe string, delay time.Duration) {
	t.Helper()
	ipCmd(t, "-n", srv, "addr", "add", "10.98.0.1/24", "dev", "vs2")
	startServer(t, srv, exe, "ETOILE_NETTEST_SRV_IFACE=vs2", "ETOILE_NETTEST_SRV_NET=98",
		"ETOILE_NETTEST_SRV_HOSTNAME=slow-name", "ETOILE_NETTEST_SRV_DELAY="+delay.String())
}

// TestApplyStopsTheBootsExchange: a machine config that makes vc2 static
// while the boot's DHCP on it still goes on in the background (its server
// answers 6 s late) ends that exchange (one DHCP client per link): the
// late lease never lands over the static address.
func TestApplyStopsTheBootsExchange(t *testing.T) {
	srv, cli, exe := dhcpNamespaces(t)
	silentPort(t, srv, cli)
	slowServer(t, srv, exe, 3*time.Second)
	apply := `[{"name":"vc2","addresses":["10.97.0.7/24"]}]`
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ONLY=vc,vc2", "ETOILE_NETTEST_LEASE_GRACE=500ms",
		"ETOILE_NETTEST_DHCP_TIMEOUT=10s", "ETOILE_NETTEST_LINGER=8s", "ETOILE_NETTEST_APPLY="+apply, "ETOILE_NETTEST_ETC="+t.TempDir())
	if r.ApplyErr != "" || r.IP != "10.99.0.50" {
		t.Fatalf("client got %+v\n%s", r, stderr)
	}
	if !strings.Contains(stderr, "DHCP stopped") || strings.Contains(stderr, `msg="dhcp lease" iface=vc2`) || strings.Contains(stderr, "no default route left") {
		t.Errorf("the boot's exchange on vc2 was not stopped by the static config:\n%s", stderr)
	}
	addrs := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc2")
	if !strings.Contains(addrs, "inet 10.97.0.7/24") || strings.Count(addrs, "inet ") != 1 {
		t.Errorf("vc2's addresses:\n%s\nwant 10.97.0.7/24 only", addrs)
	}
}

// TestApplyStaticAfterALateLease: vc2's lease came in the background
// (after the grace, with its default route behind vc's); the machine
// config then makes vc2 static: the late lease's address, routes and
// renewal all go, and vc keeps the machine's default route.
func TestApplyStaticAfterALateLease(t *testing.T) {
	srv, cli, exe := dhcpNamespaces(t)
	silentPort(t, srv, cli)
	slowServer(t, srv, exe, 2500*time.Millisecond)
	etc := t.TempDir()
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ONLY=vc,vc2", "ETOILE_NETTEST_LEASE_GRACE=500ms",
		"ETOILE_NETTEST_DHCP_TIMEOUT=12s", "ETOILE_NETTEST_APPLY_AFTER=8s", "ETOILE_NETTEST_APPLY="+`[{"name":"vc2","addresses":["10.97.0.7/24"]}]`,
		"ETOILE_NETTEST_ETC="+etc)
	if r.ApplyErr != "" || r.IP != "10.99.0.50" {
		t.Fatalf("client got %+v\n%s", r, stderr)
	}
	if !strings.Contains(stderr, `msg="dhcp lease" iface=vc2`) || !strings.Contains(stderr, "etoile-test: late lease iface=vc2") {
		t.Fatalf("vc2's late lease never came before the config:\n%s", stderr)
	}
	// The late lease's name server went with it.
	if b, err := os.ReadFile(filepath.Join(etc, "resolv.conf")); err != nil || !strings.Contains(string(b), "nameserver 10.99.0.53\n") || strings.Contains(string(b), "10.98.0.53") {
		t.Errorf("resolv.conf after the config: %q %v", b, err)
	}
	addrs := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc2")
	if !strings.Contains(addrs, "inet 10.97.0.7/24") || strings.Count(addrs, "inet ") != 1 {
		t.Errorf("vc2's addresses:\n%s\nwant 10.97.0.7/24 only", addrs)
	}
	if routes := ipCmd(t, "-n", cli, "-4", "route", "show", "dev", "vc2"); strings.Contains(routes, "10.98.0.1") || strings.Contains(routes, "default") {
		t.Errorf("the late lease's routes stayed on vc2:\n%s", routes)
	}
	if routes := ipCmd(t, "-n", cli, "route", "show", "default"); !strings.HasPrefix(routes, "default via 10.99.0.1 dev vc ") || strings.Count(routes, "default") != 1 {
		t.Errorf("default routes:\n%s\nwant vc's only", routes)
	}
	if strings.Contains(stderr, "no default route left") {
		t.Errorf("warned that the default route went, though vc keeps it:\n%s", stderr)
	}
}

// TestApplyKeepsTheBootsDHCPOffAConfiguredLink: vc2 has no carrier when Up
// returns and the machine config makes it static; when its cable comes
// (and a DHCP server with it), the boot's watch for late links does not
// start DHCP on it: it keeps its static address only.
func TestApplyKeepsTheBootsDHCPOffAConfiguredLink(t *testing.T) {
	srv, cli, exe := dhcpNamespaces(t)
	ipCmd(t, "-n", cli, "link", "add", "vc2", "type", "veth", "peer", "name", "vs2", "netns", srv) // vs2 down: no carrier
	client, r, stderr := streamClient(t, cli, exe, nil, "ETOILE_NETTEST_EARLY=1", "ETOILE_NETTEST_SETTLE=10s",
		"ETOILE_NETTEST_APPLY="+`[{"name":"vc2","addresses":["10.97.0.7/24"]}]`, "ETOILE_NETTEST_ETC="+t.TempDir())
	if r.ApplyErr != "" || r.IP != "10.99.0.50" || !r.BeforeSettled {
		t.Fatalf("client got %+v, want vc's lease and the config applied before the drivers settled\n%s", r, stderr.String())
	}
	// The cable comes, with a DHCP server on it.
	ipCmd(t, "-n", srv, "addr", "add", "10.98.0.1/24", "dev", "vs2")
	startServer(t, srv, exe, "ETOILE_NETTEST_SRV_IFACE=vs2", "ETOILE_NETTEST_SRV_NET=98")
	ipCmd(t, "-n", srv, "link", "set", "vs2", "up")
	waitLog(stderr, "DHCP stopped", 12*time.Second)
	if err := client.Wait(); err != nil {
		t.Fatalf("client: %v\n%s", err, stderr.String())
	}
	log := stderr.String()
	if !strings.Contains(log, "DHCP stopped") || strings.Contains(log, `msg="dhcp lease" iface=vc2`) {
		t.Errorf("the boot's DHCP ran on the configured vc2:\n%s", log)
	}
	addrs := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc2")
	if !strings.Contains(addrs, "inet 10.97.0.7/24") || strings.Count(addrs, "inet ") != 1 {
		t.Errorf("vc2's addresses:\n%s\nwant 10.97.0.7/24 only", addrs)
	}
}

// TestApplyWarnsWhenTheDefaultRouteGoes: a machine config that makes vc,
// which had the machine's default route from DHCP, static without a
// gateway leaves no default route: Apply warns and names the link; a
// storage port made static beside it (TestApplyStopsTheBootsExchange) does
// not.
func TestApplyWarnsWhenTheDefaultRouteGoes(t *testing.T) {
	_, cli, exe := dhcpNamespaces(t)
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_APPLY="+`[{"name":"vc","addresses":["10.99.0.60/24"]}]`, "ETOILE_NETTEST_ETC="+t.TempDir())
	if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.60" {
		t.Fatalf("client got %+v\n%s", r, stderr)
	}
	if !strings.Contains(stderr, "no default route left") || !strings.Contains(stderr, "had=vc") {
		t.Errorf("no warning that the default route went:\n%s", stderr)
	}
}

// TestApplyStatic runs Up's DHCP, then Apply with a machine config's
// interfaces: vc turns static (its lease and renewal dropped, a new
// address, default route and name server, found by MAC with a lower MTU),
// and an interface that does not exist is reported without stopping the
// others. (VLANs need the kernel's 8021q, which this test host's kernel
// lacks: TestStandinK3sStaticNetwork makes one under the image's kernel.)
func TestApplyStatic(t *testing.T) {
	_, cli, exe := dhcpNamespaces(t)
	mac := strings.Fields(ipCmd(t, "-n", cli, "-br", "link", "show", "vc"))[2]
	ifaces := []config.Interface{
		{MAC: mac, Addresses: []string{"10.99.0.77/24"}, Gateway: "10.99.0.1", DNS: []string{"10.99.0.9"}, MTU: 1400},
		{Name: "eth9", DHCP: true},
	}
	spec, err := json.Marshal(ifaces)
	if err != nil {
		t.Fatal(err)
	}
	etc := t.TempDir()
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+etc, "ETOILE_NETTEST_APPLY="+string(spec))
	if r.IP != "10.99.0.50" {
		t.Fatalf("boot DHCP gave %q, want 10.99.0.50\n%s", r.IP, stderr)
	}
	if r.IPAfterApply != "10.99.0.77" || len(r.Applied) != 1 || r.Applied[0].Iface != "vc" {
		t.Errorf("after Apply: first address %q, applied %+v (%s); want 10.99.0.77 on vc\n%s", r.IPAfterApply, r.Applied, r.ApplyErr, stderr)
	}
	if !strings.Contains(r.ApplyErr, "network.interfaces[1]: no interface named eth9") {
		t.Errorf("Apply error %q does not name the missing interface", r.ApplyErr)
	}
	addrs := ipCmd(t, "-n", cli, "-4", "-br", "addr", "show")
	if !strings.Contains(addrs, "10.99.0.77/24") || strings.Contains(addrs, "10.99.0.50") {
		t.Errorf("addresses after Apply (want 10.99.0.77 and the lease gone):\n%s", addrs)
	}
	if route := ipCmd(t, "-n", cli, "route", "show", "default"); !strings.Contains(route, "default via 10.99.0.1 dev vc proto static metric 50") {
		t.Errorf("static default route missing:\n%s", route)
	}
	if link := ipCmd(t, "-n", cli, "link", "show", "vc"); !strings.Contains(link, "mtu 1400") {
		t.Errorf("MTU not set:\n%s", link)
	}
	resolv, _ := os.ReadFile(filepath.Join(etc, "resolv.conf"))
	if parts := strings.SplitN(string(resolv), "nameserver", 2); len(parts) != 2 || !strings.HasPrefix(parts[1], " 10.99.0.9\n") {
		t.Errorf("resolv.conf does not put the static name server first:\n%s", resolv)
	}
}

// TestApplyAgainOnLinkGateway: a second config (as applied through the
// local API) replaces the first one's static address on the link, and a
// /32 address gets its gateway outside that subnet as an on-link route.
func TestApplyAgainOnLinkGateway(t *testing.T) {
	_, cli, exe := dhcpNamespaces(t)
	// A route someone else set on the link (a site's, a CNI's) stays.
	ipCmd(t, "-n", cli, "link", "set", "vc", "up")
	ipCmd(t, "-n", cli, "route", "add", "10.200.0.0/16", "dev", "vc", "metric", "7")
	first, _ := json.Marshal([]config.Interface{{Name: "vc", Addresses: []string{"10.99.0.77/24"}, Gateway: "10.99.0.1"}})
	second, _ := json.Marshal([]config.Interface{{Name: "vc", Addresses: []string{"10.99.0.88/32"}, Gateway: "10.99.0.1", DNS: []string{"10.99.0.9"}}})
	r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(first), "ETOILE_NETTEST_APPLY2="+string(second))
	if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.88" || r.Leases != 1 {
		t.Fatalf("after the second apply: %q, %d leases, error %q; want 10.99.0.88 alone\n%s", r.IPAfterApply, r.Leases, r.ApplyErr, stderr)
	}
	addrs := ipCmd(t, "-n", cli, "-4", "-br", "addr", "show", "vc")
	if !strings.Contains(addrs, "10.99.0.88/32") || strings.Contains(addrs, "10.99.0.77") || strings.Contains(addrs, "10.99.0.50") {
		t.Errorf("addresses after the second apply (want 10.99.0.88/32 alone):\n%s", addrs)
	}
	if route := ipCmd(t, "-n", cli, "route", "show", "default"); strings.TrimSpace(route) != "default via 10.99.0.1 dev vc proto static metric 50 onlink" {
		t.Errorf("default route (want on-link, metric 50, once):\n%s", route)
	}
	if route := ipCmd(t, "-n", cli, "route", "show", "10.200.0.0/16"); !strings.Contains(route, "10.200.0.0/16 dev vc scope link metric 7") {
		t.Errorf("the route someone else set on vc is gone:\n%s", ipCmd(t, "-n", cli, "route"))
	}
}

// TestNodeAddressFamilies: K3s's node address is the IPv4 default route's
// link's address; on a node with only an IPv6 default route, that route's
// link's global IPv6 address (not its link-local one); the IPv4 one again
// once an IPv4 default route comes.
func TestNodeAddressFamilies(t *testing.T) {
	_, cli, exe := namespaces(t, false)
	nodeAddr := func() string {
		t.Helper()
		cmd := exec.Command("ip", "netns", "exec", cli, exe)
		cmd.Env = append(os.Environ(), "ETOILE_NETTEST_ROLE=nodeaddr")
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("NodeAddress in %s: %v", cli, err)
		}
		return strings.TrimSpace(string(b))
	}
	ipCmd(t, "-n", cli, "link", "set", "lo", "up")
	if got := nodeAddr(); got != "" {
		t.Fatalf("no default route: NodeAddress() = %q, want none", got)
	}
	ipCmd(t, "-n", cli, "-6", "addr", "add", "2001:db8:7::10/64", "dev", "vc", "nodad")
	ipCmd(t, "-n", cli, "-6", "route", "add", "default", "via", "2001:db8:7::1", "dev", "vc")
	if got := nodeAddr(); got != "2001:db8:7::10" {
		t.Errorf("IPv6 default route only: NodeAddress() = %q, want 2001:db8:7::10\n%s", got, ipCmd(t, "-n", cli, "addr"))
	}
	ipCmd(t, "-n", cli, "addr", "add", "10.99.0.10/24", "dev", "vc")
	if got := nodeAddr(); got != "2001:db8:7::10" {
		t.Errorf("an IPv4 address without an IPv4 default route: NodeAddress() = %q, want 2001:db8:7::10", got)
	}
	ipCmd(t, "-n", cli, "route", "add", "default", "via", "10.99.0.1", "dev", "vc")
	if got := nodeAddr(); got != "10.99.0.10" {
		t.Errorf("both families routed: NodeAddress() = %q, want the IPv4 one, 10.99.0.10", got)
	}
}

// TestApplyStaticThenDHCP: a config applied later (through the local API)
// turns vc, which an earlier one made static, to dhcp: true: DHCP is asked
// (the static address is no lease), and the static address and its
// default route (metric 50) go; a config after that makes it static again:
// the lease and its route go.
func TestApplyStaticThenDHCP(t *testing.T) {
	static, _ := json.Marshal([]config.Interface{{Name: "vc", Addresses: []string{"10.99.0.77/24"}, Gateway: "10.99.0.1"}})
	dhcpOn, _ := json.Marshal([]config.Interface{{Name: "vc", DHCP: true}})
	again, _ := json.Marshal([]config.Interface{{Name: "vc", Addresses: []string{"10.99.0.88/24"}, Gateway: "10.99.0.1"}})
	t.Run("static then dhcp", func(t *testing.T) {
		_, cli, exe := dhcpNamespaces(t)
		etc := t.TempDir()
		r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+etc, "ETOILE_NETTEST_APPLY="+string(static), "ETOILE_NETTEST_APPLY2="+string(dhcpOn))
		if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.50" || r.Leases != 1 {
			t.Errorf("after dhcp: true: %q, %d leases, error %q; want the lease's 10.99.0.50 alone\n%s", r.IPAfterApply, r.Leases, r.ApplyErr, stderr)
		}
		// The boot's exchange, then the one dhcp: true asked for.
		if n := strings.Count(stderr, `msg="dhcp done" iface=vc`); n != 2 {
			t.Errorf("%d DHCP exchanges, want 2 (the boot's, then dhcp: true's):\n%s", n, stderr)
		}
		onlyAddress(t, cli, "10.99.0.50/24", "", "after dhcp: true")
		routes := strings.TrimSpace(ipCmd(t, "-n", cli, "route", "show", "default"))
		if strings.Count(routes, "default") != 1 || !strings.HasPrefix(routes, "default via 10.99.0.1 dev vc ") || strings.Contains(routes, "metric 50") {
			t.Errorf("default routes after dhcp: true:\n%s\nwant DHCP's alone, not the static metric 50 one", routes)
		}
		if b, err := os.ReadFile(filepath.Join(etc, "resolv.conf")); err != nil || !strings.Contains(string(b), "nameserver 10.99.0.53\n") {
			t.Errorf("resolv.conf after dhcp: true: %q %v", b, err)
		}
	})
	t.Run("static, dhcp, static again", func(t *testing.T) {
		_, cli, exe := dhcpNamespaces(t)
		r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir(), "ETOILE_NETTEST_APPLY="+string(static),
			"ETOILE_NETTEST_APPLY2="+string(dhcpOn), "ETOILE_NETTEST_APPLY3="+string(again))
		if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.88" || r.Leases != 1 {
			t.Errorf("after static again: %q, %d leases, error %q; want 10.99.0.88 alone\n%s", r.IPAfterApply, r.Leases, r.ApplyErr, stderr)
		}
		onlyAddress(t, cli, "10.99.0.88/24", "", "after static again")
		if routes := strings.TrimSpace(ipCmd(t, "-n", cli, "route", "show", "default")); routes != "default via 10.99.0.1 dev vc proto static metric 50" {
			t.Errorf("default routes after static again:\n%s\nwant the static one alone", routes)
		}
	})
}

// TestUpLeaseWithARouterOutsideItsSubnet: a /32 lease, as hosters give,
// has its router outside its subnet: its default route is added on-link,
// the lease is used and renewed. A lease whose route the kernel refuses
// (a router at the subnet's broadcast address: a server's mistake) leaves
// nothing on the link: no address without a lease behind it.
func TestUpLeaseWithARouterOutsideItsSubnet(t *testing.T) {
	t.Run("/32", func(t *testing.T) {
		srv, cli, exe := namespaces(t, false)
		startServer(t, srv, exe, "ETOILE_NETTEST_SRV_MASK=255.255.255.255", "ETOILE_NETTEST_SRV_LEASE=4")
		r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_DHCP_TIMEOUT=5s", "ETOILE_NETTEST_RENEW=1s", "ETOILE_NETTEST_LINGER=3s",
			"ETOILE_NETTEST_ETC="+t.TempDir())
		if r.Err != "" || r.IP != "10.99.0.50" || r.NodeAddr != "10.99.0.50" {
			t.Errorf("client got %+v, want 10.99.0.50 (K3s's node address too)\n%s", r, stderr)
		}
		if routes := ipCmd(t, "-n", cli, "route", "show", "default"); !regexp.MustCompile(`^default via 10\.99\.0\.1 dev vc .*onlink`).MatchString(routes) {
			t.Errorf("default route:\n%s\nwant via 10.99.0.1 on-link\n%s", routes, stderr)
		}
		if !strings.Contains(stderr, `msg="dhcp lease renewed" iface=vc addr=10.99.0.50/32 how=renewing`) {
			t.Errorf("the /32 lease was not renewed from its server:\n%s", stderr)
		}
	})
	t.Run("refused route", func(t *testing.T) {
		srv, cli, exe := namespaces(t, false)
		startServer(t, srv, exe, "ETOILE_NETTEST_SRV_ROUTER=10.99.0.255")
		r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_DHCP_TIMEOUT=3s", "ETOILE_NETTEST_ETC="+t.TempDir())
		if r.IP != "none" || !strings.Contains(stderr, "applying the lease: adding route <nil> via 10.99.0.255 on vc") {
			t.Errorf("client got %+v, want no lease, its route refused\n%s", r, stderr)
		}
		if addrs := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc"); strings.Contains(addrs, "inet ") {
			t.Errorf("the lease that could not be applied left its address:\n%s", addrs)
		}
	})
}

// TestDHCPInterfaceMTU: the interface MTU the server gives (option 26,
// which it sends only when asked for, as dnsmasq does) is set on the link
// and shown in the lease's line; a machine config's mtu for the link wins,
// over the lease's renewals too, whether it keeps the boot's lease or asks
// DHCP itself.
func TestDHCPInterfaceMTU(t *testing.T) {
	mtuOf := func(t *testing.T, cli string) string {
		t.Helper()
		return regexp.MustCompile(`mtu \d+`).FindString(ipCmd(t, "-n", cli, "link", "show", "vc"))
	}
	t.Run("from DHCP", func(t *testing.T) {
		srv, cli, exe := namespaces(t, false)
		startServer(t, srv, exe, "ETOILE_NETTEST_SRV_MTU=1400")
		r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_ETC="+t.TempDir())
		if r.IP != "10.99.0.50" {
			t.Fatalf("client got %+v\n%s", r, stderr)
		}
		if got := mtuOf(t, cli); got != "mtu 1400" {
			t.Errorf("vc has %s, want DHCP's mtu 1400\n%s", got, stderr)
		}
		if !regexp.MustCompile(`msg="dhcp lease" iface=vc addr=10\.99\.0\.50/24 .*mtu=1400`).MatchString(stderr) {
			t.Errorf("the lease's line does not show its MTU:\n%s", stderr)
		}
	})
	t.Run("back when the link goes static", func(t *testing.T) {
		srv, cli, exe := namespaces(t, false)
		startServer(t, srv, exe, "ETOILE_NETTEST_SRV_MTU=1400")
		r, stderr := runClient(t, cli, exe, "ETOILE_NETTEST_APPLY="+`[{"name":"vc","addresses":["10.99.0.77/24"]}]`, "ETOILE_NETTEST_ETC="+t.TempDir())
		if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.77" {
			t.Fatalf("client got %+v\n%s", r, stderr)
		}
		if got := mtuOf(t, cli); got != "mtu 1500" {
			t.Errorf("vc has %s with static addresses and no mtu: in the config, want its own mtu 1500 back from DHCP's\n%s", got, stderr)
		}
	})
	for name, apply := range map[string][]string{
		"the config's wins over the boot's lease": {"ETOILE_NETTEST_APPLY=" + `[{"name":"vc","dhcp":true,"mtu":1300}]`},
		"the config's wins over its own DHCP": {"ETOILE_NETTEST_APPLY=" + `[{"name":"vc","addresses":["10.99.0.77/24"]}]`,
			"ETOILE_NETTEST_APPLY2=" + `[{"name":"vc","dhcp":true,"mtu":1300}]`},
	} {
		t.Run(name, func(t *testing.T) {
			srv, cli, exe := namespaces(t, false)
			startServer(t, srv, exe, "ETOILE_NETTEST_SRV_MTU=1400", "ETOILE_NETTEST_SRV_LEASE=4")
			r, stderr := runClient(t, cli, exe, append(apply, "ETOILE_NETTEST_RENEW=1s", "ETOILE_NETTEST_LINGER=4s", "ETOILE_NETTEST_ETC="+t.TempDir())...)
			if r.ApplyErr != "" || r.IPAfterApply != "10.99.0.50" {
				t.Fatalf("client got %+v\n%s", r, stderr)
			}
			if !strings.Contains(stderr, `msg="dhcp lease renewed" iface=vc`) {
				t.Errorf("no renewal:\n%s", stderr)
			}
			if got := mtuOf(t, cli); got != "mtu 1300" {
				t.Errorf("vc has %s, want the machine config's mtu 1300\n%s", got, stderr)
			}
		})
	}
}
