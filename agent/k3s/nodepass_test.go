package k3s

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureNodePassword(t *testing.T) {
	read := func(root string) string {
		b, err := os.ReadFile(filepath.Join(root, NodePasswordPath))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	boot := func(token, name, id string) string {
		root := t.TempDir() // each boot starts with an empty /etc
		if wrote, err := EnsureNodePassword(root, token, name, id); err != nil || !wrote {
			t.Fatalf("EnsureNodePassword = %v, %v", wrote, err)
		}
		if st, _ := os.Stat(filepath.Join(root, NodePasswordPath)); st.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", st.Mode())
		}
		return read(root)
	}
	a := boot("K10abc::server:secret", "worker-7", "uuid-1 52:54:00:12:34:56")
	if len(a) != 33 {
		t.Errorf("password %q: want 32 hex digits and a newline", a)
	}
	if b := boot("K10abc::server:secret", "worker-7", "uuid-1 52:54:00:12:34:56"); b != a {
		t.Errorf("the same machine's next boot gets %q, want %q (the servers keep the first)", b, a)
	}
	for _, other := range [][3]string{{"K10abc::server:other", "worker-7", "uuid-1 52:54:00:12:34:56"},
		{"K10abc::server:secret", "worker-8", "uuid-1 52:54:00:12:34:56"}, {"K10abc::server:secret", "worker-7", "uuid-2 52:54:00:12:34:57"}} {
		if b := boot(other[0], other[1], other[2]); b == a {
			t.Errorf("%q: same password as another token, name or machine", other)
		}
	}
	// A password already there is kept; no token: nothing written.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/rancher/node"), 0o700)
	os.WriteFile(filepath.Join(root, NodePasswordPath), []byte("kept\n"), 0o600)
	if wrote, err := EnsureNodePassword(root, "t", "n", "id"); err != nil || wrote || read(root) != "kept\n" {
		t.Errorf("existing password: wrote %v, %v, now %q", wrote, err, read(root))
	}
	if wrote, _ := EnsureNodePassword(t.TempDir(), "", "n", "id"); wrote {
		t.Error("no token: wrote a password")
	}
}
