package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
	"golang.org/x/sys/unix"
)

// SquashfsBlockSize is the data block size: mksquashfs's default. go-diskfs's
// 4 KiB blocks (what diskfs.Create with 4k sectors gives) make every file of
// 16 MiB or more unreadable by the kernel.
const SquashfsBlockSize = 128 * 1024

// SquashfsOptions controls WriteSquashfs.
type SquashfsOptions struct {
	// Epoch is every timestamp written (inodes and superblock), in Unix seconds.
	Epoch int64
	// Logger receives warnings (bits squashfs cannot keep); nil discards them.
	Logger *slog.Logger
}

// WriteSquashfs writes srcDir's tree (regular files, directories, symlinks,
// permission bits) to dst as a squashfs with 128 KiB blocks. Every inode is
// owned by 0:0 and dated Epoch; entries are sorted by name. Data is stored
// uncompressed (go-diskfs's per-block compressors are single-threaded and
// slower than mksquashfs); the superblock says gzip with the "uncompressed"
// flags set for inodes, data, fragments and xattrs, which is exactly what
// `mksquashfs -noI -noD -noF -noX` writes, so the kernel and unsquashfs read it.
//
// Setuid, setgid and sticky bits are kept: go-diskfs stores only the low 9
// mode bits, and fixSquashfsInodes sets the others back. Extended attributes
// (ACLs, security labels) are not: the image has none.
//
// A file whose data would start at 4 GiB or later is refused (go-diskfs
// cannot point at it, see checkSquashfsDataStart), so the image's files stay
// under 4 GiB in all.
func WriteSquashfs(dst, srcDir string, opts SquashfsOptions) error {
	return WriteSquashfsContext(context.Background(), dst, srcDir, opts)
}

// WriteSquashfsContext is WriteSquashfs that stops when ctx is done: between
// files and every few MiB while the tree is copied into go-diskfs's
// workspace, and at the next block go-diskfs writes into the image. It then
// returns ctx's error, wrapped, and leaves no dst.
func WriteSquashfsContext(ctx context.Context, dst, srcDir string, opts SquashfsOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := os.Stat(srcDir)
	if err != nil {
		return fmt.Errorf("squashfs source folder %q: %w", srcDir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("squashfs source %q is not a folder", srcDir)
	}
	what := fmt.Sprintf("write squashfs %q", dst)
	if err := stopped(ctx, what); err != nil {
		return err
	}
	f, commit, cleanup, err := atomicFile(dst)
	if err != nil {
		return err
	}
	defer cleanup()

	sq, err := squashfs.Create(file.New(ctxFile{f, ctx}, false), 0, 0, SquashfsBlockSize)
	if err != nil {
		return fmt.Errorf("create squashfs %q: %w", dst, err)
	}
	// go-diskfs's Close stops removing the workspace once Finalize has run,
	// so it is removed here.
	ws := sq.Workspace()
	defer os.RemoveAll(ws)

	// Walk order is also go-diskfs's inode order (both use filepath.WalkDir).
	var info mirrorInfo
	if err := mirrorTree(ctx, srcDir, ws, epochTime(opts.Epoch), log, &info); err != nil {
		if stop := stoppedBy(ctx, what, err); stop != nil {
			return stop
		}
		return err
	}
	zero := uint32(0)
	if err := finalizeSquashfsInWorkspace(sq, squashfs.FinalizeOptions{FileUID: &zero, FileGID: &zero}); err != nil {
		if stop := stoppedBy(ctx, what, err); stop != nil {
			return stop
		}
		return fmt.Errorf("write squashfs %q from %q: %w", dst, srcDir, err)
	}
	// The tables are re-cut first: fixSquashfsInodes reads the inode table
	// by its 8 KiB blocks.
	if err := rechunkSquashfsDirectories(f); err != nil {
		return fmt.Errorf("repair squashfs %q: %w", dst, err)
	}
	if err := fixSquashfsInodes(f, info); err != nil {
		return fmt.Errorf("repair squashfs %q: %w", dst, err)
	}
	if err := normalizeSquashfs(f, opts.Epoch); err != nil {
		return fmt.Errorf("normalize squashfs %q: %w", dst, err)
	}
	// A write go-diskfs ignored the failure of may have been refused.
	if err := stopped(ctx, what); err != nil {
		return err
	}
	return commit()
}

// finalizeSquashfsInWorkspace runs Finalize with the working directory set to
// the workspace. go-diskfs v1.9.4 reads symlink targets (and device numbers)
// with paths relative to the workspace but resolves them against the process's
// working directory, so without this every symlink fails. The working
// directory is changed only for one OS thread: the goroutine locks its thread
// and unshares the filesystem attributes (CLONE_FS) first, and never unlocks,
// so Go discards that thread when the goroutine ends. Nothing else in the
// process sees the change.
func finalizeSquashfsInWorkspace(sq *squashfs.FileSystem, fo squashfs.FinalizeOptions) error {
	ws := sq.Workspace()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare CLONE_FS for a private working directory: %w", err)
			return
		}
		if err := unix.Chdir(ws); err != nil {
			errc <- fmt.Errorf("enter squashfs workspace %q: %w", ws, err)
			return
		}
		errc <- sq.Finalize(fo)
	}()
	return <-errc
}

// normalizeSquashfs sets the superblock's modification time (bytes 8-11),
// which go-diskfs fills with time.Now(), to epoch.
func normalizeSquashfs(f *os.File, epoch int64) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(epoch))
	_, err := f.WriteAt(b[:], 8)
	return err
}

// mirrorTree copies src into dst (an empty folder), keeping file types and
// permission bits, then dates every entry at t. Directories are dated last,
// deepest first, because creating their children changes their times.
// mirrorInfo is what fixSquashfsInodes needs to know about the tree, one
// entry per inode in walk order.
type mirrorInfo struct {
	// targets are the symlink targets, in order.
	targets []string
	// links are the link counts: 1, or 2 plus the subfolders for a folder.
	links []uint32
	// special are the setuid (04000), setgid (02000) and sticky (01000)
	// bits of each entry, in the same order: go-diskfs writes only the
	// low nine bits of a mode.
	special []uint16
	// paths are the entries' paths in the source tree, for messages.
	paths []string
	// parents are the inode numbers (walk index + 1) of the folders
	// holding the entries; 0 for the root, whose parent is one past the
	// last inode (as mksquashfs writes it). go-diskfs leaves a folder's
	// parent 0, which breaks NFS handles of folders and ".." in readdir.
	parents []uint32
}

// path names entry i for a message.
func (m mirrorInfo) path(i uint32) string {
	if int(i) < len(m.paths) {
		return fmt.Sprintf("%q", m.paths[i])
	}
	return fmt.Sprintf("inode %d", i)
}

func mirrorTree(ctx context.Context, src, dst string, t time.Time, log *slog.Logger, info *mirrorInfo) error {
	dirIndex := map[string]int{}
	type dir struct {
		path string
		perm fs.FileMode
	}
	var dirs []dir
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read squashfs source %q: %w", p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("stat squashfs source %q: %w", p, err)
		}
		mode := fi.Mode()
		if rel == "." {
			info.parents = append(info.parents, 0)
		} else {
			info.parents = append(info.parents, uint32(dirIndex[filepath.Dir(rel)])+1)
		}
		if mode.IsDir() {
			dirIndex[rel] = len(info.links)
			if rel != "." {
				info.links[dirIndex[filepath.Dir(rel)]]++
			}
			info.links = append(info.links, 2)
		} else {
			info.links = append(info.links, 1)
		}
		var special uint16
		if mode&fs.ModeSetuid != 0 {
			special |= 0o4000
		}
		if mode&fs.ModeSetgid != 0 {
			special |= 0o2000
		}
		if mode&fs.ModeSticky != 0 {
			special |= 0o1000
		}
		info.special = append(info.special, special)
		info.paths = append(info.paths, filepath.ToSlash(filepath.Join("/", rel)))
		switch {
		case mode.IsDir():
			if err := checkListingSize(p, rel); err != nil {
				return err
			}
			if rel != "." {
				if err := os.Mkdir(out, 0o755); err != nil {
					return fmt.Errorf("mirror %q: %w", rel, err)
				}
			}
			// The root comes first: without its default ACL, nothing
			// created in it inherits one.
			if err := clearWorkspaceXattrs(out, rel); err != nil {
				return err
			}
			// Permissions are applied at the end: a read-only folder
			// could not receive its children.
			dirs = append(dirs, dir{out, mode.Perm()})
			return nil
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("read symlink %q: %w", p, err)
			}
			// go-diskfs lists xattrs through the link (listxattr, not
			// llistxattr) and fails on a dangling one, or reads the host's
			// file for an absolute target. The workspace link therefore
			// gets a placeholder of the same length that always resolves to
			// its own folder; fixSquashfsInodes writes the real target in.
			if len(target) == 0 {
				return fmt.Errorf("symlink %q has an empty target", p)
			}
			info.targets = append(info.targets, target)
			if err := os.Symlink(symlinkPlaceholder(len(target)), out); err != nil {
				return fmt.Errorf("mirror symlink %q: %w", rel, err)
			}
			return lchtimes(out, t)
		case mode.IsRegular():
			if err := copyInto(ctx, out, File{Path: rel, Source: p, Mode: mode.Perm() | 0o400}); err != nil {
				return err
			}
			if err := clearWorkspaceXattrs(out, rel); err != nil {
				return err
			}
			if err := os.Chmod(out, mode.Perm()); err != nil {
				return err
			}
			return os.Chtimes(out, t, t)
		default:
			return fmt.Errorf("squashfs source %q is a %s: only files, folders and symlinks are supported", p, mode.Type())
		}
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].perm); err != nil {
			return fmt.Errorf("set mode of %q: %w", dirs[i].path, err)
		}
		if err := os.Chtimes(dirs[i].path, t, t); err != nil {
			return fmt.Errorf("date %q: %w", dirs[i].path, err)
		}
	}
	return nil
}

// removeXattr is unix.Lremovexattr; a test replaces it to stand for an
// attribute the host does not let go of.
var removeXattr = unix.Lremovexattr

// clearWorkspaceXattrs removes every extended attribute of p, the workspace
// copy of the source's rel. go-diskfs v1.9.4 lists the attributes of every
// workspace entry whatever FinalizeOptions.Xattrs says (reading through
// symlinks, which mirrorTree points at their own folders): a POSIX ACL, which
// the workspace inherits when TMPDIR (inside the output folder) has a default
// one, makes it fail ("unknown xattr key: system.posix_acl_default"); other
// attributes (an SELinux label on every file) it writes into an xattr table,
// carrying the host's labels into the image, and rechunkSquashfsDirectories
// refuses that table. The system image holds no extended attributes. An
// attribute that cannot be removed is an error naming it.
func clearWorkspaceXattrs(p, rel string) error {
	rel = filepath.ToSlash(filepath.Join("/", rel))
	names, err := listXattrs(p)
	if err != nil {
		return fmt.Errorf("list the extended attributes of %q, the squashfs workspace copy of the source's %q: %w", p, rel, err)
	}
	for _, name := range names {
		if err := removeXattr(p, name); err != nil && !errors.Is(err, unix.ENODATA) {
			return fmt.Errorf("%q, the squashfs workspace copy of the source's %q, has the extended attribute %s, which cannot be removed (%v); "+
				"go-diskfs v1.9.4 would copy it into the system image or fail on it: build with -o and TMPDIR on a filesystem "+
				"that gives new files no extended attributes (e.g. a tmpfs on a host without SELinux labels)", p, rel, name, err)
		}
	}
	return nil
}

// listXattrs returns the names of p's extended attributes (not through a
// symlink); none where the filesystem has no extended attributes.
func listXattrs(p string) ([]string, error) {
	for {
		n, err := unix.Llistxattr(p, nil)
		if errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // the list grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, name := range bytes.Split(buf[:n], []byte{0}) {
			if len(name) > 0 {
				names = append(names, string(name))
			}
		}
		return names, nil
	}
}

func lchtimes(p string, t time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("date symlink %q: %w", p, err)
	}
	return nil
}

// maxListing is the largest directory listing go-diskfs can describe: it
// always writes basic directory inodes, whose size field has 16 bits (and the
// reader adds 3).
const maxListing = 0xffff - 3

// checkListingSize rejects a folder whose squashfs listing could overflow
// maxListing. Each entry takes 8 bytes plus its name, and at worst a 12-byte
// group header of its own.
func checkListingSize(p, rel string) error {
	entries, err := os.ReadDir(p)
	if err != nil {
		return fmt.Errorf("read squashfs source folder %q: %w", p, err)
	}
	size := 0
	for _, e := range entries {
		size += 8 + 12 + len(e.Name())
	}
	if size > maxListing {
		return fmt.Errorf("squashfs source folder %q has %d entries, too many for one go-diskfs directory listing "+
			"(64 KiB; about 1500 short names): split the folder", rel, len(entries))
	}
	return nil
}

// symlinkPlaceholder returns a link target of length n that names the link's
// own folder: ".", "./", "./.", "././", …
func symlinkPlaceholder(n int) string {
	b := make([]byte, n)
	for i := range b {
		if i%2 == 0 {
			b[i] = '.'
		} else {
			b[i] = '/'
		}
	}
	return string(b)
}
