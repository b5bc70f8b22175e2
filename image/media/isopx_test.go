package media

import (
	"encoding/binary"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// pxInfo is one directory record's Rock Ridge PX entry, read independently
// of normalizeISO: every both-endian field is kept in both byte orders.
type pxInfo struct {
	mode, modeBE   uint32
	nlink, nlinkBE uint32
	uid, gid       uint32
	dir            bool   // ISO9660 directory flag
	lba            uint32 // extent
	cl             uint32 // Rock Ridge CL target, 0 if none
	re             bool   // Rock Ridge RE (relocated directory)
	at             int64  // file offset of the PX entry
}

// readISOPX walks an ISO's directory tree from the primary volume
// descriptor and returns every record's PX entry by Rock Ridge path; a
// folder's own "." and ".." records are "<folder>/." and "<folder>/..".
// Relocated folders (RE) are listed where they lie physically.
func readISOPX(t *testing.T, iso string) map[string]pxInfo {
	t.Helper()
	b, err := os.ReadFile(iso)
	if err != nil {
		t.Fatal(err)
	}
	root := b[16*2048+156:]
	out := map[string]pxInfo{}
	seen := map[uint32]bool{}
	var walk func(dir string, lba, size uint32)
	walk = func(dir string, lba, size uint32) {
		if seen[lba] {
			return
		}
		seen[lba] = true
		ext := b[int64(lba)*2048 : int64(lba)*2048+int64(size)]
		for pos := 0; pos < len(ext); {
			n := int(ext[pos])
			if n == 0 {
				pos = (pos/2048 + 1) * 2048
				continue
			}
			rec := ext[pos : pos+n]
			recAt := int64(lba)*2048 + int64(pos)
			pos += n
			nameLen := int(rec[32])
			su := 33 + nameLen
			if nameLen%2 == 0 {
				su++
			}
			info := pxInfo{dir: rec[25]&2 != 0, lba: binary.LittleEndian.Uint32(rec[2:])}
			name := ""
			var parse func(area []byte, base int64)
			parse = func(area []byte, base int64) {
				for p := 0; p+4 <= len(area); {
					sig, l := string(area[p:p+2]), int(area[p+2])
					if l < 4 || p+l > len(area) {
						return
					}
					e := area[p : p+l]
					switch sig {
					case "PX":
						info.at = base + int64(p)
						info.mode, info.modeBE = binary.LittleEndian.Uint32(e[4:]), binary.BigEndian.Uint32(e[8:])
						info.nlink, info.nlinkBE = binary.LittleEndian.Uint32(e[12:]), binary.BigEndian.Uint32(e[16:])
						info.uid, info.gid = binary.LittleEndian.Uint32(e[20:]), binary.LittleEndian.Uint32(e[28:])
					case "NM":
						name += string(e[5:])
					case "CL":
						info.cl = binary.LittleEndian.Uint32(e[4:])
					case "RE":
						info.re = true
					case "CE":
						at := int64(binary.LittleEndian.Uint32(e[4:]))*2048 + int64(binary.LittleEndian.Uint32(e[12:]))
						parse(b[at:at+int64(binary.LittleEndian.Uint32(e[20:]))], at)
					}
					p += l
				}
			}
			if su < n {
				parse(rec[su:], recAt+int64(su))
			}
			switch {
			case nameLen == 1 && rec[33] == 0:
				out[strings.TrimSuffix(dir, "/")+"/."] = info
			case nameLen == 1 && rec[33] == 1:
				out[strings.TrimSuffix(dir, "/")+"/.."] = info
			default:
				p := path.Join(dir, name)
				out[p] = info
				if info.dir {
					walk(p, info.lba, binary.LittleEndian.Uint32(rec[10:]))
				}
			}
		}
	}
	walk("/", binary.LittleEndian.Uint32(root[2:]), binary.LittleEndian.Uint32(root[10:]))
	return out
}

// setBoth writes v both-endian at b[at:at+8].
func setBoth(b []byte, at int64, v uint32) {
	binary.LittleEndian.PutUint32(b[at:], v)
	binary.BigEndian.PutUint32(b[at+4:], v)
}

// TestNormalizeISOLinkCountsHostIndependent: go-diskfs copies the PX link
// count from the staging folder's st_nlink, which the host filesystem
// decides (ext4: 2 + subfolders for a folder, btrfs: 1, ZFS: its entry
// count). Two ISOs whose PX entries carry different host counts (and
// owners) are the same bytes once normalizeISO has run, and every count is 1.
func TestNormalizeISOLinkCountsHostIndependent(t *testing.T) {
	opts := isoOptions(t, MinFATSize)
	iso := filepath.Join(t.TempDir(), "etoile.iso")
	if err := WriteISO(iso, opts); err != nil {
		t.Fatal(err)
	}
	px := readISOPX(t, iso)
	if len(px) < 20 {
		t.Fatalf("only %d Rock Ridge PX entries found", len(px))
	}
	orig, err := os.ReadFile(iso)
	if err != nil {
		t.Fatal(err)
	}
	// As staged on ext4 (2 + subfolders), on ZFS (entries + 2, a file
	// hard-linked elsewhere), and as go-diskfs writes the boot catalog (0).
	subdirs := map[string]uint32{}
	for p, e := range px {
		if e.dir && p != "/" && !strings.HasSuffix(p, "/.") && !strings.HasSuffix(p, "/..") {
			subdirs[path.Dir(p)]++
		}
	}
	// The folder a "." or ".." record stands for.
	folder := func(p string) string {
		switch {
		case strings.HasSuffix(p, "/.."):
			return path.Dir(path.Clean(strings.TrimSuffix(p, "/..") + "/"))
		case strings.HasSuffix(p, "/."):
			return path.Clean(strings.TrimSuffix(p, "/.") + "/")
		}
		return p
	}
	// As staged on ext4 (a folder: 2 + subfolders) and on ZFS (a folder: 2
	// + entries; here a file hard-linked elsewhere too).
	hosts := map[string]func(p string, e pxInfo) uint32{
		"ext4": func(p string, e pxInfo) uint32 {
			if !e.dir {
				return 1
			}
			return 2 + subdirs[folder(p)]
		},
		"zfs": func(p string, e pxInfo) uint32 {
			if !e.dir {
				return 2
			}
			return 2 + uint32(len(folder(p)))
		},
	}
	var images []string
	for host, nlink := range hosts {
		b := append([]byte(nil), orig...)
		for p, e := range px {
			setBoth(b, e.at+12, nlink(p, e))
			setBoth(b, e.at+20, 1000) // uid
			setBoth(b, e.at+28, 1000) // gid
		}
		if p := px["/isolinux/boot.cat"]; p.at != 0 {
			setBoth(b, p.at+4, 0o100000)
			setBoth(b, p.at+12, 0)
		}
		img := filepath.Join(t.TempDir(), host+".iso")
		if err := os.WriteFile(img, b, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = normalizeISO(f, opts.Epoch)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		images = append(images, img)
		sameBytes(t, iso, img)
	}
	sameBytes(t, images[0], images[1])
	checkISOPX(t, iso, "/isolinux/boot.cat")
}

// checkISOPX checks every Rock Ridge PX entry of iso: link count 1 and
// owner 0:0 (both byte orders), and the El Torito catalog a 0444 regular
// file as xorriso writes it (go-diskfs leaves it mode 0, link count 0).
func checkISOPX(t *testing.T, iso, catalog string) {
	t.Helper()
	for p, e := range readISOPX(t, iso) {
		if e.nlink != 1 || e.nlinkBE != 1 {
			t.Errorf("%s: PX link count %d/%d (LE/BE), want 1", p, e.nlink, e.nlinkBE)
		}
		if e.uid != 0 || e.gid != 0 {
			t.Errorf("%s: PX owner %d:%d, want 0:0", p, e.uid, e.gid)
		}
		if e.mode != e.modeBE {
			t.Errorf("%s: PX mode %o little-endian, %o big-endian", p, e.mode, e.modeBE)
		}
		if p == catalog && (e.mode != 0o100444 || e.dir) {
			t.Errorf("%s: PX mode %o, want 100444 (a regular file anyone may read)", p, e.mode)
		}
	}
}

// TestWriteISOBootCatalogReadable: the boot catalog lists as a 0444 file
// with one link, and extracts (with mode 0, no one but root could read it
// from a mounted ISO).
func TestWriteISOBootCatalogReadable(t *testing.T) {
	opts := isoOptions(t, MinFATSize)
	iso := filepath.Join(t.TempDir(), "etoile.iso")
	if err := WriteISO(iso, opts); err != nil {
		t.Fatal(err)
	}
	e, ok := readISOPX(t, iso)["/isolinux/boot.cat"]
	if !ok {
		t.Fatal("no /isolinux/boot.cat record")
	}
	if e.mode != 0o100444 || e.modeBE != 0o100444 || e.nlink != 1 || e.nlinkBE != 1 {
		t.Errorf("boot.cat PX mode %o/%o, links %d/%d; want 100444 and 1 (as xorriso writes it)", e.mode, e.modeBE, e.nlink, e.nlinkBE)
	}
	checkISOPX(t, iso, "/isolinux/boot.cat")
	// Without El Torito there is no catalog and nothing else becomes 0444.
	plain := filepath.Join(t.TempDir(), "plain.iso")
	if err := WriteISO(plain, ISOOptions{VolumeLabel: "P", Files: []File{{Path: "/a/b", Data: []byte("x")}}, Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	checkISOPX(t, plain, "")
	if e := readISOPX(t, plain)["/a/b"]; e.mode != 0o100644 {
		t.Errorf("/a/b PX mode %o, want 100644", e.mode)
	}
}
