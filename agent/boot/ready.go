package boot

import (
	"fmt"
	"strconv"
)

// Ready is the content of the ready line.
type Ready struct {
	Version string
	Boot    string // "bios" or "uefi"
	Source  string // "iso", "disk" or "http"
	Slot    string // "a", "b" or "none"
	IP      string // first IPv4 address or "none"
	// Extra are key=value pairs appended after ip= by the services started
	// before the line (k3s=<state>).
	Extra []string
}

// String is the exact line tests and operators wait for. Its format is a
// contract: add fields at the end, never reorder or rename.
func (r Ready) String() string {
	line := fmt.Sprintf("etoile: ready version=%s boot=%s source=%s slot=%s ip=%s",
		orNone(r.Version), orNone(r.Boot), orNone(r.Source), orNone(r.Slot), orNone(r.IP))
	for _, kv := range r.Extra {
		line += " " + kv
	}
	return line
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// StepError is a fatal boot error: which step, why, and what a person at the
// console can do about it.
type StepError struct {
	Step   string
	Reason string
	Fix    string
}

func (e *StepError) Error() string { return e.Line() }

// Line is the line printed on every console for a fatal error.
func (e *StepError) Line() string {
	return fmt.Sprintf("etoile: error step=%s reason=%s fix=%s", e.Step, strconv.Quote(e.Reason), strconv.Quote(e.Fix))
}

// fixError carries the advice a step attaches to its error.
type fixError struct {
	err error
	fix string
}

func (e *fixError) Error() string { return e.err.Error() }
func (e *fixError) Unwrap() error { return e.err }

// withFix attaches what to do to err.
func withFix(err error, fix string) error {
	if err == nil {
		return nil
	}
	return &fixError{err: err, fix: fix}
}
