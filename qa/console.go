package qa

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Line is one line of the serial console with the wall time since QEMU started.
type Line struct {
	Text string
	At   time.Duration
}

// Match is a console line an assertion waited for.
type Match struct {
	Line   string
	Fields map[string]string // key=value pairs of the line, quotes removed
	At     time.Duration     // wall time from QEMU start to the line
}

// Seconds reads a duration field written as "0.41s" (or a bare number of
// seconds), such as the agent's t= and took= values.
func (m Match) Seconds(key string) (float64, error) {
	v, ok := m.Fields[key]
	if !ok {
		return 0, fmt.Errorf("console line %q has no %s= field", m.Line, key)
	}
	return ParseSeconds(v)
}

// ParseSeconds parses "0.41s", "3ms", "1.5" (seconds) into seconds.
func ParseSeconds(v string) (float64, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return d.Seconds(), nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want a Go duration like 0.41s or a number of seconds", v)
	}
	return f, nil
}

// ansiRE matches the terminal control sequences firmware and boot loaders send
// to the serial port (cursor moves, colours, screen clears): they would break
// line matching and make the test log unreadable.
var ansiRE = regexp.MustCompile(`\x1b(\[[0-9;?=<>]*[ -/]*[@-~]|[()][A-Za-z0-9]|[=>cDEHM78])`)

// cleanLine strips control sequences and characters other than tab from a raw
// console line. A carriage return inside a line means the text before it was
// overwritten on a terminal, so only what follows the last one is kept.
func cleanLine(raw string) string {
	s := ansiRE.ReplaceAllString(raw, "")
	s = strings.TrimRight(s, "\r\n")
	if i := strings.LastIndexByte(s, '\r'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Map(func(r rune) rune {
		if r == '\t' || r >= ' ' && r != 0x7f {
			return r
		}
		return -1
	}, s)
}

// ParseFields returns the key=value pairs in a console line. A value is either
// a run of non-space characters or a double-quoted string in which \" and \\
// are escapes, as the agent writes reason="…". Words without '=' are skipped.
// The console is untrusted input: any byte sequence yields a result, never a
// panic.
func ParseFields(line string) map[string]string {
	fields := map[string]string{}
	i := 0
	for i < len(line) {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		start := i
		for i < len(line) && line[i] != ' ' && line[i] != '\t' && line[i] != '=' && line[i] != '"' {
			i++
		}
		if i >= len(line) || line[i] != '=' || i == start {
			// Not a key: skip the rest of the word, quoted parts included.
			i = skipWord(line, i)
			continue
		}
		key := line[start:i]
		i++ // '='
		if i < len(line) && line[i] == '"' {
			end := i + 1
			for end < len(line) && line[end] != '"' {
				if line[end] == '\\' {
					end++
				}
				end++
			}
			if end < len(line) {
				// The agent quotes with strconv.Quote; read it back the same way.
				if v, err := strconv.Unquote(line[i : end+1]); err == nil {
					fields[key] = v
					i = end + 1
					continue
				}
			}
			var b strings.Builder
			i++
			for i < len(line) && line[i] != '"' {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				b.WriteByte(line[i])
				i++
			}
			i++ // closing quote (or past the end)
			fields[key] = b.String()
			continue
		}
		vs := i
		for i < len(line) && line[i] != ' ' && line[i] != '\t' {
			i++
		}
		fields[key] = line[vs:i]
	}
	return fields
}

func skipWord(line string, i int) int {
	for i < len(line) && line[i] != ' ' && line[i] != '\t' {
		if line[i] == '"' {
			i++
			for i < len(line) && line[i] != '"' {
				if line[i] == '\\' {
					i++
				}
				i++
			}
		}
		i++
	}
	return i
}
