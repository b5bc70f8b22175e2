package network

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	}
	os.Exit(m.Run())
}

func dhcpServer() int {
	srvIP := net.IPv4(10, 99, 0, 1)
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		var typ dhcpv4.MessageType
		switch m.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			typ = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			typ = dhcpv4.MessageTypeAck
		default:
			return
		}
		reply, err := dhcpv4.NewReplyFromRequest(m,
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithYourIP(net.IPv4(10, 99, 0, 50)),
			dhcpv4.WithServerIP(srvIP),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvIP)),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithRouter(srvIP),
			dhcpv4.WithDNS(net.IPv4(10, 99, 0, 53)),
			dhcpv4.WithLeaseTime(3600),
			dhcpv4.WithOption(dhcpv4.OptHostName("rack1-node4")),
			dhcpv4.WithOption(dhcpv4.OptDomainName("site.test")),
		)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		if _, err := conn.WriteTo(reply.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	s, err := server4.NewServer("vs", &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, handler)
	if err != nil {
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

type clientResult struct {
	IP, Hostname, SetHostname string
	Links                     []string
	Err                       string
}

func dhcpClient() int {
	var r clientResult
	res, err := Up(context.Background(), Config{
		Log:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
		CarrierWait:  3 * time.Second,
		CarrierGrace: 200 * time.Millisecond,
		DHCPTimeout:  20 * time.Second,
		EtcDir:       os.Getenv("ETOILE_NETTEST_ETC"),
		SetHostname:  func(h string) error { r.SetHostname = h; return nil },
		Only:         []string{"vc"},
	})
	if err != nil {
		r.Err = err.Error()
	}
	r.IP, r.Hostname, r.Links = FirstIPv4(res.Leases), res.Hostname, res.Links
	_ = json.NewEncoder(os.Stdout).Encode(r)
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

func TestUpDHCP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("making network namespaces needs root: run the tests as root (make test does, as CI)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("the ip command is needed: apt-get install -y iproute2")
	}
	suffix := fmt.Sprint(os.Getpid())
	srv, cli := "etoile-dhcp-srv-"+suffix, "etoile-dhcp-cli-"+suffix
	ipCmd(t, "netns", "add", srv)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", srv).Run() })
	ipCmd(t, "netns", "add", cli)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", cli).Run() })
	ipCmd(t, "-n", cli, "link", "add", "vc", "type", "veth", "peer", "name", "vs", "netns", srv)
	ipCmd(t, "-n", srv, "addr", "add", "10.99.0.1/24", "dev", "vs")
	ipCmd(t, "-n", srv, "link", "set", "vs", "up")

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	server := exec.Command("ip", "netns", "exec", srv, exe)
	server.Env = append(os.Environ(), "ETOILE_NETTEST_ROLE=server")
	out, err := server.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	server.Stderr = os.Stderr
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "listening\n" {
		t.Fatalf("DHCP server did not start: %q %v", line, err)
	}

	etc := t.TempDir()
	client := exec.Command("ip", "netns", "exec", cli, exe)
	client.Env = append(os.Environ(), "ETOILE_NETTEST_ROLE=client", "ETOILE_NETTEST_ETC="+etc)
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
	if r.Err != "" || r.IP != "10.99.0.50" || r.Hostname != "rack1-node4" || r.SetHostname != "rack1-node4" {
		t.Errorf("client got %+v, want 10.99.0.50 and host name rack1-node4\n%s", r, stderr.String())
	}
	if addr := ipCmd(t, "-n", cli, "-4", "addr", "show", "vc"); !strings.Contains(addr, "inet 10.99.0.50/24") {
		t.Errorf("address not applied:\n%s", addr)
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
