// Package logfwd sends the node's logs — the agent's, K3s's, the kernel's
// and what daemons send to /dev/log — to the site's log collectors, as the
// machine config's logging.destinations name them: syslog (RFC 5424) over
// UDP (RFC 5426), TCP or TLS (octet-counted frames, RFC 6587 and RFC 5425),
// or JSON lines. The node's in-memory logs are the queue: a destination
// that cannot be reached is sent what they still hold once it can, and
// what they no longer hold is counted and said.
package logfwd

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/etoile-os/etoile/agent/syslogd"
)

// Formats a destination may have.
const (
	FormatRFC5424   = "rfc5424"    // syslog's (the default)
	FormatJSONLines = "json_lines" // one JSON object a line
)

// Default ports, by scheme: syslog's over UDP and TCP, and over TLS (RFC
// 5425).
var DefaultPorts = map[string]string{"udp": "514", "tcp": "514", "tls": "6514"}

// Destination is one log collector.
type Destination struct {
	Endpoint string // udp://HOST[:PORT], tcp://HOST[:PORT] or tls://HOST[:PORT]
	Format   string // FormatRFC5424 (when empty) or FormatJSONLines
}

// ParseEndpoint returns the scheme and HOST:PORT of an endpoint (the
// scheme's default port when it gives none), or why it is not one.
func ParseEndpoint(endpoint string) (scheme, address string, err error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Opaque != "" {
		shown := endpoint
		if i := strings.LastIndex(shown, "@"); i >= 0 {
			shown = "…" + shown[i:] // what may be a user and password, not shown
		}
		return "", "", fmt.Errorf("%q is not an endpoint: write udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT", shown)
	}
	def, ok := DefaultPorts[u.Scheme]
	switch {
	case u.User != nil:
		return "", "", fmt.Errorf("%q has a user: a log collector takes none", u.Redacted())
	case !ok:
		return "", "", fmt.Errorf("%q: the scheme is udp, tcp or tls (syslog over TLS), not %q", endpoint, u.Scheme)
	case u.Hostname() == "":
		return "", "", fmt.Errorf("%q has no host: write %s://HOST:PORT", endpoint, u.Scheme)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return "", "", fmt.Errorf("%q has a path, query or fragment: an endpoint is %s://HOST:PORT alone", endpoint, u.Scheme)
	}
	port := u.Port()
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return "", "", fmt.Errorf("%q has an empty port: give one (%s for %s), or leave the colon out", endpoint, def, u.Scheme)
		}
		port = def
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("%q: port %s is not 1 to 65535", endpoint, port)
	}
	return u.Scheme, net.JoinHostPort(u.Hostname(), port), nil
}

// Entry is one line of one of the node's logs.
type Entry struct {
	Pos      uint64    // its number in its log: reading after Pos goes on after it
	Time     time.Time // when it was written; zero: unknown (the time it is sent)
	App      string    // etoile-agent, k3s, kernel, or a daemon's name
	PID      string    // the process's, when known
	Facility int       // syslog's: 0 kern, 1 user, 3 daemon…
	Severity int       // syslog's: 0 emerg … 3 err, 4 warning, 6 info, 7 debug
	Text     string
}

// MaxText bounds an entry's text as sent: a syslog receiver over UDP takes
// 2048 bytes or more (RFC 5426); K3s writes longer lines (its settings).
const MaxText = 8 << 10

// Message is e as dest's format has it, for host (the node's name), at now
// when e has no time: an RFC 5424 message (without framing) or a JSON
// object (without its newline).
func Message(e Entry, format, host string, now time.Time) []byte {
	t := e.Time
	if t.IsZero() {
		t = now
	}
	text := e.Text
	if len(text) > MaxText {
		cut := MaxText
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + "…"
	}
	if format == FormatJSONLines {
		b, _ := json.Marshal(struct {
			Time     string `json:"time"`
			Host     string `json:"host"`
			App      string `json:"app"`
			PID      string `json:"pid,omitempty"`
			Facility string `json:"facility"`
			Severity string `json:"severity"`
			Msg      string `json:"msg"`
		}{t.UTC().Format(time.RFC3339Nano), host, e.App, e.PID, syslogd.FacilityName(e.Facility), syslogd.SeverityName(e.Severity), text})
		return b
	}
	field := func(s string, max int) string {
		// PRINTUSASCII without spaces, as RFC 5424's header fields are.
		s = strings.Map(func(r rune) rune {
			if r <= 32 || r >= 127 {
				return '_'
			}
			return r
		}, s)
		if s == "" {
			return "-"
		}
		if len(s) > max {
			s = s[:max]
		}
		return s
	}
	fac, sev := e.Facility, e.Severity
	if fac < 0 || fac > 23 {
		fac = 1 // user: what RFC 5424 has no number for (a record written to /dev/kmsg)
	}
	if sev < 0 || sev > 7 {
		sev = 5
	}
	return fmt.Appendf(nil, "<%d>1 %s %s %s %s - - %s", fac*8+sev, t.UTC().Format("2006-01-02T15:04:05.000000Z"),
		field(host, 255), field(e.App, 48), field(e.PID, 128), text)
}
