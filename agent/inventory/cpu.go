package inventory

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

func readDMI(r root) DMI {
	const d = "/sys/class/dmi/id/"
	return DMI{
		Vendor:      r.attr(d + "sys_vendor"),
		Product:     r.attr(d + "product_name"),
		Version:     r.attr(d + "product_version"),
		Serial:      r.attr(d + "product_serial"),
		UUID:        r.attr(d + "product_uuid"),
		BoardVendor: r.attr(d + "board_vendor"),
		BoardName:   r.attr(d + "board_name"),
		BIOSVendor:  r.attr(d + "bios_vendor"),
		BIOSVersion: r.attr(d + "bios_version"),
	}
}

func (c *collector) cpu() error {
	b, err := c.readCapture("/proc/cpuinfo", "cpuinfo-head.txt")
	if err != nil {
		return fmt.Errorf("read /proc/cpuinfo: %w", err)
	}
	info := ParseCPUInfo(b)
	c.inv.CPU = CPU{Model: info.Model, Vendor: info.Vendor, Sockets: info.Sockets, Cores: info.Cores, Count: info.Processors}
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

// CPUInfo is what ParseCPUInfo reads from /proc/cpuinfo.
type CPUInfo struct {
	Model      string
	Vendor     string
	Processors int // "processor" entries
	Sockets    int // distinct "physical id"
	Cores      int // sum of "cpu cores" over sockets
}

// ParseCPUInfo reads /proc/cpuinfo. The model comes from x86's "model name"; arm64's
// cpuinfo names parts only by number ("CPU part"), which needs a table we do not carry, so
// the model stays empty there.
func ParseCPUInfo(b []byte) CPUInfo {
	var info CPUInfo
	coresBySocket := map[string]int{}
	socket := ""
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
		}
	}
	info.Sockets = len(coresBySocket)
	for _, n := range coresBySocket {
		info.Cores += n
	}
	return info
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
	return nil
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
