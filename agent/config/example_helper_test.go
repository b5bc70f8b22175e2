package config

import "strings"

// exampleWith is the commented example (Example) with one of its
// commented-out blocks uncommented: the one whose first line is
// indent + "# " + first…, through the lines after it that go on
// indent + "#   ".
func exampleWith(indent, first string) string {
	var doc strings.Builder
	in := false
	for line := range strings.Lines(string(Example())) {
		if strings.HasPrefix(line, indent+"# "+first) {
			in = true
		} else if !strings.HasPrefix(line, indent+"#   ") {
			in = false
		}
		if in {
			line = indent + strings.TrimPrefix(line, indent+"# ")
		}
		doc.WriteString(line)
	}
	return doc.String()
}
