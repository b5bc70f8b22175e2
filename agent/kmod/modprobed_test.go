package kmod

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/fakeroot"
)

func TestReadModprobeD(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"etc/modprobe.d/nvidia.conf": "# NVIDIA's driver\noptions nvidia NVreg_DeviceFileMode=0660 \\\n  NVreg_DeviceFileGID=44\noptions nvidia-drm modeset=1\nblacklist nouveau\n",
		"lib/modprobe.d/nvidia.conf": "options nvidia hidden_by_etc=1\n",
		"lib/modprobe.d/10-net.conf": "options e1000e InterruptThrottleRate=3000\noptions nvidia NVreg_EnableGpuFirmware=1\n",
		"lib/modprobe.d/README":      "options nope x=1\n",
	})
	conf, err := ReadModprobeD(root)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"nvidia":     "NVreg_EnableGpuFirmware=1 NVreg_DeviceFileMode=0660 NVreg_DeviceFileGID=44", // 10-net.conf sorts first
		"nvidia_drm": "modeset=1",
		"e1000e":     "InterruptThrottleRate=3000",
	}
	if len(conf.Options) != len(want) {
		t.Errorf("options %q, want %q", conf.Options, want)
	}
	for mod, opts := range want {
		if conf.Options[mod] != opts {
			t.Errorf("%s: %q, want %q", mod, conf.Options[mod], opts)
		}
	}
	if w := []string{"/lib/modprobe.d/10-net.conf", "/etc/modprobe.d/nvidia.conf"}; !slices.Equal(conf.Files, w) {
		t.Errorf("files %q, want %q", conf.Files, w)
	}
	if len(conf.Ignored) != 0 {
		t.Errorf("ignored %q, want nothing (blacklist is applied)", conf.Ignored)
	}
	if w := map[string]string{"nouveau": "/etc/modprobe.d/nvidia.conf:5"}; !maps.Equal(conf.Blacklist, w) {
		t.Errorf("blacklist %q, want %q", conf.Blacklist, w)
	}
	if conf, err := ReadModprobeD(t.TempDir()); err != nil || len(conf.Options) != 0 {
		t.Errorf("no folders: %+v, %v", conf, err)
	}
}

// TestConfigParamsBeforeCommandLine: modprobe.d's options come first, the
// command line's after them (the kernel keeps a parameter's last value).
func TestConfigParamsBeforeCommandLine(t *testing.T) {
	sys, mods := testDirs(t)
	writeTree(t, mods, map[string]string{
		"modules.dep":          "kernel/net/e1000e.ko:\n",
		"modules.alias":        "alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n",
		"kernel/net/e1000e.ko": "",
	})
	fakeSys(t, sys, map[string]string{"pci/0000:00:02.0": "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00"})
	loader := &slowLoader{}
	c, err := NewColdplug(sys, mods, loader, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.Params = ModuleParams(map[string]string{"e1000e.InterruptThrottleRate": "1"})
	// Étoile's defaults come where neither modprobe.d nor the command line
	// sets the parameter.
	c.Defaults = map[string]string{"e1000e": "SmartPowerDownEnable=0 KumeranLockLoss=1"}
	c.AddConfigParams(map[string]string{"e1000e": "InterruptThrottleRate=3000 SmartPowerDownEnable=1"})
	if err := c.Settle(context.Background(), 0, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if p := loader.Params["e1000e"]; p != "InterruptThrottleRate=3000 SmartPowerDownEnable=1 InterruptThrottleRate=1 KumeranLockLoss=1" {
		t.Errorf("e1000e loaded with %q, want modprobe.d's options, then the command line's, then the defaults neither sets", p)
	}
}
