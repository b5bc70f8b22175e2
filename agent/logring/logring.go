// Package logring keeps the newest lines of a log in memory: K3s's output,
// and the agent's own log, for the local API's /v1/logs.
package logring

import (
	"strings"
	"sync"
	"time"
)

// Ring holds the last n lines added (or written).
type Ring struct {
	mu      sync.Mutex
	buf     []string
	at      []time.Time // when each line of buf was added
	next    int
	full    bool
	total   uint64          // lines ever added: the newest line's number
	partial strings.Builder // Write's unfinished line
}

// New returns a ring of n lines (at least one).
func New(n int) *Ring {
	return &Ring{buf: make([]string, max(n, 1)), at: make([]time.Time, max(n, 1))}
}

// Add appends one line, dropping the oldest when full.
func (r *Ring) Add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.add(line)
}

func (r *Ring) add(line string) {
	r.buf[r.next] = line
	r.at[r.next] = time.Now()
	r.total++
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// Write adds each complete line of p (an io.Writer beside the consoles);
// a line without its newline waits for the rest.
func (r *Ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := string(p)
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			r.partial.WriteString(s)
			return len(p), nil
		}
		r.partial.WriteString(s[:i])
		r.add(r.partial.String())
		r.partial.Reset()
		s = s[i+1:]
	}
}

// Lines returns the lines held, oldest first.
func (r *Ring) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]string(nil), r.buf[:r.next]...)
	}
	return append(append([]string(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

// Since returns the lines held that came after line number after (lines are
// numbered from 1 as they are added; 0 asks for every line held), oldest
// first; next is the newest line's number, to ask from next time; skipped
// counts the lines after `after` that the ring no longer holds. Following a
// log is asking Since(next) again and again.
func (r *Ring) Since(after uint64) (lines []string, next, skipped uint64) {
	held, next, skipped := r.SinceAt(after)
	lines = make([]string, len(held))
	for i, l := range held {
		lines[i] = l.Text
	}
	return lines, next, skipped
}

// Line is one line of a Ring, with when it was added.
type Line struct {
	Text string
	At   time.Time
}

// SinceAt is Since with each line's time.
func (r *Ring) SinceAt(after uint64) (lines []Line, next, skipped uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	held := uint64(r.next)
	if r.full {
		held = uint64(len(r.buf))
	}
	oldest := r.total - held + 1 // the number of the oldest line held
	if after > r.total {
		after = 0 // a number this ring never gave: another log's; start over
	}
	if after == r.total {
		return []Line{}, r.total, 0
	}
	if after+1 < oldest {
		if after > 0 {
			skipped = oldest - after - 1
		}
		after = oldest - 1
	}
	n := int(r.total - after) // lines to return, the newest n held
	lines = make([]Line, 0, n)
	start := (r.next - n + len(r.buf)) % len(r.buf)
	for i := range n {
		j := (start + i) % len(r.buf)
		lines = append(lines, Line{Text: r.buf[j], At: r.at[j]})
	}
	return lines, r.total, skipped
}
