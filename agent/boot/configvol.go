package boot

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/inventory"
	"github.com/etoile-os/etoile/agent/sysimage"
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
	done   chan struct{} // nil: never started; closed once volume is final
	volume string        // where the ETOILE-CFG volume is mounted; "" if none was found
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
		defer func() {
			if r := recover(); r != nil {
				m.log.Warn("looking for the config volume crashed", "reason", fmt.Sprint(r))
			}
		}()
		m.cfgPre.volume = m.FindConfigVolume(ctx)
	}()
}

// ConfigVolume returns where the ETOILE-CFG volume is mounted, "" when there
// is none: what the look started with the system image's mount found, or,
// when that found nothing or never started, a new look (a USB stick may
// have shown up since; reading the devices' first bytes costs little).
func (m *Machine) ConfigVolume(ctx context.Context) string {
	if m.cfgPre.done != nil {
		select {
		case <-m.cfgPre.done:
			if m.cfgPre.volume != "" {
				return m.cfgPre.volume
			}
		case <-ctx.Done():
			return ""
		}
	}
	return m.FindConfigVolume(ctx)
}

// FindConfigVolume probes every block device but the boot medium for the
// ETOILE-CFG label and mounts the first that has it read-only at
// ConfigVolumeDir, returning it ("" when there is none). A device is
// recognised by its first bytes, with no module needed; then only its
// filesystem's modules load (FAT's four took about 0.3 s of CPU under TCG).
func (m *Machine) FindConfigVolume(ctx context.Context) string {
	devs, err := sysimage.ListBlock("/sys", "/dev")
	if err != nil {
		m.log.Warn("looking for the config volume", "reason", err.Error())
		return ""
	}
	var paths []string
	for _, d := range devs {
		// The boot medium itself is labelled ETOILE (or is the slot); an
		// empty CD drive is never opened.
		if d.Size > 0 && d.Path != m.Device {
			paths = append(paths, d.Path)
		}
	}
	dev, err := findVolume(paths, config.VolumeLabel, func(dev, fstype string) error {
		return m.mountConfigFS(ctx, dev, ConfigVolumeDir, fstype)
	})
	if err != nil {
		m.log.Warn("mounting the config volume", "reason", err.Error())
	}
	if dev == "" {
		return ""
	}
	m.log.Info("config volume", "device", dev, "label", config.VolumeLabel)
	return ConfigVolumeDir
}

// findVolume mounts the first of devs whose filesystem is labelled label
// (inventory.ProbeDevice) and returns it; a labelled device that does not
// mount is skipped, its error returned if no other mounts.
func findVolume(devs []string, label string, mount func(dev, fstype string) error) (string, error) {
	var errs []error
	for _, dev := range devs {
		fstype, l := inventory.ProbeDevice(dev)
		if l != label {
			continue
		}
		if err := mount(dev, fstype); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dev, err))
			continue
		}
		return dev, nil
	}
	return "", errors.Join(errs...)
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
// executables.
func MountReadOnly(dev, dir string, fstypes []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	for _, t := range fstypes {
		err := unix.Mount(dev, dir, t, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", t, err))
	}
	return fmt.Errorf("mounting %s read-only: %w", dev, errors.Join(errs...))
}
