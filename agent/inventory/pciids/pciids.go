// Package pciids names PCI vendors, devices, subsystems and classes from a pci.ids database.
//
// The agent ships its own copy, so a node names its hardware the same way whether or not the
// system image carries pciutils: pci.ids.gz is the PCI ID Project's database (pci-ids.ucw.cz)
// as NVIDIA's Go module github.com/NVIDIA/go-nvlib v0.13.0 ships it in pkg/pciids/default_pci.ids
// ("Version: 2026.07.31, Date: 2026-07-31 03:15:01", sha256 of the uncompressed file
// a572059125f6eb7317e43f2c0d17c7300eafecf72bf90d06c0b803e6b4b5b9e2; the module is checked
// against Go's checksum database when downloaded), compressed with `gzip -9 -n`. It names the
// GPUs of its day (H200, B200, GB200, RTX PRO 6000…), which Debian 12's `pci.ids` package
// (2023.04.10) does not. To refresh it: `go mod download -json github.com/NVIDIA/go-nvlib@VERSION`
// and `gzip -9 -n -c DIR/pkg/pciids/default_pci.ids > agent/inventory/pciids/pci.ids.gz` (or
// the same from /usr/share/misc/pci.ids of a newer distribution's `pci.ids` package), then
// update the version above and in TestVersion.
//
// Nothing is parsed until a caller asks (Embedded or Parse), and a caller that names the
// vendors it cares about keeps only those in memory: the whole database is about 36,000
// lines, and the agent must stay small while it supervises K3s.
package pciids

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"io"
	"strconv"
	"strings"
)

//go:embed pci.ids.gz
var embeddedGz []byte

// DB holds the names parsed from a pci.ids file.
type DB struct {
	vendors map[uint16]*vendor
	classes map[uint8]*class
}

type vendor struct {
	name    string
	devices map[uint16]*device
}

type device struct {
	name string
	subs map[uint32]string // subvendor<<16 | subdevice
}

type class struct {
	name string
	subs map[uint8]*subclass
}

type subclass struct {
	name    string
	progifs map[uint8]string
}

// Embedded parses the database compiled into the binary. keep, when not nil, selects the
// vendors whose devices are kept (vendor names and all classes are always kept); pass the
// vendor ids of the devices at hand to keep memory small.
func Embedded(keep func(vendorID uint16) bool) (*DB, error) {
	zr, err := gzip.NewReader(bytes.NewReader(embeddedGz))
	if err != nil {
		return nil, fmt.Errorf("open embedded pci.ids.gz: %w (the binary is damaged: rebuild it)", err)
	}
	defer zr.Close()
	return Parse(zr, keep)
}

// Version is a pci.ids file's "Version:" (2023.04.10) from its header comment, "" when it
// has none. Versions are dates: their text sorts as they do.
func Version(data []byte) string {
	for i, line := range strings.SplitN(string(data[:min(len(data), 4096)]), "\n", 40) {
		if i > 30 || (line != "" && !strings.HasPrefix(line, "#")) {
			break
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(strings.TrimPrefix(line, "#")), "Version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// EmbeddedVersion is the version of the database compiled into the binary.
func EmbeddedVersion() string {
	zr, err := gzip.NewReader(bytes.NewReader(embeddedGz))
	if err != nil {
		return ""
	}
	defer zr.Close()
	head := make([]byte, 4096)
	n, _ := io.ReadFull(zr, head)
	return Version(head[:n])
}

// Parse reads a pci.ids file. Lines it cannot read are skipped, as lspci does, so a damaged
// or newer-format line never hides the rest of the database; an error is returned only when
// reading fails.
func Parse(r io.Reader, keep func(vendorID uint16) bool) (*DB, error) {
	db := &DB{vendors: map[uint16]*vendor{}, classes: map[uint8]*class{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	var (
		curV    *vendor // nil when outside a kept vendor
		curD    *device
		curC    *class
		curS    *subclass
		inClass bool
	)
	for sc.Scan() {
		raw := sc.Bytes()
		if len(raw) == 0 || raw[0] == '#' {
			continue
		}
		tabs := 0
		for tabs < len(raw) && raw[tabs] == '\t' {
			tabs++
		}
		if tabs > 0 && !inClass && curV == nil {
			continue // a device of a vendor not kept: skip before copying the line
		}
		body := string(raw[tabs:])
		switch tabs {
		case 0:
			curV, curD, curC, curS = nil, nil, nil, nil
			if strings.HasPrefix(body, "C ") {
				id, name, ok := splitID(body[2:], 2)
				if !ok {
					inClass = true // keep child lines from attaching to a vendor
					continue
				}
				inClass = true
				curC = &class{name: name, subs: map[uint8]*subclass{}}
				db.classes[uint8(id)] = curC
				continue
			}
			inClass = false
			if len(body) > 1 && body[1] == ' ' {
				// Other top-level sections (device classes "C", and the USB-only
				// ones in usb.ids) start with a letter and a space: not vendors.
				inClass = true
				continue
			}
			id, name, ok := splitID(body, 4)
			if !ok {
				continue
			}
			v := &vendor{name: name}
			db.vendors[uint16(id)] = v
			if keep == nil || keep(uint16(id)) {
				v.devices = map[uint16]*device{}
				curV = v
			}
		case 1:
			curD, curS = nil, nil
			if inClass {
				if curC == nil {
					continue
				}
				id, name, ok := splitID(body, 2)
				if !ok {
					continue
				}
				curS = &subclass{name: name}
				curC.subs[uint8(id)] = curS
				continue
			}
			if curV == nil {
				continue
			}
			id, name, ok := splitID(body, 4)
			if !ok {
				continue
			}
			curD = &device{name: name}
			curV.devices[uint16(id)] = curD
		case 2:
			if inClass {
				if curS == nil {
					continue
				}
				id, name, ok := splitID(body, 2)
				if !ok {
					continue
				}
				if curS.progifs == nil {
					curS.progifs = map[uint8]string{}
				}
				curS.progifs[uint8(id)] = name
				continue
			}
			if curD == nil {
				continue
			}
			sv, rest, ok := cutHex(body, 4)
			if !ok || !strings.HasPrefix(rest, " ") {
				continue
			}
			sd, name, ok := splitID(rest[1:], 4)
			if !ok {
				continue
			}
			if curD.subs == nil {
				curD.subs = map[uint32]string{}
			}
			curD.subs[uint32(sv)<<16|uint32(sd)] = name
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read pci.ids: %w", err)
	}
	return db, nil
}

// splitID reads "<digits hex digits><spaces><name>".
func splitID(s string, digits int) (uint64, string, bool) {
	id, rest, ok := cutHex(s, digits)
	if !ok {
		return 0, "", false
	}
	name := strings.TrimSpace(rest)
	if name == "" || len(rest) == len(strings.TrimLeft(rest, " \t")) {
		return 0, "", false
	}
	return id, name, true
}

func cutHex(s string, digits int) (uint64, string, bool) {
	if len(s) < digits {
		return 0, "", false
	}
	id, err := strconv.ParseUint(s[:digits], 16, 64)
	if err != nil {
		return 0, "", false
	}
	return id, s[digits:], true
}

// Vendor returns the vendor's name.
func (db *DB) Vendor(vendorID uint16) (string, bool) {
	v, ok := db.vendors[vendorID]
	if !ok {
		return "", false
	}
	return v.name, true
}

// Device returns the device's name; false when unknown or when its vendor was not kept.
func (db *DB) Device(vendorID, deviceID uint16) (string, bool) {
	v, ok := db.vendors[vendorID]
	if !ok {
		return "", false
	}
	d, ok := v.devices[deviceID]
	if !ok {
		return "", false
	}
	return d.name, true
}

// Subsystem returns the name of a subsystem (board) of a device.
func (db *DB) Subsystem(vendorID, deviceID, subVendorID, subDeviceID uint16) (string, bool) {
	v, ok := db.vendors[vendorID]
	if !ok {
		return "", false
	}
	d, ok := v.devices[deviceID]
	if !ok {
		return "", false
	}
	name, ok := d.subs[uint32(subVendorID)<<16|uint32(subDeviceID)]
	return name, ok
}

// Class returns the most specific name known for a 24-bit class code (base class, subclass,
// programming interface, as in sysfs's class attribute): the subclass name where known, the
// base class name otherwise. The programming interface name is left out because it names a
// register layout ("xHCI", "NVM Express"), which reads wrongly without the subclass.
func (db *DB) Class(code uint32) (string, bool) {
	c, ok := db.classes[uint8(code>>16)]
	if !ok {
		return "", false
	}
	if s, ok := c.subs[uint8(code>>8)]; ok {
		return s.name, true
	}
	return c.name, true
}

// ProgIf returns the name of a class code's programming interface, when pci.ids has one.
func (db *DB) ProgIf(code uint32) (string, bool) {
	c, ok := db.classes[uint8(code>>16)]
	if !ok {
		return "", false
	}
	s, ok := c.subs[uint8(code>>8)]
	if !ok {
		return "", false
	}
	name, ok := s.progifs[uint8(code)]
	return name, ok
}
