// Package kernel finds a Linux kernel and its modules, from a Debian package
// or a local folder, and selects the modules an Étoile image carries.
package kernel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/etoile-os/etoile/image/debian"
	"github.com/etoile-os/etoile/internal/staletmp"
)

// DefaultPackage is Debian's kernel metapackage for amd64.
const DefaultPackage = "linux-image-amd64"

// Source says where the kernel comes from: a Debian package name, or a
// folder holding vmlinuz and lib/modules/<version>. At most one is set; none
// means DefaultPackage.
type Source struct {
	Package string
	Dir     string
	// Arch is the Debian architecture of the package (e.g. "amd64",
	// "arm64"); empty means the host's.
	Arch string
}

// Kernel is a resolved kernel image and its modules folder.
type Kernel struct {
	Version    string // e.g. "6.1.0-56-amd64", the name of the modules folder
	Vmlinuz    string // absolute path of the kernel image
	ModulesDir string // absolute path of .../lib/modules/<Version>
	// Packages are the Debian packages the kernel came from, metapackage
	// first, for the SBOM; empty for a folder source.
	Packages []*debian.Package

	idx *index
	log *slog.Logger
	// sums are the cache entry's SHA-256 of each file (by absolute path),
	// checked as modules are read; nil for a folder source.
	sums map[string]string
	// entry is the cache entry's folder ("" for a folder source).
	entry string
	// repair unpacks the cache entry again from its verified packages
	// (nil for a folder source).
	repair func() (*Kernel, error)
}

// keepKernelFiles is the extraction filter: only the image and modules are
// needed, not System.map, docs or bug scripts.
func keepKernelFiles(p string) bool {
	return strings.HasPrefix(p, "boot/vmlinuz-") ||
		p == "lib/modules" || strings.HasPrefix(p, "lib/modules/") ||
		p == "usr/lib/modules" || strings.HasPrefix(p, "usr/lib/modules/")
}

// Resolve fetches (or finds) the kernel named by src. cacheDir is Étoile's
// cache root (e.g. ~/.cache/etoile): packages go to cacheDir/debs, unpacked
// kernels to cacheDir/kernels/<pkg>_<version>_<sha12>.
func Resolve(ctx context.Context, src Source, cacheDir string, log *slog.Logger) (*Kernel, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case src.Package != "" && src.Dir != "":
		return nil, fmt.Errorf("kernel source sets both package %q and dir %q: set only one", src.Package, src.Dir)
	case src.Dir != "":
		return resolveDir(src.Dir, log)
	}
	name := src.Package
	if name == "" {
		name = DefaultPackage
	}
	return resolvePackage(ctx, name, src.Arch, cacheDir, log)
}

func resolvePackage(ctx context.Context, name, arch, cacheDir string, log *slog.Logger) (*Kernel, error) {
	if cacheDir == "" {
		return nil, fmt.Errorf("kernel cache folder is empty: pass Étoile's cache root (e.g. ~/.cache/etoile)")
	}
	f := &debian.Fetcher{CacheDir: filepath.Join(cacheDir, "debs"), Log: log, Architecture: arch}
	var pkgs []*debian.Package
	// A metapackage (linux-image-amd64, linux-image-cloud-amd64) holds no
	// kernel; it depends on the versioned image package, which may itself be
	// a signed/unsigned indirection. Three hops are more than Debian uses.
	var want *debian.Relation
	for hop := 0; ; hop++ {
		p, err := f.Fetch(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("kernel package: %w", err)
		}
		if want != nil && want.Op == "=" && p.Version != want.Version {
			log.Warn("kernel metapackage asks for another version than apt offers", "package", p.Name, "wanted", want.Version, "got", p.Version)
		}
		pkgs = append(pkgs, p)
		if want, err = imageDependency(p); err != nil {
			return nil, err
		}
		if want == nil {
			break
		}
		if hop == 3 {
			return nil, fmt.Errorf("kernel package %s: more than 3 linux-image metapackage levels (%s): name the versioned image package instead", pkgs[0].Name, chain(pkgs))
		}
		name = want.Name
	}
	img := pkgs[len(pkgs)-1]
	// Ubuntu ships the modules apart: linux-image-<v>-generic depends on
	// linux-modules-<v>-generic, and linux-image-generic also on
	// linux-modules-extra-<v>-generic (most NIC and storage drivers).
	var extras []*debian.Package
	for _, name := range moduleDependencies(pkgs) {
		p, err := f.Fetch(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("kernel modules package: %w", err)
		}
		extras = append(extras, p)
	}
	key := img.SHA256[:12]
	for _, p := range extras {
		key += "+" + p.SHA256[:12]
	}
	entry := filepath.Join(cacheDir, "kernels", fmt.Sprintf("%s_%s_%s", img.Name, url.PathEscape(img.Version), key))
	k, err := loadOrUnpack(ctx, img, extras, entry, log)
	if err != nil {
		return nil, err
	}
	log.Info("kernel resolved", "package", img.Name, "version", img.Version, "kernel", k.Version, "modules_packages", chain(extras))
	k.Packages = append(pkgs, extras...)
	return k, nil
}

// moduleDependencies names the linux-modules-* packages (Ubuntu's, with the
// kernel's modules) that the chain of kernel packages depends on, in order,
// without repeats.
func moduleDependencies(pkgs []*debian.Package) []string {
	var out []string
	for _, p := range pkgs {
		rels, err := p.Relations()
		if err != nil {
			continue
		}
		for _, alts := range rels {
			if len(alts) > 0 && strings.HasPrefix(alts[0].Name, "linux-modules-") && !slices.Contains(out, alts[0].Name) {
				out = append(out, alts[0].Name)
			}
		}
	}
	return out
}

// loadOrUnpack loads the kernel unpacked at entry, unpacking img there first
// when the entry is absent or damaged. An entry this user cannot read (its
// permissions, a failing disk) is an error naming it, never taken for a
// damaged one: it is left as it is.
func loadOrUnpack(ctx context.Context, img *debian.Package, extras []*debian.Package, entry string, log *slog.Logger) (*Kernel, error) {
	if _, err := os.Stat(entry); errors.Is(err, fs.ErrNotExist) {
		if err := unpackKernel(ctx, img, extras, entry, log); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("kernel cache entry %s: %w", entry, err)
	} else {
		log.Debug("kernel cache hit", "entry", entry)
	}
	k, err := kernelFromTree(entry, log)
	var sums map[string]string
	if err == nil {
		sums, err = readManifest(entry, k.Vmlinuz)
	}
	if unreadable(err) {
		return nil, fmt.Errorf("kernel cache entry %s cannot be read (%w): fix its permissions (it must be readable by the user who builds: chmod -R u+rwX,go+rX %s, or chown it), or give the build another cache folder (--cache DIR); it was left as it is",
			entry, err, entry)
	}
	if err != nil {
		// A damaged cache entry (files deleted or changed by hand, a full
		// disk) is unpacked again from the verified package.
		log.Warn("kernel cache entry is unusable; unpacking it again", "entry", entry, "err", err)
		return reunpack(ctx, img, extras, entry, log)
	}
	k.sums, k.entry = sums, entry
	k.repair = func() (*Kernel, error) { return reunpack(ctx, img, extras, entry, log) }
	return k, nil
}

// unreadable reports whether err is a file or folder this process may not
// read (EACCES, EPERM) or an I/O error: not a damaged entry to unpack again.
func unreadable(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EIO)
}

// reunpack replaces the cache entry with a fresh unpacking of the verified
// packages and loads it.
func reunpack(ctx context.Context, img *debian.Package, extras []*debian.Package, entry string, log *slog.Logger) (*Kernel, error) {
	if err := os.RemoveAll(entry); err != nil {
		return nil, fmt.Errorf("removing damaged kernel cache entry %s: %w (delete it by hand)", entry, err)
	}
	if err := unpackKernel(ctx, img, extras, entry, log); err != nil {
		return nil, err
	}
	k, err := kernelFromTree(entry, log)
	if err != nil {
		return nil, fmt.Errorf("kernel package %s %s unpacked in %s: %w", img.Name, img.Version, entry, err)
	}
	if k.sums, err = readManifest(entry, k.Vmlinuz); err != nil {
		return nil, fmt.Errorf("kernel package %s %s unpacked in %s: %w", img.Name, img.Version, entry, err)
	}
	k.entry = entry
	k.repair = func() (*Kernel, error) { return reunpack(ctx, img, extras, entry, log) }
	return k, nil
}

func chain(pkgs []*debian.Package) string {
	var names []string
	for _, p := range pkgs {
		names = append(names, p.Name)
	}
	return strings.Join(names, " -> ")
}

// imageDependency returns the linux-image-* package p depends on, if any.
func imageDependency(p *debian.Package) (*debian.Relation, error) {
	rels, err := p.Relations()
	if err != nil {
		return nil, fmt.Errorf("kernel package %s: %w", p.Name, err)
	}
	for _, alts := range rels {
		for _, r := range alts {
			if strings.HasPrefix(r.Name, "linux-image-") && r.Name != p.Name {
				return &r, nil
			}
		}
	}
	return nil, nil
}

// unpackKernel extracts img into entry through a temporary folder renamed
// into place when complete, so an interrupted build leaves nothing half-made.
// The depmod files Debian generates at install time are generated here. It
// stops when ctx ends (a Ctrl-C), looking at it before each file, and
// leaves no unpacking folder then.
func unpackKernel(ctx context.Context, img *debian.Package, extras []*debian.Package, entry string, log *slog.Logger) error {
	parent := filepath.Dir(entry)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("creating kernel cache %s: %w", parent, err)
	}
	staletmp.Remove(parent, ".unpack-*") // a killed build's (hundreds of MB each)
	tmp, err := os.MkdirTemp(parent, ".unpack-")
	if err != nil {
		return fmt.Errorf("creating kernel cache folder in %s: %w", parent, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	log.Info("unpacking kernel package", "package", img.Name, "version", img.Version, "entry", entry)
	if err := img.ExtractContext(ctx, tmp, keepKernelFiles); err != nil {
		return fmt.Errorf("unpacking kernel: %w", err)
	}
	for _, p := range extras {
		log.Info("unpacking kernel modules package", "package", p.Name, "version", p.Version)
		if err := p.ExtractContext(ctx, tmp, keepKernelFiles); err != nil {
			return fmt.Errorf("unpacking kernel modules package %s: %w", p.Name, err)
		}
	}
	modDir, _, err := findModulesDir(tmp)
	if errors.Is(err, errNoModules) {
		// The unpacking folder is gone by the time this is read: name the
		// package, and what to give instead.
		return fmt.Errorf("package %s %s (%s) holds no kernel modules (no lib/modules/<version>): it is not a kernel package; give kernel.package a kernel image package such as linux-image-amd64, or kernel.dir a folder holding vmlinuz and lib/modules/<version>",
			img.Name, img.Version, img.DebPath)
	}
	if err != nil {
		return fmt.Errorf("kernel package %s (%s): %w", img.Name, img.DebPath, err)
	}
	if _, err := os.Stat(filepath.Join(modDir, "modules.dep")); errors.Is(err, fs.ErrNotExist) {
		entries, err := scanModulesContext(ctx, modDir)
		if err != nil {
			return fmt.Errorf("kernel package %s: generating modules.dep: %w", img.Name, err)
		}
		if err := writeDepmodFiles(modDir, entries); err != nil {
			return fmt.Errorf("kernel package %s: %w", img.Name, err)
		}
	}
	if err := writeManifest(ctx, tmp); err != nil {
		return err
	}
	// MkdirTemp made it 0700: an entry is read by whoever builds with
	// this cache (its files keep the package's modes).
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("kernel cache folder %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, entry); err != nil {
		if _, statErr := os.Stat(entry); statErr == nil {
			return nil // another build finished the same entry first
		}
		return fmt.Errorf("moving unpacked kernel into %s: %w", entry, err)
	}
	return nil
}

// errNoModules is findModulesDir's error for a tree without a module folder.
var errNoModules = errors.New("no lib/modules/<version> folder")

// readDir is os.ReadDir, a variable so that a test can make a folder
// unreadable whoever runs it (root reads any).
var readDir = os.ReadDir

// findModulesDir returns root/lib/modules/<ver> (or usr/lib/modules/<ver>,
// the merged-/usr layout) and <ver>; exactly one version must be present.
// A module folder that cannot be read (permissions, an I/O error) is an
// error naming it, not a missing one.
func findModulesDir(root string) (string, string, error) {
	var found []string
	for _, base := range []string{"lib/modules", "usr/lib/modules"} {
		ents, err := readDir(filepath.Join(root, base))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("reading the module folder: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() {
				found = append(found, filepath.Join(root, base, e.Name()))
			}
		}
	}
	switch len(found) {
	case 0:
		return "", "", fmt.Errorf("%w in %s", errNoModules, root)
	case 1:
		return found[0], filepath.Base(found[0]), nil
	}
	// lib and usr/lib may be the same folder through a symlink
	if len(found) == 2 {
		a, errA := os.Stat(found[0])
		b, errB := os.Stat(found[1])
		if errA == nil && errB == nil && os.SameFile(a, b) {
			return found[0], filepath.Base(found[0]), nil
		}
	}
	return "", "", fmt.Errorf("%s holds several module folders (%s): keep only the one matching the kernel", root, strings.Join(found, ", "))
}

// kernelFromTree loads a kernel from root holding boot/vmlinuz-<ver> (or
// vmlinuz) and lib/modules/<ver>.
func kernelFromTree(root string, log *slog.Logger) (*Kernel, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	modDir, ver, err := findModulesDir(root)
	if err != nil {
		return nil, err
	}
	candidates := []string{filepath.Join(root, "boot", "vmlinuz-"+ver), filepath.Join(root, "vmlinuz")}
	others, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	candidates = append(candidates, others...)
	vmlinuz := ""
	for _, c := range candidates {
		st, err := os.Stat(c)
		if err == nil && st.Mode().IsRegular() {
			vmlinuz = c
			break
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reading the kernel image: %w", err)
		}
	}
	if vmlinuz == "" {
		return nil, fmt.Errorf("no kernel image in %s: looked for vmlinuz and boot/vmlinuz-%s", root, ver)
	}
	if len(others) > 1 || (len(others) == 1 && others[0] != filepath.Join(root, "boot", "vmlinuz-"+ver) && vmlinuz == others[0]) {
		log.Warn("kernel image name does not match the modules folder; using it anyway", "vmlinuz", vmlinuz, "modules", modDir)
	}
	if err := checkImage(vmlinuz, ver); err != nil {
		return nil, err
	}
	idx, err := loadIndex(modDir)
	if err != nil {
		return nil, fmt.Errorf("reading module index of %s: %w", modDir, err)
	}
	return &Kernel{Version: ver, Vmlinuz: vmlinuz, ModulesDir: modDir, idx: idx, log: log}, nil
}

// checkImage makes sure vmlinuz is a kernel the firmware can boot, and, for
// an x86 bzImage (which names its version), the kernel of the modules
// folder ver: a build with another file there would make media that never
// boot, or whose kernel finds none of its modules.
func checkImage(vmlinuz, ver string) error {
	f, err := os.Open(vmlinuz)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 0x400)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case n >= 0x210 && string(head[0x202:0x206]) == "HdrS" && head[0x1FE] == 0x55 && head[0x1FF] == 0xAA:
		// x86 boot protocol: kernel_version at 0x20E, an offset from 0x200.
		off := int64(binary.LittleEndian.Uint16(head[0x20E:0x210]))
		if off == 0 {
			return nil
		}
		buf := make([]byte, 256)
		m, _ := f.ReadAt(buf, 0x200+off)
		kv := string(buf[:m])
		if i := strings.IndexAny(kv, " \x00"); i >= 0 {
			kv = kv[:i]
		}
		if kv != "" && kv != ver {
			return fmt.Errorf("%s is kernel %s, but the modules are in lib/modules/%s: they must be that kernel's own (from the same package or build)", vmlinuz, kv, ver)
		}
		return nil
	case n >= 0x40 && string(head[0x38:0x3C]) == "ARM\x64":
		return nil // arm64 Image: no version in its header
	}
	return fmt.Errorf("%s is not a kernel image (neither an x86 bzImage nor an arm64 Image): give the kernel's vmlinuz, as in the distribution's kernel package", vmlinuz)
}

func resolveDir(dir string, log *slog.Logger) (*Kernel, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("kernel folder (kernel.dir) %q: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("kernel folder (kernel.dir) %q is not a folder: it must hold vmlinuz and lib/modules/<version>", dir)
	}
	k, err := kernelFromTree(dir, log)
	if err != nil {
		return nil, fmt.Errorf("kernel folder (kernel.dir) %q: %w", dir, err)
	}
	return k, nil
}

// Builtin reports whether the kernel has module name compiled in.
func (k *Kernel) Builtin(name string) bool { return k.idx != nil && k.idx.builtin[normName(name)] }

// BuiltinModules lists modules.builtin as shipped with the kernel.
func (k *Kernel) BuiltinModules() []string {
	if k.idx == nil {
		return nil
	}
	return slices.Clone(k.idx.builtinLines)
}

// DefaultModules is the module list of the default image spec
// (image/default.yaml, which image.TestKernelDefaultModulesIsTheDefaultSpec
// keeps it equal to): what an appliance needs to find its disks and
// network on QEMU and on common server hardware, plus what K3s networking
// loads. Every name resolves against Debian's linux-image-amd64 (some are
// built in).
var DefaultModules = append([]string{
	// machine
	"button",
	// storage
	"virtio_pci", "virtio_blk", "virtio_scsi", "nvme", "ahci", "ata_piix",
	"mpt3sas", "megaraid_sas", "smartpqi", "hpsa", "vmw_pvscsi", "hv_storvsc",
	"sd_mod", "sr_mod", "usb-storage", "uas", "xhci_pci", "ehci_pci",
	// filesystems
	"squashfs", "overlay", "isofs", "vfat", "nls_cp437", "nls_iso8859-1", "nls_ascii", "ext4", "loop", "efivarfs",
	"dm_mod", "dm_verity",
	// network
	"virtio_net", "8021q", "bonding", "e1000", "e1000e", "igb", "ixgbe", "i40e", "ice", "mlx5_core", "bnxt_en", "r8169", "tg3",
	"igc", "atlantic", "r8152", "iavf", "ixgbevf", "vmxnet3", "hv_netvsc", "ena", "gve",
	// Kubernetes networking
	"br_netfilter", "vxlan", "nf_tables", "nf_conntrack", "iptable_nat", "iptable_filter", "ip_vs", "wireguard",
}, K3sOnDemand...)

// K3sOnDemand are the modules K3s's networking has the kernel ask for as it
// goes (request_module, which runs the agent as /sbin/modprobe): veth for
// every pod's interface (flannel's bridge plugin), the iptables matches and
// targets kube-proxy, flannel and the network policy controller use (K3s's
// check-config lists them), IPv6's tables, ipset for network policies, the
// nf_tables expressions iptables-nft uses, NFLOG for dropped packets, the
// IPVS schedulers, and the traffic control a pod's bandwidth limit takes. They ship in the default image (DefaultModules) and
// load only when asked (OnDemand): a node runs one iptables backend, and
// IPVS only when kube-proxy is told to.
var K3sOnDemand = []string{
	"veth",
	"xt_MASQUERADE", "ipt_REJECT", "xt_REDIRECT", "xt_nat", "xt_mark", "xt_comment", "xt_conntrack", "xt_addrtype",
	"xt_multiport", "xt_statistic", "xt_tcpudp", "xt_ipvs", "xt_physdev", "xt_set", "xt_limit", "xt_NFLOG", "xt_CT",
	"iptable_mangle", "iptable_raw",
	"ip6table_filter", "ip6table_nat", "ip6table_mangle", "ip6table_raw", "ip6t_REJECT",
	"ip_set", "ip_set_hash_ip", "ip_set_hash_net", "ip_set_hash_ipport", "ip_set_hash_ipportip", "ip_set_hash_ipportnet",
	"ip_set_hash_netport", "ip_set_bitmap_port",
	"nft_compat", "nft_chain_nat", "nft_nat", "nft_masq", "nft_ct", "nft_fib_ipv4", "nft_fib_ipv6", "nft_fib_inet",
	"nft_reject_ipv4", "nft_reject_ipv6", "nft_reject_inet", "nft_limit",
	"nft_numgen", // kube-proxy's nftables mode balances with numgen
	"nfnetlink_log",
	"ip_vs_rr", "ip_vs_wrr", "ip_vs_sh",
	// the bandwidth plugin of K3s's CNI configuration, for pods with
	// kubernetes.io/ingress-bandwidth or egress-bandwidth
	"ifb", "sch_ingress", "sch_tbf", "cls_u32", "act_mirred",
	// kube-proxy's conntrack cleanup (stale UDP flows to a replaced
	// CoreDNS pod) and its nfacct metrics
	"nf_conntrack_netlink", "nfnetlink_acct", "xt_nfacct",
	// pods' /dev/net/tun (VPN sidecars, Tailscale) and /dev/fuse (FUSE
	// storage drivers): the agent makes the device files at boot, and
	// opening one loads the module
	"tun", "fuse",
}
