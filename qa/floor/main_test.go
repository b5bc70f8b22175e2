package main

import (
	"bytes"
	"regexp"
	"testing"
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
