package inventory

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// dmi reads the machine's SMBIOS identity, and says what it could not: no
// /sys/class/dmi/id at all, a serial or UUID only root can read, and the placeholders
// firmware leaves in unset fields ("To Be Filled By O.E.M.", a UUID of zeros), which are
// left out rather than taken for the machine's identity.
func (c *collector) dmi() {
	const d = "/sys/class/dmi/id/"
	if !c.r.exists(d) {
		where := "the firmware gives no SMBIOS tables (an arm64 board without them, some VMs) or the kernel has no CONFIG_DMIID"
		if !c.r.live {
			where = "the copied tree has no sys/class/dmi/id"
		}
		c.warn("dmi: /sys/class/dmi/id is missing: %s; vendor, product, serial and UUID are unknown", where)
		return
	}
	var placeholders []string
	read := func(name string, placeholder func(string) bool) string {
		b, err := c.r.readFile(d + name)
		switch {
		case err == nil:
		case errors.Is(err, errSkipped):
			return "" // the root said why
		case errors.Is(err, fs.ErrPermission):
			c.warn("dmi: %s%s is readable by root only: run as root to have it", d, name)
			return ""
		case errors.Is(err, fs.ErrNotExist):
			// A live machine's kernel has every file; a copied tree may
			// leave the serials out on purpose.
			if c.r.live && (name == "product_serial" || name == "product_uuid") {
				c.warn("dmi: %s%s is missing: the firmware gives none", d, name)
			}
			return ""
		default:
			c.warn("dmi: %s%s cannot be read: %v", d, name, err)
			return ""
		}
		v := strings.TrimSpace(string(b))
		if v != "" && placeholder(v) {
			placeholders = append(placeholders, fmt.Sprintf("%s %q", name, v))
			return ""
		}
		return v
	}
	c.inv.DMI = DMI{
		Vendor:      read("sys_vendor", isPlaceholder),
		Product:     read("product_name", isPlaceholder),
		Version:     read("product_version", isPlaceholder),
		Serial:      read("product_serial", isPlaceholder),
		UUID:        read("product_uuid", isPlaceholderUUID),
		BoardVendor: read("board_vendor", isPlaceholder),
		BoardName:   read("board_name", isPlaceholder),
		BIOSVendor:  read("bios_vendor", isPlaceholder),
		BIOSVersion: read("bios_version", isPlaceholder),
	}
	if len(placeholders) > 0 {
		c.warn("dmi: the firmware left placeholders, not values, in %s: left empty", strings.Join(placeholders, ", "))
	}
}

// dmiPlaceholders are what firmware writes in SMBIOS fields nobody filled in (compared
// without case).
var dmiPlaceholders = map[string]bool{
	"to be filled by o.e.m.": true, "to be filled by oem": true, "default string": true, "not specified": true,
	"not applicable": true, "not available": true, "system serial number": true, "system product name": true,
	"system manufacturer": true, "system version": true, "chassis serial number": true, "base board serial number": true,
	"0123456789": true, "123456789": true, "1234567890": true, "none": true, "n/a": true, "na": true,
	"o.e.m.": true, "oem": true, "not settable": true, "not present": true, "unknown": true, "xxxxxxxx": true,
}

func isPlaceholder(s string) bool {
	return dmiPlaceholders[strings.ToLower(strings.TrimSpace(s))]
}

// isPlaceholderUUID: the UUIDs that identify no machine: all zeros, all ones (SMBIOS: not
// set), and the sequence firmware vendors ship as an example.
func isPlaceholderUUID(s string) bool {
	u := strings.ToLower(strings.TrimSpace(s))
	if isPlaceholder(u) || u == "03000200-0400-0500-0006-000700080009" {
		return true
	}
	digits := strings.ReplaceAll(u, "-", "")
	return strings.Trim(digits, "0") == "" || strings.Trim(digits, "f") == ""
}

func (c *collector) cpu() error {
	b, err := c.readCapture("/proc/cpuinfo", "cpuinfo-head.txt")
	if err != nil {
		return fmt.Errorf("read /proc/cpuinfo: %w", err)
	}
	info := ParseCPUInfo(b)
	c.inv.CPU = CPU{Model: info.Model, Vendor: info.Vendor, Sockets: info.Sockets, Cores: info.Cores, Count: info.Processors}
	// arm64 names its cores by MIDR number only: a part the table does not know is named by
	// the firmware's SMBIOS processor record when there is one, else by its numbers.
	if info.UnknownPart {
		manufacturer, version := c.smbiosProcessor()
		c.inv.CPU.Model = firstNonEmpty(version, info.Model)
		if _, known := armImplementers[info.Implementer]; !known {
			c.inv.CPU.Vendor = firstNonEmpty(manufacturer, info.Vendor)
		}
	}
	// Sockets and cores from the kernel's topology, on every architecture (arm64's cpuinfo
	// has no "physical id" nor "cpu cores"); cpuinfo's when sysfs has none.
	if sockets, cores := c.cpuTopology(); sockets > 0 {
		c.inv.CPU.Sockets, c.inv.CPU.Cores = sockets, cores
	}
	// cpuinfo lists only online CPUs, and a capture may be cut short; the kernel's online
	// list is the authority when there is one.
	if s := c.r.attr("/sys/devices/system/cpu/online"); s != "" {
		n, err := ParseCPUList(s)
		if err != nil {
			c.warn("cpu: /sys/devices/system/cpu/online: %v", err)
		} else {
			c.inv.CPU.Count = n
		}
	} else if !c.r.live {
		if n, ok := c.r.attrInt("/cpu-count.txt"); ok && n > 0 {
			c.inv.CPU.Count = int(n)
		}
	}
	if c.inv.CPU.Count == 0 {
		return fmt.Errorf("no processor found in /proc/cpuinfo")
	}
	return nil
}

var cpuDirRe = lazyRegexp(`^cpu[0-9]+$`)

// cpuTopology counts the packages and the cores (distinct package, die, core ids) of the
// online CPUs in /sys/devices/system/cpu/cpu*/topology; 0, 0 when it says nothing.
func (c *collector) cpuTopology() (sockets, cores int) {
	const dir = "/sys/devices/system/cpu/"
	names, _ := c.r.list(dir)
	packages := map[int64]bool{}
	coreIDs := map[[3]int64]bool{}
	for _, name := range names {
		if !cpuDirRe().MatchString(name) {
			continue
		}
		topo := dir + name + "/topology/"
		pkg, ok1 := c.r.attrInt(topo + "physical_package_id")
		core, ok2 := c.r.attrInt(topo + "core_id")
		if !ok1 || !ok2 || pkg < 0 || core < 0 {
			continue // offline (no topology), or a kernel that does not know (-1)
		}
		die, ok := c.r.attrInt(topo + "die_id")
		if !ok || die < 0 {
			die = 0
		}
		packages[pkg] = true
		coreIDs[[3]int64{pkg, die, core}] = true
	}
	return len(packages), len(coreIDs)
}

// CPUInfo is what ParseCPUInfo reads from /proc/cpuinfo.
type CPUInfo struct {
	Model      string
	Vendor     string
	Processors int // "processor" entries
	Sockets    int // distinct "physical id"
	Cores      int // sum of "cpu cores" over sockets
	// Implementer and Part are arm64's MIDR fields ("0x41", "0xd4f") of the first CPU; ""
	// elsewhere. UnknownPart is set when a part is not in the table: Model names it by
	// number then.
	Implementer string
	Part        string
	UnknownPart bool
}

// ParseCPUInfo reads /proc/cpuinfo. The model comes from x86's "model name"; on arm64,
// which names cores by number only ("CPU implementer", "CPU part"), from the table lscpu
// uses too (several kinds of cores, big.LITTLE, are joined with " + "), a part the table does
// not know by its numbers ("0x41/0xd99"), never empty. POWER's "cpu" and RISC-V's "uarch"
// name the model there.
func ParseCPUInfo(b []byte) CPUInfo {
	var info CPUInfo
	coresBySocket := map[string]int{}
	socket := ""
	implementer := ""
	var armModels []string
	other := "" // POWER's "cpu", RISC-V's "uarch"
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		val = strings.TrimSpace(val)
		switch key {
		case "processor":
			info.Processors++
			socket = ""
			implementer = ""
		case "model name":
			if info.Model == "" {
				info.Model = val
			}
		case "vendor_id":
			if info.Vendor == "" {
				info.Vendor = val
			}
		case "physical id":
			socket = val
			if _, ok := coresBySocket[socket]; !ok {
				coresBySocket[socket] = 0
			}
		case "cpu cores":
			if n, err := strconv.Atoi(val); err == nil && n > 0 && n < 1<<20 && socket != "" {
				coresBySocket[socket] = n
			}
		case "CPU implementer":
			implementer = normHex(val, 2)
			if info.Implementer == "" {
				info.Implementer = implementer
			}
		case "CPU part":
			part := normHex(val, 3)
			if info.Part == "" {
				info.Part = part
			}
			name := armPartName(implementer, part)
			if name == "" {
				info.UnknownPart = true
				name = implementer + "/" + part
			}
			if !contains(armModels, name) {
				armModels = append(armModels, name)
			}
		case "cpu", "uarch":
			if other == "" {
				other = val
			}
		}
	}
	info.Sockets = len(coresBySocket)
	for _, n := range coresBySocket {
		info.Cores += n
	}
	if info.Implementer != "" {
		if info.Model == "" {
			info.Model = strings.Join(armModels, " + ")
			if info.Model == "" { // an implementer and no part
				info.Model, info.UnknownPart = info.Implementer+"/?", true
			}
		}
		if info.Vendor == "" {
			info.Vendor = firstNonEmpty(armImplementers[info.Implementer], info.Implementer)
		}
	}
	if info.Model == "" && info.Implementer == "" {
		info.Model = other
	}
	return info
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// normHex writes a cpuinfo hex field ("0x41", "0XD4F", "0x4") as MIDR's fields are
// written, with digits digits: "0x41", "0xd4f", "0x004".
func normHex(s string, digits int) string {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 32)
	if err != nil {
		return strings.ToLower(s)
	}
	return fmt.Sprintf("0x%0*x", digits, v)
}

// armImplementers are the MIDR implementer codes, named as lscpu names them.
var armImplementers = map[string]string{
	"0x41": "ARM", "0x42": "Broadcom", "0x43": "Cavium", "0x44": "DEC", "0x46": "FUJITSU", "0x48": "HiSilicon",
	"0x49": "Infineon", "0x4d": "Motorola/Freescale", "0x4e": "NVIDIA", "0x50": "APM", "0x51": "Qualcomm",
	"0x53": "Samsung", "0x56": "Marvell", "0x61": "Apple", "0x66": "Faraday", "0x69": "Intel", "0x6d": "Microsoft",
	"0x70": "Phytium", "0xc0": "Ampere",
}

// armParts are the common MIDR parts by implementer, named as lscpu names them.
var armParts = map[string]map[string]string{
	"0x41": {
		"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57", "0xd08": "Cortex-A72",
		"0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77",
		"0xd0e": "Cortex-A76AE", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE", "0xd44": "Cortex-X1",
		"0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd49": "Neoverse-N2", "0xd4a": "Neoverse-E1",
		"0xd4b": "Cortex-A78C", "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3", "0xd4f": "Neoverse-V2", "0xd80": "Cortex-A520",
		"0xd81": "Cortex-A720", "0xd82": "Cortex-X4", "0xd84": "Neoverse-V3", "0xd85": "Cortex-X925", "0xd87": "Cortex-A725",
		"0xd8e": "Neoverse-N3",
	},
	"0x42": {"0x516": "ThunderX2"},
	"0x43": {"0x0a1": "ThunderX 88XX", "0x0a2": "ThunderX 81XX", "0x0a3": "ThunderX 83XX", "0x0af": "ThunderX2 99xx",
		"0x0b8": "ThunderX3 T110"},
	"0x46": {"0x001": "A64FX"},
	"0x48": {"0xd01": "TaiShan-v110", "0xd02": "TaiShan-v120"},
	"0x4e": {"0x000": "Denver", "0x003": "Denver 2", "0x004": "Carmel"},
	"0x51": {"0x800": "Falkor V1/Kryo", "0x801": "Kryo V2", "0xc00": "Falkor", "0xc01": "Saphira", "0x001": "Oryon"},
	"0x6d": {"0xd49": "Azure-Cobalt-100"},
	"0x70": {"0x660": "FTC660", "0x661": "FTC661", "0x662": "FTC662", "0x663": "FTC663", "0x664": "FTC664"},
	"0xc0": {"0xac3": "Ampere-1", "0xac4": "Ampere-1a"},
}

func armPartName(implementer, part string) string {
	return armParts[implementer][part]
}

// smbiosProcessor reads the manufacturer and version strings of the first SMBIOS processor
// record (type 4) in /sys/firmware/dmi/entries; "" when there is none or it holds a
// placeholder. arm64 servers (Grace, Altra) have one.
func (c *collector) smbiosProcessor() (manufacturer, version string) {
	b, err := c.r.readFile("/sys/firmware/dmi/entries/4-0/raw")
	if err != nil {
		return "", ""
	}
	manufacturer, version = ParseSMBIOSProcessor(b)
	if isPlaceholder(manufacturer) {
		manufacturer = ""
	}
	if isPlaceholder(version) {
		version = ""
	}
	return manufacturer, version
}

// ParseSMBIOSProcessor reads an SMBIOS processor information structure (type 4): the
// manufacturer (string number at offset 7) and version (offset 0x10) from the strings that
// follow the formatted area.
func ParseSMBIOSProcessor(b []byte) (manufacturer, version string) {
	if len(b) < 0x11 || b[0] != 4 || int(b[1]) > len(b) || b[1] < 0x11 {
		return "", ""
	}
	var strs []string
	for rest := b[b[1]:]; len(rest) > 0 && rest[0] != 0; {
		s, after, _ := bytes.Cut(rest, []byte{0})
		strs = append(strs, printable(string(s)))
		rest = after
	}
	str := func(i byte) string {
		if i == 0 || int(i) > len(strs) {
			return ""
		}
		return strs[i-1]
	}
	return str(b[7]), str(b[0x10])
}

// ParseCPUList counts the CPUs in a kernel CPU list such as "0-15" or "0-3,8-11".
func ParseCPUList(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	n := 0
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return 0, fmt.Errorf("bad CPU list %q: %q is not a CPU number", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("bad CPU list %q: bad range %q", s, part)
			}
		}
		if b-a >= 1<<20 || n+b-a+1 > 1<<20 {
			return 0, fmt.Errorf("bad CPU list %q: more than %d CPUs", s, 1<<20)
		}
		n += b - a + 1
	}
	return n, nil
}

func (c *collector) memory() error {
	b, err := c.readCapture("/proc/meminfo", "meminfo.txt")
	if err != nil {
		return fmt.Errorf("read /proc/meminfo: %w", err)
	}
	total, err := ParseMemTotal(b)
	if err != nil {
		return err
	}
	c.inv.Memory.TotalBytes = total
	c.inv.Memory.InstalledBytes = c.installedMemory()
	return nil
}

var memoryBlockRe = lazyRegexp(`^memory[0-9]+$`)

// installedMemory is the memory the kernel found, online or not, from its memory blocks
// (/sys/devices/system/memory: block_size_bytes × the blocks): MemTotal leaves out what the
// firmware and the kernel keep (tens of GiB on a large machine). 0 when sysfs does not say.
func (c *collector) installedMemory() uint64 {
	const dir = "/sys/devices/system/memory/"
	size, ok := c.r.attrHex(dir + "block_size_bytes")
	if !ok || size == 0 || size > 1<<40 {
		return 0
	}
	names, _ := c.r.list(dir)
	var blocks uint64
	for _, n := range names {
		if memoryBlockRe().MatchString(n) {
			blocks++
		}
	}
	return blocks * size
}

// ParseMemTotal returns MemTotal from /proc/meminfo, in bytes.
func ParseMemTotal(b []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "MemTotal" {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			break
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil || kb > 1<<53 {
			return 0, fmt.Errorf("/proc/meminfo: bad MemTotal %q", strings.TrimSpace(val))
		}
		if len(fields) > 1 && fields[1] != "kB" {
			return 0, fmt.Errorf("/proc/meminfo: MemTotal in unknown unit %q", fields[1])
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("/proc/meminfo has no MemTotal line")
}
