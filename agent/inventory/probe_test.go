package inventory

import (
	"testing"
	"time"
)

// TestTwoProbesOfADiskAtOnce: the inventory's labels and the config volume's search probe the
// same device at once: the second waits for the first, then reads; neither is taken for a
// failing disk (no label lost, no "did not end" warning), and both have the label.
func TestTwoProbesOfADiskAtOnce(t *testing.T) {
	defer func(w time.Duration, p func(string) (string, string)) { probeWait, readFirstBytes = w, p }(probeWait, readFirstBytes)
	probeWait = time.Minute
	started, release := make(chan struct{}), make(chan struct{})
	first := true
	readFirstBytes = func(string) (string, string) {
		if first { // the first read is under way until released
			first = false
			close(started)
			<-release
		}
		return "vfat", "ETOILE-CFG"
	}
	type result struct {
		fstype, label string
		hung          bool
		err           error
	}
	probe := func(out chan<- result) {
		f, l, h, err := probeWithin("/dev/sdb1")
		out <- result{f, l, h, err}
	}
	r1, r2 := make(chan result, 1), make(chan result, 1)
	go probe(r1)
	<-started
	go probe(r2)
	select {
	case r := <-r2:
		t.Fatalf("the second probe ended while the first read was under way: %+v; want it to wait", r)
	case <-time.After(50 * time.Millisecond): // the second is waiting (or not started yet)
	}
	close(release)
	for i, r := range []result{<-r1, <-r2} {
		if r != (result{"vfat", "ETOILE-CFG", false, nil}) {
			t.Errorf("probe %d = %+v, want vfat ETOILE-CFG, not hung", i+1, r)
		}
	}
}
