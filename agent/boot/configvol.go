package boot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

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

// configPrefetch is what prefetchConfig found, shared with the services.
type configPrefetch struct {
	once   sync.Once
	done   chan struct{} // closed once volume is final
	volume string        // where the ETOILE-CFG volume is mounted; "" if none was found
	active bool          // started: ConfigVolume waits for it
}

// startConfigPrefetch looks for the ETOILE-CFG volume in the background,
// from the moment the boot medium is found: it is recognised by reading
// each device's first bytes (no module needed), then only its filesystem's
// modules load, once the system image's have, and it is mounted. All of it
// overlaps the mount of the system image, the switch and DHCP, and no
// filesystem module loads for a volume that is not there (FAT's took about
// 0.3 s of CPU under TCG). Not started when the config comes from a URL
// (etoile.config=), nor under --root.
func (m *Machine) startConfigPrefetch(ctx context.Context) {
	if !m.real() || m.Cold == nil || m.Params.Config != "" {
		return
	}
	m.cfgPre.once.Do(func() {
		m.cfgPre.active = true
		m.cfgPre.done = make(chan struct{})
		go func() {
			defer close(m.cfgPre.done)
			defer func() {
				if r := recover(); r != nil {
					m.log.Warn("looking for the config volume crashed", "reason", fmt.Sprint(r))
				}
			}()
			m.cfgPre.volume = m.prefetchConfig(ctx)
		}()
	})
}

// ConfigVolume waits for startConfigPrefetch and returns where it mounted
// the ETOILE-CFG volume ("" for none); looked is false when it never
// started (the services then look for the volume themselves).
func (m *Machine) ConfigVolume(ctx context.Context) (dir string, looked bool) {
	if !m.cfgPre.active {
		return "", false
	}
	select {
	case <-m.cfgPre.done:
		return m.cfgPre.volume, true
	case <-ctx.Done():
		return "", false
	}
}

// prefetchConfig probes every device but the boot medium for the
// ETOILE-CFG label and mounts the first that has it at ConfigVolumeDir.
func (m *Machine) prefetchConfig(ctx context.Context) string {
	devs, err := sysimage.ListBlock("/sys", "/dev")
	if err != nil {
		m.log.Warn("looking for the config volume", "reason", err.Error())
		return ""
	}
	for _, d := range devs {
		// The boot medium itself is labelled ETOILE (or is the slot); an
		// empty CD drive is never opened.
		if d.Size == 0 || d.Path == m.Device {
			continue
		}
		fstype, label := inventory.ProbeDevice(d.Path)
		if label != config.VolumeLabel {
			continue
		}
		if err := m.mountConfigFS(ctx, d.Path, ConfigVolumeDir, fstype); err != nil {
			m.log.Warn("mounting the config volume", "device", d.Path, "reason", err.Error())
			continue
		}
		m.log.Info("config volume", "device", d.Path, "label", label)
		return ConfigVolumeDir
	}
	return ""
}

// mountConfigFS loads what fstype takes and mounts dev read-only at dir. The
// mount itself waits while the root is being switched (the path would
// otherwise name the old root's /run for an instant).
func (m *Machine) mountConfigFS(ctx context.Context, dev, dir, fstype string) error {
	types := []string{fstype}
	if fstype != "vfat" && fstype != "iso9660" {
		types = []string{"vfat", "iso9660"} // not recognised: what a config volume may be
	}
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
