package main

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/etoile-os/etoile/agent/kmsg"
)

// The harness waits for this exact shape (qa.FloorRE and its t= field).
func TestRunPrintsReadyLine(t *testing.T) {
	var buf bytes.Buffer
	if err := run(&buf); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^etoile-floor: ready t=\d+\.\d\ds$`).Match(buf.Bytes()) {
		t.Errorf("floor printed %q", buf.String())
	}
}

func TestClockLine(t *testing.T) {
	late := kmsg.ParseAll([][]byte{[]byte("5,0,0,-;Linux version"), []byte("4,1,48000,-;tsc: Unable to calibrate against PIT"),
		[]byte("6,2,599,-;clocksource: tsc-early"), []byte("6,3,1411172,-;Run /init as init process")})
	var buf bytes.Buffer
	clockLine(&buf, late)
	if buf.String() != "etoile-floor: kernel_clock=late\n" {
		t.Errorf("clock line %q", buf.String())
	}
	buf.Reset()
	clockLine(&buf, late[1:]) // the log does not reach back to the start: nothing said
	if buf.Len() != 0 {
		t.Errorf("clock line from a wrapped log: %q", buf.String())
	}
}
