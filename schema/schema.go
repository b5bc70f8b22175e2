// Package schema decodes Étoile's versioned YAML documents strictly.
//
// Every document kind (ImageSpec, MachineConfig, …) is a Go struct with yaml
// tags. Decode walks the YAML tree against the struct itself, rather than
// relying on yaml.v3's KnownFields, so that every error names the field path
// (`kernel.cmdline[2]`), the bad value, and what is accepted, and so that all
// problems in a document are reported at once instead of the first one only.
package schema

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// APIVersion is the only document version this release reads.
const APIVersion = "etoile.io/v1alpha1"

// FieldError is one problem at one place in a document.
type FieldError struct {
	Path string // e.g. "kernel.cmdline[2]"; empty for the document itself
	Line int    // 1-based line in the source, 0 when unknown
	Msg  string
}

func (e *FieldError) Error() string {
	where := e.Path
	if where == "" {
		where = "document"
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", where, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", where, e.Msg)
}

// Errors is every problem found in one document, in source order.
type Errors []*FieldError

// Error lists the first MaxShown problems, one a line, and counts the rest.
func (es Errors) Error() string {
	msgs := make([]string, 0, min(len(es), MaxShown)+1)
	for _, e := range es[:min(len(es), MaxShown)] {
		msgs = append(msgs, e.Error())
	}
	if len(es) > MaxShown {
		msgs = append(msgs, fmt.Sprintf("... and %d more errors, not shown: correct these and check again", len(es)-MaxShown))
	}
	return strings.Join(msgs, "\n")
}

// MaxShown is how many problems Errors.Error lists. Every caller prints
// that text (a validate command, the consoles of a node whose config is
// invalid, the local API's answer), and a document wrong in the same way
// thousands of times would otherwise print thousands of lines, which help
// no one and cost a node on its console and in its log; the first ones
// show the mistake.
const MaxShown = 50

// Decode reads one YAML document into out (a pointer to a struct) and checks
// that its apiVersion and kind are the expected ones. Unknown fields, wrong
// types and a wrong header are all errors, each naming its field path.
func Decode(data []byte, kind string, out any) error {
	return DecodeWith(data, kind, out, Options{})
}

// Options change how DecodeWith reports problems.
type Options struct {
	// Secret, when not nil, says whether the value at a field path ("" for
	// the document itself) may hold a secret (a token, a password): an
	// error there names the path and the kind of value found ("a string")
	// but never the value, which would otherwise reach consoles, logs and
	// tickets. A custom decoder (yaml.Unmarshaler) under such a path must
	// not quote its value in its own errors.
	Secret func(path string) bool
}

// DecodeWith is Decode with options.
func DecodeWith(data []byte, kind string, out any, opts Options) error {
	if line, ok := notUTF8(data); ok {
		return Errors{{Line: line, Msg: "not UTF-8 text: a byte on this line is not UTF-8 (a Latin-1 accented letter, say): save the file as UTF-8"}}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Errors{{Msg: "empty document: expected apiVersion: " + APIVersion + " and kind: " + kind}}
		}
		return Errors{syntaxError(data, err)}
	}
	if emptyDocument(&doc) {
		return Errors{{Line: doc.Line, Msg: "empty document: expected apiVersion: " + APIVersion + " and kind: " + kind}}
	}
	for {
		// Documents after the first are an error, but for empty ones: a
		// file that ends with "---" (written by a generator, or cut from
		// a concatenation) holds one document.
		var extra yaml.Node
		if err := dec.Decode(&extra); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			// A broken document after the first is not read past.
			return Errors{syntaxError(data, err)}
		}
		if !emptyDocument(&extra) {
			return Errors{{Line: extra.Line, Msg: "more than one YAML document: give one " + kind + " per file"}}
		}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if e := aliasProblem(root); e != nil {
		// Refused before anything is decoded: decoding, then validating,
		// the expanded document is the cost being avoided.
		return Errors{e}
	}
	d := &decoder{secret: opts.Secret}
	if root.Kind != yaml.MappingNode {
		return Errors{{Line: root.Line, Msg: "expected a mapping with apiVersion and kind, got " + d.nodeKind(root, "")}}
	}
	d.checkHeader(root, kind)
	d.value(root, reflect.ValueOf(out).Elem(), "")
	if len(d.errs) > 0 {
		return d.errs
	}
	return nil
}

// syntaxError is a YAML parser's error, with a hint where the line it names
// holds a tab (YAML indents with spaces only, and yaml.v3's message does not
// say so).
func syntaxError(data []byte, err error) *FieldError {
	e := &FieldError{Msg: "not valid YAML: " + err.Error()}
	m := yamlLineRe.FindStringSubmatch(err.Error())
	if m == nil {
		return e
	}
	n, _ := strconv.Atoi(m[1])
	lines := strings.Split(string(data), "\n")
	if n >= 1 && n <= len(lines) && strings.Contains(lines[n-1], "\t") {
		e.Msg += ": the line holds a tab; YAML indents with spaces only: replace the tab with spaces"
	}
	return e
}

var yamlLineRe = regexp.MustCompile(`^yaml: line ([0-9]+):`)

// emptyDocument reports whether n is a document with nothing in it (what
// yaml.v3 makes of a "---" followed by nothing, or by comments only).
func emptyDocument(n *yaml.Node) bool {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return true
		}
		if len(n.Content) == 1 {
			n = n.Content[0]
		}
	}
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null" && n.Value == "" && n.Style == 0
}

// notUTF8 finds the line of the first byte that is not UTF-8 in data,
// unless data starts with a UTF-16 byte order mark (the YAML decoder reads
// UTF-16 then).
func notUTF8(data []byte) (line int, found bool) {
	if bytes.HasPrefix(data, []byte{0xFE, 0xFF}) || bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || utf8.Valid(data) {
		return 0, false
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return 1 + bytes.Count(data[:i], []byte("\n")), true
		}
		i += size
	}
	return 0, false
}

// mergeKey reports (as an error) a YAML merge key, <<: *anchor, which
// would otherwise read as an unknown field or a map entry named "<<".
func (d *decoder) mergeKey(key *yaml.Node, path string) bool {
	if key.ShortTag() != "!!merge" {
		return false
	}
	d.fail(key, join(path, "<<"), "YAML merge keys (<<: *anchor) are not supported: write the fields out (an alias, *anchor, as a whole value works)")
	return true
}

type decoder struct {
	errs   Errors
	secret func(path string) bool // Options.Secret
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) checkHeader(m *yaml.Node, kind string) {
	var api, k *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		switch m.Content[i].Value {
		case "apiVersion":
			api = m.Content[i+1]
		case "kind":
			k = m.Content[i+1]
		}
	}
	if api == nil {
		d.fail(m, "apiVersion", "missing: set apiVersion: %s", APIVersion)
	} else if api.Value != APIVersion {
		d.fail(api, "apiVersion", "%q is not supported: use %s", api.Value, APIVersion)
	}
	if k == nil {
		d.fail(m, "kind", "missing: set kind: %s", kind)
	} else if k.Value != kind {
		d.fail(k, "kind", "%q is not what this command reads: expected kind: %s", k.Value, kind)
	}
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// fields maps yaml names to struct field indexes, in declaration order.
func fields(t reflect.Type) (map[string][]int, []string) {
	byName := map[string][]int{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			sub, subNames := fields(f.Type)
			for n, idx := range sub {
				byName[n] = append([]int{i}, idx...)
			}
			names = append(names, subNames...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		byName[name] = []int{i}
		names = append(names, name)
	}
	return byName, names
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias // aliasProblem bounded what this adds, and found no cycle
	}
	if n.Style&yaml.TaggedStyle != 0 && !d.tagFits(n, v.Type(), path) {
		return
	}
	// Custom decoders (durations, CIDRs, …) take over their node.
	if v.CanAddr() {
		if u, ok := v.Addr().Interface().(yaml.Unmarshaler); ok {
			if err := u.UnmarshalYAML(n); err != nil {
				d.fail(n, path, "%v", err)
			}
			return
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "expected a mapping, got %s", d.nodeKind(n, path))
			return
		}
		byName, names := fields(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			fp := join(path, key.Value)
			if d.mergeKey(key, path) {
				continue
			}
			if seen[key.Value] {
				d.fail(key, fp, "given twice: keep one")
				continue
			}
			seen[key.Value] = true
			idx, ok := byName[key.Value]
			if !ok {
				d.fail(key, fp, "unknown field%s; known fields here: %s", Suggest(key.Value, names), strings.Join(names, ", "))
				continue
			}
			d.value(val, v.FieldByIndex(idx), fp)
		}
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.value(n, p.Elem(), path)
		v.Set(p)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a list, got %s", d.nodeKind(n, path))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "expected a mapping, got %s", d.nodeKind(n, path))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if d.mergeKey(key, path) {
				continue
			}
			if seen[key.Value] {
				d.fail(key, join(path, key.Value), "given twice: keep one")
				continue
			}
			seen[key.Value] = true
			kv := reflect.New(v.Type().Key()).Elem()
			d.value(key, kv, path)
			ev := reflect.New(v.Type().Elem()).Elem()
			d.value(val, ev, join(path, key.Value))
			m.SetMapIndex(kv, ev)
		}
		v.Set(m)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			if d.isSecret(path) {
				// yaml.v3's message quotes the value.
				d.fail(n, path, "cannot be read: got %s", d.nodeKind(n, path))
				return
			}
			d.fail(n, path, "%v", err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "expected a string, got %s", d.nodeKind(n, path))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || err != nil {
			d.fail(n, path, "expected true or false, got %s", d.show(n, path))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if d.leadingZero(n, path) {
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, v.Type().Bits())
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.fail(n, path, "expected a whole number, got %s", d.show(n, path))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if d.leadingZero(n, path) {
			return
		}
		u, err := strconv.ParseUint(n.Value, 0, v.Type().Bits())
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.fail(n, path, "expected a whole number ≥ 0, got %s", d.show(n, path))
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		if d.leadingZero(n, path) {
			return
		}
		f, err := strconv.ParseFloat(n.Value, v.Type().Bits())
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") || err != nil {
			d.fail(n, path, "expected a number, got %s", d.show(n, path))
			return
		}
		v.SetFloat(f)
	default:
		d.fail(n, path, "cannot decode into %s", v.Type())
	}
}

// tagFits reports whether the tag written on n (!!str, !!binary, !foo)
// fits a field of type t, and records the problem when it does not.
// yaml.v3 keeps a tag it does not act on, and a field read as text would
// take the value as written whatever the tag says: `token: !!binary
// aGVsbG8=` (how Python's yaml.safe_dump writes bytes) would give K3s the
// base64, `hostname: !!null foo` no hostname at all. The value is never
// shown: the tag says what is wrong, and the field may hold a secret.
func (d *decoder) tagFits(n *yaml.Node, t reflect.Type, path string) bool {
	tag := n.ShortTag()
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case !strings.HasPrefix(tag, "!!"):
		d.fail(n, path, "the YAML tag %s is not one Étoile reads: remove it", tag)
		return false
	case tag == "!!binary":
		d.fail(n, path, "the YAML tag !!binary (base64-encoded bytes, as Python's yaml.safe_dump writes a bytes value) is not read here: the base64 text would be taken as the value: write the value itself, as text, without the tag (in Python, give a str, not bytes)")
		return false
	case tag == "!!null" && (n.Kind != yaml.ScalarNode || !nullWords[n.Value]):
		d.fail(n, path, "the YAML tag !!null says there is no value, but one is given: remove the tag, or the value")
		return false
	case tag == "!!null" || n.Kind != yaml.ScalarNode:
		return true // a mapping or list of the wrong kind is named by value
	}
	want, what := "", ""
	switch t.Kind() {
	case reflect.String:
		want, what = "!!str", "text"
	case reflect.Bool:
		want, what = "!!bool", "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want, what = "!!int", "a whole number"
	case reflect.Float32, reflect.Float64:
		if tag == "!!int" {
			return true
		}
		want, what = "!!float", "a number"
	}
	if want != "" && tag != want {
		d.fail(n, path, "the YAML tag %s does not fit: this field takes %s: remove the tag", tag, what)
		return false
	}
	return true
}

// nullWords are the values a !!null tag may carry (YAML's null).
var nullWords = map[string]bool{"": true, "~": true, "null": true, "Null": true, "NULL": true}

// zeroPadded reports a whole number written with a leading 0 (0100,
// -010, 09, 0_1).
func zeroPadded(s string) bool {
	s = strings.TrimLeft(s[:min(len(s), 1)], "+-") + s[min(len(s), 1):]
	return len(s) > 1 && s[0] == '0' && strings.Trim(s[1:], "0123456789_") == ""
}

// leadingZero reports (as an error) a number written with a leading 0,
// which YAML readers disagree on: YAML 1.1 and yaml.v3 read 0100 as octal
// (64), YAML 1.2 as decimal, and 09 is no number to yaml.v3 at all; `vlan:
// 0100` would silently be VLAN 64. 0x10 and 0o17 say their base and are
// read as written. A quoted "0100" is text, refused where a number goes.
func (d *decoder) leadingZero(n *yaml.Node, path string) bool {
	if n.Kind != yaml.ScalarNode || n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 ||
		(n.Tag != "!!int" && n.Tag != "!!float") || !zeroPadded(n.Value) {
		return false
	}
	if d.isSecret(path) {
		d.fail(n, path, "a number with a leading 0 (not shown: this field may hold a secret), which YAML 1.1 reads as octal and YAML 1.2 as decimal: write it without the leading 0")
		return true
	}
	digits := strings.ReplaceAll(n.Value, "_", "")
	reading := "and 8 and 9 are no octal digits"
	if o, err := strconv.ParseInt(digits, 8, 64); err == nil {
		reading = "(it would be " + strconv.FormatInt(o, 10) + ")"
	}
	decimal := digits[:len(digits)-len(strings.TrimLeft(digits, "+-"))] + strings.TrimLeft(digits, "+-0")
	if i, err := strconv.ParseInt(digits, 10, 64); err == nil {
		decimal = strconv.FormatInt(i, 10)
	}
	d.fail(n, path, "%q has a leading 0, which YAML 1.1 reads as octal %s: write it without the 0: %s", n.Value, reading, decimal)
	return true
}

// nodeKind names what n is for a message: a mapping, a list, or a scalar
// as show gives it.
func (d *decoder) nodeKind(n *yaml.Node, path string) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return d.show(n, path)
	}
	return "nothing"
}

// show is a scalar's value, quoted; under a secret path (Options.Secret)
// only the kind of value it is.
func (d *decoder) show(n *yaml.Node, path string) string {
	if n.Kind != yaml.ScalarNode {
		return d.nodeKind(n, path)
	}
	if d.isSecret(path) {
		return scalarKind(n) + " (not shown: this field may hold a secret)"
	}
	return strconv.Quote(n.Value)
}

func (d *decoder) isSecret(path string) bool {
	return d.secret != nil && d.secret(path)
}

// scalarKind names the kind of a scalar without its value.
func scalarKind(n *yaml.Node) string {
	switch n.ShortTag() {
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "nothing"
	case "!!timestamp":
		return "a date"
	case "!!binary":
		return "binary data"
	}
	return "a string"
}

// Suggest returns ` (did you mean "x"?)` naming the closest of known when
// got is likely a typo of it, else "".
func Suggest(got string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if dist := distance(strings.ToLower(got), strings.ToLower(k)); dist < bestD {
			best, bestD = k, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance, small strings only.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Add records a validation problem found after decoding; validators use it
// to report in the same form as decoding errors.
func (es *Errors) Add(path, format string, args ...any) {
	*es = append(*es, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Err returns nil when there is no problem, else the list: problems with a
// source line first, in line order, then the others as they were found.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	sort.SliceStable(es, func(i, j int) bool {
		li, lj := es[i].Line, es[j].Line
		switch {
		case li == 0 || lj == 0:
			return li != 0 && lj == 0
		default:
			return li < lj
		}
	})
	return es
}
