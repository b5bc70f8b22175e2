// Package nvdev makes the device files of NVIDIA's kernel driver.
//
// NVIDIA's driver registers its character devices but, unlike in-tree
// drivers, creates no sysfs device for them, so devtmpfs never shows
// /dev/nvidiactl or /dev/nvidia0: on other systems udev rules or the
// setuid nvidia-modprobe helper run mknod. Étoile's agent has no udev, and
// nvidia-smi (the inventory's memory and MIG mode), the NVIDIA container
// runtime and Kubernetes's device plugin all open these files; so the agent
// makes them itself, as nvidia-modprobe would, from what the driver
// publishes under /proc:
//
//	/dev/nvidiactl              195:255
//	/dev/nvidia<N>              195:N, N the "Device Minor" of /proc/driver/nvidia/gpus/*/information
//	/dev/nvidia-modeset         195:254, once /proc/modules lists nvidia_modeset
//	/dev/nvidia-uvm(-tools)     <nvidia-uvm's major in /proc/devices>:0 and :1
//	/dev/nvidia-caps/nvidia-cap<M>  <nvidia-caps's major>:M, M the DeviceFileMinor of each file under
//	                            /proc/driver/nvidia/capabilities (MIG's config and monitor, …)
//
// The owner and mode are the driver's (its NVreg_DeviceFileUID, …GID,
// …Mode parameters in /proc/driver/nvidia/params, 0666 root:root by
// default; the capabilities' own files); with NVreg_ModifyDeviceFiles=0
// nothing is touched.
package nvdev

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/etoile-os/etoile/internal/devread"
)

// Major is the NVIDIA driver's fixed character device major.
const Major = 195

const (
	ctlMinor     = 255
	modesetMinor = 254
)

// Node is one device file to make.
type Node struct {
	Path         string // under the dev folder, e.g. "nvidia0" or "nvidia-caps/nvidia-cap1"
	Major, Minor uint32
	Mode         fs.FileMode // permission bits
	UID, GID     int
}

// attrs is what a driver's attribute file says of device files.
type attrs struct {
	uid, gid int
	mode     fs.FileMode
	modify   bool
	minor    int // DeviceFileMinor, -1 when absent
}

// DriverReads bounds the reads of the driver's files under
// /proc/driver/nvidia (internal/devread), as the inventory's: each calls
// into NVIDIA's driver, which can hold it while a GPU in a bad state does
// not answer, and the boot waits for the device files. Its zero value
// waits devread.DefaultWait.
var DriverReads devread.Reads

// driverFiles reads the driver's files within DriverReads's wait. Once one
// read did not end in time, the driver's other files are not read: each
// would cost the wait again.
type driverFiles struct{ hung error }

func (d *driverFiles) read(path string) ([]byte, error) {
	if d.hung != nil {
		return nil, fmt.Errorf("%s: not read: %w", path, d.hung)
	}
	var b []byte
	err := DriverReads.Do(path, "it", func() error {
		var err error
		b, err = os.ReadFile(path)
		return err
	})
	if he, ok := errors.AsType[*devread.HungError](err); ok {
		d.hung = fmt.Errorf("NVIDIA's driver did not answer the read of %s within %s (a GPU fallen off the bus, or the driver stuck: the kernel log's NVRM lines say which)", path, he.Wait)
		return nil, d.hung
	}
	return b, err
}

// readAttrs reads "Name: value" lines (values in decimal) as
// nvidia-modprobe does, over the defaults: root:root, 0666, modifiable.
func (d *driverFiles) readAttrs(path string) attrs {
	a := attrs{mode: 0o666, modify: true, minor: -1}
	b, err := d.read(path)
	if err != nil {
		return a
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil {
			continue
		}
		switch strings.TrimSpace(k) {
		case "DeviceFileUID":
			a.uid = int(n)
		case "DeviceFileGID":
			a.gid = int(n)
		case "DeviceFileMode":
			a.mode = fs.FileMode(n) & fs.ModePerm
		case "ModifyDeviceFiles", "DeviceFileModify":
			a.modify = n == 1
		case "DeviceFileMinor":
			a.minor = int(n)
		}
	}
	return a
}

// charMajors reads the "Character devices:" section of /proc/devices.
func charMajors(proc string) map[string]uint32 {
	out := map[string]uint32{}
	b, err := os.ReadFile(filepath.Join(proc, "devices"))
	if err != nil {
		return out
	}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "Character devices:":
			in = true
		case line == "" || strings.HasSuffix(line, "devices:"):
			in = false
		case in:
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			if n, err := strconv.ParseUint(f[0], 10, 32); err == nil {
				out[f[1]] = uint32(n)
			}
		}
	}
	return out
}

// moduleLoaded reports whether /proc/modules lists the module.
func moduleLoaded(proc, name string) bool {
	b, err := os.ReadFile(filepath.Join(proc, "modules"))
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f, _, _ := strings.Cut(line, " "); f == name {
			return true
		}
	}
	return false
}

// gpuMinors returns the Device Minor of each GPU the driver has, and an
// error naming each GPU whose minor could not be read: its information
// file unreadable, or not in time (the driver can hold the read while the
// GPU is in a bad state), gone (the GPU removed meanwhile), empty (what
// NVIDIA's driver writes when it cannot ask the GPU) or without a number.
// The other GPUs' minors are returned: one bad GPU costs its own device
// file only.
func (d *driverFiles) gpuMinors(proc string) ([]uint32, error) {
	files, err := filepath.Glob(filepath.Join(proc, "driver/nvidia/gpus/*/information"))
	if err != nil {
		return nil, err
	}
	var minors []uint32
	var errs []error
	for _, f := range files {
		n, err := d.gpuMinor(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("GPU %s has no device file: %w", filepath.Base(filepath.Dir(f)), err))
			continue
		}
		minors = append(minors, n)
	}
	slices.Sort(minors)
	return minors, errors.Join(errs...)
}

func (d *driverFiles) gpuMinor(f string) (uint32, error) {
	b, err := d.read(f)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "Device Minor" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil || n >= modesetMinor {
			return 0, fmt.Errorf("%s: Device Minor %q is not a GPU's minor number", f, strings.TrimSpace(v))
		}
		return uint32(n), nil
	}
	return 0, fmt.Errorf("%s has no Device Minor line", f)
}

// Loaded reports whether NVIDIA's driver is loaded (it publishes
// /proc/driver/nvidia/gpus).
func Loaded(proc string) bool {
	_, err := os.Stat(filepath.Join(proc, "driver/nvidia/gpus"))
	return err == nil
}

// Nodes lists the device files the loaded NVIDIA driver needs, read from
// proc (normally /proc). None when the driver is not loaded or its
// parameters forbid touching device files. The error names each GPU left
// out (see gpuMinors), or the driver's files not read in time; the nodes
// listed come with it: nvidiactl, nvidia-uvm and the other GPUs' files do
// not depend on one GPU. The driver's files are read within DriverReads's
// wait: Nodes takes at most about twice that wait (the parameters, then
// the first file that does not answer).
func Nodes(proc string) ([]Node, error) {
	if !Loaded(proc) {
		return nil, nil
	}
	var rd driverFiles
	drv := rd.readAttrs(filepath.Join(proc, "driver/nvidia/params"))
	if !drv.modify {
		return nil, nil
	}
	node := func(path string, major, minor uint32, a attrs) Node {
		return Node{Path: path, Major: major, Minor: minor, Mode: a.mode, UID: a.uid, GID: a.gid}
	}
	nodes := []Node{node("nvidiactl", Major, ctlMinor, drv)}
	minors, err := rd.gpuMinors(proc)
	for _, n := range minors {
		nodes = append(nodes, node("nvidia"+strconv.Itoa(int(n)), Major, n, drv))
	}
	majors := charMajors(proc)
	if moduleLoaded(proc, "nvidia_modeset") {
		nodes = append(nodes, node("nvidia-modeset", Major, modesetMinor, drv))
	}
	if m, ok := majors["nvidia-uvm"]; ok {
		def := attrs{mode: 0o666}
		nodes = append(nodes, node("nvidia-uvm", m, 0, def), node("nvidia-uvm-tools", m, 1, def))
	}
	if m, ok := majors["nvidia-caps"]; ok {
		root := filepath.Join(proc, "driver/nvidia/capabilities")
		var caps []Node
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			a := rd.readAttrs(p)
			if a.minor < 0 || !a.modify {
				return nil
			}
			caps = append(caps, node("nvidia-caps/nvidia-cap"+strconv.Itoa(a.minor), m, uint32(a.minor), a))
			return nil
		})
		slices.SortFunc(caps, func(a, b Node) int { return int(a.Minor) - int(b.Minor) })
		nodes = append(nodes, caps...)
	}
	if err == nil && rd.hung != nil {
		err = rd.hung // the parameters or a capability's file
	}
	return nodes, err
}
