package verity

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// image writes n pseudo-random bytes to a temporary file.
func image(t *testing.T, n int, seed uint64) string {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(t.TempDir(), "system.sqfs")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func veritysetup(t *testing.T, p string, tr Tree) error {
	t.Helper()
	out, err := exec.Command("veritysetup", "verify", "--no-superblock",
		"--hash-offset="+strconv.FormatUint(tr.DataBytes(), 10),
		"--data-blocks="+strconv.FormatUint(tr.DataBlocks, 10),
		"--salt="+hex.EncodeToString(tr.Salt[:]),
		p, p, hex.EncodeToString(tr.Root[:])).CombinedOutput()
	if err != nil {
		t.Logf("veritysetup: %s", strings.TrimSpace(string(out)))
	}
	return err
}

func TestAppendVeritysetup(t *testing.T) {
	if _, err := exec.LookPath("veritysetup"); err != nil {
		t.Fatal("veritysetup not found: install it with `apt-get install -y cryptsetup-bin` (make test does)")
	}
	// One block, one hash block exactly (128), two levels, three levels
	// (128*128+1 blocks), and sizes that need padding.
	for _, n := range []int{1, 4096, 128 * 4096, 129*4096 + 17, 128*128*4096 + 4096, 5*1024*1024 + 1} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			p := image(t, n, uint64(n))
			tr, err := Append(p)
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64((n + BlockSize - 1) / BlockSize); tr.DataBlocks != want {
				t.Fatalf("data blocks %d, want %d", tr.DataBlocks, want)
			}
			if err := veritysetup(t, p, tr); err != nil {
				t.Fatalf("veritysetup verify refused the tree: %v", err)
			}
			// A flipped byte in the data area is caught.
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			off := int64(n / 2)
			var b [1]byte
			if _, err := f.ReadAt(b[:], off); err != nil {
				t.Fatal(err)
			}
			b[0] ^= 0x40
			if _, err := f.WriteAt(b[:], off); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if err := veritysetup(t, p, tr); err == nil {
				t.Fatal("veritysetup verify accepted a flipped byte")
			}
		})
	}
}

func TestAppendReproducible(t *testing.T) {
	a, b := image(t, 300*1024+5, 7), image(t, 300*1024+5, 7)
	ta, err := Append(a)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := Append(b)
	if err != nil {
		t.Fatal(err)
	}
	if ta != tb {
		t.Fatalf("two runs differ: %+v, %+v", ta, tb)
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Fatal("two runs wrote different files")
	}
	// The image is kept at the front, zero-padded to the block size.
	orig, _ := os.ReadFile(image(t, 300*1024+5, 7))
	if !bytes.Equal(da[:len(orig)], orig) || bytes.ContainsFunc(da[len(orig):ta.DataBytes()], func(r rune) bool { return r != 0 }) {
		t.Fatal("the data area is not the image zero-padded")
	}
	// 76 data blocks: one hash block.
	if got := uint64(len(da)); got != ta.DataBytes()+BlockSize {
		t.Fatalf("file is %d bytes, want %d", got, ta.DataBytes()+BlockSize)
	}
	if !strings.HasPrefix(ta.Cmdline(), "etoile.verity=") || len(ta.Cmdline()) != len("etoile.verity=")+64+1+64 {
		t.Fatalf("cmdline %q", ta.Cmdline())
	}
}

func TestAppendEmpty(t *testing.T) {
	p := filepath.Join(t.TempDir(), "e")
	os.WriteFile(p, nil, 0o644)
	if _, err := Append(p); err == nil {
		t.Fatal("an empty image was accepted")
	}
}
