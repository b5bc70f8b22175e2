package media

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	isolinuxBin = "/usr/lib/ISOLINUX/isolinux.bin"
	isohdpfxBin = "/usr/lib/ISOLINUX/isohdpfx.bin"
	ldlinuxC32  = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
)

func needFile(t *testing.T, p, pkg string) {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s missing: install it with `apt-get install -y %s`", p, pkg)
	}
}

// isoOptions builds the inputs of an Étoile-like ISO: ISOLINUX, an EFI FAT
// image of efiSize bytes, and a system image.
func isoOptions(t *testing.T, efiSize int64) ISOOptions {
	t.Helper()
	needFile(t, isolinuxBin, "isolinux")
	needFile(t, isohdpfxBin, "isolinux")
	needFile(t, ldlinuxC32, "syslinux-common")
	dir := t.TempDir()
	efi := filepath.Join(dir, "efiboot.img")
	if err := WriteFAT(efi, efiSize, espFiles(t), FATOptions{Label: "ETOILE-EFI", VolumeID: 1, Epoch: 1700000000}); err != nil {
		t.Fatal(err)
	}
	sys := filepath.Join(dir, "system.sqfs")
	writeFile(t, sys, randomBytes(3<<20+1, 5), 0o644)
	mbr, err := os.ReadFile(isohdpfxBin)
	if err != nil {
		t.Fatal(err)
	}
	return ISOOptions{
		VolumeLabel: "ETOILE",
		Files: []File{
			{Path: "/isolinux/isolinux.bin", Source: isolinuxBin},
			{Path: "/isolinux/ldlinux.c32", Source: ldlinuxC32},
			{Path: "/isolinux/isolinux.cfg", Data: []byte("default etoile\nlabel etoile\n  kernel /boot/vmlinuz\n")},
			{Path: "/boot/efiboot.img", Source: efi},
			{Path: "/etoile/system.sqfs", Source: sys},
			{Path: "/etoile/run-me.sh", Data: []byte("#!/bin/sh\necho hi\n"), Mode: 0o755},
			{Path: "/EFI/BOOT/BOOTX64.EFI", Data: randomBytes(1000, 3)},
			{Path: "/a-Long_File.name.with.dots.txt", Data: []byte("rock ridge names\n")},
		},
		BIOSBootImage: "/isolinux/isolinux.bin",
		BootCatalog:   "/isolinux/boot.cat",
		EFIBootImage:  "/boot/efiboot.img",
		MBRCode:       mbr,
		Epoch:         1700000000,
	}
}

var spaces = regexp.MustCompile(`\s+`)

// report returns xorriso's plain report lines, whitespace collapsed.
func report(t *testing.T, image, what string) []string {
	t.Helper()
	xorriso := tool(t, "xorriso", "xorriso")
	out := run(t, xorriso, "-indev", image, what, "plain")
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		lines = append(lines, strings.TrimSpace(spaces.ReplaceAllString(l, " ")))
	}
	return lines
}

func hasLine(t *testing.T, lines []string, want string) {
	t.Helper()
	for _, l := range lines {
		if l == want {
			return
		}
	}
	t.Errorf("xorriso report lacks %q:\n%s", want, strings.Join(lines, "\n"))
}

func field(lines []string, prefix string) []string {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return strings.Fields(strings.TrimPrefix(l, prefix))
		}
	}
	return nil
}

func TestWriteISO(t *testing.T) {
	for _, efiSize := range []int64{MinFATSize, 40 << 20} { // load size 0 above 32 MiB
		t.Run(strconv.FormatInt(efiSize>>20, 10)+"MiB-EFI", func(t *testing.T) {
			opts := isoOptions(t, efiSize)
			dst := filepath.Join(t.TempDir(), "etoile.iso")
			if err := WriteISO(dst, opts); err != nil {
				t.Fatal(err)
			}
			st, _ := os.Stat(dst)
			if st.Size()%(1<<20) != 0 {
				t.Errorf("image size %d is not a 1 MiB multiple", st.Size())
			}
			sectors := strconv.FormatInt(st.Size()/512, 10)

			et := report(t, dst, "-report_el_torito")
			hasLine(t, et, "El Torito cat path : /isolinux/boot.cat")
			hasLine(t, et, "El Torito img path : 1 /isolinux/isolinux.bin")
			hasLine(t, et, "El Torito img opts : 1 boot-info-table isohybrid-suitable")
			hasLine(t, et, "El Torito img path : 2 /boot/efiboot.img")
			bios := field(et, "El Torito boot img : 1 ")
			efi := field(et, "El Torito boot img : 2 ")
			if len(bios) < 7 || bios[0] != "BIOS" || bios[2] != "none" || bios[5] != "4" {
				t.Errorf("BIOS entry %v, want BIOS, no emulation, load size 4", bios)
			}
			wantLoad := "0"
			if efiSize <= 32<<20 {
				wantLoad = strconv.FormatInt(efiSize/512, 10)
			}
			if len(efi) < 7 || efi[0] != "UEFI" || efi[2] != "none" || efi[5] != wantLoad {
				t.Errorf("UEFI entry %v, want UEFI, no emulation, load size %s", efi, wantLoad)
			}

			sa := report(t, dst, "-report_system_area")
			hasLine(t, sa, "System area summary: MBR isohybrid cyl-align-on GPT")
			hasLine(t, sa, "ISO image size/512 : "+sectors)
			hasLine(t, sa, "MBR partition : 1 0x80 0x00 0 "+sectors)
			biosLBA, _ := strconv.ParseInt(bios[6], 10, 64)
			efiLBA, _ := strconv.ParseInt(efi[6], 10, 64)
			efiBlocks := strconv.FormatInt(efiSize/512, 10)
			efiStart := strconv.FormatInt(efiLBA*4, 10)
			hasLine(t, sa, "MBR partition : 2 0x00 0xef "+efiStart+" "+efiBlocks)
			hasLine(t, sa, "MBR partition path : 2 /boot/efiboot.img")
			n, _ := strconv.ParseInt(sectors, 10, 64)
			hasLine(t, sa, "GPT lba range : 64 "+strconv.FormatInt(n-64, 10)+" "+strconv.FormatInt(n-1, 10))
			hasLine(t, sa, "GPT entry array : 2 248 overlapping")
			hasLine(t, sa, "GPT type GUID : 1 a2a0d0ebe5b9334487c068b6b72699c7")
			hasLine(t, sa, "GPT start and size : 1 0 "+strconv.FormatInt(n-64, 10))
			hasLine(t, sa, "GPT start and size : 2 "+efiStart+" "+efiBlocks)
			hasLine(t, sa, "GPT partition path : 2 /boot/efiboot.img")
			hasLine(t, sa, "GPT partname local : 1 ISOHybrid")

			// Bytes 432-435: 512-byte LBA of isolinux.bin.
			b, _ := os.ReadFile(dst)
			if got := int64(b[432]) | int64(b[433])<<8 | int64(b[434])<<16 | int64(b[435])<<24; got != biosLBA*4 {
				t.Errorf("MBR bytes 432-435 hold %d, want isolinux.bin's 512-byte LBA %d", got, biosLBA*4)
			}
			mbr, _ := os.ReadFile(isohdpfxBin)
			if string(b[:432]) != string(mbr[:432]) {
				t.Errorf("MBR code is not isohdpfx.bin's")
			}
			checkISOFiles(t, dst, opts)
			checkISOPX(t, dst, opts.BootCatalog)
		})
	}
}

// checkISOFiles extracts the ISO with xorriso (Rock Ridge) and compares names,
// modes and contents.
func checkISOFiles(t *testing.T, iso string, opts ISOOptions) {
	t.Helper()
	xorriso := tool(t, "xorriso", "xorriso")
	out := filepath.Join(t.TempDir(), "x")
	run(t, xorriso, "-osirrox", "on", "-indev", iso, "-extract", "/", out)
	for _, f := range opts.Files {
		want := f.Data
		if want == nil {
			want, _ = os.ReadFile(f.Source)
		}
		p := filepath.Join(out, filepath.FromSlash(f.Path))
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s not extracted: %v", f.Path, err)
			continue
		}
		if string(got) != string(want) && f.Path != opts.BIOSBootImage { // boot info table patched in
			t.Errorf("%s differs after extraction", f.Path)
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != f.mode() {
			t.Errorf("%s mode %v, want %v", f.Path, st.Mode().Perm(), f.mode())
		}
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("root folder mode %v (%v), want 0755", st.Mode().Perm(), err)
	}
	ls := run(t, xorriso, "-indev", iso, "-lsdl", "/", "--", "-lsl", "/", "/etoile", "/isolinux", "--")
	if !strings.Contains(ls, "Nov 14  2023") || strings.Contains(ls, time.Now().Format("Jan _2")) && time.Now().Format("Jan _2") != "Nov 14" {
		t.Errorf("dates are not the epoch:\n%s", ls)
	}
	for _, l := range strings.Split(ls, "\n") {
		if strings.HasPrefix(l, "-") || strings.HasPrefix(l, "d") {
			if f := strings.Fields(l); len(f) > 3 && (f[2] != "0" || f[3] != "0") {
				t.Errorf("entry not owned by 0:0: %s", l)
			}
		}
	}
}

func TestWriteISOReproducible(t *testing.T) {
	opts := isoOptions(t, MinFATSize)
	a := filepath.Join(t.TempDir(), "a.iso")
	b := filepath.Join(t.TempDir(), "b.iso")
	if err := WriteISO(a, opts); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := WriteISO(b, opts); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, a, b)
}

func TestWriteISOBadInput(t *testing.T) {
	good := []File{{Path: "/isolinux/isolinux.bin", Data: []byte{1}}}
	tests := []struct {
		name string
		opts ISOOptions
		want string
	}{
		{"no label", ISOOptions{}, "VolumeLabel"},
		{"short MBR", ISOOptions{VolumeLabel: "E", MBRCode: []byte{1}}, "isohdpfx"},
		{"boot image not in files", ISOOptions{VolumeLabel: "E", Files: good, EFIBootImage: "/efi.img"}, "EFIBootImage"},
		{"relative path", ISOOptions{VolumeLabel: "E", Files: []File{{Path: "x", Data: []byte{}}}}, "absolute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "x.iso")
			err := WriteISO(dst, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Errorf("%s exists after a failed write", dst)
			}
		})
	}
}
