package schema

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadFileRefusesWhatIsNotADocument(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, 2048), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(ok, []byte("kind: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo:        "is a named pipe (FIFO), not a file",
		"/dev/zero": "is a character device, not a file",
		dir:         "is a folder, not a file",
		big:         "is larger than 1024 bytes",
	} {
		// A named pipe or /dev/zero would block or never end if read.
		if _, err := ReadFile(path, 1024); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadFile(%s): %v, want %q", path, err, want)
		}
	}
	if b, err := ReadFile(ok, 1024); err != nil || string(b) != "kind: x\n" {
		t.Errorf("ReadFile(ok): %q %v", b, err)
	}
}
