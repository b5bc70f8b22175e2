//go:build qa

package qa

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/image/media"
)

// binDir is where make put bin/etoile (ETOILE_BIN).
func binDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("ETOILE_BIN")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			tb.Fatal(err)
		}
		dir = filepath.Join(root, "bin")
	}
	if _, err := os.Stat(filepath.Join(dir, "etoile")); err != nil {
		tb.Fatalf("no etoile binary in %s: run `make build` (ETOILE_BIN to change)", dir)
	}
	return dir
}

func timed(tb testing.TB, name string, args ...string) time.Duration {
	tb.Helper()
	start := time.Now()
	cmd := exec.Command(name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return time.Since(start)
}

// BenchmarkBuild measures a warm `etoile build` of the default image (the
// cache filled by the build before it), and beside it, in the same run,
// the classic tools making the two largest pieces from the same content:
// xorriso writing the hybrid ISO and mksquashfs the system image. It also
// compares Étoile's squashfs writer with mksquashfs on one tree: the stand-in
// image's system tree plus 64 MiB of already-compressed data (like an airgap
// archive).
func BenchmarkBuild(b *testing.B) {
	if err := RequireTools(XorrisoTool, UnsquashfsTool, Tool{"mksquashfs", "squashfs-tools"}, IsohdpfxTool); err != nil {
		b.Fatal(err)
	}
	bin := binDir(b)
	flags := strings.Fields(os.Getenv("ETOILE_QA_BUILD_FLAGS"))
	work := b.TempDir()
	build := func(dir string) time.Duration {
		return timed(b, filepath.Join(bin, "etoile"), append([]string{"build", "-o", dir, "--agent", filepath.Join(bin, "etoile-agent")}, flags...)...)
	}
	build(filepath.Join(work, "warmup")) // fills the cache if it is not yet
	var warm time.Duration
	for b.Loop() {
		warm = build(filepath.Join(work, "out"))
	}
	out := filepath.Join(work, "out")

	// The classic tools on the same content.
	isoTree := filepath.Join(work, "isotree")
	timed(b, "xorriso", "-osirrox", "on", "-indev", filepath.Join(out, ISOName), "-extract", "/", isoTree)
	_ = os.Chmod(isoTree, 0o755)
	refISO := timed(b, "xorriso", "-as", "mkisofs", "-quiet", "-R", "-V", "ETOILE", "-isohybrid-mbr", "/usr/lib/ISOLINUX/isohdpfx.bin",
		"-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
		"-eltorito-alt-boot", "-e", "boot/efiboot.img", "-no-emul-boot", "-isohybrid-gpt-basdat", "-o", filepath.Join(work, "ref.iso"), isoTree)

	// One tree for both squashfs writers.
	tree := filepath.Join(work, "systree")
	sys := filepath.Join(out, SystemName)
	if so := os.Getenv("ETOILE_OUT_STANDIN"); so != "" {
		if _, err := os.Stat(filepath.Join(so, SystemName)); err == nil {
			sys = filepath.Join(so, SystemName)
		}
	}
	timed(b, "unsquashfs", "-q", "-n", "-d", tree, sys)
	blob := make([]byte, 64<<20)
	if _, err := rand.Read(blob); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "usr", "airgap-like.tar.zst"), blob, 0o644); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := media.WriteSquashfs(filepath.Join(work, "ours.sqfs"), tree, media.SquashfsOptions{Epoch: 1}); err != nil {
		b.Fatal(err)
	}
	ours := time.Since(start)
	theirs := timed(b, "mksquashfs", tree, filepath.Join(work, "theirs.sqfs"), "-noappend", "-quiet")
	size := func(p string) float64 { st, _ := os.Stat(p); return float64(st.Size()) / 1e6 }

	b.ReportMetric(warm.Seconds(), "warm-build-s")
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "squashfs-vs-mksquashfs")
	table := fmt.Sprintf(`## Build

Measured %s on %s, load average %s at the end.

| figure | Étoile | reference, same run | ratio | target |
| --- | ---: | ---: | ---: | --- |
| warm `+"`etoile build`"+` of the default image (every artifact, checksums, SBOM) | %.1f s | xorriso making the same hybrid ISO from the same files: %.1f s | — | ≤ 60 s |
| system image writer vs mksquashfs (gzip, all cores), same tree: the stand-in image's system tree + 64 MiB already-compressed | %.2f s, %.1f MB | %.2f s, %.1f MB | %.2f× | ≤ 1.0× |

Étoile's squashfs writer stores data uncompressed (the K3s binary and the airgap archives are already
compressed), which is why it is faster and larger on text.
`, Today(), MachineDescription(), loadAverage(), warm.Seconds(), refISO.Seconds(),
		ours.Seconds(), size(filepath.Join(work, "ours.sqfs")), theirs.Seconds(), size(filepath.Join(work, "theirs.sqfs")), ours.Seconds()/theirs.Seconds())
	fmt.Println(table)
	root, err := RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	if err := WriteDocSection(filepath.Join(root, "docs", "benchmarks.md"), "build", table); err != nil {
		b.Fatal(err)
	}
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
