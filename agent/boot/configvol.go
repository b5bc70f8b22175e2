package boot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/inventory"
	"github.com/etoile-os/etoile/agent/mount"
	"github.com/etoile-os/etoile/agent/safego"
	"github.com/etoile-os/etoile/agent/sysimage"
	"github.com/etoile-os/etoile/internal/devread"
)

// Where the machine config's volumes are mounted, read-only, once found.
// Both lie in /run, which the switch into the system image moves along
// with everything mounted under it.
const (
	ConfigVolumeDir = "/run/etoile/cfg" // the ETOILE-CFG volume
	ESPDir          = "/run/etoile/esp" // the boot disk's EFI system partition, when it must be mounted
	ESPLabel        = "ETOILE-ESP"      // its GPT partition name (etoile build)
)

// configPrefetch is what startConfigPrefetch found, for the services.
type configPrefetch struct {
	done   chan struct{} // nil: never started; closed once source is final
	source config.Source // the ETOILE-CFG volume's config; nil if none was found
	taken  atomic.Bool   // the first ConfigVolume took source: later ones look again
}

// startConfigPrefetch looks for the ETOILE-CFG volume (FindConfigVolume) in
// the background from the moment the boot medium is found, so that it
// overlaps the mount of the system image, the switch and DHCP. Not started
// when the config comes from a URL (etoile.config=), nor under --root.
func (m *Machine) startConfigPrefetch(ctx context.Context) {
	if !m.real() || m.Cold == nil || m.Params.Config != "" || m.cfgPre.done != nil {
		return
	}
	m.cfgPre.done = make(chan struct{})
	go func() {
		defer close(m.cfgPre.done)
		defer safego.Recover(m.log, "looking for the config volume")
		m.cfgPre.source = m.FindConfigVolume(ctx)
	}()
}

// ConfigVolume returns the ETOILE-CFG volume's config source, nil when there
// is none: the first time, what the look started with the system image's
// mount found; when that found nothing or never started, and on every later
// call (a node waiting for a config asks again and again), a new look — a
// USB stick may have shown up, or been swapped, since; reading the devices'
// first bytes costs little.
func (m *Machine) ConfigVolume(ctx context.Context) config.Source {
	if m.cfgPre.done != nil && !m.cfgPre.taken.Swap(true) {
		select {
		case <-m.cfgPre.done:
			if m.cfgPre.source != nil {
				return m.cfgPre.source
			}
		case <-ctx.Done():
			return nil
		}
	}
	return m.FindConfigVolume(ctx)
}

// FindConfigVolume probes every block device but the boot medium for the
// ETOILE-CFG label and returns the first one's config source (nil when
// there is none). A device is recognised by its first bytes, with no module
// needed; its config.yaml is then read straight from the device where its
// filesystem allows (ISO9660, FAT32: RawVolumeSource), with no module
// either, and otherwise the volume is mounted read-only at ConfigVolumeDir
// after its filesystem's modules (isofs and cdrom took about 0.2 s of CPU
// under TCG, FAT's four about 0.3 s).
func (m *Machine) FindConfigVolume(ctx context.Context) (src config.Source) {
	defer func() { // it reads untrusted media, and runs in PID 1
		if r := recover(); r != nil {
			safego.Report(m.log, "looking for the config volume", r)
			src = nil
		}
	}()
	release := mount.HoldAPI() // not while the root switches (the mount below takes switchMu: released before)
	devs, err := sysimage.ListBlock("/sys", "/dev")
	release()
	if err != nil {
		m.log.Warn("looking for the config volume", "reason", err.Error())
		return nil
	}
	// The boot disk's volume first (a config partition beside the slots):
	// another disk's is another machine's, or a stick left in.
	var onBoot, others []string
	for _, d := range devs {
		// The boot medium itself is labelled ETOILE (or is the slot); an
		// empty CD drive is never opened.
		switch {
		case d.Size == 0 || d.Path == m.Device:
		case m.BootDisk != "" && (d.Disk == m.BootDisk || d.Name == m.BootDisk):
			onBoot = append(onBoot, d.Path)
		default:
			others = append(others, d.Path)
		}
	}
	paths := append(onBoot, others...)
	// A node waiting for its config looks again every 10 s: what a look
	// found is logged when it differs from the last look's, not each time.
	var lines []logLine
	info := func(msg string, args ...any) { lines = append(lines, logLine{slog.LevelInfo, msg, args}) }
	src, labelled, err := findVolume(paths, config.VolumeLabel, func(dev, fstype string) (config.Source, error) {
		return m.openConfigVolume(ctx, dev, fstype, info, m.mountConfigFS)
	})
	if err != nil {
		lines = append(lines, logLine{slog.LevelWarn, "mounting the config volume", []any{"reason", err.Error()}})
	}
	if len(labelled) > 1 && src != nil {
		lines = append(lines, logLine{slog.LevelWarn, "several volumes are labelled " + config.VolumeLabel + ": the first is read (the boot disk's, else the first by name)",
			[]any{"read", src.Name(), "all", strings.Join(labelled, ","), "fix", "remove or relabel the others"}})
	}
	m.cfgLook.log(m.log, lines)
	return src
}

// logLine is a log record held until it is known to be worth writing.
type logLine struct {
	level slog.Level
	msg   string
	args  []any
}

// lookLog writes a look's lines when their messages and devices differ
// from the previous look's (an error's wording, which may change from read
// to read, does not count).
type lookLog struct {
	mu   sync.Mutex
	last string
}

func (l *lookLog) log(log *slog.Logger, lines []logLine) {
	var key strings.Builder
	for _, ln := range lines {
		key.WriteString(ln.msg)
		for i := 0; i+1 < len(ln.args); i += 2 {
			if ln.args[i] != "reason" {
				fmt.Fprintf(&key, " %v=%v", ln.args[i], ln.args[i+1])
			}
		}
		key.WriteByte('\n')
	}
	changed := false
	locked(&l.mu, func() {
		changed = key.String() != l.last
		l.last = key.String()
	})
	if !changed {
		return
	}
	for _, ln := range lines {
		log.Log(context.Background(), ln.level, ln.msg, ln.args...)
	}
}

// findVolume opens the first of devs whose filesystem is labelled label
// (inventory.ProbeDevice), in any case, and returns its source, and every
// device so labelled; a labelled device that does not open is skipped, its
// error returned if no other opens. The case does not count, as for
// cloud-init's cidata or CIDATA: `mkfs.fat -n etoile-cfg` and `xorriso -V
// etoile-cfg` keep the lower case the user typed, and such a volume would
// otherwise be passed over without a word.
func findVolume(devs []string, label string, open func(dev, fstype string) (config.Source, error)) (config.Source, []string, error) {
	var errs []error
	var src config.Source
	var labelled []string
	for _, dev := range devs {
		fstype, l := inventory.ProbeDevice(dev)
		if !strings.EqualFold(l, label) {
			continue
		}
		labelled = append(labelled, dev)
		if src != nil {
			continue
		}
		s, err := open(dev, fstype)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dev, err))
			continue
		}
		src = s
	}
	if src != nil {
		return src, labelled, nil
	}
	return nil, labelled, errors.Join(errs...)
}

// openConfigVolume is the config source of the ETOILE-CFG volume on dev,
// whose first bytes showed fstype: read straight from the device, or, where
// that fails, mounted (mountFS) at ConfigVolumeDir. A device that did not
// answer the raw read in time (devread.HungError) is not mounted: the
// kernel's mount would block on it, in D state, holding the lock the
// root's switch takes, and the boot would never end.
func (m *Machine) openConfigVolume(ctx context.Context, dev, fstype string, info func(string, ...any),
	mountFS func(ctx context.Context, dev, dir, fstype string) error) (config.Source, error) {
	if err := configFSProblem(fstype); err != nil {
		return nil, err
	}
	raw := RawVolumeSource{Device: dev, FSType: fstype}
	_, err := raw.Read(ctx)
	if err == nil || errors.Is(err, config.ErrNotFound) {
		info("config volume", "device", dev, "label", config.VolumeLabel, "read", "without mounting")
		return raw, nil
	}
	if hung := (*devread.HungError)(nil); errors.As(err, &hung) {
		return nil, fmt.Errorf("not mounted, it does not answer (replace the stick or disk, or give the config by etoile.config=): %w", err)
	}
	info("reading the config volume without mounting it failed: mounting it", "device", dev, "reason", err.Error())
	if err := mountFS(ctx, dev, ConfigVolumeDir, fstype); err != nil {
		return nil, err
	}
	info("config volume", "device", dev, "label", config.VolumeLabel, "mounted", ConfigVolumeDir)
	return config.VolumeSource(ConfigVolumeDir), nil
}

// RawVolumeSource is config.yaml at the root of the ETOILE-CFG volume on
// Device, read straight from the device (sysimage.ReadISOFile,
// sysimage.ReadFATFile), unmounted. A filesystem those do not read is an
// error that is not config.ErrNotFound: the volume is then mounted.
type RawVolumeSource struct {
	Device string
	FSType string // as inventory.ProbeDevice tells it: "iso9660" or "vfat"
}

// Name implements config.Source.
func (s RawVolumeSource) Name() string {
	return fmt.Sprintf("volume %s (%s, read without mounting)", config.VolumeLabel, s.Device)
}

// Read implements config.Source.
func (s RawVolumeSource) Read(context.Context) ([]byte, error) {
	var data []byte
	var err error
	switch s.FSType {
	case "iso9660":
		data, err = sysimage.ReadISOFile(s.Device, config.VolumeFile, config.MaxSize)
	case "vfat":
		data, err = sysimage.ReadFATFile(s.Device, config.VolumeFile, config.MaxSize)
	default:
		return nil, fmt.Errorf("%s: filesystem %q is not read without mounting", s.Device, s.FSType)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %v", config.ErrNotFound, err)
	}
	return data, err
}

// mountConfigFS loads what fstype takes and mounts dev read-only at dir. The
// mount itself waits while the root is being switched (the path would
// otherwise name the old root's /run for an instant).
func (m *Machine) mountConfigFS(ctx context.Context, dev, dir, fstype string) error {
	types := configFSTypes(fstype)
	if m.bootMods != nil { // what the system image's mount waits for goes first
		select {
		case <-m.bootMods:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, t := range types {
		m.LoadFS(ctx, t)
	}
	m.switchMu.Lock()
	defer m.switchMu.Unlock()
	return MountReadOnly(dev, dir, types)
}

// configFSProblem refuses a volume labelled ETOILE-CFG whose filesystem
// is known and not one a config volume has (ext4, exfat): mounting it as
// FAT or ISO9660 would only fail with the kernel's words. exFAT, which
// formatting tools choose for large sticks, is not FAT, and the agent has
// no driver for it.
func configFSProblem(fstype string) error {
	if fstype != "" && fstype != "vfat" && fstype != "iso9660" {
		not := ""
		if fstype == "exfat" {
			not = " (FAT12, FAT16 or FAT32; exFAT is another filesystem, which the agent does not read)"
		}
		return fmt.Errorf("it is %s: a config volume is FAT%s or ISO9660, as cloud-init's NoCloud (mkfs.vfat -n %s, or xorriso -as mkisofs -V %s)", fstype, not, config.VolumeLabel, config.VolumeLabel)
	}
	return nil
}

// configFSTypes is what a config volume whose first bytes showed fstype is
// mounted as: that filesystem only (trying FAT first on an ISO9660 volume
// would load FAT's modules for nothing), or either a config volume may be
// when it was not recognised.
func configFSTypes(fstype string) []string {
	if fstype == "vfat" || fstype == "iso9660" {
		return []string{fstype}
	}
	return []string{"vfat", "iso9660"}
}

// LoadFS loads the modules a filesystem type takes, in this process (the
// kernel would otherwise start the agent again as modprobe for it).
func (m *Machine) LoadFS(ctx context.Context, fstype string) {
	if fstype == "vfat" {
		for _, name := range VFATModules {
			_ = m.LoadModule(ctx, name)
		}
		return
	}
	_ = m.LoadModule(ctx, "fs-"+fstype)
}

// MountReadOnly mounts dev at dir (made if missing) with the first
// filesystem type that works, read-only and without devices, setuid or
// executables. A node waiting for a machine config reads its sources again
// and again: dev already mounted at dir is left as it is, and another
// device an earlier call mounted there (a stick since swapped) is unmounted
// first, so that mounts do not pile up.
//
// Below /run/etoile (mount.PrivateDir, made 0700 first) a volume's files
// are root's only: a FAT volume, which has no owners of its own, is
// mounted with its files 0600 and folders 0700 (fatData), not the
// kernel's default of everyone reading them (a config.yaml carries the
// cluster token and registry passwords).
func MountReadOnly(dev, dir string, fstypes []string) error {
	if err := mount.MakeMountPoint(dir); err != nil {
		return err
	}
	if src, ok := mount.SourceAt(dir); ok && src == dev {
		return nil
	}
	for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		// mounts stack: until none is left at dir
	}
	var errs []error
	for _, t := range fstypes {
		data := mountOptions(t)
		if extFS[t] {
			// Read-only is not enough for ext4: it replays its journal and
			// cleans up orphaned inodes even on a read-only mount (after a
			// power loss, say) — writes. With its block device read-only
			// it does neither, and noload has it mount without the replay.
			if err := setReadOnly(dev); err != nil {
				errs = append(errs, fmt.Errorf("%s: setting the device read-only: %w", t, err))
				continue
			}
		}
		err := unix.Mount(dev, dir, t, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", t, err))
	}
	return fmt.Errorf("mounting %s read-only: %w", dev, errors.Join(errs...))
}

// mountOptions are MountReadOnly's options for filesystem type t. Read-only
// is not enough for ext4: it replays its journal and cleans up orphaned
// inodes even on a read-only mount (after a power loss, say) — writes;
// noload has it mount without the replay (MountReadOnly also sets the
// device read-only). FAT has no owners or modes: without options every
// file is readable by everyone (the mounting process's umask, 0022), and
// here they are root's only (files 0600, folders 0700).
func mountOptions(t string) string {
	switch {
	case extFS[t]:
		return "noload"
	case t == "vfat":
		return "fmask=0177,dmask=0077"
	}
	return ""
}

// extFS are the filesystems whose read-only mount may write (MountReadOnly).
var extFS = map[string]bool{"ext2": true, "ext3": true, "ext4": true}

// setReadOnly marks block device dev read-only in the kernel (BLKROSET):
// nothing mounted from it can write to it.
func setReadOnly(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.IoctlSetPointerInt(int(f.Fd()), unix.BLKROSET, 1)
}
