package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

func TestAgentRoot(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"proc/cmdline":                 "BOOT_IMAGE=/boot/vmlinuz console=ttyS0 etoile.slot=a\n",
		"sys/class/tty/console/active": "ttyS0\n",
		"dev/ttyS0":                    "",
		"sys/bus/pci/devices/0000:00:04.0/modalias": "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n",
	})
	fakeroot.Modules(t, root, "6.1.0-50-amd64", "../../agent/kmod/testdata/modules.dep", "../../agent/kmod/testdata/modules.alias")
	fakeroot.Block(t, root, "vda", false, "", nil)
	fakeroot.Block(t, root, "vda2", true, "ETOILE-A", nil)

	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"agent", "--root", root}, &stdout, &stderr); err != nil {
		t.Fatalf("agent --root: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	want := "etoile: ready version=dev boot=bios source=disk slot=a ip=none"
	if !strings.Contains(stdout.String(), want+"\n") {
		t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
	}
	if b, _ := os.ReadFile(filepath.Join(root, "dev/ttyS0")); string(b) != want+"\n" {
		t.Errorf("serial console holds %q", b)
	}
	if !regexp.MustCompile(`etoile: hardware drivers .*modules=\S*\bvirtio_pci\b`).MatchString(stdout.String()) {
		t.Errorf("virtio_pci not loaded for the virtio disk:\n%s", stdout.String())
	}
}

func TestAgentRootFailure(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{"proc/cmdline": "etoile.slot=b\n", "sys/class/block/.keep": ""})
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"agent", "--root", root, "--wait-scale", "0.001"}, &stdout, &stderr)
	if err == nil {
		t.Fatalf("boot without a slot B partition succeeded:\n%s", stdout.String())
	}
	if !strings.Contains(stdout.String(), `etoile: error step=find-image reason="no block device holds the partition ETOILE-B`) {
		t.Errorf("no error line:\n%s", stdout.String())
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr bool
		out     string
		errOut  string // what stderr starts with: the mistake named before the usage
	}{
		{[]string{"version"}, false, "etoile-agent dev (commit unknown)\n", ""},
		{[]string{"help"}, false, "usage: etoile-agent", ""},
		{[]string{}, true, "", "usage: etoile-agent"},
		{[]string{"frobnicate"}, true, "", `etoile-agent: unknown command "frobnicate"`},
		{[]string{"agent"}, true, "", "etoile-agent agent: --root DIR is required"},
		{[]string{"agent", "/mnt/root"}, true, "", `etoile-agent agent: takes no arguments, got ["/mnt/root"] (the machine's root is given with --root DIR)`},
		{[]string{"agent", "--root", "/nonexistent/etoile"}, true, "", ""},
		{[]string{"inventory", "/tmp/h100-vm"}, true, "", `etoile-agent inventory: takes no arguments, got ["/tmp/h100-vm"] (a copied tree is read with --root DIR)`},
		{[]string{"status", "extra"}, true, "", `etoile-agent status: takes no arguments, got ["extra"]`},
		{[]string{"version", "extra"}, true, "", `etoile-agent version: takes no arguments, got ["extra"]`},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), tt.args, &stdout, &stderr)
		if (err != nil) != tt.wantErr {
			t.Errorf("run(%q) err = %v, want error %v", tt.args, err, tt.wantErr)
		}
		if !strings.HasPrefix(stdout.String(), tt.out) {
			t.Errorf("run(%q) printed %q, want it to start with %q", tt.args, stdout.String(), tt.out)
		}
		if !strings.HasPrefix(stderr.String(), tt.errOut) {
			t.Errorf("run(%q) printed on stderr %q, want it to start with %q", tt.args, stderr.String(), tt.errOut)
		}
	}
}

// TestStaticBuild checks what /init needs: a static binary (no dynamic
// loader exists in the initramfs), with the version set at link time.
func TestStaticBuild(t *testing.T) {
	if _, err := exec.LookPath("file"); err != nil {
		t.Fatal("the file command is needed: apt-get install -y file")
	}
	out := filepath.Join(t.TempDir(), "etoile-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X github.com/etoile-os/etoile/agent.Version=v9.9.9-test", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := exec.Command("file", out).CombinedOutput()
	if err != nil || !strings.Contains(string(b), "statically linked") {
		t.Errorf("file says %q (err %v), want statically linked", b, err)
	}
	b, err = exec.Command(out, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(b), "v9.9.9-test") {
		t.Errorf("version printed %q (err %v), want the -X version", b, err)
	}
}

// TestInventoryRootWithoutSys: a --root that is not a copied machine tree
// is an error saying what it must hold, not an empty inventory.
func TestInventoryRootWithoutSys(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"inventory", "--root", t.TempDir()}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "holds no sys/ folder") {
		t.Errorf("inventory --root EMPTY: %v\n%s", err, stdout.String())
	}
}
