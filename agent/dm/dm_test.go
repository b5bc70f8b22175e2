package dm

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var root, salt = strings.Repeat("ab", 32), strings.Repeat("cd", 32)

func TestIoctlNumbers(t *testing.T) {
	// As <linux/dm-ioctl.h> gives them on amd64 and arm64.
	for nr, want := range map[uint32]uint32{cmdDevCreate: 0xc138fd03, cmdDevRemove: 0xc138fd04, cmdDevSuspend: 0xc138fd06, cmdTableLoad: 0xc138fd09} {
		if got := ioctlNumber(nr); got != want {
			t.Errorf("nr %d: %#x, want %#x", nr, got, want)
		}
	}
}

func TestEncodeLoad(t *testing.T) {
	v := Verity{Dev: "7:0", DataBlocks: 1000, HashStartBlock: 1000, Root: root, Salt: salt}
	b, err := encodeLoad("etoile-system", v)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	for off, want := range map[int]uint32{0: 4, 4: 0, 8: 0, 12: bufSize, 16: ioctlSize, 20: 1, 28: readOnly} {
		if got := le.Uint32(b[off:]); got != want {
			t.Errorf("dm_ioctl u32 at %d = %d, want %d", off, got, want)
		}
	}
	if name := string(bytes.TrimRight(b[48:176], "\x00")); name != "etoile-system" {
		t.Errorf("name %q", name)
	}
	s := b[ioctlSize:]
	if le.Uint64(s[0:]) != 0 || le.Uint64(s[8:]) != 8000 {
		t.Errorf("sector_start %d length %d, want 0 8000", le.Uint64(s[0:]), le.Uint64(s[8:]))
	}
	params := "1 7:0 7:0 4096 4096 1000 1000 sha256 " + root + " " + salt
	next := le.Uint32(s[20:])
	if next%8 != 0 || int(next) < specSize+len(params)+1 {
		t.Errorf("next %d: not 8-byte aligned or too short", next)
	}
	if tt := string(bytes.TrimRight(s[24:40], "\x00")); tt != "verity" {
		t.Errorf("target_type %q", tt)
	}
	got, _, _ := bytes.Cut(s[specSize:], []byte{0})
	if string(got) != params {
		t.Errorf("params %q, want %q", got, params)
	}
}

func TestEncodeCreate(t *testing.T) {
	b, err := encodeCreate("x")
	if err != nil || binary.LittleEndian.Uint32(b[20:]) != 0 || binary.LittleEndian.Uint32(b[28:]) != 0 || b[48] != 'x' || b[49] != 0 {
		t.Fatalf("create buffer wrong (%v)", err)
	}
	if _, err := encodeCreate(strings.Repeat("n", 128)); err == nil {
		t.Error("a 128-byte name was accepted")
	}
	binary.LittleEndian.PutUint64(b[40:], 253<<8|3)
	if devOf(b) != 253<<8|3 {
		t.Error("devOf")
	}
}

func TestControlWithoutDeviceMapper(t *testing.T) {
	dir := t.TempDir()
	if _, err := Control(dir); err == nil || !strings.Contains(err.Error(), "dm_mod") {
		t.Fatalf("no device-mapper: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "dev/mapper")); err == nil {
		t.Error("made /dev/mapper without a device-mapper")
	}
}
