package media

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkSquashfsVsMksquashfs writes the same tree with WriteSquashfs and
// with mksquashfs (defaults: gzip, all cores) and reports both times, their
// ratio and the image sizes. ETOILE_BENCH_SQUASHFS_MIB sets the tree size
// (default 64): a third incompressible (like airgap tarballs), the rest
// text-like files in nested folders.
func BenchmarkSquashfsVsMksquashfs(b *testing.B) {
	mksquashfs, err := exec.LookPath("mksquashfs")
	if err != nil {
		b.Fatal("mksquashfs not found: install it with `apt-get install -y squashfs-tools`")
	}
	mib := 64
	if v := os.Getenv("ETOILE_BENCH_SQUASHFS_MIB"); v != "" {
		if mib, err = strconv.Atoi(v); err != nil || mib < 1 {
			b.Fatalf("ETOILE_BENCH_SQUASHFS_MIB=%q is not a positive number", v)
		}
	}
	src := b.TempDir()
	total := mib << 20
	if err := os.WriteFile(filepath.Join(src, "airgap.tar.zst"), randomBytes(total/3, 1), 0o644); err != nil {
		b.Fatal(err)
	}
	text := []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: etoile\n")
	for n, i := total/3, 0; n < total; i++ {
		size := 4096 + (i*7919)%(256<<10)
		data := make([]byte, size)
		for j := range data {
			data[j] = text[j%len(text)] ^ byte(i*j>>9)
		}
		p := filepath.Join(src, "usr", "lib", strconv.Itoa(i%23), "file"+strconv.Itoa(i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		n += size
	}
	out := b.TempDir()
	var ours, theirs time.Duration
	var oursSize, theirsSize int64
	for b.Loop() {
		dst := filepath.Join(out, "ours.sqfs")
		start := time.Now()
		if err := WriteSquashfs(dst, src, SquashfsOptions{Epoch: 1}); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
		st, _ := os.Stat(dst)
		oursSize = st.Size()

		ref := filepath.Join(out, "ref.sqfs")
		os.Remove(ref)
		start = time.Now()
		if o, err := exec.Command(mksquashfs, src, ref, "-quiet", "-no-progress").CombinedOutput(); err != nil {
			b.Fatalf("mksquashfs: %v\n%s", err, o)
		}
		theirs += time.Since(start)
		st, _ = os.Stat(ref)
		theirsSize = st.Size()
	}
	b.ReportMetric(ours.Seconds()/float64(b.N), "s/write")
	b.ReportMetric(theirs.Seconds()/float64(b.N), "s/mksquashfs")
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "time-ratio")
	b.ReportMetric(float64(oursSize)/(1<<20), "MiB")
	b.ReportMetric(float64(theirsSize)/(1<<20), "MiB-mksquashfs")
}
