package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// TestEnsureMachineID: /etc/machine-id is derived from the SMBIOS UUID (the
// same on every boot, another on another machine, never the UUID itself),
// else from the lowest own MAC, else random; an image's own stays.
func TestEnsureMachineID(t *testing.T) {
	read := func(root string) string {
		b, err := os.ReadFile(filepath.Join(root, machineIDPath))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const uuid = "4c4c4544-0042-3510-8052-b4c04f4e4d32"
	a, again, other := t.TempDir(), t.TempDir(), t.TempDir()
	for root, u := range map[string]string{a: uuid, again: strings.ToUpper(uuid), other: "4c4c4544-0042-3510-8052-b4c04f4e4d33"} {
		fakeroot.Write(t, root, map[string]string{"sys/class/dmi/id/product_uuid": u + "\n"})
		if src, err := ensureMachineID(root); err != nil || src != "machine identity" {
			t.Fatalf("ensureMachineID = %q, %v", src, err)
		}
	}
	id := read(a)
	if !machineIDRE.MatchString(strings.TrimSuffix(id, "\n")) || !strings.HasSuffix(id, "\n") {
		t.Errorf("machine-id %q is not 32 lowercase hex digits and a newline", id)
	}
	if strings.Contains(id, "4c4c4544") {
		t.Errorf("machine-id %q shows the SMBIOS UUID", id)
	}
	if read(again) != id || read(other) == id {
		t.Errorf("same UUID gave %q and %q; another gave %q", id, read(again), read(other))
	}
	if st, err := os.Stat(filepath.Join(a, machineIDPath)); err != nil || st.Mode().Perm() != 0o444 {
		t.Errorf("mode %v, %v: want 0444", st.Mode(), err)
	}
	// Written once: a second start keeps it.
	if src, err := ensureMachineID(a); err != nil || src != "" || read(a) != id {
		t.Errorf("second call: %q, %v, %q", src, err, read(a))
	}

	img := t.TempDir()
	fakeroot.Write(t, img, map[string]string{machineIDPath: "0123456789abcdef0123456789abcdef\n", "sys/class/dmi/id/product_uuid": uuid})
	if src, err := ensureMachineID(img); err != nil || src != "" || read(img) != "0123456789abcdef0123456789abcdef\n" {
		t.Errorf("the image's own machine-id: %q, %v, %q", src, err, read(img))
	}

	bare := t.TempDir()
	if src, err := ensureMachineID(bare); err != nil || !strings.HasPrefix(src, "random") || !machineIDRE.MatchString(strings.TrimSpace(read(bare))) {
		t.Errorf("no identity: %q, %v, %q", src, err, read(bare))
	}
}
