package network

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/etoile-os/etoile/agent/config"
)

// TestWriteHosts: the machine config's entries go in a block of their own
// after the image's lines, which stay; a later config's replace them, and
// a config without any removes the block; the same config again leaves
// the file as it is.
func TestWriteHosts(t *testing.T) {
	dir := t.TempDir()
	image := "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(image), 0o644); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		b, err := os.ReadFile(filepath.Join(dir, "hosts"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	first := []config.HostEntry{{IP: "10.0.0.5", Names: []string{"registry.example.com", "registry"}}, {IP: "2001:db8::5", Names: []string{"registry.example.com"}}}
	if changed, err := WriteHosts(dir, first); err != nil || !changed {
		t.Fatalf("first: changed %v, err %v", changed, err)
	}
	want := image + hostsBegin + "10.0.0.5 registry.example.com registry\n2001:db8::5 registry.example.com\n" + hostsEnd
	if got := read(); got != want {
		t.Errorf("hosts:\n%s\nwant\n%s", got, want)
	}
	if changed, err := WriteHosts(dir, first); err != nil || changed {
		t.Errorf("the same entries again: changed %v, err %v", changed, err)
	}
	if _, err := WriteHosts(dir, []config.HostEntry{{IP: "10.0.0.6", Names: []string{"git.example.com"}}}); err != nil {
		t.Fatal(err)
	}
	if got, want := read(), image+hostsBegin+"10.0.0.6 git.example.com\n"+hostsEnd; got != want {
		t.Errorf("after other entries:\n%s\nwant\n%s", got, want)
	}
	if _, err := WriteHosts(dir, nil); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != image {
		t.Errorf("after a config without entries:\n%s\nwant the image's own\n%s", got, image)
	}
	// No hosts file (a test root): made with the entries alone.
	empty := t.TempDir()
	if _, err := WriteHosts(empty, first[:1]); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(empty, "hosts")); string(b) != hostsBegin+"10.0.0.5 registry.example.com registry\n"+hostsEnd {
		t.Errorf("a new hosts file:\n%s", b)
	}
}
