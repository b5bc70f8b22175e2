// Package kubeyaml checks Kubernetes manifests as K3s's deploy controller
// reads the files of /var/lib/rancher/k3s/server/manifests: YAML documents
// separated by ---, each one object with apiVersion, kind and metadata.name,
// or a list (kind: List, or any kind ending in List) whose items are such
// objects. K3s skips a file it cannot read with only an event in
// kube-system: the machine config and the hub refuse it where it is written.
package kubeyaml

import (
	"errors"
	"fmt"
	"io"
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

// Objects is Check that also counts the objects manifest holds (a List's
// items one by one).
func Objects(manifest string) (int, error) {
	dec := yaml.NewDecoder(strings.NewReader(manifest))
	n := 0
	for i := 1; ; i++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("manifest document %d is not YAML: %w", i, err)
		}
		if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
			continue // an empty document, as K3s skips it
		}
		objs, err := object(doc.Content[0], fmt.Sprintf("manifest document %d", i), true)
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

// object checks node, one object (or, when lists is true, a list of them),
// at where; it returns how many objects it holds.
func object(node *yaml.Node, where string, lists bool) (int, error) {
	if node.Kind != yaml.MappingNode {
		return 0, fmt.Errorf("%s (line %d) is not a mapping: a Kubernetes object is apiVersion, kind, metadata…", where, node.Line)
	}
	field := func(m *yaml.Node, key string) *yaml.Node {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		return nil
	}
	text := func(v *yaml.Node) string {
		if v == nil || v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
			return ""
		}
		return strings.TrimSpace(v.Value)
	}
	for _, f := range []string{"apiVersion", "kind"} {
		if text(field(node, f)) == "" {
			return 0, fmt.Errorf("%s (line %d) has no %s", where, node.Line, f)
		}
	}
	kind := text(field(node, "kind"))
	if items := field(node, "items"); lists && strings.HasSuffix(kind, "List") && items != nil {
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
	md := field(node, "metadata")
	if md == nil || md.Kind != yaml.MappingNode || text(field(md, "name")) == "" {
		return 0, fmt.Errorf("%s (%s, line %d) has no metadata.name", where, kind, node.Line)
	}
	return 1, nil
}

// RedactSecrets returns manifest with the values of its Secrets' data and
// stringData (a List's items too) replaced by with, and whether it held
// any: the manifest as the machine config's `config show` prints it. A
// manifest without Secrets, or one Check refuses, comes back as it is.
func RedactSecrets(manifest, with string) (string, bool) {
	if Check(manifest) != nil {
		return manifest, false
	}
	dec := yaml.NewDecoder(strings.NewReader(manifest))
	var docs []*yaml.Node
	found := false
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			break // io.EOF: Check read the same stream whole
		}
		if len(doc.Content) > 0 {
			found = redactNode(doc.Content[0], with) || found
		}
		docs = append(docs, &doc)
	}
	if !found {
		return manifest, false
	}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	for _, d := range docs {
		if len(d.Content) == 0 || d.Content[0].Tag == "!!null" {
			continue
		}
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
	if node.Kind != yaml.MappingNode {
		return false
	}
	found := false
	var kind string
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value == "kind" {
			kind = node.Content[i+1].Value
		}
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i].Value, node.Content[i+1]
		switch {
		case k == "items" && v.Kind == yaml.SequenceNode:
			for _, it := range v.Content {
				found = redactNode(it, with) || found
			}
		case kind == "Secret" && (k == "data" || k == "stringData") && v.Kind == yaml.MappingNode:
			for j := 1; j < len(v.Content); j += 2 {
				v.Content[j] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: with}
				found = true
			}
		}
	}
	return found
}
