package schema

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Name  string            `yaml:"name"`
	Count int               `yaml:"count"`
	On    bool              `yaml:"on"`
	Ratio float64           `yaml:"ratio"`
	Tags  map[string]string `yaml:"tags"`
}

type doc struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Items      []inner  `yaml:"items"`
	Ptr        *inner   `yaml:"ptr"`
	Extra      any      `yaml:"extra"`
	List       []string `yaml:"list"`
}

func TestDecodeGood(t *testing.T) {
	src := `apiVersion: etoile.io/v1alpha1
kind: Test
items:
  - {name: a, count: 2, on: true, ratio: 0.5, tags: {x: y}}
ptr: {name: p}
extra: {free: [form]}
list: [one, two]
`
	var d doc
	if err := Decode([]byte(src), "Test", &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Items) != 1 || d.Items[0].Count != 2 || !d.Items[0].On || d.Items[0].Ratio != 0.5 || d.Items[0].Tags["x"] != "y" {
		t.Errorf("items = %+v", d.Items)
	}
	if d.Ptr == nil || d.Ptr.Name != "p" || len(d.List) != 2 || d.Extra == nil {
		t.Errorf("decoded %+v", d)
	}
}

func TestDecodeReportsEveryProblem(t *testing.T) {
	src := `apiVersion: etoile.io/v1alpha1
kind: Test
items:
  - {name: [x], count: "2", on: yes-ish, ratio: fast}
  - {nmae: b}
ptr: 3
`
	var d doc
	err := Decode([]byte(src), "Test", &d)
	if err == nil {
		t.Fatal("accepted a bad document")
	}
	for _, want := range []string{
		"items[0].name (line 4): expected a string",
		"items[0].count (line 4): expected a whole number",
		"items[0].on (line 4): expected true or false",
		"items[0].ratio (line 4): expected a number",
		`items[1].nmae (line 5): unknown field (did you mean "name"?)`,
		"ptr (line 6): expected a mapping",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if n := len(err.(Errors)); n != 6 {
		t.Errorf("got %d errors, want 6:\n%v", n, err)
	}
}

func TestDecodeRejectsSeveralDocuments(t *testing.T) {
	var d doc
	err := Decode([]byte("apiVersion: etoile.io/v1alpha1\nkind: Test\n---\nkind: Test\n"), "Test", &d)
	if err == nil || !strings.Contains(err.Error(), "more than one YAML document") {
		t.Fatalf("err = %v", err)
	}
}

// TestDecodeRefusesABrokenSecondDocument: a second document that is not
// valid YAML is an error, not the end of the file.
func TestDecodeRefusesABrokenSecondDocument(t *testing.T) {
	var d doc
	err := Decode([]byte("apiVersion: etoile.io/v1alpha1\nkind: Test\n---\nfoo: [unclosed\n"), "Test", &d)
	if err == nil || !strings.Contains(err.Error(), "not valid YAML") {
		t.Fatalf("err = %v, want the second document's syntax error", err)
	}
}

// TestDecodeSaysATabIsNotIndentation: yaml.v3 says "found character that
// cannot start any token"; the error says the line holds a tab.
func TestDecodeSaysATabIsNotIndentation(t *testing.T) {
	var d doc
	err := Decode([]byte("apiVersion: etoile.io/v1alpha1\nkind: Test\nitems:\n\t- name: a\n"), "Test", &d)
	if err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "tab") {
		t.Fatalf("err = %v, want line 4 and the tab named", err)
	}
}

// TestDecodeNamesAnEmptyDocument: a file that is only "---" is empty.
func TestDecodeNamesAnEmptyDocument(t *testing.T) {
	for _, in := range []string{"---\n", "---\n# nothing\n", ""} {
		var d doc
		if err := Decode([]byte(in), "Test", &d); err == nil || !strings.Contains(err.Error(), "empty document") {
			t.Errorf("%q: err = %v, want empty document", in, err)
		}
	}
}

// TestDecodeTakesATrailingSeparator: a file that ends with "---" (or with
// "---" and comments) holds one document; a null or anything after it is
// a second one.
func TestDecodeTakesATrailingSeparator(t *testing.T) {
	const one = "apiVersion: etoile.io/v1alpha1\nkind: Test\n"
	for _, tail := range []string{"---\n", "---", "---\n# the next one\n---\n", "...\n"} {
		var d doc
		if err := Decode([]byte(one+tail), "Test", &d); err != nil || d.Kind != "Test" {
			t.Errorf("with %q after the document: %v, kind %q", tail, err, d.Kind)
		}
	}
	for _, tail := range []string{"---\nnull\n", "---\n~\n", "---\n''\n", "---\n[]\n"} {
		var d doc
		if err := Decode([]byte(one+tail), "Test", &d); err == nil || !strings.Contains(err.Error(), "more than one YAML document") {
			t.Errorf("with %q after the document: %v, want more than one document", tail, err)
		}
	}
}

// TestDecodeNamesTheLineThatIsNotUTF8: a Latin-1 file's error names the
// line and says to save it as UTF-8; UTF-16 with a byte order mark is read.
func TestDecodeNamesTheLineThatIsNotUTF8(t *testing.T) {
	var d doc
	err := Decode([]byte("apiVersion: etoile.io/v1alpha1\nkind: Test\nitems: [{name: caf\xe9}]\n"), "Test", &d)
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "save the file as UTF-8") {
		t.Errorf("err = %v", err)
	}
	utf16 := []byte{0xFF, 0xFE}
	for _, r := range "apiVersion: etoile.io/v1alpha1\nkind: Test\nitems: [{name: café}]\n" {
		utf16 = append(utf16, byte(r), byte(r>>8))
	}
	if err := Decode(utf16, "Test", &d); err != nil || len(d.Items) != 1 || d.Items[0].Name != "café" {
		t.Errorf("UTF-16: %v, %+v", err, d)
	}
}

// TestDecodeNamesMergeKeys: <<: *anchor is named as a merge key, not an
// unknown field.
func TestDecodeNamesMergeKeys(t *testing.T) {
	var d doc
	err := Decode([]byte("apiVersion: etoile.io/v1alpha1\nkind: Test\nbase: &b {name: a}\nitems: [{<<: *b}]\n"), "Test", &d)
	if err == nil || !strings.Contains(err.Error(), "merge keys") || !strings.Contains(err.Error(), "items[0].<<") {
		t.Errorf("err = %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("apiVersion: etoile.io/v1alpha1\nkind: Test\nitems: [{name: a}]\n"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("items: &x {ptr: *x}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d doc
		_ = Decode(data, "Test", &d)
	})
}

type tree struct {
	Kids []tree `yaml:"kids"`
}

type forest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Trees      []tree `yaml:"trees"`
}

func TestDecodeBoundsAliasExpansion(t *testing.T) {
	// Each level holds ten aliases of the one before: 10^8 nodes if walked.
	src := "apiVersion: etoile.io/v1alpha1\nkind: Test\ntrees:\n  - &a {kids: []}\n"
	prev := "a"
	for i := 0; i < 8; i++ {
		name := string(rune('b' + i))
		src += "  - &" + name + " {kids: [" + strings.Repeat("*"+prev+", ", 9) + "*" + prev + "]}\n"
		prev = name
	}
	var f forest
	err := Decode([]byte(src), "Test", &f)
	if err == nil || !strings.Contains(err.Error(), "document (line 12): aliases expand this document by ") ||
		!strings.Contains(err.Error(), "more than the 10000 allowed: *h (anchored on line 11) stands for 22222222 values and is used 10 times, first here: write the values out") {
		t.Fatalf("err = %v", err)
	}
}

// TestDecodeBoundsAliasAmplification: a small file that aliases one
// anchor many times (an interface of 300 addresses, 3000 times: 900,000
// values from 31 KB) is refused before it is decoded, with one error that
// names the alias, rather than decoded and reported value by value.
func TestDecodeBoundsAliasAmplification(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: etoile.io/v1alpha1\nkind: Test\nptr: &big {name: x, tags: {")
	for i := range 300 {
		fmt.Fprintf(&b, "k%d: v, ", i)
	}
	b.WriteString("}}\nitems:\n")
	for range 3000 {
		b.WriteString("  - *big\n")
	}
	var d doc
	start := time.Now()
	err := Decode([]byte(b.String()), "Test", &d)
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 {
		t.Fatalf("want one error, got %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("refusing took %v", took)
	}
	for _, want := range []string{"document (line 5): aliases expand this document by 906000 values, more than the 10000 allowed", "*big (anchored on line 3) stands for 303 values and is used 3000 times", "write the values out"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	if d.Ptr != nil || d.Items != nil {
		t.Error("the document was decoded all the same")
	}
}

// TestDecodeAllowsModestAliases: sharing a value between a few entries,
// the use aliases are for, is still decoded.
func TestDecodeAllowsModestAliases(t *testing.T) {
	src := "apiVersion: etoile.io/v1alpha1\nkind: Test\nptr: &p {name: x, tags: &t {a: b, c: d}}\nitems: [*p, *p, {name: y, tags: *t}]\nlist: &l [a, b]\n"
	var d doc
	if err := Decode([]byte(src), "Test", &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Items) != 3 || d.Items[1].Name != "x" || d.Items[2].Tags["c"] != "d" {
		t.Errorf("decoded %+v", d)
	}
}

// TestDecodeRefusesAliasInItsOwnAnchor: an alias inside the value it
// names would never end.
func TestDecodeRefusesAliasInItsOwnAnchor(t *testing.T) {
	var f forest
	err := Decode([]byte("apiVersion: etoile.io/v1alpha1\nkind: Test\ntrees:\n  - &a {kids: [*a]}\n"), "Test", &f)
	if err == nil || !strings.Contains(err.Error(), "document (line 4): the alias *a is inside its own anchor (&a, line 4), so it would never end") {
		t.Fatalf("err = %v", err)
	}
}

// TestErrorsShowAtMostMaxShown: however many problems a document has, its
// error lists MaxShown of them and counts the rest, for every caller
// prints that text (consoles, logs, the local API's answer).
func TestErrorsShowAtMostMaxShown(t *testing.T) {
	var es Errors
	for i := range 1000 {
		es.Add(fmt.Sprintf("list[%d]", i), "bad")
	}
	lines := strings.Split(es.Err().Error(), "\n")
	if len(lines) != MaxShown+1 || lines[MaxShown-1] != "list[49]: bad" || lines[MaxShown] != "... and 950 more errors, not shown: correct these and check again" {
		t.Errorf("got %d lines, ending %q", len(lines), lines[len(lines)-2:])
	}
	if len(es) != 1000 {
		t.Errorf("the list itself lost entries: %d", len(es))
	}
	es = es[:MaxShown]
	if strings.Contains(es.Error(), "more errors") {
		t.Errorf("%d errors counted as more", MaxShown)
	}
}

func TestDecodeRejectsDuplicateMapKeys(t *testing.T) {
	var d doc
	err := Decode([]byte("apiVersion: etoile.io/v1alpha1\nkind: Test\nitems: [{tags: {a: x, a: y}}]\n"), "Test", &d)
	if err == nil || !strings.Contains(err.Error(), "items[0].tags.a (line 3): given twice") {
		t.Fatalf("err = %v", err)
	}
}

func TestErrSortsLinesFirst(t *testing.T) {
	es := Errors{{Path: "c", Msg: "x"}, {Path: "b", Line: 9, Msg: "x"}, {Path: "d", Msg: "x"}, {Path: "a", Line: 2, Msg: "x"}}
	got := es.Err().(Errors)
	var order []string
	for _, e := range got {
		order = append(order, e.Path)
	}
	if strings.Join(order, "") != "abcd" {
		t.Errorf("order = %v", order)
	}
}

// TestDecodeHidesSecretValues: under a path Options.Secret names, a value of
// the wrong kind is described, never shown; elsewhere it is shown.
func TestDecodeHidesSecretValues(t *testing.T) {
	src := `apiVersion: etoile.io/v1alpha1
kind: Test
ptr: "TOPSECRET"
items:
  - {name: a, count: "SECRETCOUNT", on: "SECRETON"}
  - {count: shown}
`
	var d doc
	err := DecodeWith([]byte(src), "Test", &d, Options{Secret: func(p string) bool {
		return p == "ptr" || strings.HasPrefix(p, "items[0]")
	}})
	if err == nil {
		t.Fatal("accepted a bad document")
	}
	for _, secret := range []string{"TOPSECRET", "SECRETCOUNT", "SECRETON"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows %q:\n%v", secret, err)
		}
	}
	for _, want := range []string{
		"ptr (line 3): expected a mapping, got a string (not shown: this field may hold a secret)",
		"items[0].count (line 5): expected a whole number, got a string (not shown",
		"items[0].on (line 5): expected true or false, got a string (not shown",
		`items[1].count (line 6): expected a whole number, got "shown"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	var d2 doc
	err = DecodeWith([]byte("SECRETDOC\n"), "Test", &d2, Options{Secret: func(p string) bool { return p == "" }})
	if err == nil || strings.Contains(err.Error(), "SECRETDOC") || !strings.Contains(err.Error(), "got a string") {
		t.Errorf("a document that is one secret value: %v", err)
	}
}

// TestDecodeRefusesLeadingZeros: a whole number written with a leading 0
// is octal to YAML 1.1 (and was to this decoder: vlan: 0100 became VLAN
// 64) and decimal to YAML 1.2; it is refused, naming the field and the
// decimal meant. Numbers that say their base (0x10, 0o17) and 0 itself are
// read as written; a secret field's value is not shown.
func TestDecodeRefusesLeadingZeros(t *testing.T) {
	const head = "apiVersion: etoile.io/v1alpha1\nkind: Test\n"
	for in, want := range map[string]string{
		"0100":   `items[0].count (line 3): "0100" has a leading 0, which YAML 1.1 reads as octal (it would be 64): write it without the 0: 100`,
		"01500":  `"01500" has a leading 0, which YAML 1.1 reads as octal (it would be 832): write it without the 0: 1500`,
		"09":     `items[0].count (line 3): "09" has a leading 0, which YAML 1.1 reads as octal and 8 and 9 are no octal digits: write it without the 0: 9`,
		"-010":   "write it without the 0: -10",
		"01_000": "write it without the 0: 1000",
	} {
		var d doc
		err := Decode([]byte(head+"items: [{count: "+in+"}]\n"), "Test", &d)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("count: %s: err = %v, want %q", in, err, want)
		}
	}
	var u struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		N          uint16 `yaml:"n"`
	}
	if err := Decode([]byte(head+"n: 0100\n"), "Test", &u); err == nil || !strings.Contains(err.Error(), "n (line 3): \"0100\" has a leading 0") {
		t.Errorf("unsigned: err = %v", err)
	}
	for in, want := range map[string]int{"0": 0, "100": 100, "0x10": 16, "0o17": 15, "-5": -5, "1_000": 1000} {
		var d doc
		if err := Decode([]byte(head+"items: [{count: "+in+"}]\n"), "Test", &d); err != nil || d.Items[0].Count != want {
			t.Errorf("count: %s: %v, %+v; want %d", in, err, d.Items, want)
		}
	}
	var d doc
	err := DecodeWith([]byte(head+"items: [{count: 0731}]\n"), "Test", &d, Options{Secret: func(string) bool { return true }})
	if err == nil || strings.Contains(err.Error(), "0731") || strings.Contains(err.Error(), "731") || !strings.Contains(err.Error(), "a number with a leading 0 (not shown") {
		t.Errorf("secret: err = %v", err)
	}
}

// TestDecodeRefusesTagsThatDoNotFit: a tag written on a value must fit
// its field: !!binary (Python's bytes) would pass the base64 on as the
// value, !!null with a value would drop it, and a tag of one's own (!foo)
// or of another type (!!int on text) means the file says something the
// field does not take. The value is never shown, for it may be a secret.
func TestDecodeRefusesTagsThatDoNotFit(t *testing.T) {
	const head = "apiVersion: etoile.io/v1alpha1\nkind: Test\n"
	for in, want := range map[string]string{
		"ptr: {name: !!binary c2VjcmV0}":  "ptr.name (line 3): the YAML tag !!binary (base64-encoded bytes, as Python's yaml.safe_dump writes a bytes value) is not read here",
		"ptr: {name: !!null hunter2}":     "ptr.name (line 3): the YAML tag !!null says there is no value, but one is given: remove the tag, or the value",
		"ptr: {name: !foo hunter2}":       "ptr.name (line 3): the YAML tag !foo is not one Étoile reads: remove it",
		"ptr: {name: !!int hunter2}":      "ptr.name (line 3): the YAML tag !!int does not fit: this field takes text: remove the tag",
		"ptr: {on: !!str true}":           "ptr.on (line 3): the YAML tag !!str does not fit: this field takes true or false",
		"ptr: {count: !!str 1}":           "ptr.count (line 3): the YAML tag !!str does not fit: this field takes a whole number",
		"ptr: {tags: {a: !!binary c2Vj}}": "ptr.tags.a (line 3): the YAML tag !!binary",
		"extra: !!binary c2VjcmV0":        "extra (line 3): the YAML tag !!binary",
		"extra: !foo {a: b}":              "extra (line 3): the YAML tag !foo is not one Étoile reads",
		"list: !!null [a]":                "list (line 3): the YAML tag !!null says there is no value",
	} {
		var d doc
		err := DecodeWith([]byte(head+in+"\n"), "Test", &d, Options{Secret: func(string) bool { return true }})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", in, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "c2Vj")) {
			t.Errorf("%s: the error shows the value: %v", in, err)
		}
	}
	src := head + "ptr: {name: !!str 1234, count: !!int 3, on: !!bool true, ratio: !!int 2, tags: !!map {a: !<tag:yaml.org,2002:str> b}}\nitems: !!null\nlist: !!seq [!!str x]\nextra: !!str y\n"
	var d doc
	if err := Decode([]byte(src), "Test", &d); err != nil {
		t.Fatalf("standard tags that fit: %v", err)
	}
	if p := d.Ptr; p == nil || p.Name != "1234" || p.Count != 3 || !p.On || p.Ratio != 2 || p.Tags["a"] != "b" || d.Items != nil || d.List[0] != "x" || d.Extra != "y" {
		t.Errorf("decoded %+v %+v", d, d.Ptr)
	}
	for _, null := range []string{"!!null", "!!null ~", "!!null null"} {
		var d doc
		if err := Decode([]byte(head+"ptr: "+null+"\n"), "Test", &d); err != nil || d.Ptr != nil {
			t.Errorf("ptr: %s: %v, %+v", null, err, d.Ptr)
		}
	}
}
