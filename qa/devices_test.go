package qa

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDeviceArgs(t *testing.T) {
	src := filepath.Join(t.TempDir(), "a,b.img")
	if err := os.WriteFile(src, []byte("disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dev  Device
		want []string
	}{
		{"seabios", SeaBIOS{}, nil},
		{"cdrom", CDROM{Path: src}, []string{"-drive", "if=none,id=cd0,media=cdrom,readonly=on,format=raw,file=" + strings.ReplaceAll(src, ",", ",,"), "-device", "ide-cd,drive=cd0,bootindex=0"}},
		{"usb", USBStick{Path: src}, []string{"-drive", "if=none,id=stick0,format=raw,file=DIR/usb-stick.img", "-device", "qemu-xhci,id=xhci0", "-device", "usb-storage,bus=xhci0.0,drive=stick0,bootindex=0"}},
		{"virtio", VirtioDisk{Path: src}, []string{"-drive", "if=none,id=disk0,format=raw,file=DIR/virtio-disk.img", "-device", "virtio-blk-pci,drive=disk0,bootindex=0"}},
		{"usernet", UserNIC{HostFwd: []string{"tcp:127.0.0.1:2222-:22"}}, []string{"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22", "-device", "virtio-net-pci,romfile=,netdev=net0"}},
		{"tap", TapNIC{Ifname: "tap0", MAC: "52:54:00:12:34:56"}, []string{"-netdev", "tap,id=tap0,script=no,downscript=no,ifname=tap0", "-device", "virtio-net-pci,romfile=,netdev=tap0,mac=52:54:00:12:34:56"}},
		{"kernel", DirectKernel{Kernel: src, Initrd: src, Append: "console=ttyS0"}, []string{"-kernel", src, "-initrd", src, "-append", "console=ttyS0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			got, err := tt.dev.QEMUArgs(dir)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				got[i] = strings.ReplaceAll(got[i], dir, "DIR")
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("args = %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestDeviceMissingFile(t *testing.T) {
	for _, dev := range []Device{CDROM{Path: "/nonexistent.iso"}, USBStick{Path: "/nonexistent.iso"}, VirtioDisk{}, DirectKernel{Kernel: "/nonexistent"}, TapNIC{}} {
		if _, err := dev.QEMUArgs(t.TempDir()); err == nil {
			t.Errorf("%#v: no error for a missing file", dev)
		}
	}
}

func TestOVMFCopiesVars(t *testing.T) {
	tmp := t.TempDir()
	code, vars := filepath.Join(tmp, "code.fd"), filepath.Join(tmp, "vars.fd")
	os.WriteFile(code, []byte("code"), 0o644)
	os.WriteFile(vars, []byte("vars"), 0o644)
	dir := t.TempDir()
	args, err := OVMF{Code: code, Vars: vars}.QEMUArgs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(args, " "), "readonly=on,file="+code) {
		t.Errorf("code not mapped read-only: %q", args)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "OVMF_VARS.fd")); err != nil || string(b) != "vars" {
		t.Errorf("VARS copy = %q, %v", b, err)
	}
	if _, err := (OVMF{Code: filepath.Join(tmp, "missing")}).QEMUArgs(dir); err == nil || !strings.Contains(err.Error(), "apt package ovmf") {
		t.Errorf("missing OVMF error = %v, want it to name the ovmf package", err)
	}
}

func TestCopyFileSparse(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	data := make([]byte, 5<<20+123)
	copy(data[2<<20:], "middle")
	copy(data[len(data)-3:], "end")
	os.WriteFile(src, data, 0o644)
	dst := filepath.Join(tmp, "dst")
	if err := copyFile(src, dst); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if string(got) != string(data) {
		t.Fatal("copy differs from source")
	}
	// A file that ends in a hole must keep its size.
	os.WriteFile(src, make([]byte, 3<<20), 0o644)
	if err := copyFile(src, dst); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dst); st.Size() != 3<<20 {
		t.Errorf("size = %d, want %d", st.Size(), 3<<20)
	}
}

func TestShellQuote(t *testing.T) {
	args := []string{"qemu", "-append", "console=tty0 console=ttyS0,115200", "it's", ""}
	got, err := exec.Command("sh", "-c", `eval "set -- $0"; for a in "$@"; do printf '[%s]\n' "$a"; done`, ShellQuote(args)).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "[qemu]\n[-append]\n[console=tty0 console=ttyS0,115200]\n[it's]\n[]\n"
	if string(got) != want {
		t.Errorf("shell split %q back into\n%s want\n%s", ShellQuote(args), got, want)
	}
}

func TestRequireToolsNamesPackage(t *testing.T) {
	err := RequireTools(Tool{"etoile-no-such-tool", "etoile-pkg"}, Tool{"/no/such/file", "other-pkg"})
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y etoile-pkg") || !strings.Contains(err.Error(), "other-pkg") {
		t.Errorf("RequireTools error = %v, want both packages named", err)
	}
}
