package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/safego"
)

// The ACPI power button: a hypervisor's "Shut down" (virsh shutdown,
// Proxmox, vSphere's guest shutdown without tools) and a press of a
// server's own button. The kernel's button driver reports each press on the
// "acpi_event" generic netlink family, which acpid and Talos read; there is
// no acpid here, so PID 1 listens itself and powers off as for SIGPWR.

const (
	acpiFamily   = "acpi_event"
	acpiGroup    = "acpi_mc_group"
	acpiAttrEvnt = 1 // ACPI_GENL_ATTR_EVENT
	// struct acpi_genl_event: device_class[20], bus_id[15], then (aligned)
	// u32 type and u32 data.
	acpiEventLen = 44
)

// ACPIEvent is one event of the acpi_event family.
type ACPIEvent struct {
	Class string // "button/power", "button/sleep", "button/lid"…
	BusID string // "LNXPWRBN:00", "PNP0C0C:00"
	Type  uint32
	Data  uint32 // for a button, how many times it was pressed
}

// PowerButton reports whether the event is a press of a power button.
func (e ACPIEvent) PowerButton() bool { return e.Class == "button/power" }

// WatchPowerButton listens to the kernel's ACPI events (in the background:
// it costs the boot nothing) and returns a channel that receives each power
// button press. Without ACPI (acpi=off, a machine described by a device
// tree) it logs why and the channel never receives. It runs for the life of
// PID 1.
func WatchPowerButton(log *slog.Logger) <-chan ACPIEvent {
	presses := make(chan ACPIEvent, 1)
	go func() {
		defer safego.Recover(log, "the ACPI event listener (the power button will not shut the machine down)")
		fd, family, err := acpiSocket()
		if err != nil {
			log.Info("no ACPI events: the power button will not shut the machine down", "reason", err.Error())
			return
		}
		defer unix.Close(fd)
		buf := make([]byte, 8192)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOBUFS) {
				continue // ENOBUFS: events were dropped; the next press still comes
			}
			if err != nil {
				log.Warn("reading ACPI events failed: the power button will not shut the machine down", "reason", err.Error())
				return
			}
			for _, ev := range parseACPIEvents(buf[:n], family) {
				log.Debug("ACPI event", "class", ev.Class, "bus_id", ev.BusID, "type", ev.Type, "data", ev.Data)
				if ev.PowerButton() {
					select {
					case presses <- ev:
					default: // one press pending is enough
					}
				}
			}
		}
	}()
	return presses
}

// acpiSocket opens a generic netlink socket subscribed to the acpi_event
// family's multicast group, and returns it with the family's id.
func acpiSocket() (int, uint16, error) {
	fam, err := netlink.GenlFamilyGet(acpiFamily)
	if err != nil {
		return -1, 0, fmt.Errorf("generic netlink family %s: %w", acpiFamily, err)
	}
	var group uint32
	for _, g := range fam.Groups {
		if g.Name == acpiGroup {
			group = g.ID
		}
	}
	if group == 0 {
		return -1, 0, fmt.Errorf("the %s family has no %s group", acpiFamily, acpiGroup)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return -1, 0, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(group)); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("joining %s: %w", acpiGroup, err)
	}
	return fd, fam.ID, nil
}

// parseACPIEvents decodes the acpi_event family's messages in one netlink
// datagram; anything malformed or of another family is skipped.
func parseACPIEvents(b []byte, family uint16) []ACPIEvent {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil
	}
	var out []ACPIEvent
	for _, m := range msgs {
		if m.Header.Type != family || len(m.Data) < unix.GENL_HDRLEN {
			continue
		}
		attrs := m.Data[unix.GENL_HDRLEN:]
		for len(attrs) >= unix.SizeofNlAttr {
			l := int(binary.NativeEndian.Uint16(attrs[0:2]))
			typ := binary.NativeEndian.Uint16(attrs[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
			if l < unix.SizeofNlAttr || l > len(attrs) {
				break
			}
			if v := attrs[unix.SizeofNlAttr:l]; typ == acpiAttrEvnt && len(v) >= acpiEventLen {
				out = append(out, ACPIEvent{
					Class: cString(v[0:20]),
					BusID: cString(v[20:35]),
					Type:  binary.NativeEndian.Uint32(v[36:40]),
					Data:  binary.NativeEndian.Uint32(v[40:44]),
				})
			}
			next := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
			if next >= len(attrs) {
				break
			}
			attrs = attrs[next:]
		}
	}
	return out
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b))
}
