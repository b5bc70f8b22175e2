package xorriso

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeXorriso puts script, as xorriso, first on PATH; the scripts below
// count their runs in a file beside them, and crash as xorriso does
// (UNIX-SIGNAL, exit 1) or fail otherwise.
func fakeXorriso(t *testing.T, script string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "xorriso"), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return dir
}

func TestRunAgainAfterACrash(t *testing.T) {
	dir := fakeXorriso(t, `n=$(cat "$(dirname "$0")/runs" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$(dirname "$0")/runs"
if [ $n -lt 2 ]; then echo "UNIX-SIGNAL:  SIGSEGV  errno= 0"; exit 1; fi
echo "made $*"
`)
	out, err := Run("-as", "mkisofs", "-o", "x.iso")
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out)
	}
	if string(out) != "made -as mkisofs -o x.iso\n" {
		t.Errorf("output:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "runs")); string(b) != "2\n" {
		t.Errorf("runs %q, want 2", b)
	}
}

func TestRunGivesUpAfterThreeCrashes(t *testing.T) {
	dir := fakeXorriso(t, `n=$(cat "$(dirname "$0")/runs" 2>/dev/null || echo 0); echo $((n+1)) > "$(dirname "$0")/runs"
echo "UNIX-SIGNAL:  SIGSEGV  errno= 0"; exit 1
`)
	if _, err := Run("-version"); err == nil {
		t.Fatal("Run of a xorriso that always crashes succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "runs")); string(b) != "3\n" {
		t.Errorf("runs %q, want 3", b)
	}
}

func TestRunDoesNotRepeatOtherFailures(t *testing.T) {
	dir := fakeXorriso(t, `n=$(cat "$(dirname "$0")/runs" 2>/dev/null || echo 0); echo $((n+1)) > "$(dirname "$0")/runs"
echo "xorriso : FAILURE : Cannot find path '/nope'"; exit 5
`)
	out, err := Run("-indev", "/nope")
	if err == nil || !strings.Contains(string(out), "Cannot find path") {
		t.Fatalf("Run: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "runs")); string(b) != "1\n" {
		t.Errorf("runs %q, want 1", b)
	}
}
