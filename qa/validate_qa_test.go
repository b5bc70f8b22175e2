//go:build qa

package qa

import (
	"bytes"
	"debug/buildinfo"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/image"
	"github.com/etoile-os/etoile/internal/xorriso"
)

// These tests read the build's outputs with tools that did not write them.

// tool fails t unless the tool is installed, naming its apt package.
func tool(t *testing.T, tl Tool) string {
	t.Helper()
	p, err := tl.Path()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runTool runs a command and fails t with its output if it exits non-zero.
func runTool(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out []byte
	var err error
	if filepath.Base(name) == "xorriso" {
		out, err = xorriso.RunIn(dir, args...) // run again if it crashed
	} else {
		out, err = cmd.CombinedOutput()
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", ShellQuote(append([]string{name}, args...)), err, out)
	}
	return string(out)
}

// elToritoImage is one row of `xorriso -report_el_torito plain`.
type elToritoImage struct {
	Platform string
	LBA      int64 // in 2048-byte blocks
}

var elToritoRow = regexp.MustCompile(`(?m)^El Torito boot img :\s+(\d+)\s+(\S+)\s+\S+\s+\S+\s+\S+\s+\S+\s+\d+\s+(\d+)\s*$`)

func elToritoImages(t *testing.T, iso string) []elToritoImage {
	t.Helper()
	out := runTool(t, "", tool(t, XorrisoTool), "-indev", iso, "-report_el_torito", "plain")
	var imgs []elToritoImage
	for _, m := range elToritoRow.FindAllStringSubmatch(out, -1) {
		lba, _ := strconv.ParseInt(m[3], 10, 64)
		imgs = append(imgs, elToritoImage{Platform: m[2], LBA: lba})
	}
	if len(imgs) == 0 {
		t.Fatalf("xorriso found no El Torito boot images in %s:\n%s", iso, out)
	}
	return imgs
}

func TestISOElToritoEntries(t *testing.T) {
	iso := filepath.Join(Artifacts(t, ISOName), ISOName)
	got := map[string]bool{}
	for _, img := range elToritoImages(t, iso) {
		got[img.Platform] = true
	}
	for _, p := range []string{"BIOS", "UEFI"} {
		if !got[p] {
			t.Errorf("%s has no El Torito %s boot entry (entries: %v)", iso, p, got)
		}
	}
}

// TestISOHybrid checks what makes the ISO boot from a USB stick: ISOLINUX's
// MBR boot code pointing at the BIOS boot image, an active MBR partition over
// the image, and MBR and GPT entries over the EFI image.
func TestISOHybrid(t *testing.T) {
	iso := filepath.Join(Artifacts(t, ISOName), ISOName)
	var biosLBA, efiLBA int64 = -1, -1
	for _, img := range elToritoImages(t, iso) {
		switch img.Platform {
		case "BIOS":
			biosLBA = img.LBA
		case "UEFI":
			efiLBA = img.LBA
		}
	}
	out := runTool(t, "", tool(t, XorrisoTool), "-indev", iso, "-report_system_area", "plain")
	summary := regexp.MustCompile(`(?m)^System area summary: (.*)$`).FindStringSubmatch(out)
	if summary == nil || !strings.Contains(summary[1], "MBR") || !strings.Contains(summary[1], "isohybrid") || !strings.Contains(summary[1], "GPT") {
		t.Errorf("system area is not an isohybrid MBR + GPT:\n%s", out)
	}
	mbrRow := regexp.MustCompile(`(?m)^MBR partition      :\s+\d+\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(\d+)\s+(\d+)`)
	var active, efi bool
	for _, m := range mbrRow.FindAllStringSubmatch(out, -1) {
		start, _ := strconv.ParseInt(m[3], 10, 64)
		if m[1] == "0x80" && start == 0 {
			active = true
		}
		if m[2] == "0xef" && efiLBA >= 0 && start == efiLBA*4 {
			efi = true
		}
	}
	if !active {
		t.Errorf("no active MBR partition starting at sector 0:\n%s", out)
	}
	if !efi {
		t.Errorf("no MBR partition of type 0xef at the EFI image (sector %d):\n%s", efiLBA*4, out)
	}
	gptRow := regexp.MustCompile(`(?m)^GPT start and size :\s+\d+\s+(\d+)\s+\d+`)
	var gptEFI bool
	for _, m := range gptRow.FindAllStringSubmatch(out, -1) {
		if start, _ := strconv.ParseInt(m[1], 10, 64); efiLBA >= 0 && start == efiLBA*4 {
			gptEFI = true
		}
	}
	if !gptEFI {
		t.Errorf("no GPT partition over the EFI image (sector %d):\n%s", efiLBA*4, out)
	}

	// The MBR boot code is ISOLINUX's, and bytes 432-435 point at the BIOS
	// boot image in 512-byte sectors.
	mbr := make([]byte, 512)
	f, err := os.Open(iso)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, mbr); err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile(tool(t, IsohdpfxTool))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mbr[:432], code[:432]) {
		t.Errorf("the first 432 bytes of %s are not isohdpfx.bin's boot code", iso)
	}
	if got := int64(binary.LittleEndian.Uint32(mbr[432:436])); got != biosLBA*4 {
		t.Errorf("MBR bytes 432-435 = %d, want the BIOS boot image's sector %d", got, biosLBA*4)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		t.Errorf("MBR signature = %#x %#x, want 0x55 0xaa", mbr[510], mbr[511])
	}
}

func TestISOEFIImageFsck(t *testing.T) {
	iso := filepath.Join(Artifacts(t, ISOName), ISOName)
	fsck := tool(t, FsckVfatTool)
	dir := t.TempDir()
	runTool(t, dir, tool(t, XorrisoTool), "-osirrox", "on", "-indev", iso, "-extract_boot_images", dir+"/")
	imgs, _ := filepath.Glob(filepath.Join(dir, "*uefi*"))
	if len(imgs) != 1 {
		entries, _ := os.ReadDir(dir)
		t.Fatalf("xorriso -extract_boot_images gave no single UEFI image: %v", entries)
	}
	fsckClean(t, fsck, imgs[0])
	list := runTool(t, "", tool(t, MdirTool), "-/", "-b", "-i", imgs[0], "::")
	if !regexp.MustCompile(`(?im)^::/EFI/BOOT/BOOTX64\.EFI$`).MatchString(list) {
		t.Errorf("El Torito EFI image has no EFI/BOOT/BOOTX64.EFI:\n%s", list)
	}
}

// gptPartition is one row of `sgdisk -p`.
type gptPartition struct {
	Start, End int64 // sectors, inclusive
	Name       string
}

func gptPartitions(t *testing.T, img string) []gptPartition {
	t.Helper()
	out := runTool(t, "", tool(t, SgdiskTool), "-p", img)
	row := regexp.MustCompile(`(?m)^\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+\S+\s+(.*)$`)
	var parts []gptPartition
	for _, m := range row.FindAllStringSubmatch(out, -1) {
		start, _ := strconv.ParseInt(m[2], 10, 64)
		end, _ := strconv.ParseInt(m[3], 10, 64)
		parts = append(parts, gptPartition{Start: start, End: end, Name: strings.TrimSpace(m[4])})
	}
	if len(parts) == 0 {
		t.Fatalf("sgdisk -p found no partitions in %s:\n%s", img, out)
	}
	return parts
}

func TestRawGPT(t *testing.T) {
	raw := filepath.Join(Artifacts(t, RawName), RawName)
	out := runTool(t, "", tool(t, SgdiskTool), "-v", raw)
	if !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v %s:\n%s", raw, out)
	}
	names := map[string]gptPartition{}
	for _, p := range gptPartitions(t, raw) {
		names[p.Name] = p
		if p.Start%2048 != 0 {
			t.Errorf("partition %s starts at sector %d, not 1 MiB aligned", p.Name, p.Start)
		}
	}
	for _, want := range []string{"ETOILE-ESP", "ETOILE-A"} {
		if _, ok := names[want]; !ok {
			t.Errorf("no GPT partition labelled %s in %s (found %v)", want, raw, names)
		}
	}
}

func TestRawESPFsck(t *testing.T) {
	raw := filepath.Join(Artifacts(t, RawName), RawName)
	fsck := tool(t, FsckVfatTool)
	var esp *gptPartition
	for _, p := range gptPartitions(t, raw) {
		if p.Name == "ETOILE-ESP" {
			esp = &p
		}
	}
	if esp == nil {
		t.Fatalf("no partition labelled ETOILE-ESP in %s", raw)
	}
	espImg := filepath.Join(t.TempDir(), "esp.img")
	if err := extractRange(raw, espImg, esp.Start*512, (esp.End-esp.Start+1)*512); err != nil {
		t.Fatal(err)
	}
	fsckClean(t, fsck, espImg)
	list := runTool(t, "", tool(t, MdirTool), "-/", "-b", "-i", espImg, "::")
	if !regexp.MustCompile(`(?im)^::/EFI/BOOT/BOOTX64\.EFI$`).MatchString(list) {
		t.Errorf("ESP has no EFI/BOOT/BOOTX64.EFI:\n%s", list)
	}
}

// fsckClean runs fsck.vfat -n -v on img and fails on what it reports as
// well as on its exit status: fsck.fat 4.2 exits 0 on some problems it
// only prints, among them a boot sector and backup that differ (the hidden
// sectors and volume id the build rewrites in both).
func fsckClean(t *testing.T, fsck, img string) {
	t.Helper()
	out := runTool(t, "", fsck, "-n", "-v", img)
	for _, bad := range []string{"differ", "uninitialized", "Free cluster summary", "Leaving filesystem unchanged", "Not automatically fixing"} {
		if strings.Contains(out, bad) {
			t.Errorf("fsck.vfat -n -v %s reports %q:\n%s", img, bad, out)
		}
	}
}

// extractRange copies size bytes at off of src into dst.
func extractRange(src, dst string, off, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, io.NewSectionReader(in, off, size)); err != nil {
		out.Close()
		return fmt.Errorf("extract %d bytes at %d of %s: %w", size, off, src, err)
	}
	return out.Close()
}

func TestSystemImageUnsquashfs(t *testing.T) {
	sqfs := filepath.Join(Artifacts(t, SystemName), SystemName)
	out := runTool(t, "", tool(t, UnsquashfsTool), "-l", sqfs)
	var entries int
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "squashfs-root/") {
			entries++
		}
	}
	if entries == 0 {
		t.Errorf("unsquashfs -l %s lists no files:\n%s", sqfs, out)
	}
	if !strings.Contains(out, "squashfs-root/"+image.CABundlePath+"\n") {
		t.Errorf("the system image has no CA bundle at /%s", image.CABundlePath)
	}
	long := runTool(t, "", tool(t, UnsquashfsTool), "-lls", sqfs)
	if !regexp.MustCompile(`(?m)^drwxrwxrwt root/root .* squashfs-root/tmp$`).MatchString(long) {
		t.Errorf("the system image's /tmp is not 1777 (world-writable with the sticky bit)")
	}
	if !regexp.MustCompile(`(?m)^lrwxrwxrwx root/root .* squashfs-root/var/run -> \.\./run$`).MatchString(long) {
		t.Errorf("the system image's /var/run is not a symlink to ../run (daemons write their pid files there)")
	}
	// Every file of the repository's overlay/rootfs (the default spec's
	// overlay) is in the image at its path, owned by root, with its mode.
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(root, "overlay", "rootfs")
	n := 0
	err = filepath.WalkDir(overlay, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(overlay, p)
		n++
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(info.Mode().String()) + ` root/root .* squashfs-root/` + regexp.QuoteMeta(filepath.ToSlash(rel)) + `$`)
		if !re.MatchString(long) {
			t.Errorf("the system image lacks the overlay's /%s as %s root/root", rel, info.Mode())
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("reading %s: %v (%d files)", overlay, err, n)
	}
}

func TestSHA256SUMS(t *testing.T) {
	out := Artifacts(t, SumsName)
	res := runTool(t, out, tool(t, Sha256sumTool), "-c", SumsName)
	for _, name := range AllArtifacts {
		if name == SumsName {
			continue
		}
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: OK$`).MatchString(res) {
			t.Errorf("SHA256SUMS does not cover %s:\n%s", name, res)
		}
	}
}

func TestSPDX(t *testing.T) {
	path := filepath.Join(Artifacts(t, SPDXName), SPDXName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name        string `json:"name"`
			VersionInfo string `json:"versionInfo"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s is not JSON: %v", path, err)
	}
	if doc.SPDXVersion != "SPDX-2.3" {
		t.Errorf("spdxVersion = %q, want SPDX-2.3", doc.SPDXVersion)
	}
	var kernel bool
	for _, p := range doc.Packages {
		if strings.HasPrefix(p.Name, "linux-image") && p.VersionInfo != "" {
			kernel = true
			t.Logf("kernel package: %s %s", p.Name, p.VersionInfo)
		}
	}
	if !kernel {
		t.Errorf("%s names no linux-image package with a version (%d packages)", path, len(doc.Packages))
	}
	have := map[string]string{} // name → version
	for _, p := range doc.Packages {
		have[p.Name] = p.VersionInfo
	}
	// The bootloaders, and every Go module linked into the agent shipped in the image.
	for _, name := range []string{"isolinux", "syslinux-common", "systemd-boot-efi", "etoile", "etoile-agent"} {
		if have[name] == "" {
			t.Errorf("%s does not name %s with a version", path, name)
		}
	}
	bi, err := buildinfo.ReadFile(filepath.Join(binDir(t), "etoile-agent"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range bi.Deps {
		if have[d.Path] != d.Version {
			t.Errorf("%s names Go module %s at %q, the agent links %s", path, d.Path, have[d.Path], d.Version)
		}
	}
	ca := have["ca-certificates"] != ""
	if !ca {
		t.Errorf("%s does not name the ca-certificates package the system image's CA bundle comes from", path)
	}
}

func TestInitramfsBudget(t *testing.T) {
	path := filepath.Join(Artifacts(t, InitramfsName), InitramfsName)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	const budget = 30_000_000
	t.Logf("%s: %.1f MB", path, float64(st.Size())/1e6)
	if st.Size() > budget {
		t.Errorf("%s is %.1f MB, over the 30 MB budget", path, float64(st.Size())/1e6)
	}
}

// TestStandinK3sInImage is issue 3's build check on the image `make
// image-standin` made from the K3s STAND-IN's release folder (the same
// path a real release takes): the system image holds k3s with its kubectl,
// crictl and ctr links, the airgap archive where the agent keeps it and
// linked where K3s imports it, the CA bundle, and /bin/sh linked to K3s's
// busybox; the SBOM names k3s with
// the version and the SHA-256 of the binary in the release folder.
func TestStandinK3sInImage(t *testing.T) {
	out := standinOut(t)
	list := runTool(t, "", tool(t, UnsquashfsTool), "-lls", filepath.Join(out, SystemName))
	const airgap = "k3s-airgap-images-amd64.tar.zst"
	for _, re := range []string{
		`-rwxr-xr-x .* squashfs-root/usr/local/bin/k3s\n`,
		`squashfs-root/usr/local/bin/kubectl -> k3s\n`,
		`squashfs-root/usr/local/bin/crictl -> k3s\n`,
		`squashfs-root/usr/local/bin/ctr -> k3s\n`,
		`-rw-r--r-- .* squashfs-root/usr/lib/etoile/k3s/images/` + regexp.QuoteMeta(airgap) + `\n`,
		`squashfs-root/var/lib/rancher/k3s/agent/images/` + regexp.QuoteMeta(airgap) + ` -> /usr/lib/etoile/k3s/images/` + regexp.QuoteMeta(airgap) + `\n`,
		`-rw-r--r-- .* squashfs-root/etc/ssl/certs/ca-certificates.crt\n`,
		// K3s's iptables are #!/bin/sh scripts: its own busybox is the shell.
		`squashfs-root/bin/sh -> /var/lib/rancher/k3s/data/current/bin/busybox\n`,
	} {
		if !regexp.MustCompile(re).MatchString(list) {
			t.Errorf("unsquashfs -lls lacks %s", re)
		}
	}
	k3sDir := filepath.Join(filepath.Dir(out), "k3s-standin")
	sum, err := FileSHA256(filepath.Join(k3sDir, "k3s"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(out, SPDXName))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Packages []struct {
			Name         string `json:"name"`
			VersionInfo  string `json:"versionInfo"`
			Supplier     string `json:"supplier"`
			Comment      string `json:"comment"`
			ExternalRefs []struct {
				Locator string `json:"referenceLocator"`
			} `json:"externalRefs"`
			Checksums []struct {
				Algorithm string `json:"algorithm"`
				Value     string `json:"checksumValue"`
			} `json:"checksums"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range doc.Packages {
		if p.Name != "k3s" {
			continue
		}
		found = true
		if !regexp.MustCompile(`^v1\.\d+\.\d+\+k3s\d+$`).MatchString(p.VersionInfo) {
			t.Errorf("SBOM k3s version %q", p.VersionInfo)
		}
		if len(p.Checksums) != 1 || p.Checksums[0].Algorithm != "SHA256" || p.Checksums[0].Value != sum {
			t.Errorf("SBOM k3s checksums %+v, want SHA256 %s (the release folder's k3s)", p.Checksums, sum)
		}
		// Never presented as K3s: the SBOM says it is the stand-in.
		if !strings.Contains(p.Comment, "K3s STAND-IN") || strings.Contains(p.Supplier, "K3s project") || len(p.ExternalRefs) != 0 {
			t.Errorf("SBOM presents the stand-in as K3s: supplier %q, comment %q, refs %+v", p.Supplier, p.Comment, p.ExternalRefs)
		}
	}
	if !found {
		t.Errorf("the stand-in image's SBOM names no k3s package")
	}
}
