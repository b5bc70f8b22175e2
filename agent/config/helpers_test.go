package config

import (
	"strings"
	"testing"
)

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

// wantRefused parses doc and checks that it is refused with an error at
// path whose message mentions each of want; it returns the error.
func wantRefused(t *testing.T, doc, path string, want []string) error {
	t.Helper()
	_, err := Parse([]byte(doc))
	if err == nil {
		t.Fatalf("accepted:\n%s", doc)
	}
	fe := findField(err, path)
	if fe == nil {
		t.Fatalf("no error at %q; got:\n%v", path, err)
	}
	for _, w := range want {
		if !strings.Contains(fe.Msg, w) {
			t.Errorf("error at %s does not mention %q: %s", path, w, fe.Msg)
		}
	}
	return err
}

// wantOneWarning checks that doc is valid with one warning, which mentions
// each of want.
func wantOneWarning(t *testing.T, doc string, want []string) {
	t.Helper()
	_, w, err := Check([]byte(doc))
	if err != nil {
		t.Fatalf("a warning case was rejected: %v", err)
	}
	if len(w) != 1 {
		t.Fatalf("warnings %q, want one", w)
	}
	for _, s := range want {
		if !strings.Contains(w[0], s) {
			t.Errorf("warning does not mention %q: %s", s, w[0])
		}
	}
}

// redactedYAML is c as Redacted() writes it.
func redactedYAML(t *testing.T, c *MachineConfig) string {
	t.Helper()
	r, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
