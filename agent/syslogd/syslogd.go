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
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/safego"
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
func (m Message) FacilityName() string { return FacilityName(m.Facility) }

// SeverityName is the severity's name as syslog.conf spells it.
func (m Message) SeverityName() string { return SeverityName(m.Severity) }

// FacilityName is facility f's name as syslog.conf spells it ("daemon"),
// its number for one that has none.
func FacilityName(f int) string {
	if f >= 0 && f < len(facilities) {
		return facilities[f]
	}
	return strconv.Itoa(f)
}

// SeverityName is severity s's name as syslog.conf spells it ("err"), its
// number for one that has none.
func SeverityName(s int) string {
	if s >= 0 && s < len(severities) {
		return severities[s]
	}
	return strconv.Itoa(s)
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

// Parse reads one datagram as a syslog message. Its text is MaxMessage
// bytes at most once cleaned (an invalid byte, cleaned, is three), cut at a
// character and ended with "…".
func Parse(p []byte) Message {
	s := clean(string(p))
	if len(s) > MaxMessage {
		s = cutAt(s, MaxMessage) + "…"
	}
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
// newlines or NULs, inner newlines and every other control character (C0,
// DEL, C1: U+009B is a terminal's CSI) and bidirectional override shown as
// a space (a message must not forge the next console line, nor reorder
// what a terminal shows).
func clean(s string) string {
	s = strings.TrimRight(s, "\x00\r\n")
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
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
	// RFC 5424 bounds APP-NAME to 48 characters and PROCID to 128.
	if f[2] != "-" {
		m.App = cut(f[2], 48)
	}
	if f[3] != "-" {
		m.PID = cut(f[3], 128)
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
// text is the message. A host is looked for only after a timestamp (RFC
// 3164 §4.1.2): "Disk full: …" from a sender without either keeps its
// first word.
func parse3164(s string, m *Message) {
	stamped := false
	// "Nov 26 19:05:08 " (the day padded with a space: "Nov  6").
	if len(s) >= 16 && s[3] == ' ' && s[6] == ' ' && s[9] == ':' && s[12] == ':' && s[15] == ' ' {
		if _, err := time.Parse(time.Stamp, s[:15]); err == nil {
			s, stamped = s[16:], true
		}
	} else if first, rest, ok := strings.Cut(s, " "); ok {
		// An RFC 3339 timestamp in the old format (some senders).
		if _, err := time.Parse(time.RFC3339Nano, first); err == nil {
			s, stamped = rest, true
		}
	}
	if app, pid, text, ok := tag(s); ok {
		m.App, m.PID, m.Text = app, pid, text
		return
	}
	// "HOST TAG[PID]: MSG" (a sender that names its host).
	if host, rest, ok := strings.Cut(s, " "); stamped && ok && host != "" && !strings.ContainsAny(host, ":[") {
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
	// console takes the lines for the consoles to a goroutine of their
	// own: a slow serial console never holds up the reading of /dev/log
	// (nor so the daemons' syslog(3) calls, once its queue is full).
	console chan consoleLine
	flush   chan struct{} // a first line was left off: say so in a while

	mu      sync.Mutex
	tokens  float64   // console lines that may be printed now
	at      time.Time // when tokens was last topped up
	dropped int       // console lines left off since the count was last said
}

// consoleLine is a line for the consoles, and how many were left off
// before it.
type consoleLine struct {
	leftOff int
	attrs   []any
}

// Console rate: a burst of ConsoleBurst lines, then ConsolePerSecond; a
// message's text is cut at ConsoleText bytes there (the log keeps it whole).
const (
	ConsoleBurst     = 10
	ConsolePerSecond = 1.0
	ConsoleText      = 512
)

// sayDroppedAfter is how long after the first line left off the count is
// said, when no line is printed meanwhile.
var sayDroppedAfter = 2 * time.Second

// Listen binds the datagram socket at path (0666, as every syslog daemon's:
// a daemon that dropped root logs too). A socket left there by an earlier
// run is replaced; anything else at path is an error. The kernel gives each
// message its sender's pid and uid (SO_PASSCRED), which the log shows: a
// message's own tag and pid are whatever its sender wrote.
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
	fail := func(err error) (*Server, error) {
		conn.Close()
		os.Remove(path)
		return nil, err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		return fail(fmt.Errorf("making %s writable by every user: %w", path, err))
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return fail(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		return fail(fmt.Errorf("asking for the senders' credentials on %s: %w", path, errors.Join(err, serr)))
	}
	return &Server{conn: conn, path: path, sink: sink, log: log, now: time.Now, tokens: ConsoleBurst,
		console: make(chan consoleLine, 16), flush: make(chan struct{}, 1)}, nil
}

// Sender is who sent a message, as the kernel says (-1: not given).
type Sender struct{ PID, UID int }

// Serve reads messages until ctx ends, then closes and removes the socket.
func (s *Server) Serve(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	defer os.Remove(s.path)
	defer s.conn.Close()
	// The agent is PID 1: a panic here is an error line, and the console's
	// share of the messages starts again.
	safego.Loop(ctx, s.log, "showing syslog messages on the console", time.Second, s.printConsole)
	buf := make([]byte, MaxMessage)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		n, oobn, flags, _, err := s.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("reading /dev/log failed: daemons' syslog messages are no longer kept", "reason", err.Error())
			return
		}
		m := Parse(buf[:n])
		if flags&unix.MSG_TRUNC != 0 && !strings.HasSuffix(m.Text, "…") {
			m.Text += "…" // longer than MaxMessage: the kernel cut it
		}
		s.handle(m, sender(oob[:oobn]))
	}
}

// sender reads the SCM_CREDENTIALS message the kernel adds.
func sender(oob []byte) Sender {
	from := Sender{PID: -1, UID: -1}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return from
	}
	for _, m := range msgs {
		if c, err := unix.ParseUnixCredentials(&m); err == nil {
			return Sender{PID: int(c.Pid), UID: int(c.Uid)}
		}
	}
	return from
}

// sinkTime is how the sink's lines begin: when the message came.
const sinkTime = "2006-01-02T15:04:05.000Z"

// sinkLine is a line of the sink as handle writes it: the time, the
// sender's credentials when known, then Message.Line.
var sinkLine = regexp.MustCompile(`^(\S+Z) (?:pid=\d+ uid=\d+ )?([a-z0-9-]+)\.([a-z]+) ([^\[:]*?)(?:\[([^\]]*)\])?: (.*)$`)

// ParseLine reads back a line of the sink (the daemons' log as `etoile-agent
// logs syslog` shows it): the message and when it came; ok is false for a
// line that is not one.
func ParseLine(line string) (m Message, at time.Time, ok bool) {
	g := sinkLine.FindStringSubmatch(line)
	if g == nil {
		return Message{}, time.Time{}, false
	}
	m = Message{Facility: slices.Index(facilities, g[2]), Severity: slices.Index(severities, g[3]), App: g[4], PID: g[5], Text: g[6]}
	if m.App == "-" {
		m.App = ""
	}
	if m.Facility < 0 {
		m.Facility = 1 // user, as Parse takes a message without a priority
	}
	if m.Severity < 0 {
		m.Severity = 5
	}
	at, _ = time.Parse(sinkTime, g[1])
	return m, at, true
}

func (s *Server) handle(m Message, from Sender) {
	now := s.now()
	if s.sink != nil {
		line := now.UTC().Format(sinkTime) + " "
		if from.PID >= 0 {
			line += fmt.Sprintf("pid=%d uid=%d ", from.PID, from.UID)
		}
		s.sink.Add(line + m.Line())
	}
	if m.Severity > 4 { // notice, info and debug stay off the consoles
		return
	}
	attrs := []any{"app", orDash(m.App), "severity", m.SeverityName(), "text", consoleText(m.Text)}
	switch {
	case from.PID >= 0:
		attrs = append(attrs, "pid", from.PID, "uid", from.UID)
	case m.PID != "":
		attrs = append(attrs, "pid", m.PID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.at.IsZero() {
		s.tokens = min(ConsoleBurst, s.tokens+now.Sub(s.at).Seconds()*ConsolePerSecond)
	}
	s.at = now
	if s.tokens >= 1 {
		select {
		case s.console <- consoleLine{leftOff: s.dropped, attrs: attrs}:
			s.tokens--
			s.dropped = 0
			return
		default: // the consoles are behind: counted with the others
		}
	}
	s.dropped++
	if s.dropped == 1 {
		select {
		case s.flush <- struct{}{}:
		default:
		}
	}
}

// printConsole prints the lines handle let through, and the count of those
// it left off: before the next line printed, or sayDroppedAfter after the
// first one left off.
func (s *Server) printConsole(ctx context.Context) {
	var later <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case l := <-s.console:
			s.print(l)
		case <-s.flush:
			later = time.After(sayDroppedAfter)
		case <-later:
			later = nil
			// The lines queued before the count come first: both taken
			// at once, so that none queued meanwhile comes after it.
			s.mu.Lock()
			var queued []consoleLine
			for drained := false; !drained; {
				select {
				case l := <-s.console:
					queued = append(queued, l)
				default:
					drained = true
				}
			}
			n := s.dropped
			s.dropped = 0
			s.mu.Unlock()
			for _, l := range queued {
				s.print(l)
			}
			s.sayLeftOff(n)
		}
	}
}

func (s *Server) print(l consoleLine) {
	s.sayLeftOff(l.leftOff)
	s.log.Warn("syslog", l.attrs...)
}

// sayLeftOff says how many lines were left off the console, if any.
func (s *Server) sayLeftOff(n int) {
	if n > 0 {
		s.log.Warn("syslog messages left off the console", "count", n, "read", "etoile-agent logs syslog")
	}
}

// consoleText cuts text at ConsoleText bytes.
func consoleText(text string) string { return cut(text, ConsoleText) }

// cut cuts s at n bytes (on a character's boundary), marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cutAt cuts s to at most n bytes, at a character's start.
func cutAt(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
