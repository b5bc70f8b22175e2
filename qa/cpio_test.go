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

// TestPadCPIO checks the padded floor archive with GNU cpio: the floor's
// entries first, then the padding entry that the kernel steps over, and
// exactly the size asked for.
func TestPadCPIO(t *testing.T) {
	cpio, err := CpioTool.Path()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteCPIO(&buf, []CPIOEntry{{Name: "init", Mode: CPIOFile | 0o755, Data: []byte("#!/bin/sh\n")}}); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{buf.Len(), buf.Len() + 3, buf.Len() + 100, buf.Len() + 300, buf.Len() + 1<<20 + 1} {
		padded, err := PadCPIO(buf.Bytes(), size)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if len(padded) != size || !bytes.HasPrefix(padded, buf.Bytes()) {
			t.Fatalf("size %d: got %d bytes, prefix kept %v", size, len(padded), bytes.HasPrefix(padded, buf.Bytes()))
		}
		cmd := exec.Command(cpio, "-t", "--quiet")
		cmd.Stdin = bytes.NewReader(padded[buf.Len():])
		out, err := cmd.CombinedOutput()
		list := strings.TrimSpace(string(out))
		switch {
		case size-buf.Len() < 300: // too little room for an entry: zeros only
			if !bytes.Equal(padded[buf.Len():], make([]byte, size-buf.Len())) {
				t.Errorf("size %d: short padding is not zeros", size)
			}
		case err != nil || list != "absent/padding":
			t.Errorf("size %d: cpio -t of the padding: %v, listed %q, want absent/padding", size, err, list)
		}
	}
	if _, err := PadCPIO(buf.Bytes(), buf.Len()-4); err == nil {
		t.Error("a size smaller than the archive was accepted")
	}
	if _, err := PadCPIO(buf.Bytes()[:buf.Len()-1], buf.Len()); err == nil {
		t.Error("an archive whose length is not a multiple of 4 was accepted")
	}
}
