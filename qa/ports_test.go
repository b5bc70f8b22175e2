package qa

import "testing"

func TestParsePortRangeLow(t *testing.T) {
	for in, want := range map[string]int{
		"32768\t60999\n": 32768,
		"49152 65535":    49152,
		"1024 65000\n":   1024,
		"":               32768, // unreadable
		"garbage":        32768,
		"0 0":            32768,
	} {
		if got := parsePortRangeLow(in); got != want {
			t.Errorf("parsePortRangeLow(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestQuietPortIsBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	if low <= 10000 {
		// This machine's ephemeral range leaves no room below it: QuietPort
		// falls back to an ephemeral port.
		if p := QuietPort(t); p <= 0 || p > 65535 {
			t.Fatalf("fallback port %d", p)
		}
		return
	}
	for range 20 {
		if p := QuietPort(t); p < 10000 || p >= low {
			t.Fatalf("port %d is outside 10000–%d (below the ephemeral range)", p, low-1)
		}
	}
}
