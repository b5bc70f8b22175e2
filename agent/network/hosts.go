package network

import (
	"bytes"
	"fmt"
	"os"
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
	path := filepath.Join(dir, "hosts")
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return false, err
	}
	next := hostsWith(old, entries)
	if bytes.Equal(old, next) {
		return false, nil
	}
	if err := writeFile(path, next); err != nil {
		return false, err
	}
	return true, nil
}

// hostsWith is the hosts file old with its machine config block replaced
// by entries' (removed when there are none).
func hostsWith(old []byte, entries []config.HostEntry) []byte {
	var out bytes.Buffer
	in := false
	for line := range strings.Lines(string(old)) {
		switch {
		case line == hostsBegin:
			in = true
		case in && line == hostsEnd:
			in = false
		case !in:
			out.WriteString(line)
		}
	}
	if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteByte('\n')
	}
	if len(entries) == 0 {
		return out.Bytes()
	}
	out.WriteString(hostsBegin)
	for _, e := range entries {
		fmt.Fprintf(&out, "%s %s\n", e.IP, strings.Join(e.Names, " "))
	}
	out.WriteString(hostsEnd)
	return out.Bytes()
}
