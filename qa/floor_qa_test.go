//go:build qa

package qa

import (
	"testing"
)

// TestFloorBoots boots qa/floor the way each scenario boots the agent (the
// build's media with the initramfs swapped in place, or the kernel handed over
// directly): it proves the harness, the firmware and the build's boot chain up
// to /init, so a scenario that fails while its floor passes points at the
// agent rather than at the media.
func TestFloorBoots(t *testing.T) {
	out := Artifacts(t, KernelName)
	floors := Floors(t, out)
	for n, why := range floors.Why {
		t.Logf("floor for %s boots the kernel directly: %s", n, why)
	}
	for _, s := range Scenarios() {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			devs, kind := s.FloorDevices(t, out, floors)
			vm := Start(t, Config{Devices: devs})
			m := vm.WaitFor(FloorRE, ReadyTimeout)
			secs, err := m.Seconds("t")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("floor (%s): %.2fs wall from QEMU start, t=%.2fs from kernel start", kind, m.At.Seconds(), secs)
		})
	}
}
