package inventory

import (
	"context"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

// smiOneOfTwo is nvidia-smi -q -x on the two-A100 server of writeServerTree once the GPU at
// 65:00.0 has fallen off the bus: the XML has the other GPU only.
const smiOneOfTwo = `<?xml version="1.0" ?>
<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">
<nvidia_smi_log>
	<driver_version>535.104.05</driver_version>
	<cuda_version>12.2</cuda_version>
	<attached_gpus>2</attached_gpus>
	<gpu id="00000000:17:00.0">
		<product_name>NVIDIA A100 80GB PCIe</product_name>
		<persistence_mode>Enabled</persistence_mode>
		<mig_mode><current_mig>Enabled</current_mig><pending_mig>Enabled</pending_mig></mig_mode>
		<pci><pci_bus_id>00000000:17:00.0</pci_bus_id></pci>
		<fb_memory_usage><total>81920 MiB</total></fb_memory_usage>
	</gpu>
</nvidia_smi_log>
`

const handleError = "Unable to determine the device handle for GPU0000:65:00.0: Unknown Error"

// runStandIn runs the tree's usr/bin/<name> stand-in through RunTool, as a live machine
// runs nvidia-smi.
func runStandIn(root string) RunFunc {
	return func(ctx context.Context, name string, args ...string) ([]byte, error) {
		return RunTool(ctx, nil, nil, filepath.Join(root, "usr/bin", name), args...)
	}
}

// TestNvidiaSMIExitsForOneLostGPU: one GPU fallen off the bus makes nvidia-smi -q -x exit
// 15 after writing of the other. The healthy GPU keeps its memory, MIG and persistence
// mode; the lost one is marked unreachable and named in a warning; another warning gives
// the exit status and what nvidia-smi said.
func TestNvidiaSMIExitsForOneLostGPU(t *testing.T) {
	for _, tt := range []struct{ name, script string }{
		{"complaint on stderr", "cat <<'EOF'\n" + smiOneOfTwo + "EOF\necho '" + handleError + "' >&2\nexit 15\n"},
		// nvidia-smi writes some complaints to stdout: before the XML or after it.
		{"complaint on stdout before the XML", "echo '" + handleError + "'\ncat <<'EOF'\n" + smiOneOfTwo + "EOF\nexit 15\n"},
		{"complaint on stdout after the XML", "cat <<'EOF'\n" + smiOneOfTwo + "EOF\necho '" + handleError + "'\nexit 15\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := writeServerTree(t)
			fakeroot.WriteExec(t, root, map[string]string{"usr/bin/nvidia-smi": "#!/bin/sh\n" + tt.script})
			inv, err := Collect(context.Background(), Options{Root: root, Run: runStandIn(root)})
			if err != nil {
				t.Fatal(err)
			}
			if len(inv.GPUs) != 2 {
				t.Fatalf("GPUs = %+v, want two", inv.GPUs)
			}
			ok, lost := inv.GPUs[0], inv.GPUs[1]
			if ok.PCIAddress != "0000:17:00.0" || ok.MemoryMiB != 81920 || ok.MIGMode != "enabled" || ok.PersistenceMode != "enabled" ||
				ok.CUDAVersion != "12.2" || ok.Unreachable {
				t.Errorf("the healthy GPU = %+v, want nvidia-smi's 81920 MiB, MIG and persistence mode enabled", ok)
			}
			if lost.PCIAddress != "0000:65:00.0" || !lost.Unreachable || lost.MemoryMiB != 0 || lost.MIGMode != "" {
				t.Errorf("the lost GPU = %+v, want it marked unreachable, without memory or MIG mode", lost)
			}
			if lost.Model != "NVIDIA A100 80GB PCIe" || lost.DriverVersion != "535.104.05" {
				t.Errorf("the lost GPU = %+v, want /proc/driver/nvidia's model and version still", lost)
			}
			exit := slices.IndexFunc(inv.Warnings, func(w string) bool {
				return strings.Contains(w, "exit status 15") && strings.Contains(w, handleError)
			})
			named := slices.IndexFunc(inv.Warnings, func(w string) bool {
				return strings.HasPrefix(w, "GPU 0000:65:00.0: not in nvidia-smi's output")
			})
			if exit < 0 || named < 0 || len(inv.Warnings) != 2 {
				t.Errorf("warnings = %q, want one with the exit status and nvidia-smi's words, one naming 0000:65:00.0", inv.Warnings)
			}
			out := table(t, inv)
			if l := lineOf(out, "0000:65:00.0 "); !strings.Contains(l, "unreachable") {
				t.Errorf("the lost GPU's row: %q, want it marked unreachable", l)
			}
			if l := lineOf(out, "0000:17:00.0 "); !strings.Contains(l, "81920 MiB") || !strings.Contains(l, "enabled") {
				t.Errorf("the healthy GPU's row: %q, want its memory and MIG mode", l)
			}
		})
	}
}

// What nvidia-smi wrote before failing is read only when it is a whole document: cut short
// (it died writing), it is not, and the GPUs are listed as when nvidia-smi wrote nothing.
func TestNvidiaSMIFailsWithPartialXML(t *testing.T) {
	cut := smiOneOfTwo[:strings.Index(smiOneOfTwo, "<fb_memory_usage>")]
	for name, script := range map[string]string{
		"cut short":        "cat <<'EOF'\n" + cut + "\nEOF\necho '" + handleError + "' >&2\nexit 15\n",
		"no XML":           "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9\n",
		"another document": "echo '<nvidia_smi_logx></nvidia_smi_logx>'\nexit 15\n",
		// An element left open: the document is closed but not well-formed.
		"element left open": "cat <<'EOF'\n" + strings.Replace(smiOneOfTwo, "</nvidia_smi_log>",
			"\t<gpu id=\"00000000:65:00.0\">\n\t\t<product_name>\n</nvidia_smi_log>", 1) + "EOF\nexit 15\n",
	} {
		t.Run(name, func(t *testing.T) {
			root := writeServerTree(t)
			fakeroot.WriteExec(t, root, map[string]string{"usr/bin/nvidia-smi": "#!/bin/sh\n" + script})
			inv, err := Collect(context.Background(), Options{Root: root, Run: runStandIn(root)})
			if err != nil {
				t.Fatal(err)
			}
			if len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], "run nvidia-smi -q -x: exit status") ||
				!strings.Contains(inv.Warnings[0], "listed without memory and MIG mode") {
				t.Errorf("warnings = %q, want one saying nvidia-smi failed", inv.Warnings)
			}
			for _, g := range inv.GPUs {
				if g.MemoryMiB != 0 || g.MIGMode != "" || g.Unreachable {
					t.Errorf("GPU %+v: details or a mark from output that was not read", g)
				}
			}
		})
	}
}

// TestNvidiaSMIOmitsAGPUAndExitsZero: t3's shape. nvidia-smi that writes of one GPU of two
// bound to NVIDIA's driver and exits 0 (a capture's nvidia-smi-q.xml, or an nvidia-smi
// that does not fail for it) leaves the other without memory and MIG mode: it is marked
// unreachable and named, as when nvidia-smi exits 15.
func TestNvidiaSMIOmitsAGPUAndExitsZero(t *testing.T) {
	root := writeServerTree(t)
	for name, opts := range map[string]Options{
		"exit 0":         {Root: root, Run: func(context.Context, string, ...string) ([]byte, error) { return []byte(smiOneOfTwo), nil }},
		"capture's file": {Root: root},
	} {
		t.Run(name, func(t *testing.T) {
			fakeroot.Write(t, root, map[string]string{"nvidia-smi-q.xml": smiOneOfTwo})
			inv, err := Collect(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(inv.GPUs) != 2 || inv.GPUs[0].MemoryMiB != 81920 || inv.GPUs[0].Unreachable || !inv.GPUs[1].Unreachable {
				t.Errorf("GPUs = %+v, want 17:00.0 with its memory, 65:00.0 unreachable", inv.GPUs)
			}
			if len(inv.Warnings) != 1 || !strings.HasPrefix(inv.Warnings[0], "GPU 0000:65:00.0: not in nvidia-smi's output") {
				t.Errorf("warnings = %q, want one naming 0000:65:00.0", inv.Warnings)
			}
		})
	}
}

// TestExcludedGPU: a GPU excluded from NVIDIA's driver (NVreg_ExcludedGpus: its information
// file says "GPU Excluded: Yes"; nvidia-smi does not list it) is listed as excluded, not
// unreachable, with a warning, and the node's GPU count leaves it out.
func TestExcludedGPU(t *testing.T) {
	root := writeServerTree(t)
	fakeroot.Write(t, root, map[string]string{"proc/driver/nvidia/gpus/0000:65:00.0/information": "Model: \t\t NVIDIA A100 80GB PCIe\n" +
		"GPU UUID: \t GPU-bbbb\nBus Location: \t 0000:65:00.0\nGPU Excluded:\t Yes\n"})
	inv, err := Collect(context.Background(), Options{Root: root,
		Run: func(context.Context, string, ...string) ([]byte, error) { return []byte(smiOneOfTwo), nil }})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(inv.GPUs)
	if err != nil {
		t.Fatal(err)
	}
	var gpus []map[string]any
	if err := json.Unmarshal(b, &gpus); err != nil || len(gpus) != 2 {
		t.Fatalf("GPUs = %s, %v", b, err)
	}
	if gpus[1]["excluded"] != true || gpus[1]["unreachable"] != nil || gpus[0]["excluded"] != nil {
		t.Errorf("GPUs = %s, want 65:00.0 excluded (not unreachable), 17:00.0 not", b)
	}
	if len(inv.Warnings) != 1 || !strings.HasPrefix(inv.Warnings[0], "GPU 0000:65:00.0: excluded from NVIDIA's driver") {
		t.Errorf("warnings = %q, want one naming the excluded GPU", inv.Warnings)
	}
	if got := NodeLabels(inv)[LabelGPUCount]; got != "1" {
		t.Errorf("gpu.count = %q, want 1 (the excluded GPU left out)", got)
	}
	if l := lineOf(table(t, inv), "0000:65:00.0 "); !strings.Contains(l, "excluded") {
		t.Errorf("the excluded GPU's row: %q", l)
	}
	// The join's fast count agrees with the label.
	if got := GPUCounts(root); !maps.Equal(got, map[string]int{"nvidia": 1}) {
		t.Errorf("GPUCounts = %v, want nvidia: 1 (the excluded GPU left out)", got)
	}
	fakeroot.Write(t, root, map[string]string{"proc/driver/nvidia/gpus/0000:17:00.0/information": "Model: \t\t NVIDIA A100 80GB PCIe\n" +
		"Bus Location: \t 0000:17:00.0\nGPU Excluded:\t Yes\n"})
	if got := GPUCounts(root); len(got) != 0 {
		t.Errorf("GPUCounts = %v with both GPUs excluded, want none", got)
	}
}
