// Package release writes a folder laid out exactly like a K3s release for
// amd64 — k3s, k3s-airgap-images-amd64.tar.zst, sha256sum-amd64.txt — with
// the K3s STAND-IN (qa/k3sstandin, a test double) as the binary and a tiny
// real image archive as the airgap images. Builds pointed at the folder
// (ETOILE_K3S_DIR=out/k3s-standin) take the same code path as with a real
// release. Nothing here is K3s; it is test data.
package release

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/zstd"
)

// File names of a K3s release for amd64.
const (
	BinaryName   = "k3s"
	AirgapName   = "k3s-airgap-images-amd64.tar.zst"
	ChecksumName = "sha256sum-amd64.txt"
)

// AirgapTag is the one image in the stand-in's airgap archive; its name
// says it is test data.
const AirgapTag = "docker.io/etoile/k3s-standin-airgap:v1"

// StandinPackage is the Go package of the stand-in binary.
const StandinPackage = "github.com/etoile-os/etoile/qa/k3sstandin"

// BuildStandin compiles the stand-in into out: static (CGO off),
// reproducible (-trimpath, no build id), claiming K3s version.
func BuildStandin(ctx context.Context, out, version string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid= -X main.version="+version, "-o", out, StandinPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building the K3s stand-in (%s): %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// AirgapImage is a one-layer image holding a note that it is stand-in
// test data; epoch fixes every timestamp so the archive is reproducible.
func AirgapImage(epoch time.Time) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	note := []byte("Étoile K3s stand-in airgap image: test data, not a K3s system image.\n")
	if err := tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "etc/k3s-standin-airgap.txt", Typeflag: tar.TypeReg, Mode: 0o644,
		Size: int64(len(note)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(note); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Cmd = []string{"/bin/false"}
	cfg.Config.Labels = map[string]string{"io.etoile.k3s-standin": "test data"}
	return mutate.ConfigFile(img, cfg)
}

// WriteAirgap writes the airgap archive: the image in docker save format
// (what K3s imports), compressed with zstd.
func WriteAirgap(path string, epoch time.Time) error {
	img, err := AirgapImage(epoch)
	if err != nil {
		return fmt.Errorf("building the stand-in airgap image: %w", err)
	}
	tag, err := name.NewTag(AirgapTag)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// One encoder goroutine keeps the output byte-identical across runs.
	zw, err := zstd.NewWriter(f, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return err
	}
	if err := tarball.Write(tag, img, zw); err != nil {
		zw.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// WriteChecksums writes sha256sum-amd64.txt for the named files of dir, in
// sha256sum(1)'s format, sorted by name as K3s's is.
func WriteChecksums(dir string, names ...string) error {
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), n)
	}
	return os.WriteFile(filepath.Join(dir, ChecksumName), []byte(b.String()), 0o644)
}

// Write builds the stand-in and writes the whole release folder into dir.
func Write(ctx context.Context, dir, version string, epoch time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := BuildStandin(ctx, filepath.Join(dir, BinaryName), version); err != nil {
		return err
	}
	if err := WriteAirgap(filepath.Join(dir, AirgapName), epoch); err != nil {
		return err
	}
	return WriteChecksums(dir, BinaryName, AirgapName)
}
