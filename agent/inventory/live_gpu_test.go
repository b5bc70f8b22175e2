//go:build gpu

// Tests against a live machine with NVIDIA GPUs and their driver loaded
// (`make gpu-check`; not part of `make test`, whose machines have no GPU).
// What the inventory reads (sysfs, /proc/driver/nvidia, nvidia-smi -q -x) is
// checked against nvidia-smi's query interface, a separate way of asking the
// driver.

package inventory

import (
	"context"
	"encoding/csv"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// smiQuery runs nvidia-smi --query-gpu=fields and returns one map per GPU.
func smiQuery(t *testing.T, fields ...string) ([]map[string]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nvidia-smi", "--query-gpu="+strings.Join(fields, ","),
		"--format=csv,noheader,nounits").CombinedOutput()
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(strings.NewReader(string(out)))
	r.TrimLeadingSpace = true
	recs, err := r.ReadAll()
	if err != nil {
		return nil, err
	}
	var rows []map[string]string
	for _, rec := range recs {
		if len(rec) != len(fields) {
			t.Fatalf("nvidia-smi row %q has %d fields, want %d", rec, len(rec), len(fields))
		}
		m := map[string]string{}
		for i, f := range fields {
			m[f] = strings.TrimSpace(rec[i])
		}
		rows = append(rows, m)
	}
	return rows, nil
}

func TestLiveNVIDIAGPUs(t *testing.T) {
	if _, err := exec.LookPath("nvidia-smi"); err != nil {
		t.Fatalf("nvidia-smi is not on the PATH: this test needs a machine with an NVIDIA GPU and its driver (%v)", err)
	}
	rows, err := smiQuery(t, "pci.bus_id", "name", "memory.total", "driver_version", "mig.mode.current", "persistence_mode")
	if err != nil {
		t.Fatalf("nvidia-smi --query-gpu: %v", err)
	}
	if len(rows) == 0 {
		t.Fatal("nvidia-smi lists no GPU")
	}
	start := time.Now()
	inv, err := Collect(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inventory of the live machine took %v; warnings: %q", time.Since(start).Round(time.Millisecond), inv.Warnings)

	byAddr := map[string]GPU{}
	for _, g := range inv.GPUs {
		if g.Vendor == "nvidia" {
			byAddr[g.PCIAddress] = g
		}
	}
	if len(byAddr) != len(rows) {
		t.Errorf("inventory lists %d NVIDIA GPUs, nvidia-smi %d: %+v", len(byAddr), len(rows), inv.GPUs)
	}
	for _, row := range rows {
		addr := NormalizePCIAddress(row["pci.bus_id"])
		g, ok := byAddr[addr]
		if !ok {
			t.Errorf("nvidia-smi's GPU at %s (%s) is not in the inventory", addr, row["name"])
			continue
		}
		t.Logf("GPU %s: %+v link %+v", addr, g, g.Link)
		if g.Model != row["name"] {
			t.Errorf("%s: model %q, nvidia-smi says %q", addr, g.Model, row["name"])
		}
		if mem, err := strconv.ParseUint(row["memory.total"], 10, 64); err != nil || g.MemoryMiB != mem {
			t.Errorf("%s: memory %d MiB, nvidia-smi says %q MiB", addr, g.MemoryMiB, row["memory.total"])
		}
		if g.DriverVersion != row["driver_version"] {
			t.Errorf("%s: driver version %q, nvidia-smi says %q", addr, g.DriverVersion, row["driver_version"])
		}
		if want := migMode(row["mig.mode.current"]); g.MIGMode != want {
			t.Errorf("%s: MIG mode %q, nvidia-smi says %q", addr, g.MIGMode, row["mig.mode.current"])
		}
		if want := migMode(row["persistence_mode"]); g.PersistenceMode != want {
			t.Errorf("%s: persistence mode %q, nvidia-smi says %q", addr, g.PersistenceMode, row["persistence_mode"])
		}
		if g.Driver != "nvidia" {
			t.Errorf("%s: sysfs driver %q, want nvidia", addr, g.Driver)
		}
		if g.Link == nil || g.Link.MaxGen == 0 || g.Link.MaxWidth == 0 {
			t.Errorf("%s: no PCIe link read from sysfs: %+v", addr, g.Link)
		}
	}

	// The PCIe link: sysfs's max_link_speed is the GPU's own Link Capabilities register, which
	// nvidia-smi calls gpumax. Its width.max is the device's and the slot's together (an x16 GPU
	// in an x8 slot says 8), and the current values move with power states: only logged.
	links, err := smiQuery(t, "pci.bus_id", "pcie.link.gen.gpumax", "pcie.link.width.max", "pcie.link.gen.current", "pcie.link.width.current")
	if err != nil {
		t.Logf("nvidia-smi does not answer the PCIe link query (%v): link compared by presence only", err)
	}
	for _, row := range links {
		g, ok := byAddr[NormalizePCIAddress(row["pci.bus_id"])]
		if !ok || g.Link == nil {
			continue
		}
		t.Logf("%s: sysfs link max gen %d x%d, current gen %d x%d; nvidia-smi gpumax gen %s x%s, current gen %s x%s",
			g.PCIAddress, g.Link.MaxGen, g.Link.MaxWidth, g.Link.CurrentGen, g.Link.CurrentWidth,
			row["pcie.link.gen.gpumax"], row["pcie.link.width.max"], row["pcie.link.gen.current"], row["pcie.link.width.current"])
		if n, err := strconv.Atoi(row["pcie.link.gen.gpumax"]); err == nil && n != g.Link.MaxGen {
			t.Errorf("%s: sysfs max link generation %d, nvidia-smi's gpumax %d", g.PCIAddress, g.Link.MaxGen, n)
		}
	}

	labels := NodeLabels(inv)
	t.Logf("node labels: %v", labels)
	want := map[string]string{
		LabelGPUVendor:     "nvidia",
		LabelGPUCount:      strconv.Itoa(len(rows)),
		LabelNvidiaPresent: "true",
		LabelGPUModel:      LabelValue(rows[0]["name"]),
	}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, labels[k], v)
		}
	}
}
