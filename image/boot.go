package image

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/image/kernel"
	"github.com/etoile-os/etoile/image/media"
)

const mib = 1 << 20

// Paths inside the ISO. The agent finds the system image at systemOnISO.
const (
	isoKernel   = "/boot/vmlinuz"
	isoInitrd   = "/boot/initrd.img"
	isoEFIImage = "/boot/efiboot.img"
	isoLinuxBin = "/isolinux/isolinux.bin"
	isoCatalog  = "/isolinux/boot.cat"
	systemOnISO = "/etoile/system.sqfs"
	// ConfigOnMedia is where `etoile build --config` puts the machine
	// config: on the ISO, and on the raw disk's ESP.
	ConfigOnMedia = "/etoile/config.yaml"
	isoVolumeID   = "ETOILE"
	espLabel      = "ETOILE-ESP"
	slotALabel    = "ETOILE-A"
	rawESPSize    = 256 * mib
	minSlotSize   = 256 * mib
	slotHeadroom  = 64 * mib
)

// configOutputs are the outputs that carry a machine config baked in
// (ConfigOnMedia). The netboot set does not: its kernel and initramfs are
// the same for every node, and its system image is read-only and shared.
var configOutputs = []string{OutputISO, OutputRaw}

// netbootConfigHelp says how a netboot node gets its machine config.
var netbootConfigHelp = "a netboot node gets its machine config from etoile.config=<url> on its kernel command line, or from a volume labelled " +
	config.VolumeLabel + " holding " + config.VolumeFile

// CheckConfigOutputs says what a machine config baked into the media
// (etoile build --config) reaches with these outputs: an error when none of
// them carries it (a node would boot with no config, and nothing would say
// why), else a warning when the netboot set is built too, "" otherwise.
func CheckConfigOutputs(outputs []string) (warning string, err error) {
	var carry []string
	for _, o := range configOutputs {
		if slices.Contains(outputs, o) {
			carry = append(carry, o)
		}
	}
	if len(carry) == 0 {
		return "", fmt.Errorf("--config: the spec's outputs (%s) cannot carry a machine config, only %s can: %s; drop --config, or add iso or raw to spec field outputs",
			strings.Join(outputs, ", "), strings.Join(configOutputs, " and "), netbootConfigHelp)
	}
	if slices.Contains(outputs, OutputNetboot) {
		return fmt.Sprintf("the machine config (--config) is baked into %s only, not into the netboot set (vmlinuz, initramfs, system image): %s",
			strings.Join(carry, " and "), netbootConfigHelp), nil
	}
	return "", nil
}

// isolinuxCfg boots straight into Étoile on the first serial port and the
// screen, with no menu to wait on.
func isolinuxCfg(args string) string {
	return fmt.Sprintf(`SERIAL 0 115200
DEFAULT etoile
PROMPT 0
TIMEOUT 0
LABEL etoile
  KERNEL %s
  APPEND initrd=%s %s
`, isoKernel, isoInitrd, args)
}

// loaderConf makes systemd-boot start the default entry at once; a key
// press during boot still shows the menu.
func loaderConf(def string) string {
	return fmt.Sprintf("default %s\ntimeout 0\nconsole-mode keep\neditor no\n", def)
}

// bootEntry is a Boot Loader Specification type #1 entry.
func bootEntry(title, version, kernel, initrd, args string) string {
	return fmt.Sprintf("title %s\nversion %s\nlinux %s\ninitrd %s\noptions %s\n", title, version, kernel, initrd, args)
}

// stableID derives fixed identifiers (FAT volume ids, GPT GUIDs) from the
// build's inputs, so two builds of the same inputs are identical while two
// different images still differ.
func (b *Builder) stableID(purpose, version string) [16]byte {
	h := sha256.Sum256([]byte(fmt.Sprintf("etoile/%s/%s/%s/%d/%s", purpose, b.Spec.Arch, version, b.Epoch, b.contentID)))
	var id [16]byte
	copy(id[:], h[:16])
	id[6] = id[6]&0x0f | 0x50 // RFC 4122 version 5 layout, name-based
	id[8] = id[8]&0x3f | 0x80
	return id
}

func guidString(id [16]byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%04X-%012X", id[0:4], id[4:6], id[6:8], id[8:10], id[10:16])
}

func volumeID(id [16]byte) uint32 { return binary.LittleEndian.Uint32(id[:4]) }

func (b *Builder) espFiles(arch Arch, k *kernel.Kernel, initrd string, boot bootFiles, dir, entryName, title, version, args string) []media.File {
	kernelPath := "/etoile/" + dir + "/vmlinuz"
	initrdPath := "/etoile/" + dir + "/initrd.img"
	return []media.File{
		{Path: "/EFI/BOOT/" + arch.EFIBootName, Source: boot.systemdBoot, Mode: 0o644},
		{Path: "/EFI/systemd/" + arch.SystemdBoot, Source: boot.systemdBoot, Mode: 0o644},
		{Path: "/loader/loader.conf", Data: []byte(loaderConf(entryName)), Mode: 0o644},
		{Path: "/loader/entries/" + entryName, Data: []byte(bootEntry(title, version, kernelPath, initrdPath, args)), Mode: 0o644},
		{Path: kernelPath, Source: k.Vmlinuz, Mode: 0o644},
		{Path: initrdPath, Source: initrd, Mode: 0o644},
	}
}

func filesSize(files []media.File) (int64, error) {
	var total int64
	for _, f := range files {
		if f.Source == "" {
			total += int64(len(f.Data))
			continue
		}
		st, err := os.Stat(f.Source)
		if err != nil {
			return 0, err
		}
		total += st.Size()
	}
	return total, nil
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// maxISOFile is the largest file ISO9660 holds in one extent: its
// directory records store a file's size in 32 bits (go-diskfs writes
// nothing else), so a larger one would land on the ISO truncated.
const maxISOFile = 1<<32 - 1

// checkISOSizes refuses files that an ISO9660 image cannot hold whole.
func checkISOSizes(files map[string]string) error {
	for _, what := range slices.Sorted(maps.Keys(files)) {
		st, err := os.Stat(files[what])
		if err != nil {
			return err
		}
		if st.Size() > maxISOFile {
			return fmt.Errorf("%s is %d bytes (%.2f GiB): an ISO9660 file holds at most %d bytes (4 GiB - 1), so the iso output cannot carry it: "+
				"drop iso from spec field outputs and use the raw disk (raw) or the netboot set (netboot), or make it smaller (fewer or smaller extensions and airgap images)",
				what, st.Size(), float64(st.Size())/(1<<30), int64(maxISOFile))
		}
	}
	return nil
}

func (b *Builder) writeISO(dst, work string, arch Arch, k *kernel.Kernel, initrd, system string, boot bootFiles, version, args string) error {
	return b.writeISOContext(context.Background(), dst, work, arch, k, initrd, system, boot, version, args)
}

// writeISOContext writes the ISO, and first the El Torito EFI image in
// work, stopping (between files, every few MiB, at the next block go-diskfs
// writes) when ctx is done: neither dst nor a .tmp of it is left then.
func (b *Builder) writeISOContext(ctx context.Context, dst, work string, arch Arch, k *kernel.Kernel, initrd, system string, boot bootFiles, version, args string) error {
	if err := checkISOSizes(map[string]string{"the system image": system, "the kernel": k.Vmlinuz, "the initramfs": initrd}); err != nil {
		return err
	}
	efi := media.File{Path: isoEFIImage, Source: work + "/efiboot.img", Mode: 0o444}
	espFiles := b.espFiles(arch, k, initrd, boot, "live", "etoile.conf", "Étoile "+version+" (live)", version, args)
	size, err := filesSize(espFiles)
	if err != nil {
		return err
	}
	// FAT32 needs about 33 MiB at least; leave room for the FAT itself.
	fatSize := max(40*mib, roundUp(size+size/16+4*mib, mib))
	if err := media.WriteFATContext(ctx, efi.Source, fatSize, espFiles, media.FATOptions{
		Label: "ETOILE-EFI", VolumeID: volumeID(b.stableID("efiboot", version)), Epoch: b.Epoch,
	}); err != nil {
		return fmt.Errorf("making the El Torito EFI image: %w", err)
	}
	files := []media.File{
		{Path: isoKernel, Source: k.Vmlinuz, Mode: 0o444},
		{Path: isoInitrd, Source: initrd, Mode: 0o444},
		efi,
		{Path: systemOnISO, Source: system, Mode: 0o444},
		{Path: "/etoile/version", Data: []byte(version + "\n"), Mode: 0o444},
	}
	if b.MachineConfig != nil {
		// It holds the cluster's join token and registry passwords: only
		// root (the agent, PID 1) reads it.
		files = append(files, media.File{Path: ConfigOnMedia, Data: b.MachineConfig, Mode: 0o400})
	}
	opts := media.ISOOptions{VolumeLabel: isoVolumeID, Files: files, EFIBootImage: isoEFIImage, Epoch: b.Epoch,
		DiskGUID: guidString(b.stableID("iso", version))}
	if arch.BIOS {
		mbr, err := os.ReadFile(boot.isohdpfx)
		if err != nil {
			return err
		}
		opts.Files = append(opts.Files,
			media.File{Path: isoLinuxBin, Source: boot.isolinuxBin, Mode: 0o444},
			media.File{Path: "/isolinux/ldlinux.c32", Source: boot.ldlinux, Mode: 0o444},
			media.File{Path: "/isolinux/isolinux.cfg", Data: []byte(isolinuxCfg(args)), Mode: 0o444},
		)
		opts.BIOSBootImage = isoLinuxBin
		opts.BootCatalog = isoCatalog
		opts.MBRCode = mbr
	}
	return media.WriteISOContext(ctx, dst, opts)
}

func (b *Builder) writeRaw(dst string, arch Arch, k *kernel.Kernel, initrd, system string, boot bootFiles, version, args string) error {
	return b.writeRawContext(context.Background(), dst, arch, k, initrd, system, boot, version, args)
}

// writeRawContext writes the raw disk, stopping when ctx is done (see
// writeISOContext).
func (b *Builder) writeRawContext(ctx context.Context, dst string, arch Arch, k *kernel.Kernel, initrd, system string, boot bootFiles, version, args string) error {
	st, err := os.Stat(system)
	if err != nil {
		return err
	}
	slot := max(minSlotSize, roundUp(st.Size()+slotHeadroom, mib))
	esp := b.espFiles(arch, k, initrd, boot, "a", "etoile-a.conf", "Étoile "+version+" (slot A)", version, args)
	if b.MachineConfig != nil {
		esp = append(esp, media.File{Path: ConfigOnMedia, Data: b.MachineConfig, Mode: 0o644})
	}
	return media.WriteRawContext(ctx, dst, media.RawOptions{
		ESPLabel:    espLabel,
		ESPSize:     rawESPSize,
		ESPFiles:    esp,
		ESPVolumeID: volumeID(b.stableID("esp", version)),
		Partitions:  []media.Partition{{Label: slotALabel, Source: system, Size: slot}},
		DiskGUID:    guidString(b.stableID("disk", version)),
		Epoch:       b.Epoch,
	})
}
