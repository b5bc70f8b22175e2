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
//
// A copied tree is read through an os.Root: a link in it that leads out of it (an absolute
// link to /sys/class/net/eth0) reads as missing, never as the live machine's file.
type root struct {
	dir  string
	live bool
	fs   *os.Root // a copied tree's (nil on a live machine, or when dir cannot be opened)
}

func newRoot(dir string) root {
	if dir == "" || filepath.Clean(dir) == "/" {
		return root{dir: "/", live: true}
	}
	r := root{dir: filepath.Clean(dir)}
	if fs, err := os.OpenRoot(r.dir); err == nil {
		r.fs = fs
	}
	return r
}

// close releases a copied tree's root.
func (r root) close() {
	if r.fs != nil {
		r.fs.Close()
	}
}

// path turns an absolute machine path (/sys/…) into a path under the root.
func (r root) path(p string) string {
	return filepath.Join(r.dir, filepath.FromSlash(p))
}

// rel is p inside a copied tree's root.
func (r root) rel(p string) string {
	return strings.TrimPrefix(filepath.Clean(filepath.FromSlash(p)), string(filepath.Separator))
}

// errNoTree is a copied tree's read when the tree could not be opened.
var errNoTree = errors.New("the inventory root cannot be opened")

func (r root) readFile(p string) ([]byte, error) {
	if r.live {
		return os.ReadFile(r.path(p))
	}
	if r.fs == nil {
		return nil, errNoTree
	}
	return r.fs.ReadFile(r.rel(p))
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
	if target, err := r.readlink(p); err == nil {
		return filepath.Base(target)
	}
	return r.attr(p + ".name")
}

// readlink reads link p (the link itself: its target may lie outside a
// copied tree, and only its text is used).
func (r root) readlink(p string) (string, error) {
	if r.live {
		return os.Readlink(r.path(p))
	}
	if r.fs == nil {
		return "", errNoTree
	}
	return r.fs.Readlink(r.rel(p))
}

// linkTarget returns the target of a link relative to the machine's root ("/sys/devices/…"),
// resolved lexically: a copied tree's links point inside the copy only by their relative
// form, which is what sysfs writes.
func (r root) linkTarget(p string) string {
	target, err := r.readlink(p)
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
	var entries []fs.DirEntry
	var err error
	switch {
	case r.live:
		entries, err = os.ReadDir(r.path(p))
	case r.fs == nil:
		err = errNoTree
	default:
		entries, err = fs.ReadDir(r.fs.FS(), filepath.ToSlash(r.rel(p)))
	}
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
	var err error
	switch {
	case r.live:
		_, err = os.Lstat(r.path(p))
	case r.fs == nil:
		err = errNoTree
	default:
		_, err = r.fs.Lstat(r.rel(p))
	}
	return err == nil
}
