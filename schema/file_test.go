package schema

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, 2048), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(ok, []byte("kind: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/dev/zero": "is larger than 1024 bytes", // read up to the limit, not for ever
		dir:         "is a folder, not a file",
		big:         "is larger than 1024 bytes",
	} {
		if _, err := ReadFile(path, 1024); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadFile(%s): %v, want %q", path, err, want)
		}
	}
	if b, err := ReadFile(ok, 1024); err != nil || string(b) != "kind: x\n" {
		t.Errorf("ReadFile(ok): %q %v", b, err)
	}

	// A named pipe with a writer (process substitution) is read; one with
	// none gives up when the context ends.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.WriteString("kind: piped\n")
			f.Close()
		}
	}()
	if b, err := ReadFileContext(context.Background(), fifo, 1024); err != nil || string(b) != "kind: piped\n" {
		t.Errorf("a named pipe with a writer: %q %v", b, err)
	}
	idle := filepath.Join(dir, "idle")
	if err := syscall.Mkfifo(idle, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := ReadFileContext(ctx, idle, 1024); err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("a named pipe nobody writes to: %v", err)
	}
	// Let the reader blocked in open go.
	if f, err := os.OpenFile(idle, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		f.Close()
	}
}
