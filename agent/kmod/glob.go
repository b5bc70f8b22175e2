package kmod

// Match reports whether s matches the shell pattern, with the semantics of
// fnmatch(3) called with no flags, which is what modprobe uses to match a
// device's modalias against modules.alias: '*' matches any run of characters
// ('/' included), '?' one character, '[...]' a class ('!' or '^' negates, a
// leading ']' is literal, a-z ranges), and '\' quotes the next character. An
// unterminated '[' matches itself, as in glibc. Matching is bytewise, which is
// exact for modaliases (ASCII).
func Match(pattern, s string) bool {
	// Greedy '*' with a single backtrack point: on a mismatch, let the last
	// star swallow one more byte. This is linear-ish and never recurses, so a
	// hostile pattern cannot blow the stack of PID 1.
	var (
		p, i         int
		starP, starI = -1, -1
	)
	for i < len(s) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starI = p, i
				p++
				continue
			case '?':
				p++
				i++
				continue
			case '[':
				if ok, next, valid := matchClass(pattern, p, s[i]); valid {
					if ok {
						p = next
						i++
						continue
					}
				} else if s[i] == '[' {
					p++
					i++
					continue
				}
			case '\\':
				if p+1 < len(pattern) {
					if pattern[p+1] == s[i] {
						p += 2
						i++
						continue
					}
				} else if s[i] == '\\' {
					// A trailing backslash matches itself.
					p++
					i++
					continue
				}
			default:
				if c == s[i] {
					p++
					i++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starI++
		p, i = starP+1, starI
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchClass matches b against the class starting at pattern[start] == '['.
// It returns whether b is in the class, the index after the closing ']', and
// whether the class was well formed (terminated).
func matchClass(pattern string, start int, b byte) (matched bool, next int, valid bool) {
	p := start + 1
	negate := false
	if p < len(pattern) && (pattern[p] == '!' || pattern[p] == '^') {
		negate = true
		p++
	}
	first := true
	for p < len(pattern) {
		c := pattern[p]
		if c == ']' && !first {
			return matched != negate, p + 1, true
		}
		first = false
		if c == '\\' && p+1 < len(pattern) {
			p++
			c = pattern[p]
		}
		lo, hi := c, c
		// A range a-z, unless the '-' is last before ']'.
		if p+2 < len(pattern) && pattern[p+1] == '-' && pattern[p+2] != ']' {
			hi = pattern[p+2]
			if hi == '\\' && p+3 < len(pattern) {
				hi = pattern[p+3]
				p++
			}
			p += 2
		}
		if lo <= b && b <= hi {
			matched = true
		}
		p++
	}
	return false, 0, false
}
