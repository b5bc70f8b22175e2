package inventory

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// twoInstalledDisks is /tmp/audit-inv/t5's shape: a SATA disk and a USB stick, each with a
// GPT partition ETOILE-A (two installed disks, or an installed disk and a stick written
// from it), and the kernel command line given.
func twoInstalledDisks(t *testing.T, cmdline string) string {
	const (
		sata = "sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda"
		usb  = "sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host6/target6:0:0/6:0:0:0/block/sdb"
	)
	files := map[string]string{"proc/cmdline": cmdline + "\n"}
	links := map[string]string{}
	for _, d := range []string{sata, usb} {
		name := filepath.Base(d)
		files[d+"/size"] = "62533296"
		files[d+"/"+name+"2/partition"] = "2"
		files[d+"/"+name+"2/start"] = "4096"
		files[d+"/"+name+"2/size"] = "4194304"
		files[d+"/"+name+"2/uevent"] = "PARTN=2\nPARTNAME=ETOILE-A\n"
		links["sys/class/block/"+name] = "../../" + strings.TrimPrefix(d, "sys/")
		links["sys/class/block/"+name+"2"] = "../../" + strings.TrimPrefix(d, "sys/") + "/" + name + "2"
	}
	return tree(t, files, links)
}

func bootDisks(inv *Inventory) string {
	var marked []string
	for _, d := range inv.Disks {
		if d.Boot {
			marked = append(marked, d.Name+" ("+d.BootReason+")")
		}
	}
	return strings.Join(marked, ", ")
}

func severalWarning(inv *Inventory) string {
	i := slices.IndexFunc(inv.Warnings, func(w string) bool { return strings.Contains(w, "several disks look like the boot medium") })
	if i < 0 {
		return ""
	}
	return inv.Warnings[i]
}

// TestBootMediumNeverTwo: the boot medium is one disk or none. Two disks that a rule matches
// alike (t5: ETOILE-A on both) are neither marked, and a warning names both, as an
// installer choosing its target reads Boot; a netboot (etoile.system=, which makes the boot
// ignore etoile.slot) comes from no disk, unless the agent names one.
func TestBootMediumNeverTwo(t *testing.T) {
	const netboot = "BOOT_IMAGE=/vmlinuz etoile.slot=a etoile.system=http://10.0.0.1/etoile.squashfs"
	tests := []struct {
		name, cmdline, bootDevice string
		want                      string // the disks marked
		several                   bool   // a warning naming sda and sdb
	}{
		{"slot a on two disks", "etoile.slot=a", "", "", true},
		{"netboot: the slot is ignored", netboot, "", "", false},
		{"netboot, the agent names a disk", netboot, "/dev/sdb2", "sdb (named by the caller (sdb2))", false},
		{"slot a on two disks, the agent names one", "etoile.slot=a", "sda", "sda (named by the caller (sda))", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Collect(context.Background(), Options{Root: twoInstalledDisks(t, tt.cmdline), BootDevice: tt.bootDevice})
			if err != nil {
				t.Fatal(err)
			}
			if got := bootDisks(inv); got != tt.want {
				t.Errorf("boot disks = %q, want %q", got, tt.want)
			}
			w := severalWarning(inv)
			if tt.several && (!strings.Contains(w, "/dev/sda, /dev/sdb") || !strings.Contains(w, "none is marked") ||
				!strings.Contains(w, "partition ETOILE-A of the booted slot")) {
				t.Errorf("warnings = %q, want one naming /dev/sda and /dev/sdb and the rule", inv.Warnings)
			}
			if !tt.several && w != "" {
				t.Errorf("warning %q, want none", w)
			}
		})
	}
}

// TestBootMediumNetbootOrTwoISOs: on the server of writeServerTree (slot A on sda, the ISO
// on the stick sdb), a netboot marks neither; two media labelled ETOILE (a BMC's virtual CD
// of the ISO beside a stick written from it, in a capture's lsblk.json) are neither marked,
// and named.
func TestBootMediumNetbootOrTwoISOs(t *testing.T) {
	root := writeServerTree(t)
	if err := os.WriteFile(filepath.Join(root, "proc/cmdline"), []byte("etoile.system=https://hub/etoile.squashfs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := Collect(context.Background(), Options{Root: root,
		Run: func(context.Context, string, ...string) ([]byte, error) { return []byte(smiTwoA100), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if got := bootDisks(inv); got != "" {
		t.Errorf("netboot: boot disks = %q, want none (the ISO's stick is not what the machine runs from)", got)
	}

	root = t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"proc/cpuinfo": "processor\t: 0\n", "proc/meminfo": "MemTotal: 1000 kB\n",
		"lsblk.json": `{"blockdevices":[
 {"name":"sr0","size":734003200,"model":"Virtual CDROM","type":"rom","rota":true,"tran":"usb","rm":true,"ro":true,"label":"ETOILE"},
 {"name":"sdb","size":31457280000,"type":"disk","rota":false,"tran":"usb","rm":true,"label":"ETOILE"},
 {"name":"nvme0n1","size":3840755982336,"type":"disk","rota":false,"tran":"nvme","rm":false}]}`,
	})
	if err := os.MkdirAll(filepath.Join(root, "sys/class/net"), 0o755); err != nil {
		t.Fatal(err)
	}
	inv = collect(t, root)
	if got := bootDisks(inv); got != "" {
		t.Errorf("two ETOILE volumes: boot disks = %q, want none", got)
	}
	if w := severalWarning(inv); !strings.Contains(w, "/dev/sr0, /dev/sdb") || !strings.Contains(w, "volume label ETOILE") {
		t.Errorf("warnings = %q, want one naming /dev/sr0 and /dev/sdb", inv.Warnings)
	}
}
