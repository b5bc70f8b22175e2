package inventory

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/etoile-os/etoile/schema"
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
//
// Only regular files are read, opened without blocking and through a limit: sysfs
// attributes and procfs files are regular files of a page or so, and a copied tree can hold
// anything (a FIFO, whose plain open waits for a writer for ever; a device node; a file of
// hundreds of megabytes). What is refused is named once in a warning (notes), and reads as
// unreadable.
type root struct {
	dir   string
	live  bool
	fs    *os.Root   // a copied tree's (nil on a live machine, or when dir cannot be opened)
	notes *rootNotes // where refused files are told (nil: nowhere)
}

// rootNotes says once per path which files a root refused to read.
type rootNotes struct {
	mu   sync.Mutex
	seen map[string]bool
	warn func(msg string)
}

// attrMax bounds an attribute's read: a sysfs attribute is one page (4 KiB) at most, a
// one-line procfs file less; a larger file is no attribute (a damaged copy), and its number
// would be garbage.
const attrMax = 64 << 10

// fileMax bounds a whole file's read (cpuinfo of a large machine, a pci.ids, nvidia-smi's
// XML of 8 GPUs: a few MiB at most), so that a huge file in a copied tree costs no memory.
const fileMax = 64 << 20

// errSkipped is the error of a file the root refused (not a regular file, too large); the
// root's warning has said so already, and callers need not say it again.
var errSkipped = errors.New("skipped")

// skipError is a file the root refused, and why; it is errSkipped.
type skipError struct{ path, why, advice string }

func (e *skipError) Error() string        { return e.path + ": " + e.why }
func (e *skipError) Is(target error) bool { return target == errSkipped }

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

// readFile reads a whole file (fileMax at most).
func (r root) readFile(p string) ([]byte, error) {
	return r.readLimited(p, fileMax)
}

// readLimited reads p when it is a regular file of max bytes at most. It is opened with
// O_NONBLOCK: a FIFO that took the place of a file (whose plain open would wait for a writer)
// opens at once, and is then refused with what else is not a regular file. Its type is
// checked before the open too, so that a device node in a copied tree is never opened.
func (r root) readLimited(p string, max int64) ([]byte, error) {
	st, err := r.stat(p)
	if err != nil {
		return nil, err
	}
	if err := r.regular(p, st.Mode()); err != nil {
		return nil, err
	}
	f, err := r.open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := r.regular(p, st.Mode()); err != nil {
		return nil, err // replaced between the two looks
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		why := "larger than " + sizeWords(max)
		if max == attrMax {
			why += ", which no sysfs or procfs attribute is"
		}
		return nil, r.skip(p, why, "a damaged copy? copy the file again")
	}
	return b, nil
}

// regular refuses what is not a regular file: a folder silently (as the read of one always
// failed), anything else with a note.
func (r root) regular(p string, m fs.FileMode) error {
	if m.IsRegular() {
		return nil
	}
	if m.IsDir() {
		return fmt.Errorf("%s: is a folder", r.path(p))
	}
	why := "not a regular file (" + schema.DescribeMode(m) + ")"
	return r.skip(p, why, "a copy of sysfs and procfs holds regular files, folders and links only; copy the tree again")
}

func sizeWords(n int64) string {
	if n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n>>10, 10) + " KiB"
}

// skip notes that p is refused, and returns its error.
func (r root) skip(p, why, advice string) error {
	r.note(p, why, advice)
	return &skipError{r.path(p), why, advice}
}

// note tells, once per path, that p was refused, why, and what to do in a copied tree.
func (r root) note(p, why, advice string) {
	if r.notes == nil {
		return
	}
	n := r.notes
	n.mu.Lock()
	if n.seen == nil {
		n.seen = map[string]bool{}
	}
	first := !n.seen[p]
	n.seen[p] = true
	n.mu.Unlock()
	if !first || n.warn == nil {
		return
	}
	if r.live {
		advice = "a kernel or driver bug?"
	}
	n.warn(fmt.Sprintf("%s is %s: skipped (%s)", r.path(p), why, advice))
}

// open opens p for reading without blocking (see readLimited).
func (r root) open(p string) (*os.File, error) {
	const flag = os.O_RDONLY | syscall.O_NONBLOCK
	if r.live {
		return os.OpenFile(r.path(p), flag, 0)
	}
	if r.fs == nil {
		return nil, errNoTree
	}
	return r.fs.OpenFile(r.rel(p), flag, 0)
}

// stat describes p, following links (inside a copied tree only).
func (r root) stat(p string) (fs.FileInfo, error) {
	if r.live {
		return os.Stat(r.path(p))
	}
	if r.fs == nil {
		return nil, errNoTree
	}
	return r.fs.Stat(r.rel(p))
}

// attr reads a one-line attribute file (attrMax at most), trimmed; "" when it is missing or
// unreadable, which sysfs does for many attributes that do not apply (a NIC's speed while its
// link is down, a root-only DMI serial).
func (r root) attr(p string) string {
	b, err := r.readLimited(p, attrMax)
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

// list returns the names in a directory, sorted; none when it is missing. What is not a
// folder is an error, found before it is opened (a FIFO's open would block).
func (r root) list(p string) ([]string, error) {
	st, err := r.stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a folder (%s)", r.path(p), schema.DescribeMode(st.Mode()))
	}
	f, err := r.open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
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

// lazyRegexp compiles expr on its first use. The inventory's expressions are
// package variables; compiled at the package's start they cost the agent's
// start (PID 1, before its first boot step) about 12 ms under emulation, for a
// section that runs after the ready line.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
