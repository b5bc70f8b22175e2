package network

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/etoile-os/etoile/agent/config"
)

// The machine config's hosts: entries sit in /etc/hosts between these
// lines; what is outside them (the image's own lines) stays as it is.
const (
	hostsBegin = "# BEGIN machine config hosts (etoile): written by the agent, replaced at each apply\n"
	hostsEnd   = "# END machine config hosts (etoile)\n"
)

// WriteHosts writes the machine config's hosts: entries into dir/hosts,
// replacing those an earlier config wrote (none: the block goes). It
// reports whether the file changed.
func WriteHosts(dir string, entries []config.HostEntry) (bool, error) {
	return config.ReplaceBlock(filepath.Join(dir, "hosts"), hostsBegin, hostsEnd, hostsBody(entries), 0o644)
}

// hostsBody is the lines of the machine config block of /etc/hosts.
func hostsBody(entries []config.HostEntry) []byte {
	var out bytes.Buffer
	for _, e := range entries {
		fmt.Fprintf(&out, "%s %s\n", e.IP, strings.Join(e.Names, " "))
	}
	return out.Bytes()
}
