package kmod

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// TestDecompress reads each module compression the loader accepts, the way
// the initramfs writes .ko.zst (one single-segment frame) and the way
// distributions ship .ko.xz and .ko.gz.
func TestDecompress(t *testing.T) {
	module := bytes.Repeat([]byte("\x7fELF module body "), 5000)
	var zs, zsStream, xzb, gzb bytes.Buffer
	enc, _ := zstd.NewWriter(nil, zstd.WithSingleSegment(true))
	zs.Write(enc.EncodeAll(module, nil))
	w, _ := zstd.NewWriter(&zsStream)
	w.Write(module)
	w.Close()
	xw, _ := xz.NewWriter(&xzb)
	xw.Write(module)
	xw.Close()
	gw := gzip.NewWriter(&gzb)
	gw.Write(module)
	gw.Close()
	for name, data := range map[string][]byte{
		"a.ko.zst": zs.Bytes(), "stream.ko.zst": zsStream.Bytes(), "b.ko.xz": xzb.Bytes(), "c.ko.gz": gzb.Bytes(),
	} {
		got, err := decompress(name, bytes.NewReader(data))
		if err != nil || !bytes.Equal(got, module) {
			t.Errorf("%s: %d bytes, %v; want the %d-byte module", name, len(got), err, len(module))
		}
	}
	if _, err := decompress("d.ko.zst", strings.NewReader("not zstd")); err == nil {
		t.Error("a corrupt .ko.zst decompressed without error")
	}
	if _, err := decompress("e.ko.bz2", strings.NewReader("x")); err == nil || !strings.Contains(err.Error(), ".ko.zst") {
		t.Errorf("unknown compression: %v", err)
	}
}
