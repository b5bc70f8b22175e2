package k3s

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/qa/k3sstandin/release"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type tarEntry struct {
	name, link string
	data       []byte
	dir        bool
}

// imageWith builds a one-layer linux/amd64 image from entries.
func imageWith(t *testing.T, entries []tarEntry, opts ...tarball.LayerOption) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o755, ModTime: time.Unix(0, 0)}
		switch {
		case e.dir:
			h.Typeflag = tar.TypeDir
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layerData := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerData)), nil }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// standinImage is a rancher/k3s-shaped image holding the K3s stand-in as
// /bin/k3s with the multi-call links next to it.
func standinImage(t *testing.T) (v1.Image, []byte) {
	bin, err := os.ReadFile(filepath.Join(standinRelease(t), BinaryName))
	if err != nil {
		t.Fatal(err)
	}
	return imageWith(t, []tarEntry{
		{name: "bin/", dir: true},
		{name: "bin/k3s", data: bin},
		{name: "bin/kubectl", link: "k3s"},
		{name: "etc/", dir: true},
		{name: "etc/os-release", data: []byte("ID=k3s-standin\n")},
	}), bin
}

// localRegistry starts go-containerregistry's in-memory registry on
// loopback (wharfie talks plain HTTP to loopback registries).
func localRegistry(t *testing.T) string {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func push(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

func TestFetchOCIStandin(t *testing.T) {
	host := localRegistry(t)
	img, bin := standinImage(t)
	ref := host + "/rancher/k3s:" + strings.ReplaceAll(DefaultVersion, "+", "-")
	push(t, ref, img)
	digest, _ := img.Digest()
	airgap := filepath.Join(standinRelease(t), AirgapName)
	cache := t.TempDir()
	log, _ := testLog(t)
	src := Source{Kind: KindOCI, Image: ref, AirgapTarball: airgap}

	a, err := Fetch(context.Background(), src, cache, log)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if got, want := sha256File(t, a.Binary), sha256File(t, filepath.Join(standinRelease(t), BinaryName)); got != want || a.BinarySHA256 != want {
		t.Errorf("extracted binary %s (reported %s), want the stand-in's %s", got, a.BinarySHA256, want)
	}
	if st, err := os.Lstat(a.Binary); err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o755 {
		t.Errorf("extracted binary: %v %v, want a regular 0755 file", st, err)
	}
	if int64(len(bin)) == 0 || a.Version != DefaultVersion {
		t.Errorf("version %q, want %q (read from the stand-in)", a.Version, DefaultVersion)
	}
	if want := "oci " + host + "/rancher/k3s@" + digest.String(); a.Source != want {
		t.Errorf("Source = %q, want %q", a.Source, want)
	}
	if !strings.HasPrefix(a.PURL, "pkg:oci/k3s@sha256%3A"+digest.Hex) {
		t.Errorf("PURL = %q", a.PURL)
	}
	if len(a.AirgapImages) != 1 || a.AirgapImages[0] != airgap || a.AirgapSHA256[airgap] != sha256File(t, airgap) {
		t.Errorf("airgap = %v %v, want %s", a.AirgapImages, a.AirgapSHA256, airgap)
	}
	// Only /bin/k3s is taken from the image.
	entries, _ := os.ReadDir(filepath.Dir(a.Binary))
	for _, e := range entries {
		if e.Name() != BinaryName && e.Name() != BinaryName+".sha256" {
			t.Errorf("extracted more than the binary: %s", e.Name())
		}
	}

	// A corrupted extraction is detected and redone.
	if err := os.WriteFile(a.Binary, []byte("bit rot"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := Fetch(context.Background(), src, cache, log)
	if err != nil {
		t.Fatalf("Fetch after corrupting the extraction: %v", err)
	}
	if sha256File(t, b.Binary) != a.BinarySHA256 {
		t.Error("the corrupted extraction was used")
	}
}

func TestFetchOCIDefaultImageName(t *testing.T) {
	if got, want := DefaultImage("v1.34.9+k3s1"), "docker.io/rancher/k3s:v1.34.9-k3s1"; got != want {
		t.Errorf("DefaultImage = %q, want %q", got, want)
	}
}

func TestFetchOCIFailuresStandin(t *testing.T) {
	host := localRegistry(t)
	noBinary := imageWith(t, []tarEntry{{name: "etc/", dir: true}, {name: "etc/hostname", data: []byte("x\n")}})
	push(t, host+"/rancher/k3s:empty", noBinary)
	linkBinary := imageWith(t, []tarEntry{{name: "bin/", dir: true}, {name: "bin/k3s", link: "/etc/passwd"}})
	push(t, host+"/rancher/k3s:link", linkBinary)
	img, _ := standinImage(t)
	push(t, host+"/rancher/k3s:good", img)
	garbage := filepath.Join(t.TempDir(), "images.tar.zst")
	os.WriteFile(garbage, []byte("not zstd"), 0o644)
	emptyRegistries := filepath.Join(t.TempDir(), "registries.yaml")
	os.WriteFile(emptyRegistries, []byte("mirrors: {}\n"), 0o644)

	tests := []struct {
		name    string
		src     Source
		wantErr []string
	}{
		{"no /bin/k3s", Source{Image: host + "/rancher/k3s:empty"}, []string{"has no /bin/k3s"}},
		{"/bin/k3s is a link", Source{Image: host + "/rancher/k3s:link"}, []string{"not the k3s binary"}},
		{"missing tag", Source{Image: host + "/rancher/k3s:nope"}, []string{"pulling K3s image", "--k3s-dir DIR", "k3s.registries"}},
		{"missing tag, registries given", Source{Image: host + "/rancher/k3s:nope", RegistriesFile: emptyRegistries}, []string{"pulling K3s image", "k3s.registries, " + emptyRegistries}},
		{"unreachable registry", Source{Image: "127.0.0.1:1/rancher/k3s:v1"}, []string{"pulling K3s image 127.0.0.1:1/rancher/k3s:v1", "--k3s-dir DIR"}},
		{"bad reference", Source{Image: "UPPER/case:x"}, []string{"not an image reference"}},
		{"other version", Source{Image: host + "/rancher/k3s:good", Version: "v1.33.1+k3s1"}, []string{"but the spec asks for v1.33.1+k3s1"}},
		{"airgap not an archive", Source{Image: host + "/rancher/k3s:good", AirgapTarball: garbage}, []string{"k3s.airgapTarball", garbage}},
		{"airgap missing", Source{Image: host + "/rancher/k3s:good", AirgapTarball: "/nonexistent.tar"}, []string{"/nonexistent.tar"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.src.Kind = KindOCI
			log, _ := testLog(t)
			_, err := Fetch(context.Background(), tt.src, t.TempDir(), log)
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestExtraAirgapStandin(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "site-app.tar")
	tag, _ := name.NewTag("registry.example/site/app:1")
	img := imageWith(t, []tarEntry{{name: "app", data: []byte("app")}})
	if err := tarball.WriteToFile(app, tag, img); err != nil {
		t.Fatal(err)
	}
	untagged := filepath.Join(dir, "untagged.tar")
	d, _ := img.Digest()
	byDigest, err := name.NewDigest("registry.example/site/app@" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(untagged, byDigest, img); err != nil {
		t.Fatal(err)
	}
	dup := filepath.Join(t.TempDir(), AirgapName)
	data, _ := os.ReadFile(filepath.Join(standinRelease(t), AirgapName))
	os.WriteFile(dup, data, 0o644)
	wrongExt := filepath.Join(dir, "images.zip")
	os.WriteFile(wrongExt, []byte("x"), 0o644)

	// What an archive must be, in the errors about its contents.
	what := []string{"docker save", "manifest.json", "tagged image"}
	tests := []struct {
		name     string
		extra    []string
		wantErr  string
		wantWhat bool
	}{
		{"tagged archive", []string{app}, "", false},
		{"same name as K3s's tarball", []string{dup}, "its file name is also used by", false},
		{"untagged archive", []string{untagged}, "holds no tagged image", true},
		{"unsupported extension", []string{wrongExt}, "supported extensions", true},
		{"missing", []string{filepath.Join(dir, "nope.tar")}, "nope.tar", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, _ := testLog(t)
			a, err := Fetch(context.Background(), Source{Kind: KindDir, Dir: standinRelease(t), ExtraAirgap: tt.extra}, "", log)
			if tt.wantErr != "" {
				// The spec's field name: k3s.airgapImages.
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "k3s.airgapImages[0]") {
					t.Fatalf("error = %v, want one naming k3s.airgapImages[0] and containing %q", err, tt.wantErr)
				}
				for _, w := range what {
					if got := strings.Contains(err.Error(), w); got != tt.wantWhat {
						t.Errorf("error %q mentions %q: %v, want %v", err, w, got, tt.wantWhat)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(a.AirgapImages) != 2 || a.AirgapImages[1] != app || a.AirgapSHA256[app] != sha256File(t, app) {
				t.Errorf("airgap = %v %v, want the release's then %s", a.AirgapImages, a.AirgapSHA256, app)
			}
		})
	}
}

// TestStandinAirgapArchive: the stand-in release's airgap tarball is a real
// image archive that wharfie's tarfile lookup reads.
func TestStandinAirgapArchive(t *testing.T) {
	tags, err := checkImageArchive(filepath.Join(standinRelease(t), AirgapName))
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 1 || tags[0] != release.AirgapTag {
		t.Errorf("tags = %q, want [%s]", tags, release.AirgapTag)
	}
}
