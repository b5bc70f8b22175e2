package qa

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// CompareTrees reports every file that exists in only one tree or differs,
// with the first differing offset.
func CompareTrees(a, b string) error {
	fa, err := listFiles(a)
	if err != nil {
		return err
	}
	fb, err := listFiles(b)
	if err != nil {
		return err
	}
	var errs []error
	for name := range fa {
		if !fb[name] {
			errs = append(errs, fmt.Errorf("%s exists only in the first build (%s)", name, a))
		}
	}
	names := make([]string, 0, len(fb))
	for name := range fb {
		if !fa[name] {
			errs = append(errs, fmt.Errorf("%s exists only in the second build (%s)", name, b))
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		off, err := firstDifference(filepath.Join(a, name), filepath.Join(b, name))
		if err != nil {
			errs = append(errs, err)
		} else if off >= 0 {
			errs = append(errs, fmt.Errorf("%s differs between the builds, first at byte offset %d (0x%x)", name, off, off))
		}
	}
	return errors.Join(errs...)
}

func listFiles(root string) (map[string]bool, error) {
	files := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		files[rel] = true
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list build output %s: %w", root, err)
	}
	return files, nil
}

// firstDifference returns the first offset at which two files differ (a length
// difference counts at the shorter one's end), or -1 if they are identical.
func firstDifference(a, b string) (int64, error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, err
	}
	defer fb.Close()
	ra, rb := bufio.NewReaderSize(fa, 1<<20), bufio.NewReaderSize(fb, 1<<20)
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for {
		na, erra := io.ReadFull(ra, ba)
		nb, errb := io.ReadFull(rb, bb)
		n := min(na, nb)
		if !bytes.Equal(ba[:n], bb[:n]) {
			for i := range n {
				if ba[i] != bb[i] {
					return off + int64(i), nil
				}
			}
		}
		if na != nb {
			return off + int64(n), nil
		}
		off += int64(n)
		endA := erra == io.EOF || erra == io.ErrUnexpectedEOF
		endB := errb == io.EOF || errb == io.ErrUnexpectedEOF
		if endA && endB {
			return -1, nil
		}
		if erra != nil && !endA {
			return 0, fmt.Errorf("read %s: %w", a, erra)
		}
		if errb != nil && !endB {
			return 0, fmt.Errorf("read %s: %w", b, errb)
		}
	}
}
