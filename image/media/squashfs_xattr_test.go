package media

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// defaultACL sets a default POSIX ACL on dir (with a named user, so that
// what is created in it also gets an access ACL), as setfacl -d -m u:12345:rwx
// does: the xattr's binary form, version 2, entries sorted by tag.
func defaultACL(t *testing.T, dir string) {
	t.Helper()
	const undefined = 0xffffffff
	acl := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 7, undefined}, {0x02, 7, 12345}, {0x04, 5, undefined}, {0x10, 7, undefined}, {0x20, 5, undefined}} {
		acl = binary.LittleEndian.AppendUint16(acl, e.tag)
		acl = binary.LittleEndian.AppendUint16(acl, e.perm)
		acl = binary.LittleEndian.AppendUint32(acl, e.id)
	}
	if err := unix.Setxattr(dir, "system.posix_acl_default", acl, 0); err != nil {
		t.Fatalf("set a default ACL on %s: %v (the test needs a filesystem with POSIX ACLs for TMPDIR)", dir, err)
	}
	// What is created there inherits it.
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(probe, "system.posix_acl_access", nil); err != nil {
		t.Fatalf("a file created under the default ACL has no access ACL: %v", err)
	}
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
}

// TestWriteSquashfsWorkspaceACL writes with TMPDIR (where go-diskfs puts its
// workspace) under a default ACL: every workspace entry inherits ACL xattrs,
// on which go-diskfs v1.9.4 failed ("unknown xattr key:
// system.posix_acl_default"). The image must come out without xattrs.
func TestWriteSquashfsWorkspaceACL(t *testing.T) {
	unsquashfs := tool(t, "unsquashfs", "squashfs-tools")
	tmp := t.TempDir()
	defaultACL(t, tmp)
	t.Setenv("TMPDIR", tmp)
	src := squashfsSource(t)
	dst := filepath.Join(t.TempDir(), "system.sqfs")
	if err := WriteSquashfs(dst, src, SquashfsOptions{Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, sqSuperblockLen)
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if x := binary.LittleEndian.Uint64(b[56:]); x != ^uint64(0) {
		t.Errorf("the image has an xattr table at %d", x)
	}
	// Without -no-xattrs: unsquashfs would set any xattr the image held.
	out := filepath.Join(t.TempDir(), "x")
	run(t, unsquashfs, "-d", out, dst)
	compareTrees(t, src, out)
	if left, _ := filepath.Glob(filepath.Join(tmp, "*")); len(left) > 0 {
		t.Errorf("left in TMPDIR: %v", left)
	}
}

// TestWriteSquashfsWorkspaceXattrStuck stands for a host that labels every
// new file and does not let the label go (SELinux's security.selinux): the
// write must stop before go-diskfs copies it into the image, naming the
// file, the attribute and what to do.
func TestWriteSquashfsWorkspaceXattrStuck(t *testing.T) {
	tmp := t.TempDir()
	defaultACL(t, tmp)
	t.Setenv("TMPDIR", tmp)
	removeXattr = func(p, name string) error {
		// The workspace root, in TMPDIR, inherited the default ACL.
		if name == "system.posix_acl_default" && filepath.Dir(p) == tmp {
			return unix.EACCES
		}
		return unix.Lremovexattr(p, name)
	}
	t.Cleanup(func() { removeXattr = unix.Lremovexattr })
	dst := filepath.Join(t.TempDir(), "system.sqfs")
	err := WriteSquashfs(dst, squashfsSource(t), SquashfsOptions{Epoch: 1})
	if err == nil {
		t.Fatal("written with an xattr that cannot be removed")
	}
	for _, want := range []string{`source's "/"`, "system.posix_acl_default", "permission denied", "TMPDIR", "tmpfs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failed write", dst)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "*")); len(left) > 0 {
		t.Errorf("left in TMPDIR: %v", left)
	}
}
