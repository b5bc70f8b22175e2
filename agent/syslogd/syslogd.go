// Package syslogd is the node's /dev/log: the socket syslog(3) writes to.
//
// Étoile runs no syslog daemon, so the messages of the daemons an image adds
// (NVIDIA's nvidia-persistenced, an iSCSI initiator, a vendor's agent) that
// log through the C library's syslog(3) were lost. The agent listens on
// /dev/log itself: every message is kept in memory for `etoile-agent logs
// syslog`, and those of severity warning or worse are also printed on the
// consoles (at most a few a second: a daemon in a loop cannot flood them).
//
// It reads what senders write there: the C library's RFC 3164 form
// ("<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG", with or without a host name) and
// RFC 5424 ("<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG"); anything else
// is kept as it came, at user.notice as RFC 3164 says.
package syslogd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultPath is where syslog(3) writes.
const DefaultPath = "/dev/log"

// MaxMessage is the longest datagram read; longer ones are cut there.
const MaxMessage = 16 << 10

// Message is one parsed syslog message.
type Message struct {
	Facility int    // 0 (kern) … 23 (local7)
	Severity int    // 0 (emerg) … 7 (debug)
	App      string // the tag: "nvidia-persistenced"; "" when none was given
	PID      string // "" when none was given
	Text     string
}

var facilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
	"uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

var severities = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// FacilityName is the facility's name as syslog.conf spells it.
func (m Message) FacilityName() string {
	if m.Facility >= 0 && m.Facility < len(facilities) {
		return facilities[m.Facility]
	}
	return strconv.Itoa(m.Facility)
}

// SeverityName is the severity's name as syslog.conf spells it.
func (m Message) SeverityName() string {
	if m.Severity >= 0 && m.Severity < len(severities) {
		return severities[m.Severity]
	}
	return strconv.Itoa(m.Severity)
}

// Line is the message as `etoile-agent logs syslog` prints it, after the
// time it came: "daemon.warning nvidia-persistenced[412]: text".
func (m Message) Line() string {
	var b strings.Builder
	b.WriteString(m.FacilityName())
	b.WriteByte('.')
	b.WriteString(m.SeverityName())
	b.WriteByte(' ')
	app := m.App
	if app == "" {
		app = "-"
	}
	b.WriteString(app)
	if m.PID != "" {
		b.WriteByte('[')
		b.WriteString(m.PID)
		b.WriteByte(']')
	}
	b.WriteString(": ")
	b.WriteString(m.Text)
	return b.String()
}

// Parse reads one datagram as a syslog message.
func Parse(p []byte) Message {
	s := clean(string(p))
	m := Message{Facility: 1, Severity: 5} // user.notice, RFC 3164's default
	if pri, rest, ok := priority(s); ok {
		m.Facility, m.Severity = pri/8, pri%8
		s = rest
	}
	if rest, ok := strings.CutPrefix(s, "1 "); ok {
		if parse5424(rest, &m) {
			return m
		}
	}
	parse3164(s, &m)
	return m
}

// clean makes the text one printable line: valid UTF-8, no trailing
// newlines or NULs, inner newlines and other control characters shown as
// spaces (a message must not forge the next console line).
func clean(s string) string {
	s = strings.TrimRight(s, "\x00\r\n")
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// priority reads "<N>" with N from 0 to 191.
func priority(s string) (int, string, bool) {
	if !strings.HasPrefix(s, "<") {
		return 0, s, false
	}
	end := strings.IndexByte(s, '>')
	if end < 2 || end > 4 {
		return 0, s, false
	}
	n, err := strconv.Atoi(s[1:end])
	if err != nil || n < 0 || n > 191 {
		return 0, s, false
	}
	return n, s[end+1:], true
}

// parse5424 reads what follows "<PRI>1 ": TIMESTAMP HOST APP PROCID MSGID
// SD [MSG]; false when it is not that form.
func parse5424(s string, m *Message) bool {
	f := make([]string, 0, 5)
	for range 5 {
		tok, rest, ok := strings.Cut(s, " ")
		if tok == "" {
			return false
		}
		f = append(f, tok)
		if !ok {
			s = ""
			break
		}
		s = rest
	}
	if len(f) < 5 {
		return false
	}
	if f[2] != "-" {
		m.App = f[2]
	}
	if f[3] != "-" {
		m.PID = f[3]
	}
	// Structured data: "-" or one or more [id k="v" …] (\] escapes a ]).
	switch {
	case strings.HasPrefix(s, "-"):
		s = s[1:]
	case strings.HasPrefix(s, "["):
		for strings.HasPrefix(s, "[") {
			i, esc := 1, false
			for ; i < len(s); i++ {
				if esc {
					esc = false
					continue
				}
				if s[i] == '\\' {
					esc = true
				} else if s[i] == ']' {
					break
				}
			}
			if i >= len(s) {
				return false
			}
			s = s[i+1:]
		}
	default:
		return false
	}
	m.Text = strings.TrimPrefix(strings.TrimPrefix(s, " "), "\ufeff")
	return true
}

// parse3164 reads [TIMESTAMP ][HOST ]TAG[PID]: MSG; without a tag the whole
// text is the message.
func parse3164(s string, m *Message) {
	// "Nov 26 19:05:08 " (the day padded with a space: "Nov  6").
	if len(s) >= 16 && s[3] == ' ' && s[6] == ' ' && s[9] == ':' && s[12] == ':' && s[15] == ' ' {
		if _, err := time.Parse(time.Stamp, s[:15]); err == nil {
			s = s[16:]
		}
	}
	if app, pid, text, ok := tag(s); ok {
		m.App, m.PID, m.Text = app, pid, text
		return
	}
	// "HOST TAG[PID]: MSG" (a sender that names its host).
	if host, rest, ok := strings.Cut(s, " "); ok && host != "" && !strings.ContainsAny(host, ":[") {
		if app, pid, text, ok := tag(rest); ok {
			m.App, m.PID, m.Text = app, pid, text
			return
		}
	}
	m.Text = s
}

// tag reads "TAG[PID]: MSG" or "TAG: MSG" at the start of s.
func tag(s string) (app, pid, text string, ok bool) {
	end := strings.IndexAny(s, "[: ")
	if end <= 0 || end > 48 {
		return "", "", "", false
	}
	app, rest := s[:end], s[end:]
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", "", "", false
		}
		pid, rest = rest[1:end], rest[end+1:]
	}
	rest, ok = strings.CutPrefix(rest, ":")
	if !ok {
		return "", "", "", false
	}
	return app, pid, strings.TrimPrefix(rest, " "), true
}

// Sink is where a Server puts what it reads.
type Sink interface{ Add(line string) }

// Server reads /dev/log.
type Server struct {
	conn *net.UnixConn
	path string
	sink Sink
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	tokens  float64   // console lines that may be printed now
	at      time.Time // when tokens was last topped up
	dropped int       // console lines left out since the last one printed
}

// Console rate: a burst of ConsoleBurst lines, then ConsolePerSecond.
const (
	ConsoleBurst     = 10
	ConsolePerSecond = 1.0
)

// Listen binds the datagram socket at path (0666, as every syslog daemon's:
// a daemon that dropped root logs too). A socket left there by an earlier
// run is replaced; anything else at path is an error.
func Listen(path string, sink Sink, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket && st.Mode().Type() != fs.ModeSymlink {
			return nil, fmt.Errorf("%s exists and is not a socket (%s): remove it so syslog(3) reaches the agent", path, st.Mode().Type())
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("replacing %s: %w", path, err)
		}
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		conn.Close()
		return nil, fmt.Errorf("making %s writable by every user: %w", path, err)
	}
	return &Server{conn: conn, path: path, sink: sink, log: log, now: time.Now, tokens: ConsoleBurst}, nil
}

// Serve reads messages until ctx ends, then closes and removes the socket.
func (s *Server) Serve(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	defer os.Remove(s.path)
	defer s.conn.Close()
	buf := make([]byte, MaxMessage)
	for {
		n, _, err := s.conn.ReadFromUnix(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("reading /dev/log failed: daemons' syslog messages are no longer kept", "reason", err.Error())
			return
		}
		s.handle(Parse(buf[:n]))
	}
}

func (s *Server) handle(m Message) {
	now := s.now()
	if s.sink != nil {
		s.sink.Add(now.UTC().Format("2006-01-02T15:04:05.000Z") + " " + m.Line())
	}
	if m.Severity > 4 { // notice, info and debug stay off the consoles
		return
	}
	s.mu.Lock()
	if !s.at.IsZero() {
		s.tokens = min(ConsoleBurst, s.tokens+now.Sub(s.at).Seconds()*ConsolePerSecond)
	}
	s.at = now
	if s.tokens < 1 {
		s.dropped++
		s.mu.Unlock()
		return
	}
	s.tokens--
	dropped := s.dropped
	s.dropped = 0
	s.mu.Unlock()
	if dropped > 0 {
		s.log.Warn("syslog messages left off the console", "count", dropped, "read", "etoile-agent logs syslog")
	}
	attrs := []any{"app", orDash(m.App)}
	if m.PID != "" {
		attrs = append(attrs, "pid", m.PID)
	}
	attrs = append(attrs, "severity", m.SeverityName(), "text", m.Text)
	s.log.Warn("syslog", attrs...)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
