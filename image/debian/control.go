package debian

import (
	"fmt"
	"strings"
	"unicode"
)

// Control is one deb822 paragraph (a package's DEBIAN/control file). Keys are
// lower-cased because field names are case-insensitive in Debian policy.
type Control map[string]string

// Get returns a field by name, in any case.
func (c Control) Get(field string) string { return c[strings.ToLower(field)] }

// maxControlSize bounds what ParseControl accepts; real control files are a few KiB.
const maxControlSize = 1 << 20

// ParseControl parses the first paragraph of a deb822 document. Continuation
// lines (leading space or tab) are joined with "\n"; "#" comment lines are skipped.
func ParseControl(data []byte) (Control, error) {
	if len(data) > maxControlSize {
		return nil, fmt.Errorf("control file is %d bytes, more than the %d a package control file can be", len(data), maxControlSize)
	}
	c := Control{}
	var last string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		switch {
		case strings.TrimSpace(line) == "":
			if len(c) > 0 {
				return c, nil // end of the first paragraph
			}
		case line[0] == '#':
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				return nil, fmt.Errorf("control line %d: continuation line %q comes before any field", i+1, line)
			}
			c[last] += "\n" + strings.TrimSpace(line)
		default:
			name, value, ok := strings.Cut(line, ":")
			name = strings.TrimSpace(name)
			if !ok || name == "" || strings.ContainsFunc(name, unicode.IsSpace) {
				return nil, fmt.Errorf("control line %d: %q is not a \"Field: value\" line", i+1, line)
			}
			last = strings.ToLower(name)
			if _, dup := c[last]; dup {
				return nil, fmt.Errorf("control line %d: field %q appears twice", i+1, name)
			}
			c[last] = strings.TrimSpace(value)
		}
	}
	if len(c) == 0 {
		return nil, fmt.Errorf("control file has no fields")
	}
	return c, nil
}

// Relation is one alternative of a dependency clause, e.g. "kmod" or
// "linux-image-6.1.0-56-amd64 (= 6.1.192-2)".
type Relation struct {
	Name    string // package name, without an ":any"-style architecture qualifier
	Op      string // "", "<<", "<=", "=", ">=", ">>"
	Version string
}

func (r Relation) String() string {
	if r.Op == "" {
		return r.Name
	}
	return fmt.Sprintf("%s (%s %s)", r.Name, r.Op, r.Version)
}

// ParseRelations parses a Depends-style field: comma-separated clauses, each a
// "|"-separated list of alternatives. Architecture ("[amd64]") and build
// profile ("<!nocheck>") restrictions are dropped: Étoile only reads binary
// package relations, where they do not occur.
func ParseRelations(field string) ([][]Relation, error) {
	var out [][]Relation
	for _, clause := range strings.Split(field, ",") {
		clause = strings.TrimSpace(clause)
		if clause == "" {
			continue
		}
		var alts []Relation
		for _, alt := range strings.Split(clause, "|") {
			r, err := parseRelation(strings.TrimSpace(alt))
			if err != nil {
				return nil, fmt.Errorf("dependency %q: %w", clause, err)
			}
			alts = append(alts, r)
		}
		out = append(out, alts)
	}
	return out, nil
}

func parseRelation(s string) (Relation, error) {
	end := strings.IndexAny(s, " \t([<")
	if end < 0 {
		end = len(s)
	}
	name, rest := s[:end], strings.TrimSpace(s[end:])
	name, _, _ = strings.Cut(name, ":") // "foo:any"
	if !validPackageName(name) {
		return Relation{}, fmt.Errorf("%q is not a valid Debian package name", name)
	}
	r := Relation{Name: name}
	if inner, ok := strings.CutPrefix(rest, "("); ok {
		inner, rest, ok = strings.Cut(inner, ")")
		if !ok {
			return Relation{}, fmt.Errorf("version restriction %q has no closing parenthesis", "("+inner)
		}
		inner = strings.TrimSpace(inner)
		for _, op := range []string{"<<", "<=", ">=", ">>", "=", "<", ">"} {
			if v, found := strings.CutPrefix(inner, op); found {
				r.Op, r.Version = op, strings.TrimSpace(v)
				break
			}
		}
		// "<" and ">" are deprecated spellings of "<=" and ">=".
		switch r.Op {
		case "<":
			r.Op = "<="
		case ">":
			r.Op = ">="
		case "":
			return Relation{}, fmt.Errorf("version restriction %q has no operator", inner)
		}
		if r.Version == "" || strings.ContainsFunc(r.Version, unicode.IsSpace) {
			return Relation{}, fmt.Errorf("version restriction %q has no valid version", inner)
		}
		rest = strings.TrimSpace(rest)
	}
	// What may follow is an architecture ("[amd64]") or build profile
	// ("<!nocheck>") restriction, irrelevant to binary packages.
	if rest != "" && rest[0] != '[' && rest[0] != '<' {
		return Relation{}, fmt.Errorf("unexpected %q after the package name", rest)
	}
	return r, nil
}

// validPackageName follows Debian policy 5.6.1: lower-case letters, digits,
// "+", "-", "."; at least two characters; starting with a letter or digit.
func validPackageName(s string) bool {
	if len(s) < 2 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '+' || c == '-' || c == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}

// CompareVersions orders two Debian versions as dpkg does
// ([epoch:]upstream[-revision], "~" sorting before everything, even the end).
func CompareVersions(a, b string) int {
	ea, ua, ra := splitVersion(a)
	eb, ub, rb := splitVersion(b)
	if ea != eb {
		if ea < eb {
			return -1
		}
		return 1
	}
	if c := compareFragment(ua, ub); c != 0 {
		return c
	}
	return compareFragment(ra, rb)
}

func splitVersion(v string) (epoch int, upstream, revision string) {
	if e, rest, ok := strings.Cut(v, ":"); ok {
		n := 0
		for _, c := range e {
			if c < '0' || c > '9' || n > 1<<20 {
				n = -1
				break
			}
			n = n*10 + int(c-'0')
		}
		if n >= 0 {
			epoch, v = n, rest
		}
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

func charOrder(c byte) int {
	switch {
	case c == '~':
		return -1
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return int(c)
	case c == 0:
		return 0
	default:
		return int(c) + 256
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func compareFragment(a, b string) int {
	for a != "" || b != "" {
		// non-digit prefix, compared with dpkg's character order
		for (a != "" && !isDigit(a[0])) || (b != "" && !isDigit(b[0])) {
			var ca, cb byte
			if a != "" && !isDigit(a[0]) {
				ca = a[0]
			}
			if b != "" && !isDigit(b[0]) {
				cb = b[0]
			}
			if oa, ob := charOrder(ca), charOrder(cb); oa != ob {
				if oa < ob {
					return -1
				}
				return 1
			}
			if ca != 0 {
				a = a[1:]
			}
			if cb != 0 {
				b = b[1:]
			}
		}
		// numeric part, compared as numbers without overflow
		for a != "" && a[0] == '0' {
			a = a[1:]
		}
		for b != "" && b[0] == '0' {
			b = b[1:]
		}
		na, nb := 0, 0
		for na < len(a) && isDigit(a[na]) {
			na++
		}
		for nb < len(b) && isDigit(b[nb]) {
			nb++
		}
		if na != nb {
			if na < nb {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a[:na], b[:nb]); c != 0 {
			return c
		}
		a, b = a[na:], b[nb:]
	}
	return 0
}
