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
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

// readAttrs reads "Name: value" lines (values in decimal) as
// nvidia-modprobe does, over the defaults: root:root, 0666, modifiable.
func readAttrs(path string) attrs {
	a := attrs{mode: 0o666, modify: true, minor: -1}
	b, err := os.ReadFile(path)
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

// gpuMinors returns the Device Minor of each GPU the driver has.
func gpuMinors(proc string) ([]uint32, error) {
	files, err := filepath.Glob(filepath.Join(proc, "driver/nvidia/gpus/*/information"))
	if err != nil {
		return nil, err
	}
	var minors []uint32
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		found := false
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || strings.TrimSpace(k) != "Device Minor" {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || n >= modesetMinor {
				return nil, fmt.Errorf("%s: Device Minor %q is not a GPU's minor number", f, strings.TrimSpace(v))
			}
			minors = append(minors, uint32(n))
			found = true
			break
		}
		if !found {
			return nil, fmt.Errorf("%s has no Device Minor line", f)
		}
	}
	slices.Sort(minors)
	return minors, nil
}

// Loaded reports whether NVIDIA's driver is loaded (it publishes
// /proc/driver/nvidia/gpus).
func Loaded(proc string) bool {
	_, err := os.Stat(filepath.Join(proc, "driver/nvidia/gpus"))
	return err == nil
}

// Nodes lists the device files the loaded NVIDIA driver needs, read from
// proc (normally /proc). None when the driver is not loaded or its
// parameters forbid touching device files.
func Nodes(proc string) ([]Node, error) {
	if !Loaded(proc) {
		return nil, nil
	}
	drv := readAttrs(filepath.Join(proc, "driver/nvidia/params"))
	if !drv.modify {
		return nil, nil
	}
	node := func(path string, major, minor uint32, a attrs) Node {
		return Node{Path: path, Major: major, Minor: minor, Mode: a.mode, UID: a.uid, GID: a.gid}
	}
	nodes := []Node{node("nvidiactl", Major, ctlMinor, drv)}
	minors, err := gpuMinors(proc)
	if err != nil {
		return nil, err
	}
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
			a := readAttrs(p)
			if a.minor < 0 || !a.modify {
				return nil
			}
			caps = append(caps, node("nvidia-caps/nvidia-cap"+strconv.Itoa(a.minor), m, uint32(a.minor), a))
			return nil
		})
		slices.SortFunc(caps, func(a, b Node) int { return int(a.Minor) - int(b.Minor) })
		nodes = append(nodes, caps...)
	}
	return nodes, nil
}
