package schema

import (
	"strings"
	"testing"
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
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err = %v", err)
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
