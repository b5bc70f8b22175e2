package image

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpecRefusesBadInputsEarly: what would otherwise fail mid-build, after
// the big downloads (or reach apt as an option), is refused when the spec
// is read, naming the field and the value.
func TestSpecRefusesBadInputsEarly(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: 2})
	tw.Write([]byte("[]"))
	tw.Close()
	write("app.tar", tarball.Bytes())
	write("app.tar.zst", []byte("\x28\xb5\x2f\xfdrest"))
	write("notzst.tar.zst", tarball.Bytes()) // a plain tar under a .zst name
	write("garbage.tar", []byte("not a tar at all"))
	write("app.zip", []byte("PK\x03\x04"))
	write("layer.sqfs", []byte(strings.Repeat("not a squashfs ", 10)))
	sb := make([]byte, 96)
	copy(sb, "hsqs")
	binary.LittleEndian.PutUint16(sb[20:], 9) // no such compression
	binary.LittleEndian.PutUint16(sb[28:], 4)
	write("odd.sqfs", sb)
	good := make([]byte, 96)
	copy(good, "hsqs")
	binary.LittleEndian.PutUint16(good[20:], 4) // xz
	binary.LittleEndian.PutUint16(good[28:], 4)
	write("good.sqfs", good)

	const head = "apiVersion: etoile.io/v1alpha1\nkind: ImageSpec\nmodules: [squashfs]\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"package as an apt option", head + "kernel: {package: -oAPT::Get::Foo=1}\n", []string{"kernel.package", `"-oAPT::Get::Foo=1"`, "Debian package name"}},
		{"package upper case", head + "kernel: {package: Linux-Image-AMD64}\n", []string{"kernel.package", `"Linux-Image-AMD64"`}},
		{"package one letter", head + "kernel: {package: l}\n", []string{"kernel.package", `"l"`}},
		{"image reference", head + "k3s: {source: oci, image: 'docker.io/Rancher/K3S:v1 2'}\n", []string{"k3s.image", `"docker.io/Rancher/K3S:v1 2"`, "image reference"}},
		{"extension not squashfs", head + "extensions: [{name: gpu, squashfs: layer.sqfs}]\n", []string{"extensions[0].squashfs", `"layer.sqfs"`, "not a squashfs", "mksquashfs"}},
		{"extension compression", head + "extensions: [{name: gpu, squashfs: odd.sqfs}]\n", []string{"extensions[0].squashfs", `"odd.sqfs"`, "compression 9"}},
		{"airgap not zstd", head + "k3s: {airgapImages: [app.tar, notzst.tar.zst]}\n", []string{"k3s.airgapImages[1]", `"notzst.tar.zst"`, "zstd"}},
		{"airgap not a tar", head + "k3s: {airgapImages: [garbage.tar]}\n", []string{"k3s.airgapImages[0]", `"garbage.tar"`, "not a tar archive", "docker save"}},
		{"airgap zip", head + "k3s: {airgapImages: [app.zip]}\n", []string{"k3s.airgapImages[0]", `"app.zip"`, ".tar.zst"}},
		{"airgap tarball", head + "k3s: {source: oci, airgapTarball: garbage.tar}\n", []string{"k3s.airgapTarball", `"garbage.tar"`, "not a tar archive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tc.yaml), dir)
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	ok := head + "kernel: {package: linux-image-6.1.0-56-amd64}\nk3s: {source: oci, image: 'registry.example:5000/k3s:v1.34.9-k3s1', airgapTarball: app.tar.zst, airgapImages: [app.tar]}\n" +
		"extensions: [{name: gpu, squashfs: good.sqfs}]\n"
	if _, err := ParseSpec([]byte(ok), dir); err != nil {
		t.Errorf("a spec with good inputs: %v", err)
	}
}

// TestSpecWithK3sDir: a K3s folder given on the command line (--k3s-dir,
// ETOILE_K3S_DIR) is K3s's source whatever the spec says, so the spec is
// judged with it: source dir needs no k3s.dir, and source none may list
// airgap images. Without it, both are still refused.
func TestSpecWithK3sDir(t *testing.T) {
	dir := t.TempDir()
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: 2})
	tw.Write([]byte("[]"))
	tw.Close()
	if err := os.WriteFile(filepath.Join(dir, "app.tar"), tarball.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	const head = "apiVersion: etoile.io/v1alpha1\nkind: ImageSpec\nmodules: [squashfs]\n"
	for _, tc := range []struct{ name, yaml, field string }{
		{"source dir without dir", head + "k3s: {source: dir}\n", "k3s.dir"},
		{"source none with airgap images", head + "k3s: {source: none, airgapImages: [app.tar]}\n", "k3s.airgapImages"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseSpecWith([]byte(tc.yaml), dir, SpecOptions{K3sDir: t.TempDir()}); err != nil {
				t.Errorf("with a K3s folder given: %v", err)
			}
			if _, err := ParseSpec([]byte(tc.yaml), dir); err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("without one: %v, want an error naming %s", err, tc.field)
			}
		})
	}
}
