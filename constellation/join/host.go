package join

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/etoile-os/etoile/agent/inventory"
	"github.com/etoile-os/etoile/constellation/api"
)

// Host facts read from procfs and sysfs. The agent has a fuller hardware
// inventory; these keep `etoile-agent join` useful on its own.

// HostGPUs counts the GPUs under sysRoot/bus/pci/devices (sysRoot is a machine's /sys,
// or ROOT/sys of a copied tree) as the hardware inventory does (inventory.GPUCounts): the
// display controllers of any class (VGA, 3D, other: Intel's 0x0380) of NVIDIA, AMD and
// Intel, and NVIDIA's and AMD's processing accelerators (0x12: AMD's MI300X; Intel's NPUs
// there are no GPUs), physical functions only, so
// that an SR-IOV virtual function is no second GPU and a BMC's VGA none at all.
func HostGPUs(sysRoot string) []api.GPU {
	root := filepath.Dir(filepath.Clean(sysRoot))
	if filepath.Base(filepath.Clean(sysRoot)) != "sys" {
		return nil // not a sysfs mount point: nothing the inventory can read
	}
	if root == "/" {
		root = "" // the live machine
	}
	count := inventory.GPUCounts(root)
	var out []api.GPU
	for _, v := range []string{"amd", "intel", "nvidia"} {
		if count[v] > 0 {
			out = append(out, api.GPU{Vendor: v, Count: count[v]})
		}
	}
	return out
}

// hostMemory returns MemTotal and MemTotal-MemAvailable in bytes.
func hostMemory(procRoot string) (total, used int64) {
	f, err := os.Open(filepath.Join(procRoot, "meminfo"))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	var avail int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "MemTotal:":
			total = v << 10
		case "MemAvailable:":
			avail = v << 10
		}
	}
	return total, max(total-avail, 0)
}

// HostInventory is the join summary of the machine running the command.
func HostInventory(version string) api.Inventory {
	host, _ := os.Hostname()
	if host != "" && api.ValidateName("host", strings.ToLower(host)) != nil {
		host = ""
	}
	mem, _ := hostMemory("/proc")
	return api.Inventory{
		Hostname: strings.ToLower(host), Arch: runtime.GOARCH, Nodes: 1,
		CPUMillis: int64(runtime.NumCPU()) * 1000, MemoryBytes: mem, GPUs: HostGPUs("/sys"), EtoileVersion: version,
	}
}

// HostStatus reports this machine as a one-node site; the agent replaces
// it with one that asks K3s for node readiness and use.
func HostStatus(version, slot string) StatusFunc {
	return func(context.Context) (api.Heartbeat, error) {
		total, used := hostMemory("/proc")
		var load float64
		if b, err := os.ReadFile("/proc/loadavg"); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				load, _ = strconv.ParseFloat(f[0], 64)
			}
		}
		cpus := int64(runtime.NumCPU()) * 1000
		return api.Heartbeat{
			Nodes: 1, NodesReady: 1, EtoileVersion: version, Slot: slot,
			Capacity: api.Capacity{
				CPUMillis: cpus, CPUUsedMillis: min(int64(load*1000), cpus),
				MemoryBytes: total, MemoryUsedBytes: used, GPUs: HostGPUs("/sys"),
			},
		}, nil
	}
}
