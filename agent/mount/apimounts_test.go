package mount

import "testing"

// TestAPIMountsLeaveSecurityFSOut: securityfs stays unmounted. With it,
// containerd sees AppArmor enabled (the Debian kernel has it) and loads its
// profile for every container through apparmor_parser, which the image does
// not have: every pod would fail to start (k3s-io/k3s#3406). /dev/shm and
// /dev/pts are mounted after /dev, which holds them.
func TestAPIMountsLeaveSecurityFSOut(t *testing.T) {
	at := map[string]int{}
	for i, m := range APIMounts {
		if m.FSType == "securityfs" || m.Target == "/sys/kernel/security" {
			t.Errorf("APIMounts mounts %s at %s: containerd would need apparmor_parser for every container", m.FSType, m.Target)
		}
		at[m.Target] = i
	}
	for _, sub := range []string{"/dev/shm", "/dev/pts"} {
		i, ok := at[sub]
		if !ok || i < at["/dev"] {
			t.Errorf("%s is not mounted after /dev (APIMounts %v)", sub, APIMounts)
		}
	}
}
