package qa

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Device is one piece of a VM: firmware, a disk, a NIC, a kernel. Each device
// contributes its own QEMU arguments, so a scenario reads as a list of parts
// rather than a hand-built command line. dir is the VM's work folder: a device
// that needs a writable file (a disk copy, the UEFI variable store) puts it there,
// never next to its source, so out/ is never written to.
type Device interface {
	QEMUArgs(dir string) ([]string, error)
}

// OVMF firmware files as Debian's ovmf package installs them.
const (
	DefaultOVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	DefaultOVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// SeaBIOS is QEMU's built-in legacy BIOS. It adds no arguments: naming it keeps
// scenarios explicit about which firmware they boot.
type SeaBIOS struct{}

// QEMUArgs implements Device.
func (SeaBIOS) QEMUArgs(string) ([]string, error) { return nil, nil }

// String names the firmware the way the agent reports it.
func (SeaBIOS) String() string { return "bios" }

// OVMF is EDK2's UEFI firmware. Code is mapped read-only; Vars is copied into the
// work folder so every VM starts from pristine variables (a boot entry written by
// one VM must not change how the next one boots).
type OVMF struct {
	Code string // default DefaultOVMFCode
	Vars string // default DefaultOVMFVars (template, never written)
}

// QEMUArgs implements Device.
func (o OVMF) QEMUArgs(dir string) ([]string, error) {
	code, vars := o.Code, o.Vars
	if code == "" {
		code = DefaultOVMFCode
	}
	if vars == "" {
		vars = DefaultOVMFVars
	}
	for _, f := range []string{code, vars} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("OVMF firmware file %s: %w (install the apt package ovmf)", f, err)
		}
	}
	copyVars := filepath.Join(dir, "OVMF_VARS.fd")
	if err := copyFile(vars, copyVars); err != nil {
		return nil, fmt.Errorf("copy OVMF variable store %s into the work folder: %w", vars, err)
	}
	return []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + escapeOpt(code),
		"-drive", "if=pflash,format=raw,unit=1,file=" + escapeOpt(copyVars),
	}, nil
}

// String names the firmware the way the agent reports it.
func (OVMF) String() string { return "uefi" }

// CDROM attaches an ISO as a read-only CD drive (AHCI on q35), first in boot order.
type CDROM struct {
	Path string
}

// QEMUArgs implements Device.
func (c CDROM) QEMUArgs(string) ([]string, error) {
	if err := mustExist(c.Path, "CD image"); err != nil {
		return nil, err
	}
	return []string{
		"-drive", "if=none,id=cd0,media=cdrom,readonly=on,format=raw,file=" + escapeOpt(c.Path),
		"-device", "ide-cd,drive=cd0,bootindex=0",
	}, nil
}

// USBStick attaches an image as a USB mass-storage stick behind an xHCI
// controller, first in boot order. The image is copied into the work folder
// first because the guest may write to it.
type USBStick struct {
	Path string
}

// QEMUArgs implements Device.
func (u USBStick) QEMUArgs(dir string) ([]string, error) {
	cp, err := workCopy(u.Path, dir, "usb-stick", "USB stick image")
	if err != nil {
		return nil, err
	}
	return []string{
		"-drive", "if=none,id=stick0,format=raw,file=" + escapeOpt(cp),
		"-device", "qemu-xhci,id=xhci0",
		"-device", "usb-storage,bus=xhci0.0,drive=stick0,bootindex=0",
	}, nil
}

// VirtioDisk attaches an image as a virtio-blk disk, first in boot order. The
// image is copied (sparsely) into the work folder first.
type VirtioDisk struct {
	Path string
}

// QEMUArgs implements Device.
func (v VirtioDisk) QEMUArgs(dir string) ([]string, error) {
	cp, err := workCopy(v.Path, dir, "virtio-disk", "disk image")
	if err != nil {
		return nil, err
	}
	return []string{
		"-drive", "if=none,id=disk0,format=raw,file=" + escapeOpt(cp),
		"-device", "virtio-blk-pci,drive=disk0,bootindex=0",
	}, nil
}

// UserNIC is a virtio NIC on QEMU's user-mode network: the guest gets 10.0.2.15
// by DHCP and reaches the host's loopback as 10.0.2.2. HostFwd entries are
// QEMU hostfwd rules such as "tcp:127.0.0.1:2222-:22". The NIC's iPXE option ROM
// is left out: nothing here boots from the network through firmware, and the ROM
// only slows SeaBIOS down.
type UserNIC struct {
	HostFwd []string
	MAC     string
	Model   string // QEMU's NIC device: virtio-net-pci when empty, or e1000, rtl8139…
	ID      string // the netdev's id, net0 when empty: a second NIC needs another
}

// QEMUArgs implements Device.
func (n UserNIC) QEMUArgs(string) ([]string, error) {
	id := n.ID
	if id == "" {
		id = "net0"
	}
	netdev := "user,id=" + id
	for _, f := range n.HostFwd {
		netdev += ",hostfwd=" + escapeOpt(f)
	}
	return []string{"-netdev", netdev, "-device", nicDevice(id, n.MAC, n.Model)}, nil
}

// TapNIC is a virtio NIC on an existing tap device (created by the test, for
// example inside a network namespace).
type TapNIC struct {
	Ifname string
	MAC    string
}

// QEMUArgs implements Device.
func (n TapNIC) QEMUArgs(string) ([]string, error) {
	if n.Ifname == "" {
		return nil, fmt.Errorf("TapNIC.Ifname is empty: name the tap device the test created")
	}
	return []string{
		"-netdev", "tap,id=tap0,script=no,downscript=no,ifname=" + escapeOpt(n.Ifname),
		"-device", nicDevice("tap0", n.MAC, ""),
	}, nil
}

// SilentNIC is a virtio NIC with carrier on a wire where nothing answers:
// its frames go to the UDP port Sink on the loopback (which the test holds
// open, as a switch with no DHCP server on it), and none come back.
type SilentNIC struct {
	Sink int
	MAC  string
	ID   string // the netdev's id, silent0 when empty
}

// QEMUArgs implements Device.
func (n SilentNIC) QEMUArgs(string) ([]string, error) {
	if n.Sink <= 0 {
		return nil, fmt.Errorf("SilentNIC.Sink is %d: give the loopback UDP port the test holds open", n.Sink)
	}
	id := n.ID
	if id == "" {
		id = "silent0"
	}
	return []string{
		"-netdev", fmt.Sprintf("socket,id=%s,udp=127.0.0.1:%d,localaddr=127.0.0.1:0", id, n.Sink),
		"-device", nicDevice(id, n.MAC, ""),
	}, nil
}

func nicDevice(netdev, mac, model string) string {
	if model == "" {
		model = "virtio-net-pci"
	}
	d := model + ",romfile=,netdev=" + netdev
	if mac != "" {
		d += ",mac=" + mac
	}
	return d
}

// DirectKernel boots a kernel and initramfs handed over by QEMU (fw_cfg),
// skipping the boot loader, the way a netboot loader would.
type DirectKernel struct {
	Kernel string
	Initrd string
	Append string
}

// QEMUArgs implements Device.
func (k DirectKernel) QEMUArgs(string) ([]string, error) {
	if err := mustExist(k.Kernel, "kernel"); err != nil {
		return nil, err
	}
	args := []string{"-kernel", k.Kernel}
	if k.Initrd != "" {
		if err := mustExist(k.Initrd, "initramfs"); err != nil {
			return nil, err
		}
		args = append(args, "-initrd", k.Initrd)
	}
	if k.Append != "" {
		args = append(args, "-append", k.Append)
	}
	return args, nil
}

// escapeOpt doubles commas, QEMU's escape inside an option value, so a path
// with a comma cannot smuggle in another option.
func escapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func mustExist(path, what string) error {
	if path == "" {
		return fmt.Errorf("%s path is empty", what)
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s %s: %w (run ./build.sh to produce the artifacts)", what, path, err)
	}
	return nil
}

func workCopy(src, dir, name, what string) (string, error) {
	if err := mustExist(src, what); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, name+filepath.Ext(src))
	if err := copyFile(src, dst); err != nil {
		return "", fmt.Errorf("copy %s %s into the work folder: %w", what, src, err)
	}
	return dst, nil
}
