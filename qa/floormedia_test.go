package qa

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func TestReplaceInImage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	old := make([]byte, 3000)
	for i := range old {
		old[i] = byte(rng.UintN(256))
	}
	repl := []byte("floor initramfs")
	img := make([]byte, 4<<20)
	copy(img[1<<20+512:], old)         // aligned: replaced
	copy(img[9<<20/4+512:], old)       // aligned again: replaced
	copy(img[3<<20+100:], old)         // unaligned: left alone
	copy(img[3<<20+8192:], old[:2000]) // truncated copy: left alone
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.img"), filepath.Join(dir, "dst.img")
	if err := os.WriteFile(src, img, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReplaceInImage(src, dst, old, repl)
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{1<<20 + 512, 9<<20/4 + 512}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("patched offsets %v, want %v", got, want)
	}
	out, _ := os.ReadFile(dst)
	padded := make([]byte, len(old))
	copy(padded, repl)
	exp := bytes.Clone(img)
	copy(exp[want[0]:], padded)
	copy(exp[want[1]:], padded)
	if !bytes.Equal(out, exp) {
		t.Error("patched image differs from the expected bytes")
	}
	if src, _ := os.ReadFile(src); !bytes.Equal(src, img) {
		t.Error("the source image was modified")
	}

	if _, err := ReplaceInImage(src, dst, old[:100], repl); err == nil {
		t.Error("a file shorter than a sector was accepted")
	}
	if _, err := ReplaceInImage(src, dst, repl, old); err == nil {
		t.Error("a replacement longer than the file was accepted")
	}
	other := bytes.Repeat([]byte{7}, 1024)
	if _, err := ReplaceInImage(src, dst, other, repl); err == nil {
		t.Error("a file not in the image gave no error")
	}
}
