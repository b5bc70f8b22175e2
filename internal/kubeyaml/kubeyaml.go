// Package kubeyaml checks Kubernetes manifests as K3s's deploy controller
// reads the files of /var/lib/rancher/k3s/server/manifests (k3s-io/k3s
// pkg/deploy): documents separated by a --- line (only a comment may follow
// it on its line), a document of nothing but comments skipped, each other
// one converted to JSON (one that begins with { is taken as JSON as it
// is) and read as one object with apiVersion, kind and metadata.name, or as
// a list — any object with items — whose items are such objects. K3s reads
// YAML 1.1, where an unquoted yes, no, on or off is a boolean. It skips a
// file it cannot read with only an event in kube-system: the machine config
// and the hub refuse it where it is written.
package kubeyaml

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Check returns why manifest is not one or more Kubernetes objects, nil
// when it is. Each problem names its document (1-based, as counted between
// the --- separators) and its line.
func Check(manifest string) error {
	_, err := Objects(manifest)
	return err
}

// Objects is Check that also counts the objects manifest holds (a list's
// items one by one).
func Objects(manifest string) (int, error) {
	docs, err := Documents(manifest)
	if err != nil {
		return 0, err
	}
	n := 0
	for i, d := range docs {
		objs, err := object(d, fmt.Sprintf("manifest document %d", i+1), true)
		if err != nil {
			return 0, err
		}
		n += objs
	}
	if n == 0 {
		return 0, errors.New("manifest holds no Kubernetes object: give at least one document with apiVersion, kind and metadata.name")
	}
	return n, nil
}

// Documents splits manifest as K3s does and parses each document that K3s
// reads (not one of nothing but comments): its content, not the document
// node. An error names the first K3s would fail on.
func Documents(manifest string) ([]*yaml.Node, error) {
	var (
		docs  []*yaml.Node
		chunk strings.Builder
		start = 1 // the chunk's first line
		count = 0 // documents seen, empty ones too
	)
	flush := func(next int) error {
		text := chunk.String()
		chunk.Reset()
		defer func() { start = next }()
		count++
		if empty(text) {
			return nil
		}
		where := fmt.Sprintf("manifest document %d", count)
		if t := strings.TrimSpace(text); strings.HasPrefix(t, "{") && !json.Valid([]byte(t)) {
			return fmt.Errorf("%s (line %d) begins with {, and K3s then reads it as JSON, which it is not (keys and texts in double quotes): write it in block style, or as JSON", where, start)
		}
		// Parsed after as many empty lines as come before it: the
		// parser's line numbers (its errors', the nodes') are the
		// manifest's.
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(strings.Repeat("\n", start-1)+text), &doc); err != nil {
			return fmt.Errorf("%s is not YAML: %w", where, err)
		}
		// Decoded once more as K3s decodes it, to values: a key given twice
		// in a mapping, which K3s would take the last of, is refused.
		var v any
		if err := doc.Decode(&v); err != nil {
			return fmt.Errorf("%s is not YAML: %w", where, err)
		}
		if len(doc.Content) == 0 {
			return nil
		}
		root := doc.Content[0]
		if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
			return fmt.Errorf("%s (line %d) is null (%s), which K3s fails on (Object 'Kind' is missing in 'null'): remove it", where, root.Line, strings.TrimSpace(text))
		}
		docs = append(docs, root)
		return nil
	}
	lines := strings.SplitAfter(manifest, "\n")
	for i, line := range lines {
		if rest, ok := strings.CutPrefix(line, "---"); ok {
			if r := strings.TrimSpace(rest); r != "" && !strings.HasPrefix(r, "#") {
				return nil, fmt.Errorf("manifest line %d: %q has more than a comment after the document separator, which K3s refuses (invalid Yaml document separator): put the document on the next line", i+1, strings.TrimRight(line, "\n"))
			}
			if err := flush(i + 2); err != nil {
				return nil, err
			}
			continue
		}
		chunk.WriteString(line)
	}
	if err := flush(len(lines) + 1); err != nil {
		return nil, err
	}
	return docs, nil
}

// empty reports whether a document holds nothing but blank lines and
// comments, which K3s skips.
func empty(text string) bool {
	for _, l := range strings.Split(text, "\n") {
		if s := strings.TrimSpace(l); s != "" && !strings.HasPrefix(s, "#") {
			return false
		}
	}
	return true
}

// yaml11Bools are the plain words YAML 1.1 (K3s's reading) takes as
// booleans, where YAML 1.2 (yaml.v3's) reads a text.
var yaml11Bools = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "n": true, "N": true, "no": true, "No": true, "NO": true,
	"on": true, "On": true, "ON": true, "off": true, "Off": true, "OFF": true,
}

// Field is the value of key in m, a mapping, as a YAML loader resolves it:
// following aliases, and the merge keys (<<) after m's own keys; nil when
// there is none.
func Field(m *yaml.Node, key string) *yaml.Node {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key && m.Content[i].Tag != "!!merge" {
			return deref(m.Content[i+1])
		}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Tag != "!!merge" {
			continue
		}
		from := deref(m.Content[i+1])
		merged := []*yaml.Node{from}
		if from != nil && from.Kind == yaml.SequenceNode {
			merged = from.Content
		}
		for _, f := range merged {
			if v := Field(f, key); v != nil {
				return v
			}
		}
	}
	return nil
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// text is v's text when it is one as K3s reads it (a date is one: K3s's
// conversion to JSON writes it as given), "" otherwise; bool11 says that it
// is a word YAML 1.1 reads as a boolean.
func text(v *yaml.Node) (s string, bool11 bool) {
	v = deref(v)
	if v == nil || v.Kind != yaml.ScalarNode || (v.Tag != "!!str" && v.Tag != "!!timestamp") {
		return "", false
	}
	return strings.TrimSpace(v.Value), v.Style == 0 && yaml11Bools[v.Value]
}

// object checks node, one object (or, when lists is true, a list of them),
// at where. It returns how many
// objects it holds.
func object(node *yaml.Node, where string, lists bool) (int, error) {
	node = deref(node)
	if node.Kind != yaml.MappingNode {
		return 0, fmt.Errorf("%s (line %d) is not a mapping: a Kubernetes object is apiVersion, kind, metadata…", where, node.Line)
	}
	field := func(f string, in *yaml.Node) (string, error) {
		s, bool11 := text(Field(in, f))
		if bool11 {
			return "", fmt.Errorf("%s (line %d): %s %q is a boolean as K3s reads YAML (1.1): quote it", where, node.Line, f, s)
		}
		return s, nil
	}
	kind := ""
	for _, f := range []string{"apiVersion", "kind"} {
		s, err := field(f, node)
		if err != nil {
			return 0, err
		}
		if s == "" {
			return 0, fmt.Errorf("%s (line %d) has no %s", where, node.Line, f)
		}
		kind = s
	}
	// K3s reads any object with items as a list (its kind aside).
	if items := Field(node, "items"); lists && items != nil && items.Tag != "!!null" {
		if items.Kind != yaml.SequenceNode {
			return 0, fmt.Errorf("%s (line %d): the items of a %s are not a list", where, items.Line, kind)
		}
		for j, it := range items.Content {
			if _, err := object(it, fmt.Sprintf("%s, item %d of its %s", where, j+1, kind), false); err != nil {
				return 0, err
			}
		}
		return len(items.Content), nil
	}
	name, err := field("name", Field(node, "metadata"))
	if err != nil {
		return 0, err
	}
	if name == "" {
		return 0, fmt.Errorf("%s (%s, line %d) has no metadata.name", where, kind, node.Line)
	}
	return 1, nil
}

// RedactSecrets returns manifest with what its objects hold that may be a
// secret replaced by with, and whether it held any: the values of a
// Secret's data and stringData (a Secret written with YAML aliases or merge
// keys is replaced whole), and of a Helm controller resource's (HelmChart,
// HelmChartConfig) spec.valuesContent and spec.set; a list's items too. It
// is the manifest as the machine config's `config show` prints it. A
// manifest without such values, or one Check refuses, comes back as it is.
func RedactSecrets(manifest, with string) (string, bool) {
	if Check(manifest) != nil {
		return manifest, false
	}
	docs, _ := Documents(manifest)
	found := false
	for _, d := range docs {
		found = redactNode(d, with) || found
	}
	if !found {
		return manifest, false
	}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			return with, true // never the secret, whatever happens
		}
	}
	if err := enc.Close(); err != nil {
		return with, true
	}
	return b.String(), true
}

// redactNode redacts node, an object or a list of them (RedactSecrets).
func redactNode(node *yaml.Node, with string) bool {
	node = deref(node)
	if node == nil || node.Kind != yaml.MappingNode {
		return false
	}
	if items := Field(node, "items"); items != nil && items.Kind == yaml.SequenceNode {
		found := false
		for _, it := range items.Content {
			found = redactNode(it, with) || found
		}
		return found
	}
	kind, _ := text(Field(node, "kind"))
	apiVersion, _ := text(Field(node, "apiVersion"))
	redacted := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: with}
	switch {
	case kind == "Secret" && indirect(node):
		// What an alias or a merge key brings in cannot be told apart
		// here: nothing of it is shown.
		*node = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Tag: "!!str", Value: "kind"}, {Kind: yaml.ScalarNode, Tag: "!!str", Value: "Secret"},
			{Kind: yaml.ScalarNode, Tag: "!!str", Value: with}, {Kind: yaml.ScalarNode, Tag: "!!str", Value: "written with YAML aliases or merge keys: not shown"},
		}}
		return true
	case kind == "Secret":
		found := false
		for _, f := range []string{"data", "stringData"} {
			if v := Field(node, f); v != nil && v.Kind == yaml.MappingNode {
				for j := 1; j < len(v.Content); j += 2 {
					v.Content[j], found = redacted, true
				}
			}
		}
		return found
	case strings.HasPrefix(apiVersion, "helm.cattle.io/"):
		spec := Field(node, "spec")
		if spec == nil || spec.Kind != yaml.MappingNode {
			return false
		}
		found := false
		for i := 0; i+1 < len(spec.Content); i += 2 {
			switch v := spec.Content[i+1]; spec.Content[i].Value {
			case "valuesContent":
				spec.Content[i+1], found = redacted, true
			case "set":
				if v = deref(v); v.Kind == yaml.MappingNode {
					for j := 1; j < len(v.Content); j += 2 {
						v.Content[j], found = redacted, true
					}
				} else {
					spec.Content[i+1], found = redacted, true
				}
			}
		}
		return found
	}
	return false
}

// indirect reports whether node holds an alias or a merge key anywhere.
func indirect(node *yaml.Node) bool {
	if node.Kind == yaml.AliasNode || node.Tag == "!!merge" {
		return true
	}
	for _, c := range node.Content {
		if indirect(c) {
			return true
		}
	}
	return false
}
