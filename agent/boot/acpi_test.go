package boot

import (
	"encoding/binary"
	"slices"
	"testing"
)

// acpiMessage builds one netlink message of family fam carrying the given
// attributes, as the kernel's acpi_bus_generate_netlink_event sends them.
func acpiMessage(fam uint16, attrs ...[]byte) []byte {
	body := []byte{1, 1, 0, 0} // genlmsghdr: ACPI_GENL_CMD_EVENT, version 1
	for _, a := range attrs {
		body = append(body, a...)
	}
	msg := make([]byte, 16, 16+len(body))
	binary.NativeEndian.PutUint32(msg[0:4], uint32(16+len(body)))
	binary.NativeEndian.PutUint16(msg[4:6], fam)
	return append(msg, body...)
}

// acpiAttr is an nlattr of type typ holding v, padded to 4 bytes.
func acpiAttr(typ uint16, v []byte) []byte {
	a := make([]byte, 4, 4+len(v)+3)
	binary.NativeEndian.PutUint16(a[0:2], uint16(4+len(v)))
	binary.NativeEndian.PutUint16(a[2:4], typ)
	a = append(a, v...)
	for len(a)%4 != 0 {
		a = append(a, 0)
	}
	return a
}

// genlEvent is struct acpi_genl_event.
func genlEvent(class, busID string, typ, data uint32) []byte {
	b := make([]byte, acpiEventLen)
	copy(b[0:20], class)
	copy(b[20:35], busID)
	binary.NativeEndian.PutUint32(b[36:40], typ)
	binary.NativeEndian.PutUint32(b[40:44], data)
	return b
}

func TestParseACPIEvents(t *testing.T) {
	const fam = 26
	var dgram []byte
	// Another family's message, then the power button (fixed hardware
	// button: type 0x80, the press count), then a lid event with an
	// unknown attribute before it, then a truncated event.
	dgram = append(dgram, acpiMessage(27, acpiAttr(1, genlEvent("button/power", "LNXPWRBN:00", 0x80, 9)))...)
	dgram = append(dgram, acpiMessage(fam, acpiAttr(1, genlEvent("button/power", "LNXPWRBN:00", 0x80, 1)))...)
	dgram = append(dgram, acpiMessage(fam, acpiAttr(7, []byte{1, 2, 3}), acpiAttr(1, genlEvent("button/lid", "PNP0C0D:00", 0x80, 2)))...)
	dgram = append(dgram, acpiMessage(fam, acpiAttr(1, []byte("button/power")))...)
	got := parseACPIEvents(dgram, fam)
	want := []ACPIEvent{
		{Class: "button/power", BusID: "LNXPWRBN:00", Type: 0x80, Data: 1},
		{Class: "button/lid", BusID: "PNP0C0D:00", Type: 0x80, Data: 2},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("parseACPIEvents = %+v, want %+v", got, want)
	}
	if !got[0].PowerButton() || got[1].PowerButton() {
		t.Errorf("PowerButton: power %v, lid %v; want true, false", got[0].PowerButton(), got[1].PowerButton())
	}
	// Garbage must not panic.
	for n := range len(dgram) {
		parseACPIEvents(dgram[:n], fam)
	}
}
