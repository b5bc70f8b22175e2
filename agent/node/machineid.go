package node

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/etoile-os/etoile/agent/config"
)

// machineIDPath is machine-id(5)'s file, relative to the machine's root:
// the kubelet reports it as the Node's machineID, and monitoring agents
// and log shippers key on it.
const machineIDPath = "etc/machine-id"

var machineIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// ensureMachineID writes /etc/machine-id when the image has none, as
// systemd-machine-id-setup would on a stateless system: derived from the
// machine's identity (its SMBIOS UUID, else its lowest own MAC address;
// machineIdentity), so that it is the same on every boot and differs
// between machines, and never that identity itself (machine-id(5): it is
// to be treated as confidential). A machine with neither gets a random
// one, for this boot. It returns where the id came from ("" when the
// image's own was kept).
func ensureMachineID(root string) (string, error) {
	path := filepath.Join(root, machineIDPath)
	if b, err := os.ReadFile(path); err == nil && machineIDRE.MatchString(strings.TrimSpace(string(b))) {
		return "", nil
	}
	source := "machine identity"
	var id string
	if ident := machineIdentity(root); ident != "" {
		sum := sha256.Sum256([]byte("etoile machine-id\x00" + ident))
		id = hex.EncodeToString(sum[:16])
	} else {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		id, source = hex.EncodeToString(b[:]), "random (this machine has neither an SMBIOS UUID nor a NIC of its own)"
	}
	if _, err := config.ReplaceFileMode(path, []byte(id+"\n"), 0o444); err != nil {
		return "", fmt.Errorf("writing /%s: %w", machineIDPath, err)
	}
	return source, nil
}
