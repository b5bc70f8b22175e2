package inventory

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

var driverVersionRe = lazyRegexp(`^[0-9]+\.[0-9]+(\.[0-9]+)?$`)

// ParseNvidiaVersion returns the driver version from /proc/driver/nvidia/version, whose first
// line names the module and then its version ("NVRM version: NVIDIA UNIX Open Kernel Module
// for x86_64  580.159.04  Release Build …", or "… x86_64 Kernel Module  535.104.05  Sat Aug …"
// for the proprietary one); "" when there is none. The first token shaped like a version
// after "NVRM version:" is taken, so both wordings read the same.
func ParseNvidiaVersion(b []byte) string {
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "NVRM version:")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(rest) {
			if driverVersionRe().MatchString(f) {
				return f
			}
		}
	}
	return ""
}

// NvidiaProcGPU is what /proc/driver/nvidia/gpus/<address>/information says of one GPU.
type NvidiaProcGPU struct {
	Model       string
	UUID        string
	VBIOS       string
	BusLocation string // PCI address, normalised as sysfs writes it
	Firmware    string
	// Excluded is "GPU Excluded: Yes": the driver leaves the GPU alone (NVreg_ExcludedGpus).
	Excluded bool
}

// ParseNvidiaInformation reads one or more concatenated information files ("Key: \t value"
// lines, each GPU starting with "Model:").
func ParseNvidiaInformation(b []byte) []NvidiaProcGPU {
	var gpus []NvidiaProcGPU
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		val = strings.TrimSpace(val)
		if key == "Model" {
			gpus = append(gpus, NvidiaProcGPU{Model: val})
			continue
		}
		if len(gpus) == 0 {
			continue
		}
		g := &gpus[len(gpus)-1]
		switch key {
		case "GPU UUID":
			g.UUID = val
		case "Video BIOS":
			g.VBIOS = val
		case "Bus Location":
			g.BusLocation = NormalizePCIAddress(val)
		case "GPU Firmware":
			g.Firmware = val
		case "GPU Excluded":
			g.Excluded = strings.EqualFold(val, "yes")
		}
	}
	return gpus
}

// NormalizePCIAddress writes a PCI address as sysfs does (4-digit domain, lower case):
// nvidia-smi writes "00000000:00:06.0".
func NormalizePCIAddress(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	dom, rest, ok := strings.Cut(s, ":")
	if !ok || strings.Count(rest, ":") != 1 {
		return s
	}
	d, err := strconv.ParseUint(dom, 16, 32)
	if err != nil {
		return s
	}
	out := fmt.Sprintf("%04x:%s", d, rest)
	if !pciAddrRe().MatchString(out) {
		return s
	}
	return out
}

// NvidiaSMI is what Etoile reads from `nvidia-smi -q -x`.
type NvidiaSMI struct {
	DriverVersion string
	CUDAVersion   string
	GPUs          []NvidiaSMIGPU
}

// NvidiaSMIGPU is one <gpu> of nvidia-smi's XML.
type NvidiaSMIGPU struct {
	PCIAddress     string // normalised as sysfs writes it
	ProductName    string
	Architecture   string
	UUID           string
	VBIOS          string
	MemoryMiB      uint64 // fb_memory_usage/total
	MIGMode        string // "enabled", "disabled", "" when N/A
	MIGModePending string
	Persistence    string // persistence mode: "enabled", "disabled", "" when N/A
}

type smiXML struct {
	DriverVersion string `xml:"driver_version"`
	CUDAVersion   string `xml:"cuda_version"`
	GPUs          []struct {
		ID           string `xml:"id,attr"`
		ProductName  string `xml:"product_name"`
		Architecture string `xml:"product_architecture"`
		UUID         string `xml:"uuid"`
		VBIOS        string `xml:"vbios_version"`
		MIG          struct {
			Current string `xml:"current_mig"`
			Pending string `xml:"pending_mig"`
		} `xml:"mig_mode"`
		Persistence string `xml:"persistence_mode"`
		PCIBusID    string `xml:"pci>pci_bus_id"`
		FBTotal     string `xml:"fb_memory_usage>total"`
	} `xml:"gpu"`
}

// ParseNvidiaSMI reads the XML of `nvidia-smi -q -x`. Its DOCTYPE names an external DTD,
// which is not fetched: only the elements above are read.
func ParseNvidiaSMI(b []byte) (*NvidiaSMI, error) {
	var x smiXML
	d := xml.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&x); err != nil {
		return nil, fmt.Errorf("nvidia-smi -q -x output: %w", err)
	}
	out := &NvidiaSMI{DriverVersion: na(x.DriverVersion), CUDAVersion: na(x.CUDAVersion)}
	for _, g := range x.GPUs {
		addr := g.PCIBusID
		if addr == "" {
			addr = g.ID
		}
		mem, _ := parseMiB(g.FBTotal)
		out.GPUs = append(out.GPUs, NvidiaSMIGPU{
			PCIAddress:     NormalizePCIAddress(addr),
			ProductName:    na(g.ProductName),
			Architecture:   na(g.Architecture),
			UUID:           redacted(na(g.UUID)),
			VBIOS:          na(g.VBIOS),
			MemoryMiB:      mem,
			MIGMode:        migMode(g.MIG.Current),
			MIGModePending: migMode(g.MIG.Pending),
			Persistence:    migMode(g.Persistence), // the same words
		})
	}
	return out, nil
}

// na maps nvidia-smi's "N/A" and blanks to "".
func na(s string) string {
	s = strings.TrimSpace(s)
	// nvidia-smi writes what it could not read in brackets: [N/A], [Not
	// Supported], [Unknown Error], [GPU requires reset], [Insufficient
	// Permissions]; none is a value.
	if s == "N/A" || strings.HasPrefix(s, "Not Supported") || strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return ""
	}
	return s
}

// redacted drops values a snapshot's publisher replaced by "REDACTED".
func redacted(s string) string {
	if s == "REDACTED" {
		return ""
	}
	return s
}

func migMode(s string) string {
	switch strings.ToLower(na(s)) {
	case "enabled":
		return "enabled"
	case "disabled":
		return "disabled"
	}
	return ""
}

// parseMiB reads "81559 MiB".
func parseMiB(s string) (uint64, bool) {
	f := strings.Fields(s)
	if len(f) != 2 || f[1] != "MiB" {
		return 0, false
	}
	v, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || v > 1<<40 {
		return 0, false
	}
	return v, true
}

// partialNvidiaSMI reads what `nvidia-smi -q -x` wrote before exiting non-zero: the
// nvidia_smi_log document, when it is whole and well-formed (else nil), and the first line it
// wrote outside the document (nvidia-smi writes some of its complaints to stdout).
func partialNvidiaSMI(out []byte) (*NvidiaSMI, string) {
	start := bytes.Index(out, []byte("<?xml"))
	if start < 0 {
		start = bytes.Index(out, []byte("<nvidia_smi_log"))
	}
	const closing = "</nvidia_smi_log>"
	end := bytes.LastIndex(out, []byte(closing))
	if start < 0 || end < start {
		return nil, firstLine(string(out))
	}
	end += len(closing)
	doc := out[start:end]
	rest := firstLine(string(out[:start]) + "\n" + string(out[end:]))
	// ParseNvidiaSMI reads the whole root element, skipping what it does not take: a
	// syntax error anywhere in it (an element left open) fails it.
	smi, err := ParseNvidiaSMI(doc)
	if err != nil {
		return nil, rest
	}
	return smi, rest
}

// smiFailure says how nvidia-smi failed: its exit status and the first line of its standard
// error, else the first line it wrote outside its XML (rest), else the error's.
func smiFailure(err error, rest string) string {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if why := firstNonEmpty(firstLine(string(exit.Stderr)), rest); why != "" {
			return exit.String() + ": " + trimOutput([]byte(why))
		}
		return exit.String()
	}
	if inner := errors.Unwrap(err); inner != nil {
		err = inner // without runNvidiaSMI's "run nvidia-smi -q -x: "
	}
	return trimOutput([]byte(firstLine(err.Error())))
}

// firstLine is s's first line that is not blank, trimmed.
func firstLine(s string) string {
	for line := range strings.SplitSeq(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return ""
}
