package qa

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// QuietPort returns a loopback TCP port that is free now and that the
// kernel will not hand out meanwhile as another connection's source port:
// one below the ephemeral range (net.ipv4.ip_local_port_range). A test
// that must bind an address again later (a server restarted, a port given
// to QEMU's hostfwd) uses it; a port from ":0" is an ephemeral one, which
// any connect(2) on the machine may take in between.
func QuietPort(tb testing.TB) int {
	tb.Helper()
	low := ephemeralLow()
	if low <= 10000 {
		// A machine whose ephemeral range takes nearly every port: a port
		// from ":0" then, with the small risk that comes with it.
		tb.Logf("the ephemeral port range starts at %d: taking an ephemeral port", low)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("no free loopback port: %v", err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	for range 100 {
		port := 10000 + rand.IntN(low-10000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken
		}
		l.Close()
		return port
	}
	tb.Fatalf("no free loopback port found between 10000 and %d", low)
	return 0
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	return parsePortRangeLow(string(b))
}

// parsePortRangeLow reads ip_local_port_range ("32768\t60999\n"): its first
// port, Linux's default 32768 when it does not read as a range.
func parsePortRangeLow(s string) int {
	if f := strings.Fields(s); len(f) == 2 {
		if v, err := strconv.Atoi(f[0]); err == nil && v > 0 && v < 65536 {
			return v
		}
	}
	return 32768
}
