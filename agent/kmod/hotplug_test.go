package kmod

import "testing"

func TestParseUevent(t *testing.T) {
	msg := "add@/devices/pci0000:00/0000:00:02.0/usb2/2-1\x00ACTION=add\x00DEVPATH=/devices/pci0000:00/0000:00:02.0/usb2/2-1\x00" +
		"SUBSYSTEM=usb\x00MODALIAS=usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00\x00SEQNUM=1234\x00"
	u, ok := ParseUevent([]byte(msg))
	if !ok || u.Action != "add" || u.Modalias != "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00" || u.DevPath != "/devices/pci0000:00/0000:00:02.0/usb2/2-1" {
		t.Errorf("ParseUevent = %+v, %v", u, ok)
	}
	for _, bad := range []string{"", "libudev\x00\xfe\xed", "remove", "x@y"} {
		if u, ok := ParseUevent([]byte(bad)); ok {
			t.Errorf("ParseUevent(%q) = %+v, want refused", bad, u)
		}
	}
}

func FuzzParseUevent(f *testing.F) {
	f.Add([]byte("add@/devices/x\x00ACTION=add\x00MODALIAS=pci:v1\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if u, ok := ParseUevent(b); ok && u.Action == "" {
			t.Fatal("accepted without an action")
		}
	})
}
