// Package cmdline reads the etoile.* kernel arguments from /proc/cmdline.
//
// The kernel command line is untrusted input typed by people (and by
// bootloaders), so parsing never fails on the whole line: unknown or malformed
// etoile.* arguments become warnings, and only the values the agent acts on
// are validated.
package cmdline

import (
	"encoding/hex"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/etoile-os/etoile/schema"
)

// Params are the kernel arguments the agent acts on.
type Params struct {
	// Slot is "a" or "b" when booted from an installed or raw disk, "" otherwise.
	Slot string
	// SystemURL is etoile.system=: where to download the system image from (netboot).
	SystemURL string
	// SystemSHA256 is etoile.system.sha256=: the expected lowercase hex digest.
	SystemSHA256 string
	// VerityRoot and VeritySalt are etoile.verity=<root>:<salt>: the
	// dm-verity root hash and salt of the system image of an ISO or disk
	// slot (lowercase hex, 64 digits each); "" when not given (older media).
	VerityRoot, VeritySalt string
	// Debug is etoile.debug: log at debug level.
	Debug bool
	// PowerOff is etoile.poweroff: power the machine off once ready (or after a
	// fatal error), so that a test VM ends by itself.
	PowerOff bool
	// Config is etoile.config=: where the machine config comes from (issue 3).
	Config string
	// Raw holds every argument as key → value (a bare flag has value "").
	// Later repeated keys win, as the kernel does for its own parameters.
	Raw map[string]string
	// Warnings name etoile.* arguments that were ignored and why.
	Warnings []string
	// Unusable names the arguments that choose the system image
	// (etoile.slot, etoile.system, etoile.system.sha256) that were given
	// with a value the agent cannot use: the boot must stop on them rather
	// than look for the image somewhere the user did not mean.
	Unusable []string
}

// Parse splits a kernel command line the way the kernel does (spaces separate
// arguments, double quotes group) and reads the etoile.* arguments.
func Parse(line string) Params {
	p := Params{Raw: map[string]string{}}
	for _, arg := range split(line) {
		key, val, _ := strings.Cut(arg, "=")
		if key == "" {
			continue
		}
		if key == "--" {
			// Everything after "--" is for init's argv, not kernel parameters.
			break
		}
		p.Raw[key] = val
	}
	// Sorted so that warnings come out in the same order on every boot.
	for _, key := range slices.Sorted(maps.Keys(p.Raw)) {
		val := p.Raw[key]
		if !strings.HasPrefix(key, "etoile.") {
			continue
		}
		switch key {
		case "etoile.slot":
			v := strings.ToLower(val)
			if v != "a" && v != "b" {
				p.Unusable = append(p.Unusable, fmt.Sprintf("etoile.slot=%q: want a or b", val))
				continue
			}
			p.Slot = v
		case "etoile.system":
			u, err := url.Parse(val)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				p.Unusable = append(p.Unusable, fmt.Sprintf("etoile.system=%q: want an http:// or https:// URL", shownURL(val)))
				continue
			}
			p.SystemURL = lowerScheme(val, u.Scheme)
		case "etoile.system.sha256":
			v := strings.ToLower(val)
			if b, err := hex.DecodeString(v); err != nil || len(b) != 32 {
				p.Unusable = append(p.Unusable, fmt.Sprintf("etoile.system.sha256=%q: want 64 hex digits (the image's line in SHA256SUMS)", val))
				continue
			}
			p.SystemSHA256 = v
		case "etoile.verity":
			root, salt, ok := parseVerity(val)
			if !ok {
				p.Unusable = append(p.Unusable, fmt.Sprintf("etoile.verity=%q: want <root hash>:<salt>, 64 hex digits each (as the build wrote it)", val))
				continue
			}
			p.VerityRoot, p.VeritySalt = root, salt
		case "etoile.debug", "etoile.poweroff":
			on, ok := flag(val)
			if !ok {
				p.Warnings = append(p.Warnings, fmt.Sprintf("%s=%q taken as off: give it bare (%s), or =1/0, yes/no, true/false, on/off", key, val, key))
			}
			if key == "etoile.debug" {
				p.Debug = on
			} else {
				p.PowerOff = on
			}
		case "etoile.config":
			if strings.TrimSpace(val) == "" {
				p.Warnings = append(p.Warnings, "etoile.config= ignored: it is empty (give the machine config's http:// or https:// URL)")
				continue
			}
			p.Config = val
			if u, err := url.Parse(val); err == nil && u.Scheme != "" {
				p.Config = lowerScheme(val, u.Scheme)
			}
		default:
			if hint := schema.Suggest(key, imageKeys); hint != "" {
				// A mistyped image argument: the image would otherwise be
				// looked for where the user did not mean (another medium).
				p.Unusable = append(p.Unusable, fmt.Sprintf("%s=%q is not an argument Étoile knows%s", key, shownURL(val), hint))
				continue
			}
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s ignored: unknown etoile argument", key))
		}
	}
	if p.SystemSHA256 != "" && p.SystemURL == "" && !slices.ContainsFunc(p.Unusable, func(u string) bool { return strings.HasPrefix(u, "etoile.system=") }) {
		p.Unusable = append(p.Unusable, "etoile.system.sha256 is given without etoile.system=<url>: give both (netboot), or neither")
	}
	if p.SystemURL != "" && p.Slot != "" {
		p.Warnings = append(p.Warnings, fmt.Sprintf("etoile.slot=%s ignored: etoile.system= names the system image (netboot)", p.Slot))
		p.Slot = ""
	}
	return p
}

// imageKeys are the arguments that choose the system image.
var imageKeys = []string{"etoile.slot", "etoile.system", "etoile.system.sha256", "etoile.verity"}

// shownURL is a value that may be a URL as a message shows it: what stands
// before an '@' (a user and password) and the query and fragment (a signed
// URL's signature) are xxxxx. The messages reach every console; and the
// values they are about are those url.Parse may refuse, so the URL is cut
// by hand.
func shownURL(s string) string {
	head, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		head, rest = s[:i+3], s[i+3:]
	}
	tail := ""
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		tail = rest[i:i+1] + "xxxxx"
		rest = rest[:i]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = "xxxxx" + rest[at:]
	}
	return head + rest + tail
}

// parseVerity reads etoile.verity's <root>:<salt>.
func parseVerity(v string) (root, salt string, ok bool) {
	root, salt, found := strings.Cut(strings.ToLower(v), ":")
	if !found {
		return "", "", false
	}
	for _, h := range []string{root, salt} {
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
			return "", "", false
		}
	}
	return root, salt, true
}

// lowerScheme returns u (whose parsed scheme is scheme) with its scheme
// written in lower case, as everything that compares it expects (HTTPS://).
func lowerScheme(u, scheme string) string {
	if len(u) >= len(scheme) && strings.EqualFold(u[:len(scheme)], scheme) {
		return strings.ToLower(scheme) + u[len(scheme):]
	}
	return u
}

// flag reads a bare flag ("etoile.debug") or an explicit value ("=0",
// "=1"); ok is false for a value it does not know (taken as off).
func flag(v string) (on, ok bool) {
	switch strings.ToLower(v) {
	case "", "1", "y", "yes", "true", "on":
		return true, true
	case "0", "n", "no", "false", "off":
		return false, true
	}
	return false, false
}

// split follows the kernel's next_arg(): whitespace separates arguments, and a
// double quote toggles quoting (the quotes themselves are dropped).
func split(line string) []string {
	var (
		args   []string
		cur    strings.Builder
		quoted bool
		inArg  bool
	)
	for _, r := range line {
		switch {
		case r == '"':
			quoted = !quoted
			inArg = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n' || r == '\r'):
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(r)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args
}
