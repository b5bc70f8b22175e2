package qa

import (
	"bytes"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestWriteCPIO checks the archive with GNU cpio, a reader that did not write it.
func TestWriteCPIO(t *testing.T) {
	cpio, err := CpioTool.Path()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = WriteCPIO(&buf, []CPIOEntry{
		{Name: "dev", Mode: CPIODir | 0o755},
		{Name: "dev/console", Mode: CPIOChar | 0o600, Major: 5, Minor: 1},
		{Name: "/init", Mode: CPIOFile | 0o755, Data: []byte("#!/bin/sh\necho hi\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpio, "-t", "-v", "--quiet")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	wants := []string{"drwxr-xr-x .* dev$", "crw------- .* 5, +1 .* dev/console$", "-rwxr-xr-x .* 18 .* init$"}
	if len(lines) != len(wants) {
		t.Fatalf("cpio -t listed %d entries, want %d:\n%s", len(lines), len(wants), out)
	}
	for i, w := range wants {
		if !regexpMatch(w, lines[i]) {
			t.Errorf("entry %d = %q, want /%s/", i, lines[i], w)
		}
	}
	if err := WriteCPIO(&buf, []CPIOEntry{{Name: "dev", Mode: CPIODir, Data: []byte("x")}}); err == nil {
		t.Error("a directory with data was accepted")
	}
}

func regexpMatch(pattern, s string) bool {
	ok, err := regexp.MatchString(pattern, s)
	return err == nil && ok
}
