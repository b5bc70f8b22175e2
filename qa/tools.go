package qa

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Tool is a host program or file the tests need, with the Debian package that
// provides it, so a missing one is reported as the command that fixes it.
type Tool struct {
	Name    string // program looked up in PATH, or an absolute file path
	Package string // apt package
}

// Tools the harness and the validation tests use.
var (
	QEMUTool       = Tool{"qemu-system-x86_64", "qemu-system-x86"}
	OVMFCodeTool   = Tool{DefaultOVMFCode, "ovmf"}
	OVMFVarsTool   = Tool{DefaultOVMFVars, "ovmf"}
	XorrisoTool    = Tool{"xorriso", "xorriso"}
	SgdiskTool     = Tool{"sgdisk", "gdisk"}
	FsckVfatTool   = Tool{"fsck.vfat", "dosfstools"}
	MtoolsTool     = Tool{"mcopy", "mtools"}
	MkfsFatTool    = Tool{"mkfs.fat", "dosfstools"}
	Mkfsext4Tool   = Tool{"mkfs.ext4", "e2fsprogs"}
	MdirTool       = Tool{"mdir", "mtools"}
	UnsquashfsTool = Tool{"unsquashfs", "squashfs-tools"}
	Sha256sumTool  = Tool{"sha256sum", "coreutils"}
	CpioTool       = Tool{"cpio", "cpio"}
	IsohdpfxTool   = Tool{"/usr/lib/ISOLINUX/isohdpfx.bin", "isolinux"}
	GoTool         = Tool{"go", "golang-go (or Go from go.dev)"}
)

// toolCommand is exec.Command for the program name, found as Tool.Path
// finds it (sbin too, which a user's PATH may lack): the tools the tests
// make volumes and partitions with. A program it does not know is looked
// for in PATH.
func toolCommand(name string, args ...string) *exec.Cmd {
	for _, t := range []Tool{SgdiskTool, MkfsFatTool, MtoolsTool, Mkfsext4Tool} {
		if t.Name == name {
			if p, err := t.Path(); err == nil {
				name = p
			}
			break
		}
	}
	return exec.Command(name, args...)
}

// Path returns where the tool is, or an error naming the apt package.
func (t Tool) Path() (string, error) {
	if strings.HasPrefix(t.Name, "/") {
		if _, err := os.Stat(t.Name); err != nil {
			return "", fmt.Errorf("%s is missing: install it with `apt-get install -y %s`", t.Name, t.Package)
		}
		return t.Name, nil
	}
	p, err := exec.LookPath(t.Name)
	if err != nil {
		// sbin is not always on a test runner's PATH although the tool is installed.
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(dir + "/" + t.Name); serr == nil {
				return dir + "/" + t.Name, nil
			}
		}
		return "", fmt.Errorf("%s not found in PATH: install it with `apt-get install -y %s`", t.Name, t.Package)
	}
	return p, nil
}

// RequireTools checks every tool and joins the problems into one error, so a
// fresh machine learns every package to install at once.
func RequireTools(tools ...Tool) error {
	var errs []error
	for _, t := range tools {
		if _, err := t.Path(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
