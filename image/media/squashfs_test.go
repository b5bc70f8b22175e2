package media

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// squashfsSource builds a tree with the shapes a system image holds.
func squashfsSource(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "usr/local/bin/k3s"), randomBytes(21<<20+123, 1), 0o755)
	writeFile(t, filepath.Join(src, "etc/hostname"), []byte("etoile\n"), 0o644)
	writeFile(t, filepath.Join(src, "etc/secret"), []byte("s3cret"), 0o600)
	writeFile(t, filepath.Join(src, "var/lib/empty-file"), nil, 0o644)
	writeFile(t, filepath.Join(src, "opt/exactly-one-block"), randomBytes(SquashfsBlockSize, 2), 0o644)
	// A listing over 32 KiB: go-diskfs writes its directory table wrongly
	// past 8 KiB and 32 KiB (see rechunkSquashfsDirectories).
	for i := 0; i < 1000; i++ {
		writeFile(t, filepath.Join(src, "many", "file-"+strings.Repeat("x", i%30)+string(rune('a'+i%26))+"-"+itoa(i)), randomBytes(i*7, uint32(i+3)), 0o644)
	}
	writeFile(t, filepath.Join(src, "zz-after-many/last"), []byte("after the big folder\n"), 0o644)
	if err := os.MkdirAll(filepath.Join(src, "run/empty-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Modes beyond the low nine bits: /tmp's sticky bit, a setuid program.
	if err := os.MkdirAll(filepath.Join(src, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "tmp"), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "usr/bin/setuid-tool"), []byte("#!/bin/sh\n"), 0o755)
	if err := os.Chmod(filepath.Join(src, "usr/bin/setuid-tool"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../local/bin/k3s", filepath.Join(src, "usr/local/kubectl")); err != nil {
		t.Fatal(err)
	}
	// Absolute, dangling and many short links: go-diskfs resolves links
	// while writing, so these are the cases that break it.
	for name, target := range map[string]string{
		"hostname-abs": "/etc/hostname", "dangling-abs": "/does/not/exist", "dangling-rel": "../../nope",
	} {
		if err := os.Symlink(target, filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if err := os.Symlink("busybox", filepath.Join(src, "bin", "applet"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestWriteSquashfsUnpacksIdentical(t *testing.T) {
	unsquashfs := tool(t, "unsquashfs", "squashfs-tools")
	src := squashfsSource(t)
	dst := filepath.Join(t.TempDir(), "system.sqfs")
	// A temporary folder of its own: another build on the machine (or one
	// killed earlier) may have go-diskfs workspaces in the shared one.
	t.Setenv("TMPDIR", t.TempDir())
	if err := WriteSquashfs(dst, src, SquashfsOptions{Epoch: 1700000000}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dst + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file %s.tmp left behind", dst)
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "diskfs_squashfs*")); len(left) > 0 {
		t.Errorf("go-diskfs workspaces left behind: %v", left)
	}
	stat := run(t, unsquashfs, "-s", dst)
	for _, want := range []string{"Block size 131072", "Compression gzip", "Data is uncompressed", "Inodes are uncompressed"} {
		if !strings.Contains(stat, want) {
			t.Errorf("unsquashfs -s lacks %q:\n%s", want, stat)
		}
	}
	if !strings.Contains(stat, time.Unix(1700000000, 0).UTC().Format("Mon Jan 2 15:04:05 2006")) &&
		!strings.Contains(stat, time.Unix(1700000000, 0).Local().Format("Mon Jan _2 15:04:05 2006")) {
		t.Errorf("superblock time is not the epoch:\n%s", stat)
	}
	// -lln shows owners and times: everything must be 0/0 at the epoch.
	listing := run(t, unsquashfs, "-lln", "-UTC", dst)
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		if !strings.Contains(line, "squashfs-root") {
			continue
		}
		if !strings.Contains(line, " 0/0 ") || !strings.Contains(line, "2023-11-14 22:13") {
			t.Errorf("entry not owned by 0/0 at the epoch: %s", line)
		}
	}
	for _, want := range []string{`(?m)^drwxrwxrwt 0/0 .* squashfs-root/tmp$`, `(?m)^-rwsr-xr-x 0/0 .* squashfs-root/usr/bin/setuid-tool$`} {
		if !regexp.MustCompile(want).MatchString(listing) {
			t.Errorf("unsquashfs -lln lacks %s (sticky and setuid bits)", want)
		}
	}
	out := filepath.Join(t.TempDir(), "x")
	run(t, unsquashfs, "-no-xattrs", "-d", out, dst)
	compareTrees(t, src, out)
}

func TestWriteSquashfsReproducible(t *testing.T) {
	src := squashfsSource(t)
	a := filepath.Join(t.TempDir(), "a.sqfs")
	b := filepath.Join(t.TempDir(), "b.sqfs")
	if err := WriteSquashfs(a, src, SquashfsOptions{Epoch: 1234567890}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	// A copy of the tree made later, elsewhere, with other times.
	src2 := filepath.Join(t.TempDir(), "copy")
	run(t, "cp", "-a", src, src2)
	if err := os.Chtimes(filepath.Join(src2, "etc/hostname"), time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := WriteSquashfs(b, src2, SquashfsOptions{Epoch: 1234567890}); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, a, b)
}

func TestWriteSquashfsBadInput(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, dst, src, want string
	}{
		{"missing source", filepath.Join(dir, "x.sqfs"), filepath.Join(dir, "nope"), "nope"},
		{"missing output folder", filepath.Join(dir, "no/such/x.sqfs"), dir, "no/such"},
		{"empty destination", "", dir, "destination"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteSquashfs(tc.dst, tc.src, SquashfsOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
			if tc.dst != "" {
				if _, err := os.Stat(tc.dst); !os.IsNotExist(err) {
					t.Errorf("%s exists after a failed write", tc.dst)
				}
			}
		})
	}
}
