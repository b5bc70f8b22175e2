// Package xorriso runs xorriso for the tests that make or read ISO 9660
// images with it: a writer and reader other than Étoile's own, as an
// operator would use.
package xorriso

import (
	"bytes"
	"fmt"
	"os/exec"
)

// attempts is how many times Run starts xorriso that crashes.
const attempts = 3

// Run runs xorriso with args and returns its output (stdout and stderr).
//
// xorriso 1.5.4 (Debian 12) now and then dies of SIGSEGV on a loaded
// machine, even after it has written the whole image (seen in make test
// runs); its own handler then prints "UNIX-SIGNAL" and exits with status 1.
// A crash is run again, up to three runs in all: the output is the good
// run's, or on failure every run's; any other failure is returned at once.
func Run(args ...string) ([]byte, error) {
	return RunIn("", args...)
}

// RunIn is Run in the folder dir ("": the current one).
func RunIn(dir string, args ...string) ([]byte, error) {
	var crashed bytes.Buffer
	for n := 1; ; n++ {
		cmd := exec.Command("xorriso", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		switch {
		case err == nil:
			return out, nil // only the good run's: callers parse it
		case n == attempts || !bytes.Contains(out, []byte("UNIX-SIGNAL")):
			return append(crashed.Bytes(), out...), err
		}
		fmt.Fprintf(&crashed, "(xorriso crashed, run %d of %d; running it again)\n%s\n", n, attempts, out)
	}
}
