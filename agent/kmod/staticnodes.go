package kmod

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// StaticNode is a device file a module that is not loaded yet serves, as
// kmod's static-nodes lists them (modules.devname): opening it makes the
// kernel ask modprobe for char-major-MAJOR-MINOR (or block-major-…), and
// the module loads then. /dev/net/tun and /dev/fuse are such files: a
// program opens them, it does not load tun or fuse first.
type StaticNode struct {
	Module       string
	Name         string // under /dev: "net/tun", "fuse"
	Block        bool
	Major, Minor uint32
}

// StaticNodes lists the device files of the modules in a: those that have
// both a "devname:NAME" alias and a "char-major-M-m" (or "block-major-M-m")
// alias with fixed numbers, the pairs depmod writes into modules.devname.
// Sorted by name.
func (a *Aliases) StaticNodes() []StaticNode {
	if a == nil {
		return nil
	}
	names := map[string]string{} // module → devname
	type num struct {
		block        bool
		major, minor uint32
	}
	nums := map[string]num{}
	for _, entries := range a.byPrefix {
		for _, e := range entries {
			if n, ok := strings.CutPrefix(e.pattern, "devname:"); ok && n != "" && !strings.Contains(n, "..") {
				names[e.module] = n
				continue
			}
			for _, kind := range []string{"char-major-", "block-major-"} {
				rest, ok := strings.CutPrefix(e.pattern, kind)
				if !ok {
					continue
				}
				maj, min, ok := strings.Cut(rest, "-")
				mj, err1 := strconv.ParseUint(maj, 10, 32)
				mn, err2 := strconv.ParseUint(min, 10, 32)
				if ok && err1 == nil && err2 == nil {
					nums[e.module] = num{kind == "block-major-", uint32(mj), uint32(mn)}
				}
			}
		}
	}
	var out []StaticNode
	for m, n := range names {
		if d, ok := nums[m]; ok {
			out = append(out, StaticNode{Module: m, Name: n, Block: d.block, Major: d.major, Minor: d.minor})
		}
	}
	slices.SortFunc(out, func(x, y StaticNode) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// staticModes are the modes udev's default rules give device files that
// every user may open; the others are 0600, as static-nodes makes them.
var staticModes = map[string]uint32{"net/tun": 0o666, "fuse": 0o666}

// MakeStaticNodes makes each node's file under dev (0600, or udev's mode
// for it: staticModes) unless something is there already (a module loaded
// before made it, through devtmpfs). It returns the names it made.
func MakeStaticNodes(dev string, nodes []StaticNode) ([]string, error) {
	var made []string
	var errs []error
	for _, n := range nodes {
		path := filepath.Join(dev, filepath.FromSlash(n.Name))
		if _, err := os.Lstat(path); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		mode := uint32(unix.S_IFCHR)
		if n.Block {
			mode = unix.S_IFBLK
		}
		perm := uint32(0o600)
		if p, ok := staticModes[n.Name]; ok {
			perm = p
		}
		if err := unix.Mknod(path, mode|perm, int(unix.Mkdev(n.Major, n.Minor))); err != nil {
			if !errors.Is(err, unix.EEXIST) {
				errs = append(errs, fmt.Errorf("making %s for %s: %w", path, n.Module, err))
			}
			continue
		}
		if err := os.Chmod(path, fs.FileMode(perm)); err != nil { // past the umask
			errs = append(errs, err)
		}
		made = append(made, n.Name)
	}
	return made, errors.Join(errs...)
}

// StaticNodes lists the device files of the modules of c's index
// (Aliases.StaticNodes).
func (c *Coldplug) StaticNodes() []StaticNode { return c.aliases.Load().StaticNodes() }
