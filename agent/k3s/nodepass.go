package k3s

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// NodePasswordPath is where a K3s node keeps the password it registers
// with; the servers keep its hash (a node-password secret per node name)
// and refuse the name with any other password.
const NodePasswordPath = "/etc/rancher/node/password"

// EnsureNodePassword writes NodePasswordPath, when absent, with a password
// derived from the cluster token, the node's name and the machine's
// identity (SMBIOS UUID, MAC): the same on every boot of this machine. The
// node's /etc lives in memory, so K3s would otherwise make a new random
// password at each boot and the servers would refuse the rebooted node
// ("Node password rejected"). A password already there (a persistent /etc)
// is kept. It returns whether it wrote one. Without a machine identity
// (machineID "") it writes none and returns a *NoMachineIdentityError, to
// be logged as a warning: K3s still starts, with a password of its own.
func EnsureNodePassword(root, token, nodeName, machineID string) (bool, error) {
	if token == "" {
		return false, nil
	}
	p := filepath.Join(root, NodePasswordPath)
	if _, err := os.Stat(p); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if machineID == "" {
		return false, &NoMachineIdentityError{Node: nodeName}
	}
	mac := hmac.New(sha256.New, []byte(token))
	fmt.Fprintf(mac, "etoile node password\x00%s\x00%s", nodeName, machineID)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return false, err
	}
	if err := os.WriteFile(p, []byte(hex.EncodeToString(mac.Sum(nil))[:32]+"\n"), 0o600); err != nil {
		return false, fmt.Errorf("writing %s: %w", NodePasswordPath, err)
	}
	return true, nil
}

// NoMachineIdentityError is EnsureNodePassword's error for a machine with
// nothing that tells it from others across reboots: K3s then makes a
// random node password, which is lost with /etc at the next boot.
type NoMachineIdentityError struct{ Node string }

func (e *NoMachineIdentityError) Error() string {
	return fmt.Sprintf("no node password derived for %s: this machine has no stable identity "+
		"(its firmware gives no SMBIOS UUID, /sys/class/dmi/id/product_uuid, or one many boards share, and none of its NICs has a permanent MAC address, one the hardware gives), "+
		"so K3s makes a random password, lost with /etc at the next boot, and after a reboot the servers refuse the node (Node password rejected): "+
		"give the machine a unique SMBIOS UUID (a firmware setting; in a VM, the hypervisor's: QEMU -uuid, libvirt <uuid>) or a NIC with a permanent MAC address, "+
		"or after each reboot delete the node's password secret on a server (kubectl -n kube-system delete secret %s.node-password.k3s)", e.Node, e.Node)
}
