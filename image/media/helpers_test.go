package media

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/etoile-os/etoile/internal/xorriso"
)

// tool returns the path of an external verification tool, failing the test
// with the apt package to install when it is missing.
func tool(t *testing.T, name, aptPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install it with `apt-get install -y %s`", name, aptPackage)
	}
	return p
}

// run runs a command and returns its combined output, failing on a non-zero exit.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var out []byte
	var err error
	if filepath.Base(name) == "xorriso" {
		out, err = xorriso.Run(args...) // run again if it crashed
	} else {
		out, err = exec.Command(name, args...).CombinedOutput()
	}
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// randomBytes returns n pseudo-random but reproducible bytes.
func randomBytes(n int, seed uint32) []byte {
	b := make([]byte, n)
	x := seed | 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func writeFile(t *testing.T, p string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// compareTrees asserts that two host trees hold the same entries with the
// same types, permission bits, symlink targets and contents.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		seen[rel] = true
		wi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		gi, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			t.Errorf("%s missing from the copy: %v", rel, err)
			return nil
		}
		if wi.Mode().Type() != gi.Mode().Type() {
			t.Errorf("%s: type %v, want %v", rel, gi.Mode().Type(), wi.Mode().Type())
			return nil
		}
		if rel != "." && wi.Mode().Perm() != gi.Mode().Perm() {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode().Perm(), wi.Mode().Perm())
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			wt, _ := os.Readlink(p)
			gt, _ := os.Readlink(filepath.Join(got, rel))
			if wt != gt {
				t.Errorf("%s: link target %q, want %q", rel, gt, wt)
			}
		case wi.Mode().IsRegular():
			wb, _ := os.ReadFile(p)
			gb, _ := os.ReadFile(filepath.Join(got, rel))
			if !bytes.Equal(wb, gb) {
				t.Errorf("%s: content differs (%d bytes, want %d)", rel, len(gb), len(wb))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(got, p)
		if !seen[rel] {
			t.Errorf("%s is in the copy but not in the source", rel)
		}
		return nil
	})
}

func sameBytes(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		n := 0
		for n < len(x) && n < len(y) && x[n] == y[n] {
			n++
		}
		t.Errorf("%s and %s differ (sizes %d and %d, first difference at byte %d)", a, b, len(x), len(y), n)
	}
}

func execEnv(env []string, name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Env = env
	return c
}

func parseInt(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

// extract copies n bytes (0: to the end) from off of src into dst.
func extract(t *testing.T, src, dst string, off, n int64) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	end := int64(len(b))
	if n > 0 {
		end = off + n
	}
	if err := os.WriteFile(dst, b[off:end], 0o644); err != nil {
		t.Fatal(err)
	}
}
