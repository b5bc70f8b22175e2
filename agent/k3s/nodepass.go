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
// is kept. It returns whether it wrote one.
func EnsureNodePassword(root, token, nodeName, machineID string) (bool, error) {
	if token == "" || machineID == "" {
		return false, nil
	}
	p := filepath.Join(root, NodePasswordPath)
	if _, err := os.Stat(p); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
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
