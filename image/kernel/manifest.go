package kernel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/etoile-os/etoile/image/debian"
)

// manifestName is the file in an unpacked kernel cache entry that lists
// every file with its size, modification time (seconds) and SHA-256, written when the
// entry is made. Each use checks the sizes and times of all of them (a
// truncated module, a file edited or removed by hand) and the kernel
// image's SHA-256; a mismatch makes the entry unpacked again from its
// verified package. Hashing the whole entry (400 MB) on every build would
// cost seconds.
const manifestName = ".etoile-manifest"

// writeManifest lists every regular file under root, stopping when ctx
// ends (it looks before each file).
func writeManifest(ctx context.Context, root string) error {
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == manifestName {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		sum, err := debian.FileSHA256(p)
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s %d %d %s", sum, st.Size(), st.ModTime().Unix(), filepath.ToSlash(rel)))
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing the unpacked kernel: %w", err)
	}
	sort.Strings(lines)
	return os.WriteFile(filepath.Join(root, manifestName), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// readManifest compares the entry at root with its manifest — every file
// listed is there with its size and time, and fullHash (the kernel image)
// has its SHA-256 — and returns each file's SHA-256 by its absolute path: a
// module's content is checked when the build reads it (hashing the whole
// tree on every build would cost seconds).
func readManifest(root, fullHash string) (map[string]string, error) {
	// Absolute: the sums are looked up by the modules' absolute paths (a
	// relative cache folder gave no match, and no check).
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	f, err := os.Open(filepath.Join(root, manifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no file list (%s): the entry predates it or was not finished", manifestName)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the file list: %w", err)
	}
	defer f.Close()
	want := ""
	if fullHash != "" {
		if rel, err := filepath.Rel(root, fullHash); err == nil {
			want = filepath.ToSlash(rel)
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	sums := map[string]string{}
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 4)
		if len(fields) != 4 {
			return nil, fmt.Errorf("%s line %d is malformed", manifestName, n+1)
		}
		n++
		size, err1 := strconv.ParseInt(fields[1], 10, 64)
		mtime, err2 := strconv.ParseInt(fields[2], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s line %d is malformed", manifestName, n)
		}
		p := filepath.Join(root, filepath.FromSlash(fields[3]))
		sums[p] = fields[0]
		st, err := os.Lstat(p)
		switch {
		case err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return nil, fmt.Errorf("reading %s: %w", fields[3], err)
		case err != nil:
			return nil, fmt.Errorf("%s is missing", fields[3])
		case st.Size() != size:
			return nil, fmt.Errorf("%s changed since it was unpacked: its size is %d bytes, was %d", fields[3], st.Size(), size)
		case st.ModTime().Unix() != mtime: // seconds: caches restored by tar keep no more
			return nil, fmt.Errorf("%s changed since it was unpacked: its modification time is %s, was %s",
				fields[3], st.ModTime().UTC().Format(time.RFC3339), time.Unix(mtime, 0).UTC().Format(time.RFC3339))
		}
		// The kernel image and the module indexes (a few MB: what the
		// initramfs's /init loads drivers by) are hashed on every use; a
		// module when the build reads it (Module.Open, copyModule).
		if fields[3] == want || isIndexFile(fields[3]) {
			sum, err := debian.FileSHA256(p)
			if err != nil {
				return nil, err
			}
			if sum != fields[0] {
				return nil, fmt.Errorf("%s is damaged: SHA-256 %s, want %s", fields[3], sum, fields[0])
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%s lists no files", manifestName)
	}
	return sums, nil
}

// isIndexFile reports whether rel (a path in a kernel cache entry) is one of
// the module indexes in lib/modules/<version>/ (modules.dep, modules.alias…).
func isIndexFile(rel string) bool {
	dir, base := path.Split(rel)
	return strings.HasPrefix(base, "modules.") && (path.Dir(path.Dir(dir)) == "lib/modules" || path.Dir(path.Dir(dir)) == "usr/lib/modules")
}
