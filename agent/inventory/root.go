package inventory

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// root reads kernel files under a directory: "/" on a live machine, a copied tree otherwise.
//
// A copied tree may have lost sysfs's symbolic links (copying tools, tarballs from a capture
// script, git): where sysfs has a link `X` whose target's base name is what we want (a
// device's `driver`), a copied tree may hold a plain text file `X.name` with that base name
// instead. The H100 host snapshot in ../shared/fixtures/hw/h100-vm stores `driver.name` so.
// Every link read goes through linkBase, which accepts both forms.
type root struct {
	dir  string
	live bool
}

func newRoot(dir string) root {
	if dir == "" || filepath.Clean(dir) == "/" {
		return root{dir: "/", live: true}
	}
	return root{dir: filepath.Clean(dir)}
}

// path turns an absolute machine path (/sys/…) into a path under the root.
func (r root) path(p string) string {
	return filepath.Join(r.dir, filepath.FromSlash(p))
}

func (r root) readFile(p string) ([]byte, error) {
	return os.ReadFile(r.path(p))
}

// attr reads a one-line attribute file, trimmed; "" when it is missing or unreadable, which
// sysfs does for many attributes that do not apply (a NIC's speed while its link is down, a
// root-only DMI serial).
func (r root) attr(p string) string {
	b, err := r.readFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// attrInt reads a decimal attribute; ok is false when it is missing or not a number.
func (r root) attrInt(p string) (int64, bool) {
	v, err := strconv.ParseInt(r.attr(p), 10, 64)
	return v, err == nil
}

// attrHex reads a "0x…" attribute (PCI ids and class codes).
func (r root) attrHex(p string) (uint64, bool) {
	s := strings.TrimPrefix(r.attr(p), "0x")
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}

// linkBase returns the base name of the link p points to, or the content of p+".name" in a
// copied tree that stores it as text; "" when neither exists.
func (r root) linkBase(p string) string {
	if target, err := os.Readlink(r.path(p)); err == nil {
		return filepath.Base(target)
	}
	return r.attr(p + ".name")
}

// linkTarget returns the target of a link relative to the machine's root ("/sys/devices/…"),
// resolved lexically: a copied tree's links point inside the copy only by their relative
// form, which is what sysfs writes.
func (r root) linkTarget(p string) string {
	target, err := os.Readlink(r.path(p))
	if err != nil {
		return ""
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(p), target)
	}
	return filepath.ToSlash(filepath.Clean(target))
}

// list returns the names in a directory, sorted; none when it is missing.
func (r root) list(p string) ([]string, error) {
	entries, err := os.ReadDir(r.path(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

func (r root) exists(p string) bool {
	_, err := os.Lstat(r.path(p))
	return err == nil
}
