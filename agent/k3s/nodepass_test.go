package k3s

import (
	"os"
	"path/filepath"
	"strings"
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

// TestNoMachineIdentityIsSaid: a node that joins a cluster on a machine
// with no stable identity (a placeholder SMBIOS UUID, no permanent MAC)
// gets no derived password; that is not silent: the error (a warning on the
// console) says why, what follows after a reboot, and what to do. A
// password already there (a persistent /etc) is kept without a word.
func TestNoMachineIdentityIsSaid(t *testing.T) {
	root := t.TempDir()
	wrote, err := EnsureNodePassword(root, "K10abc::server:secret", "worker-7", "")
	if wrote || err == nil {
		t.Fatalf("EnsureNodePassword without a machine identity = %v, %v; want an error saying so", wrote, err)
	}
	for _, want := range []string{"worker-7", "no stable identity", "SMBIOS UUID", "permanent MAC", "Node password rejected",
		"kubectl -n kube-system delete secret worker-7.node-password.k3s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, serr := os.Stat(filepath.Join(root, NodePasswordPath)); serr == nil {
		t.Error("a password was written without a machine identity")
	}
	os.MkdirAll(filepath.Join(root, "etc/rancher/node"), 0o700)
	os.WriteFile(filepath.Join(root, NodePasswordPath), []byte("kept\n"), 0o600)
	if wrote, err := EnsureNodePassword(root, "K10abc::server:secret", "worker-7", ""); wrote || err != nil {
		t.Errorf("a password already there, no machine identity: %v, %v; want it kept, no error", wrote, err)
	}
}
