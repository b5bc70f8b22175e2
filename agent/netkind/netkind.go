// Package netkind tells the network interfaces an operator makes for pods
// from the machine's own NICs: both the network set-up (which leaves them
// alone after the boot) and the hardware inventory (which does not list
// them) use it.
package netkind

import (
	"bytes"
	"regexp"
)

// representor matches the port names (phys_port_name) of switchdev
// representors and subfunctions: pf0vf3, pf0sf1, c1pf0vf2.
var representor = regexp.MustCompile(`^(c\d+)?pf\d+(vf|sf)\d+$`)

// Representor reports whether physPortName (the content of a link's
// phys_port_name, trailing newline or not) is a representor's or a
// subfunction's: the host side of a pod's virtual function under
// hardware-offloaded switching.
func Representor(physPortName []byte) bool {
	return representor.Match(bytes.TrimSpace(physPortName))
}

// VFMarker is the file under a link's sysfs folder that exists when its
// device is an SR-IOV virtual function: its physical function's link.
const VFMarker = "device/physfn"
