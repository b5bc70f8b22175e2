//go:build qa

package qa

import (
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
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
	// Past the 15 s the silent port's DHCP would have taken.
	time.Sleep(20 * time.Second)
	applied := regexp.MustCompile(`^etoile: network config applied iface=` + silent + ` addresses=192\.168\.50\.5/24$`)
	stopped := regexp.MustCompile(`^etoile: DHCP stopped iface=` + silent + ` `)
	for _, re := range []*regexp.Regexp{applied, stopped} {
		if !slices.ContainsFunc(vm.Lines(), func(l Line) bool { return re.MatchString(l.Text) }) {
			t.Errorf("console lacks a line matching %s", re)
		}
	}
	// No warning either that the static port took the default route
	// (the user network's link keeps it), nor that its DHCP gave up. The
	// environment's NTP warning is not this test's.
	noWarnings(t, vm, ntpWarning)
}
