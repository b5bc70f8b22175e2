package qa

import (
	"fmt"
	"net"
	"testing"
)

func TestQuietPortIsBelowTheEphemeralRange(t *testing.T) {
	for range 20 {
		p := QuietPort(t)
		if p < 10000 || p >= 32768 {
			t.Fatalf("port %d is outside 10000–32767 (below Linux's default ephemeral range)", p)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d was given as free: %v", p, err)
		}
		l.Close()
	}
}
