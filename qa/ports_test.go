package qa

import (
	"fmt"
	"net"
	"testing"
)

func TestQuietPortIsBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		p := QuietPort(t)
		if p < 10000 || p >= low {
			t.Fatalf("port %d is outside 10000–%d (below the ephemeral range)", p, low-1)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d was given as free: %v", p, err)
		}
		l.Close()
	}
}
