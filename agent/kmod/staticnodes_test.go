package kmod

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStaticNodes: the device files of modules that are not loaded, from the
// devname: and char-major-/block-major- aliases depmod writes (what
// modules.devname lists); made with udev's modes for tun and fuse, and
// left alone where a file is there already.
func TestStaticNodes(t *testing.T) {
	a, err := ParseAliases(strings.NewReader(`alias devname:net/tun tun
alias char-major-10-200 tun
alias devname:fuse fuse
alias char-major-10-229 fuse
alias fs-fuse fuse
alias devname:loop-control loop
alias char-major-10-237 loop
alias block-major-7-* loop
alias devname:nvme-fabrics nvme_fabrics
alias devname:../escape evil
alias char-major-1-3 evil
alias char-major-10-232 kvm
alias pci:v00008086d*sv*sd*bc*sc*i* e1000e
`))
	if err != nil {
		t.Fatal(err)
	}
	nodes := a.StaticNodes()
	want := []StaticNode{
		{Module: "fuse", Name: "fuse", Major: 10, Minor: 229},
		{Module: "loop", Name: "loop-control", Major: 10, Minor: 237},
		{Module: "tun", Name: "net/tun", Major: 10, Minor: 200},
	}
	if !slices.Equal(nodes, want) {
		t.Fatalf("StaticNodes = %+v, want %+v (a devname without numbers, numbers without a devname, and a name leaving /dev are not nodes)", nodes, want)
	}
	if os.Geteuid() != 0 {
		t.Fatal("making device files needs root: run the tests as root (make test does, as CI)")
	}
	dev := t.TempDir()
	if err := os.WriteFile(filepath.Join(dev, "loop-control"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	made, err := MakeStaticNodes(dev, nodes)
	if err != nil || !slices.Equal(made, []string{"fuse", "net/tun"}) {
		t.Fatalf("MakeStaticNodes = %q, %v", made, err)
	}
	for name, mode := range map[string]uint32{"net/tun": 0o666, "fuse": 0o666} {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dev, name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Mode&0o777 != mode {
			t.Errorf("%s: mode %o, want a character device %o", name, st.Mode, mode)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dev, "net/tun"), &st); err != nil || unix.Major(st.Rdev) != 10 || unix.Minor(st.Rdev) != 200 {
		t.Errorf("net/tun is %d:%d (%v), want 10:200", unix.Major(st.Rdev), unix.Minor(st.Rdev), err)
	}
	if fi, err := os.Stat(filepath.Join(dev, "loop-control")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the file already there was replaced: %v %v", fi.Mode(), err)
	}
	if again, err := MakeStaticNodes(dev, nodes); err != nil || len(again) != 0 {
		t.Errorf("a second run made %q, %v", again, err)
	}
}
