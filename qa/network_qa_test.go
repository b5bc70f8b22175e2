//go:build qa

package qa

import (
	"encoding/binary"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestSilentPortDoesNotHoldTheBoot boots the stand-in image with two NICs:
// one on QEMU's user network (DHCP answers) and one cabled to a wire where
// nothing answers, which the machine config makes static (a server's
// storage port). The boot's network step returns once the first NIC has its
// lease and default route (and the grace after it), not after the silent
// port's 15 s DHCP timeout: its exchange goes on in the background until
// the machine config makes the port static, which ends it; the port then
// has its static address, and no "no DHCP lease" warning ever comes.
func TestSilentPortDoesNotHoldTheBoot(t *testing.T) {
	t.Parallel()
	out := standinOut(t)
	sink, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	go func() { // the wire: frames arrive, nothing answers
		buf := make([]byte, 2048)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	const silentMAC = "52:54:00:12:34:99"
	cfg := configVolume(t, serverConfig+`network:
  interfaces:
    - mac: "`+silentMAC+`"
      addresses: [192.168.50.5/24]
`)
	vm := Start(t, Config{Devices: []Device{OVMF{}, VirtioDisk{Path: filepath.Join(out, RawName)}, configDisk{Path: cfg},
		UserNIC{}, SilentNIC{Sink: sink.LocalAddr().(*net.UDPAddr).Port, MAC: silentMAC}}})
	background := vm.WaitFor(regexp.MustCompile(`^etoile: DHCP goes on in the background links=eth[01] `), ReadyTimeout)
	silent := background.Fields["links"]
	network := vm.WaitFor(regexp.MustCompile(`^etoile: network hostname=`), ReadyTimeout)
	if network.Fields["ip"] != "10.0.2.15" {
		t.Errorf("the network step does not show the user network's lease: %s", network.Line)
	}
	// The config's static address comes first (the machine's chosen one).
	ready := vm.WaitFor(regexp.MustCompile(`^etoile: ready `), ReadyTimeout)
	if !strings.Contains(ready.Line, " ip=192.168.50.5 ") {
		t.Errorf("the ready line does not show the static address: %s", ready.Line)
	}
	applied := regexp.MustCompile(`^etoile: network config applied iface=` + silent + ` addresses=192\.168\.50\.5/24$`)
	stopped := regexp.MustCompile(`^etoile: DHCP stopped iface=` + silent + ` `)
	for _, re := range []*regexp.Regexp{applied, stopped} {
		vm.Find(re, 20*time.Second) // in any order against the ready line
	}
	// Past the 15 s the silent port's DHCP would have taken (scaled): no
	// warning that the static port took the default route (the user
	// network's link keeps it), nor that its DHCP gave up. The
	// environment's NTP warning is not this test's.
	vm.Absent(regexp.MustCompile(`^etoile: warning: .*iface=`+silent), 20*time.Second)
	noWarnings(t, vm, ntpWarning)
}

// lateDHCPWire is a wire for a SilentNIC (QEMU's socket netdev) with a DHCP
// server on it that stays silent until answer is set: a switch port, or the
// site's DHCP server, that comes up after the machine. Frames are read and
// written whole (Ethernet, IPv4, UDP); the server hands out 10.77.0.<host>
// (50 unless host is set) for an hour (lease, in seconds, when set) with
// 10.77.0.1 as the router, 10.77.0.53 as the name server and, when asked
// for (as dnsmasq), 10.77.0.123 as the NTP server. A REQUEST for another
// address (a renewal's, once host changed) gets a NAK, as from a server
// that gave that address to another machine. The server answers ARP for
// 10.77.0.1, so that renewals reach it by unicast.
type lateDHCPWire struct {
	conn   net.PacketConn
	answer atomic.Bool
	asked  atomic.Int32 // DHCP messages seen
	host   atomic.Int32
	lease  atomic.Uint32
	log    chan string // "TYPE ciaddr=… to=<IP destination>" of each DHCP message (full: dropped)
	arps   chan string // "from=<MAC> sender=<IP> target=<IP>" of each ARP request the machine sends (full: dropped)
}

var wireMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x00, 0x01}

func newLateDHCPWire(t *testing.T) *lateDHCPWire {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &lateDHCPWire{conn: conn, log: make(chan string, 256), arps: make(chan string, 256)}
	w.host.Store(50)
	w.lease.Store(3600)
	served := make(chan struct{})
	go func() {
		defer close(served)
		w.serve(t)
	}()
	t.Cleanup(func() {
		conn.Close() // ends serve's read
		<-served     // which reports to t: not after the test
	})
	return w
}

// arpReply answers an ARP request for 10.77.0.1 in frame f (nil for any
// other frame).
func arpReply(f []byte) []byte {
	if len(f) < 42 || binary.BigEndian.Uint16(f[12:]) != 0x0806 || binary.BigEndian.Uint16(f[20:]) != 1 ||
		!net.IP(f[38:42]).Equal(net.IPv4(10, 77, 0, 1)) {
		return nil
	}
	r := make([]byte, 42)
	copy(r[0:6], f[22:28]) // to the asker
	copy(r[6:12], wireMAC)
	copy(r[12:22], f[12:22]) // ARP, Ethernet/IPv4
	binary.BigEndian.PutUint16(r[20:], 2)
	copy(r[22:28], wireMAC)
	copy(r[28:32], f[38:42])
	copy(r[32:42], f[22:32]) // the asker's MAC and IP
	return r
}

func (w *lateDHCPWire) port() int { return w.conn.LocalAddr().(*net.UDPAddr).Port }

func (w *lateDHCPWire) serve(t *testing.T) {
	buf := make([]byte, 65536)
	for {
		n, qemu, err := w.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if f := buf[:n]; len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 && binary.BigEndian.Uint16(f[20:]) == 1 {
			select {
			case w.arps <- fmt.Sprintf("from=%s sender=%s target=%s", net.HardwareAddr(f[6:12]), net.IP(f[28:32]), net.IP(f[38:42])):
			default:
			}
		}
		if r := arpReply(buf[:n]); r != nil && w.answer.Load() {
			if _, err := w.conn.WriteTo(r, qemu); err != nil {
				return
			}
			continue
		}
		req := dhcpRequest(buf[:n])
		if req == nil {
			continue
		}
		w.asked.Add(1)
		select {
		case w.log <- fmt.Sprintf("%s ciaddr=%s to=%s", req.MessageType(), req.ClientIPAddr, net.IP(buf[30:34])):
		default:
		}
		if !w.answer.Load() {
			continue
		}
		give := net.IPv4(10, 77, 0, byte(w.host.Load()))
		asked := req.RequestedIPAddress()
		if asked.To4() == nil || asked.IsUnspecified() {
			asked = req.ClientIPAddr // a renewal's
		}
		typ := dhcpv4.MessageTypeOffer
		switch req.MessageType() {
		case dhcpv4.MessageTypeDiscover:
		case dhcpv4.MessageTypeRequest:
			typ = dhcpv4.MessageTypeAck
			if !asked.Equal(give) {
				typ = dhcpv4.MessageTypeNak
			}
		default:
			continue
		}
		srv := net.IPv4(10, 77, 0, 1).To4()
		reply, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(typ), dhcpv4.WithServerIP(srv),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srv)))
		if err != nil {
			t.Errorf("DHCP reply: %v", err)
			return
		}
		if typ != dhcpv4.MessageTypeNak {
			for _, m := range []dhcpv4.Modifier{dhcpv4.WithYourIP(give), dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
				dhcpv4.WithRouter(srv), dhcpv4.WithDNS(net.IPv4(10, 77, 0, 53)), dhcpv4.WithLeaseTime(w.lease.Load())} {
				m(reply)
			}
			if req.IsOptionRequested(dhcpv4.OptionNTPServers) {
				reply.UpdateOption(dhcpv4.OptNTPServers(net.IPv4(10, 77, 0, 123)))
			}
		}
		if _, err := w.conn.WriteTo(udpBroadcastFrame(wireMAC, srv, 67, 68, reply.ToBytes()), qemu); err != nil {
			return
		}
	}
}

// dhcpRequest is the DHCP message an Ethernet frame carries to the server
// port, nil for any other frame.
func dhcpRequest(f []byte) *dhcpv4.DHCPv4 {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return nil
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[9] != 17 || len(ip) < ihl+8 {
		return nil
	}
	udp := ip[ihl:]
	if binary.BigEndian.Uint16(udp[2:]) != 67 {
		return nil
	}
	m, err := dhcpv4.FromBytes(udp[8:])
	if err != nil {
		return nil
	}
	return m
}

// udpBroadcastFrame wraps payload in UDP, IPv4 (to 255.255.255.255) and
// Ethernet (to ff:ff:ff:ff:ff:ff) headers. The UDP checksum is left out (0),
// as IPv4 allows.
func udpBroadcastFrame(srcMAC net.HardwareAddr, srcIP net.IP, srcPort, dstPort uint16, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8], ip[9] = 64, 17
	copy(ip[12:16], srcIP.To4())
	copy(ip[16:20], net.IPv4bcast.To4())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[0:], srcPort)
	binary.BigEndian.PutUint16(udp[2:], dstPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(f[42:], payload)
	return f
}

// TestLateDHCPServerGivesTheAddressLater boots the stand-in image on a wire
// whose DHCP server answers nothing during the boot (a rack powered on at
// once: the switch port or the DHCP server comes up after the machine). The
// machine is ready without an address and the K3s stand-in, which like K3s
// needs a default route to pick its node address, exits; the agent keeps
// asking DHCP, and once the server answers the lease is applied, its name
// and NTP servers used, and K3s started again at once, not after its
// backoff, and ready.
func TestLateDHCPServerGivesTheAddressLater(t *testing.T) {
	t.Parallel()
	out := standinOut(t)
	wire := newLateDHCPWire(t)
	cfg := configVolume(t, serverConfig)
	vm := Start(t, Config{Devices: []Device{SeaBIOS{}, CDROM{Path: filepath.Join(out, ISOName)}, configCD{Path: cfg},
		SilentNIC{Sink: wire.port(), MAC: "52:54:00:12:34:77", ID: "late0"}}})
	vm.WaitFor(regexp.MustCompile(`^etoile: warning: no DHCP lease; asking again in the background iface=eth0 `), ReadyTimeout)
	ready := vm.Ready(ReadyTimeout)
	if ready.Fields["ip"] != "none" {
		t.Errorf("ready line: %s, want ip=none", ready.Line)
	}
	// The stand-in exits as K3s does without a default route, and says why.
	vm.WaitFor(regexp.MustCompile(`^etoile: k3s state=\S+ was=\S+ .*reason=".*k3s exited .*no default routes found`), K3sTimeout)
	asked := wire.asked.Load()
	if asked == 0 {
		t.Fatal("no DHCP message reached the wire")
	}
	wire.answer.Store(true)
	lease := vm.WaitFor(regexp.MustCompile(`^etoile: address after the boot's network step iface=eth0 addr=10\.77\.0\.50/24 dns=10\.77\.0\.53 ntp=10\.77\.0\.123$`), 2*time.Minute)
	again := vm.WaitFor(k3sReadyRE, K3sTimeout)
	// K3s started again at once (the agent ended its backoff): when the
	// lease came while the supervisor waited out a backoff (the last state
	// line before it says "restarting in"), and when a short run that was
	// going on then exited after it. Only a run that found the route
	// itself needs no restart. (Without the first case, a broken "at once"
	// would pass: the backoff's own end, up to a minute later, starts a K3s
	// that is then ready well within the wait.)
	var restarted, exited bool
	waiting := ""
	for _, l := range vm.Lines() {
		if l.At < lease.At && strings.HasPrefix(l.Text, "etoile: k3s state=") {
			waiting = ""
			if strings.Contains(l.Text, "restarting in ") {
				waiting = l.Text
			}
		}
		if l.At >= lease.At && l.At <= again.At {
			restarted = restarted || strings.HasPrefix(l.Text, `etoile: k3s restarting now why="eth0 got the address 10.77.0.50/24"`)
			exited = exited || strings.HasPrefix(l.Text, "etoile: warning: k3s exited")
		}
	}
	if !restarted && waiting != "" {
		t.Errorf("the lease came while the K3s stand-in waited out its backoff (%s), and it was not started again at once", waiting)
	}
	if !restarted && exited {
		t.Errorf("the K3s stand-in exited after the lease and was not started again at once")
	}
	if again.Fields["ip"] != "10.77.0.50" {
		t.Errorf("the ready line after the lease does not show its address: %s", again.Line)
	}
	t.Logf("%d DHCP messages before the server answered", asked)
}

// externalDatastoreConfig is a server on an external datastore (which the
// stand-in, like K3s, does not reach before it is needed): K3s follows the
// node's address, which an embedded etcd member cannot.
const externalDatastoreConfig = `apiVersion: etoile.io/v1alpha1
kind: MachineConfig
role: server
cluster:
  server: https://10.77.0.10:6443
  token: K10qa::server:secret
k3s:
  datastore-endpoint: "postgres://k3s:pw@10.77.0.20:5432/k3s"
`

// TestK3sFollowsARenewedAddress boots the stand-in image, a server on an
// external datastore, on a wire whose DHCP server gives 10.77.0.50 for
// 20 s: the lease is renewed from the server at 10 s (a REQUEST sent to its
// address). Once K3s (the stand-in) is ready, the server refuses the
// renewal (a NAK, as when it gave the address to another machine) and
// offers 10.77.0.61: the agent drops the refused address, takes the new
// one, and restarts K3s, which took 10.77.0.50 for its node address as it
// started; K3s is ready again, and the ready line shows the new address.
func TestK3sFollowsARenewedAddress(t *testing.T) {
	t.Parallel()
	out := standinOut(t)
	wire := newLateDHCPWire(t)
	wire.lease.Store(20)
	wire.answer.Store(true)
	cfg := configVolume(t, externalDatastoreConfig)
	vm := Start(t, Config{Devices: []Device{SeaBIOS{}, CDROM{Path: filepath.Join(out, ISOName)}, configCD{Path: cfg},
		SilentNIC{Sink: wire.port(), MAC: "52:54:00:12:34:78", ID: "renew0"}}})
	first := vm.WaitFor(k3sReadyRE, K3sTimeout)
	if first.Fields["ip"] != "10.77.0.50" {
		t.Fatalf("ready line: %s, want ip=10.77.0.50", first.Line)
	}
	for len(wire.log) > 0 {
		<-wire.log
	}
	wire.host.Store(61)
	vm.WaitFor(regexp.MustCompile(`^etoile: warning: DHCP server refused the lease's renewal: its address and routes are removed; asking for a new lease iface=eth0 addr=10\.77\.0\.50/24 server=10\.77\.0\.1`), time.Minute)
	vm.WaitFor(regexp.MustCompile(`^etoile: warning: DHCP gave a new address iface=eth0 old=10\.77\.0\.50/24 new=10\.77\.0\.61/24$`), time.Minute)
	vm.WaitFor(regexp.MustCompile(`^etoile: k3s state=starting was=\S+ .*reason="restarting: the node's address changed from 10\.77\.0\.50 to 10\.77\.0\.61 \(eth0\)"`), time.Minute)
	again := vm.WaitFor(regexp.MustCompile(`^etoile: ready .* ip=10\.77\.0\.61\b.* k3s=ready\b`), K3sTimeout)
	t.Logf("ready again with the new address: %s", again.Line)
	// The refused renewal was the RENEWING one: a REQUEST from the
	// address, sent to the server's (its ARP answered).
	var seen []string
	for len(wire.log) > 0 {
		seen = append(seen, <-wire.log)
	}
	if !slices.Contains(seen, "REQUEST ciaddr=10.77.0.50 to=10.77.0.1") {
		t.Errorf("no renewal REQUEST from 10.77.0.50 reached the server; it saw %q", seen)
	}
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "DHCP lease ran out") || strings.Contains(l.Text, "k3s exited") {
			t.Errorf("unexpected console line: %s", l.Text)
		}
	}
}

// TestNetbootRenewsAfterSwitchingRoot netboots the default image with a
// second NIC on a wire whose DHCP server gives 10.77.0.50 for 20 s. The
// leases are got before the agent switches to the downloaded system image;
// their renewals carry on after it: once the machine is ready the server
// refuses the next renewal (a NAK) and offers 10.77.0.61, which the link
// then has, its old address removed.
func TestNetbootRenewsAfterSwitchingRoot(t *testing.T) {
	t.Parallel()
	out, sum := netbootSet(t)
	wire := newLateDHCPWire(t)
	wire.lease.Store(20)
	wire.answer.Store(true)
	vm := Start(t, Config{Devices: []Device{SeaBIOS{}, NetbootKernel(t, out, sum), UserNIC{},
		SilentNIC{Sink: wire.port(), MAC: "52:54:00:12:34:79", ID: "renew1"}}})
	if ready := vm.Ready(ReadyTimeout); ready.Fields["source"] != "http" {
		t.Fatalf("ready line: %s, want source=http", ready.Line)
	}
	// The wire's lease comes before the ready line, or after it when its
	// exchange took a resend (the network step waits 2 s after the first).
	got := vm.Find(regexp.MustCompile(`^etoile: dhcp lease iface=(\S+) addr=10\.77\.0\.50/24 `), time.Minute)
	iface := regexp.MustCompile(`iface=(\S+)`).FindStringSubmatch(got.Line)[1]
	wire.host.Store(61)
	q := regexp.QuoteMeta(iface)
	vm.WaitFor(regexp.MustCompile(`^etoile: warning: DHCP server refused the lease's renewal: its address and routes are removed; asking for a new lease iface=`+q+` addr=10\.77\.0\.50/24`), time.Minute)
	vm.WaitFor(regexp.MustCompile(`^etoile: warning: DHCP gave a new address iface=`+q+` old=10\.77\.0\.50/24 new=10\.77\.0\.61/24$`), time.Minute)
}
