package image

import (
	"strings"
	"testing"
)

// TestSpecCmdlineKeepsTheBuildsArguments: kernel.cmdline refuses, naming
// the field, the value and why, what would hide or override the arguments
// the build puts on every medium (etoile.verity=, etoile.slot=) or replace
// the agent: "--" (the agent stops reading there), init=, rdinit=, initrd=,
// BOOT_IMAGE=, every etoile.* argument the build or the netboot server
// sets, and any character but printable ASCII (the kernel splits on \v, \f
// and U+00A0, the agent does not). Ordinary arguments pass.
func TestSpecCmdlineKeepsTheBuildsArguments(t *testing.T) {
	const head = "apiVersion: etoile.io/v1alpha1\nkind: ImageSpec\nmodules: [squashfs]\nkernel:\n  cmdline: [quiet, "
	for _, tc := range []struct {
		entry string // YAML, double-quoted
		want  []string
	}{
		{`"--"`, []string{`"--"`, "ends the kernel's arguments", "agent stops reading"}},
		{`"--=x"`, []string{`"--=x"`, "ends the kernel's arguments"}},
		{`"init=/bin/sh"`, []string{`"init=/bin/sh"`, "instead of the agent"}},
		{`"rdinit=/bin/sh"`, []string{`"rdinit=/bin/sh"`, "replaces the initramfs's /init"}},
		{`"initrd=/boot/x.img"`, []string{`"initrd=/boot/x.img"`, "boot loader's", "UEFI stub"}},
		{`"BOOT_IMAGE=/vmlinuz"`, []string{`"BOOT_IMAGE=/vmlinuz"`, "set by the boot loader"}},
		{`"etoile.verity=00:00"`, []string{`"etoile.verity=00:00"`, "set by the build", "dm-verity root hash", "leave it out"}},
		{`"etoile.slot=a"`, []string{`"etoile.slot=a"`, "set for each medium by the build", "leave it out"}},
		{`"etoile.system=http://x/s.sqfs"`, []string{"etoile.system=", "netboot server", "leave it out"}},
		{`"etoile.system.sha256=00"`, []string{"etoile.system.sha256=", "netboot server", "leave it out"}},
		{`"a\vb"`, []string{`"a\vb"`, "U+000B", "printable ASCII"}},
		{`"a\fb"`, []string{`"a\fb"`, "U+000C", "printable ASCII"}},
		{`"a\x01b"`, []string{"U+0001", "printable ASCII"}},
		{`"quiet\u00a0loglevel=7"`, []string{"U+00A0", "printable ASCII"}},
		{`"lang=fr_é"`, []string{"U+00E9", "printable ASCII"}},
		{`"a\tb"`, []string{`"a\tb"`, "without spaces or quotes"}},
		{`"a\"b"`, []string{"without spaces or quotes"}},
		{`""`, []string{"empty"}},
	} {
		t.Run(tc.entry, func(t *testing.T) {
			_, err := ParseSpec([]byte(head+tc.entry+"]\n"), t.TempDir())
			if err == nil {
				t.Fatalf("kernel.cmdline entry %s accepted", tc.entry)
			}
			for _, w := range append([]string{"kernel.cmdline[1]"}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "is not an argument the agent knows") {
				t.Errorf("error calls an argument the build sets unknown:\n%v", err)
			}
		})
	}
	for _, ok := range []string{"quiet", "loglevel=7", "console=ttyS1,9600n8", "init_on_free=1", "initcall_debug", "rd.debug", "etoile.debug", "etoile.config=https://h/c.yaml", "a=~!#$%&()*+,-./:;<>?@[\\]^_`{|}"} {
		if _, err := ParseSpec([]byte(head+"'"+ok+"']\n"), t.TempDir()); err != nil {
			t.Errorf("kernel.cmdline entry %q refused: %v", ok, err)
		}
	}
}
