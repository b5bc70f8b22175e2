package sysimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/internal/xorriso"
)

// isoImage writes files into a folder and makes an ISO of it with xorriso
// (a writer other than ours), with the mkisofs options given (xorriso writes
// Rock Ridge unless told --norock).
func isoImage(t *testing.T, files map[string]string, opts ...string) string {
	t.Helper()
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Fatal("xorriso is missing: install xorriso (make test-deps does)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	for name, content := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "cfg.iso")
	args := append([]string{"-as", "mkisofs", "-V", "ETOILE-CFG", "-o", img}, opts...)
	if out, err := xorriso.Run(append(args, src)...); err != nil {
		t.Fatalf("xorriso %v: %v\n%s", args, err, out)
	}
	return img
}

func TestReadISOFile(t *testing.T) {
	const cfg = "kind: MachineConfig\n"
	big := strings.Repeat("x", 5000) // over two sectors
	files := map[string]string{"config.yaml": cfg, "etoile/config.yaml": big, "Mixed-Case.Name.yaml": "m"}
	for _, c := range []struct {
		name  string
		opts  []string
		names isoNames
		// how config.yaml, etoile/config.yaml and Mixed-Case.Name.yaml are
		// named: plain ISO9660 names are 8.3 (mount(8) shows "config.yam")
		top, nested, mixed string
	}{
		{"rock ridge and joliet", []string{"-R", "-J"}, rockRidgeNames, "/config.yaml", "/etoile/config.yaml", "/Mixed-Case.Name.yaml"},
		{"joliet only", []string{"--norock", "-J"}, jolietNames, "/config.yaml", "/etoile/config.yaml", "/Mixed-Case.Name.yaml"},
		{"plain ISO9660", []string{"--norock"}, plainNames, "/config.yam", "/ETOILE/CONFIG.YAM", "/MIXED_CA.YAM"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := isoImage(t, files, c.opts...)
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			v, err := openISO(f)
			if err != nil || v.names != c.names {
				t.Fatalf("openISO: %v, names %v; want %v", err, v, c.names)
			}
			if got, err := ReadISOFile(img, c.top, 1<<20); err != nil || string(got) != cfg {
				t.Errorf("%s: %q, %v; want %q", c.top, got, err, cfg)
			}
			if got, err := ReadISOFile(img, c.nested, 1<<20); err != nil || string(got) != big {
				t.Errorf("%s: %d bytes, %v; want %d", c.nested, len(got), err, len(big))
			}
			if got, err := ReadISOFile(img, c.mixed, 1<<20); err != nil || string(got) != "m" {
				t.Errorf("%s: %q, %v", c.mixed, got, err)
			}
			for _, missing := range []string{"/absent.yaml", "/etoile/absent", "/config.yaml/below"} {
				if _, err := ReadISOFile(img, missing, 1<<20); !errors.Is(err, iofs.ErrNotExist) {
					t.Errorf("%s: err = %v, want fs.ErrNotExist", missing, err)
				}
			}
			if _, err := ReadISOFile(img, "/etoile", 1<<20); err == nil || errors.Is(err, iofs.ErrNotExist) {
				t.Errorf("a folder: err = %v, want an error saying so", err)
			}
			if _, err := ReadISOFile(img, c.nested, 100); err == nil {
				t.Error("a file over the limit was read")
			}
		})
	}
	// Rock Ridge names are case-sensitive, as mount(8) shows them.
	img := isoImage(t, files, "-R")
	if _, err := ReadISOFile(img, "/CONFIG.YAML", 1<<20); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("/CONFIG.YAML on Rock Ridge: err = %v, want fs.ErrNotExist", err)
	}
}

// TestReadISOFileDamaged damages the descriptors and the root folder byte by
// byte: every read ends with an answer, never a panic or a hang.
func TestReadISOFileDamaged(t *testing.T) {
	img := isoImage(t, map[string]string{"config.yaml": "kind: MachineConfig\n", "etoile/x": "y"}, "-R", "-J")
	orig, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	v, err := openISO(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	rootAt := int64(v.root.extent) * v.block
	regions := [][2]int64{{16 * isoSector, 16*isoSector + 256}, {17 * isoSector, 17*isoSector + 256}, {rootAt, rootAt + 400}}
	damageEach(orig, regions, 1, []byte{0x00, 0xFF, 0x22, 0x01}, func(b []byte) {
		_, _ = readISOFile(bytes.NewReader(b), "bad.iso", "/config.yaml", 1<<20)
		_, _ = readISOFile(bytes.NewReader(b), "bad.iso", "/etoile/x", 1<<20)
	})
}

// TestReadISOFileNames covers names as Linux shows them: Joliet's matched
// case-insensitively; a Rock Ridge name kept in a continuation area (a very
// long one) does not hide the other files; a file after an extended
// attribute record is read from where its data starts.
func TestReadISOFileNames(t *testing.T) {
	const cfg = "kind: MachineConfig\n"
	joliet := isoImage(t, map[string]string{"Config.YAML": cfg}, "--norock", "-J")
	if got, err := ReadISOFile(joliet, "/config.yaml", 1<<20); err != nil || string(got) != cfg {
		t.Errorf("Joliet Config.YAML as /config.yaml: %q, %v", got, err)
	}
	long := strings.Repeat("n", 241) // xorriso keeps its Rock Ridge name in a CE area
	rr := isoImage(t, map[string]string{long: "x", "config.yaml": cfg}, "-R")
	if got, err := ReadISOFile(rr, "/config.yaml", 1<<20); err != nil || string(got) != cfg {
		t.Errorf("/config.yaml beside a long name: %q, %v", got, err)
	}
	if _, err := ReadISOFile(rr, "/absent", 1<<20); !errors.Is(err, ErrISOUnsupported) {
		t.Errorf("a name not found where one name could not be read: err = %v, want ErrISOUnsupported (mount it)", err)
	}

	// An extended attribute record of one block before the data: the record
	// says so in its byte 1 and points one block earlier.
	img := isoImage(t, map[string]string{"config.yaml": cfg}, "-R")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	v, err := openISO(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := v.readDir(v.root)
	if err != nil {
		t.Fatal(err)
	}
	base := int64(v.root.extent) * v.block
	patched := false
	for pos, ok := nextRecord(dir, 0); ok; pos, ok = nextRecord(dir, pos.off+pos.len) {
		rec := b[base+int64(pos.off) : base+int64(pos.off+pos.len)]
		if name, _, _ := v.recordName(rec, rec[33:33+int(rec[32])]); name == "config.yaml" {
			rec[1] = 1
			binary.LittleEndian.PutUint32(rec[2:], binary.LittleEndian.Uint32(rec[2:])-1)
			patched = true
		}
	}
	if !patched {
		t.Fatal("config.yaml's record not found")
	}
	if got, err := readISOFile(bytes.NewReader(b), "patched.iso", "/config.yaml", 1<<20); err != nil || string(got) != cfg {
		t.Errorf("after an extended attribute record: %q, %v", got, err)
	}
}

// TestReadISOFileRockRidgeNeedsER: with Joliet names beside them, Rock Ridge
// names are used only where the volume's ER entry says Rock Ridge is there
// (xorriso keeps it in the root's continuation area), as Linux decides.
func TestReadISOFileRockRidgeNeedsER(t *testing.T) {
	for _, c := range []struct {
		opts              []string
		withER, withoutER isoNames
	}{
		{[]string{"-R", "-J"}, rockRidgeNames, jolietNames},
		{[]string{"-R"}, rockRidgeNames, rockRidgeNames},
	} {
		img := isoImage(t, map[string]string{"config.yaml": "x"}, c.opts...)
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		names := func() isoNames {
			v, err := openISO(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			return v.names
		}
		if got := names(); got != c.withER {
			t.Errorf("%v: names %v, want %v", c.opts, got, c.withER)
		}
		i := bytes.Index(b, []byte("RRIP_1991A"))
		if i < 0 {
			i = bytes.Index(b, []byte("IEEE_P1282"))
		}
		if i < 8 || string(b[i-8:i-6]) != "ER" {
			t.Fatalf("%v: no ER entry found in the image", c.opts)
		}
		copy(b[i-8:], "XX") // an unknown entry now
		if got := names(); got != c.withoutER {
			t.Errorf("%v without ER: names %v, want %v", c.opts, got, c.withoutER)
		}
		if got, err := readISOFile(bytes.NewReader(b), "noer.iso", "/config.yaml", 1<<20); err != nil || string(got) != "x" {
			t.Errorf("%v without ER: /config.yaml: %q, %v", c.opts, got, err)
		}
	}
}
