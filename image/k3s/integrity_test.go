package k3s

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestFetchOCIRefusesTamperedLayer: a registry (or a mirror) that serves a
// layer whose bytes do not match its digest, same length, changed inside
// /bin/k3s, gets the build refused, and nothing lands in the cache that a
// later build would trust.
func TestFetchOCIRefusesTamperedLayer(t *testing.T) {
	bin, err := os.ReadFile(filepath.Join(standinRelease(t), BinaryName))
	if err != nil {
		t.Fatal(err)
	}
	// Trailing bytes an ELF program ignores; stored as is in the layer
	// blob (gzip without compression), where the proxy finds them.
	bin = append(bin, "\x00PAYLOAD_ORIGINAL_CONTENT\x00"...)
	img := imageWith(t, []tarEntry{{name: "bin/", dir: true}, {name: "bin/k3s", data: bin}},
		tarball.WithCompressionLevel(gzip.NoCompression))
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}

	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tampered := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
			reg.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if i := bytes.Index(body, []byte("PAYLOAD_ORIGINAL")); i >= 0 {
			copy(body[i:], "PAYLOAD_TAMPERED")
			tampered++
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/rancher/k3s:" + strings.ReplaceAll(DefaultVersion, "+", "-")
	push(t, ref, img)

	cache := t.TempDir()
	logger, _ := testLog(t)
	a, err := Fetch(context.Background(), Source{Kind: KindOCI, Image: ref}, cache, logger)
	if tampered == 0 {
		t.Fatal("the proxy changed nothing: the test proves nothing")
	}
	if err == nil {
		got, _ := os.ReadFile(a.Binary)
		t.Fatalf("Fetch accepted a layer that does not match its digest (tampered bytes in the binary: %v)", bytes.Contains(got, []byte("PAYLOAD_TAMPERED")))
	}
	for _, w := range []string{host + "/rancher/k3s@sha256:", "did not match its digest"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	filepath.WalkDir(cache, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("left in the cache: %s", p)
		}
		return nil
	})
}

// foreignRelease is a copy of the stand-in release whose binary says it is
// for arm64 (ELF e_machine), with the checksum file to match: everything
// but the CPU is right.
func foreignRelease(t *testing.T) (string, []byte) {
	t.Helper()
	dir := copyRelease(t)
	bin := filepath.Join(dir, BinaryName)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint16(data[18:], uint16(elf.EM_AARCH64)) // Elf64_Ehdr.e_machine
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sums := fmt.Sprintf("%s  %s\n%s  %s\n", sha256File(t, bin), BinaryName, sha256File(t, filepath.Join(dir, AirgapName)), AirgapName)
	if err := os.WriteFile(filepath.Join(dir, ChecksumName), []byte(sums), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, data
}

// TestFetchRefusesForeignArch: a k3s built for another CPU than the
// image's (every node would fail with "exec format error") is refused by
// every source, naming what it is and what the image needs.
func TestFetchRefusesForeignArch(t *testing.T) {
	folder, foreign := foreignRelease(t)
	host := localRegistry(t)
	ref := host + "/rancher/k3s:" + strings.ReplaceAll(DefaultVersion, "+", "-")
	// A single arm64 image: the platform asked for does not choose it.
	push(t, ref+"-elf", imageWith(t, []tarEntry{{name: "bin/", dir: true}, {name: "bin/k3s", data: foreign}}))
	img, _ := standinImage(t)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture = "arm64"
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	push(t, ref+"-config", img)
	rs := serveRelease(t, DefaultVersion, folder)
	releaseCache := t.TempDir()

	elfErr := []string{"EM_AARCH64", "the image is for amd64", "use K3s built for amd64"}
	tests := []struct {
		name    string
		src     Source
		cache   string
		wantErr []string
	}{
		{"oci, arm64 binary", Source{Kind: KindOCI, Image: ref + "-elf"}, t.TempDir(), elfErr},
		{"oci, arm64 image config", Source{Kind: KindOCI, Image: ref + "-config"}, t.TempDir(), []string{"is for linux/arm64", "for linux/amd64"}},
		{"dir", Source{Kind: KindDir, Dir: folder}, "", elfErr},
		{"release, downloaded", Source{BaseURL: rs.URL}, releaseCache, elfErr},
		{"release, from the cache", Source{BaseURL: rs.URL}, releaseCache, elfErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, _ := testLog(t)
			a, err := Fetch(context.Background(), tt.src, tt.cache, logger)
			if err == nil {
				t.Fatalf("Fetch accepted %s", a.Binary)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if n := rs.requests.Load(); n != 3 {
		t.Errorf("%d requests to the release server, want 3 (the second fetch uses the cache)", n)
	}
}
