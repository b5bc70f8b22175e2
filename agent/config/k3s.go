package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// SiteLabel is the node label that carries MachineConfig.Site.
const SiteLabel = "etoile.io/site"

// K3sValue is one value of the k3s: pass-through section: a scalar or a list
// of scalars, kept exactly as written, so that K3s reads the text the
// operator wrote, as K3s's documentation describes it. Re-encoding a decoded
// Go value would change meaning: `write-kubeconfig-mode: 0644` decodes to
// the integer 420 and would be written back as 420.
type K3sValue struct {
	node *yaml.Node
}

// K3sString returns a scalar string value.
func K3sString(s string) K3sValue {
	return K3sValue{node: &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}}
}

// K3sBool returns a boolean value.
func K3sBool(b bool) K3sValue {
	v := "false"
	if b {
		v = "true"
	}
	return K3sValue{node: &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: v}}
}

// K3sFlag reports whether the k3s: pass-through section sets the boolean
// option key to true, as K3s reads it: its flag parser (urfave/cli, through
// Go's flag package) takes strconv.ParseBool's words, so 1, t, T, TRUE,
// true and True are all true, and validation accepts exactly those. The
// agent must read the value the same way, or it would judge a server with
// disable-agent: 1 by a kubelet K3s does not run.
func (c *MachineConfig) K3sFlag(key string) bool {
	v, ok := c.K3s[key]
	if !ok || v.node == nil || v.IsList() {
		return false
	}
	b, err := strconv.ParseBool(v.node.Value)
	return err == nil && b
}

// K3sList returns a list of strings.
func K3sList(items ...string) K3sValue {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for _, it := range items {
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: it})
	}
	return K3sValue{node: n}
}

// UnmarshalYAML keeps a scalar or a list of scalars; K3s options take
// nothing else.
func (v *K3sValue) UnmarshalYAML(n *yaml.Node) error {
	c, err := cleanK3sNode(n, true)
	if err != nil {
		return err
	}
	v.node = c
	return nil
}

func cleanK3sNode(n *yaml.Node, top bool) (*yaml.Node, error) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			if top {
				return nil, fmt.Errorf("empty: give a value, or remove the key")
			}
			return nil, fmt.Errorf("list item is empty: give a value, or remove it")
		}
		// Only quoting survives: it is part of what the value means.
		style := n.Style & (yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle | yaml.TaggedStyle)
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: n.Tag, Value: n.Value, Style: style}, nil
	case yaml.SequenceNode:
		if !top {
			return nil, fmt.Errorf("a list inside a list: K3s options take a value or a list of values")
		}
		out := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, item := range n.Content {
			c, err := cleanK3sNode(item, false)
			if err != nil {
				return nil, err
			}
			out.Content = append(out.Content, c)
		}
		return out, nil
	case yaml.MappingNode:
		return nil, fmt.Errorf("a mapping: K3s options take a value or a list of values (for component flags use a list, e.g. kubelet-arg: [\"max-pods=200\"])")
	}
	return nil, fmt.Errorf("not a value K3s understands")
}

// MarshalYAML writes the value back as it was written.
func (v K3sValue) MarshalYAML() (any, error) {
	if v.node == nil {
		return nil, nil
	}
	return v.node, nil
}

// IsList reports whether the value is a list.
func (v K3sValue) IsList() bool { return v.node != nil && v.node.Kind == yaml.SequenceNode }

// Strings returns the value's text: one element for a scalar, one per item
// for a list.
func (v K3sValue) Strings() []string {
	if v.node == nil {
		return nil
	}
	if v.node.Kind == yaml.ScalarNode {
		return []string{v.node.Value}
	}
	out := make([]string, 0, len(v.node.Content))
	for _, c := range v.node.Content {
		out = append(out, c.Value)
	}
	return out
}

// K3sConfig renders /etc/rancher/k3s/config.yaml: the keys Étoile derives
// from the machine config (cluster-init, server, token, node-name,
// node-label, node-taint), in that order, then the k3s: pass-through keys
// sorted by name. extraLabels are labels the agent adds from what it
// detects (GPU labels); a label of the same key in the config wins, because
// what the operator wrote is the more deliberate statement.
//
// Pass-through keys only the other kind of node has (server-only keys on an
// agent, disable-apiserver-lb on a server) are left out, as K3s would skip or
// refuse them (Validate warns about them).
func (c *MachineConfig) K3sConfig(extraLabels map[string]string) ([]byte, error) {
	if _, err := c.Validate(); err != nil {
		return nil, fmt.Errorf("machine config is not valid, not rendering K3s's config:\n%w", err)
	}
	for _, k := range slices.Sorted(maps.Keys(extraLabels)) {
		if msg := labelKeyProblem(k); msg != "" {
			return nil, fmt.Errorf("detected node label %q: key %s", k, msg)
		}
		if msg := labelValueProblem(extraLabels[k]); msg != "" {
			return nil, fmt.Errorf("detected node label %s=%q: value %s", k, extraLabels[k], msg)
		}
	}

	root := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	add := func(key string, val *yaml.Node) {
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, forYAML11(val))
	}
	if cl := c.Cluster; cl != nil {
		if cl.Init {
			add("cluster-init", K3sBool(true).node)
		}
		if cl.Server != "" {
			add("server", K3sString(cl.Server).node)
		}
		if cl.Token != "" {
			add("token", K3sString(cl.Token).node)
		}
	}
	if c.Hostname != "" {
		add("node-name", K3sString(c.Hostname).node)
	}
	labels := map[string]string{}
	maps.Copy(labels, extraLabels)
	if c.Site != "" {
		labels[SiteLabel] = c.Site
	}
	maps.Copy(labels, c.Labels)
	if len(labels) > 0 {
		var items []string
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			items = append(items, k+"="+labels[k])
		}
		add("node-label", K3sList(items...).node)
	}
	if len(c.Taints) > 0 {
		add("node-taint", K3sList(c.Taints...).node)
	}
	for _, k := range slices.Sorted(maps.Keys(c.K3s)) {
		if only := k3sOnlyFor(strings.TrimSuffix(k, "+")); only != "" && only != c.Role {
			continue
		}
		add(k, c.K3s[k].node)
	}
	return encodeYAML(root)
}

// octalLike is a number YAML 1.1 reads as octal (0644 is 420 there), and
// Go's flag parsing, K3s's, too (010 is 8).
var octalLike = regexp.MustCompile(`^[-+]?0[0-9_]+$`)

// forYAML11 copies a value for K3s, which reads config.yaml with a YAML 1.1
// parser (gopkg.in/yaml.v2) and turns every value into a flag's text
// (fmt.Sprint of what it parsed), while the machine config is YAML 1.2:
// every scalar is written as its text, double-quoted, so that K3s gets the
// text the operator wrote — a hostname "on" or a value "no" is not read as
// a boolean, 1.10 does not become 1.1, 0x10 does not become 16, and 0o644
// or 0644 (write-kubeconfig-mode) is not turned into 420.
func forYAML11(n *yaml.Node) *yaml.Node {
	c := *n
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag != "!!null" && n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
			c.Tag, c.Style = "!!str", yaml.DoubleQuotedStyle
		}
	case yaml.SequenceNode:
		c.Content = nil
		for _, it := range n.Content {
			c.Content = append(c.Content, forYAML11(it))
		}
	}
	return &c
}

// RegistriesYAML renders /etc/rancher/k3s/registries.yaml, or nil when the
// config has no registries (the agent then removes the file, so that a
// mirror removed from the config stops being used).
func (c *MachineConfig) RegistriesYAML() ([]byte, error) {
	r := c.Registries
	if r == nil || (len(r.Mirrors) == 0 && len(r.Configs) == 0) {
		return nil, nil
	}
	// K3s reads files: the PEM given inline is named by the path the
	// agent writes it to (RegistryTLSFiles).
	out := Registries{Mirrors: r.Mirrors}
	if len(r.Configs) > 0 {
		out.Configs = make(map[string]RegistryConfig, len(r.Configs))
	}
	for host, rc := range r.Configs {
		if t := rc.TLS; t != nil && (t.CA != "" || t.Cert != "" || t.Key != "") {
			ft := *t
			for _, f := range []struct {
				pem  string
				path *string
				name string
			}{{t.CA, &ft.CAFile, RegistryCAFile}, {t.Cert, &ft.CertFile, RegistryCertFile}, {t.Key, &ft.KeyFile, RegistryKeyFile}} {
				if f.pem != "" {
					*f.path = "/" + RegistryTLSPath(host, f.name)
				}
			}
			ft.CA, ft.Cert, ft.Key = "", "", ""
			rc.TLS = &ft
		}
		out.Configs[host] = rc
	}
	return encodeYAML(&out)
}

// RegistryTLSDir is where the agent writes the PEM of registries.configs'
// tls.ca, tls.cert and tls.key, a folder per registry host, relative to
// the machine's root.
const RegistryTLSDir = "etc/rancher/k3s/registries-tls"

// The files of one registry host's folder under RegistryTLSDir.
const (
	RegistryCAFile   = "ca.crt"
	RegistryCertFile = "client.crt"
	RegistryKeyFile  = "client.key"
)

// RegistryTLSPath is where the agent writes one of a registry host's TLS
// files (RegistryCAFile…), relative to the machine's root. The host names
// its folder as it is when it is a plain file name; otherwise ("..", a
// control character) its unsafe bytes become '_' and a hash of it is
// added, so that two hosts never share a folder.
func RegistryTLSPath(host, file string) string {
	dir := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' {
			return '_'
		}
		return r
	}, host)
	if dir != host || dir == "." || dir == ".." || dir == "" {
		sum := sha256.Sum256([]byte(host))
		dir = strings.Trim(dir, ".") + "-" + hex.EncodeToString(sum[:4])
	}
	return path.Join(RegistryTLSDir, dir, file)
}

// RegistryTLSFiles are the files the PEM given inline in registries.configs
// (tls.ca, tls.cert, tls.key) is written to, by path relative to the
// machine's root (RegistryTLSPath), as RegistriesYAML names them; nil when
// there are none.
func (c *MachineConfig) RegistryTLSFiles() map[string][]byte {
	if c.Registries == nil {
		return nil
	}
	var files map[string][]byte
	for host, rc := range c.Registries.Configs {
		t := rc.TLS
		if t == nil {
			continue
		}
		for _, f := range []struct{ pem, name string }{{t.CA, RegistryCAFile}, {t.Cert, RegistryCertFile}, {t.Key, RegistryKeyFile}} {
			if f.pem == "" {
				continue
			}
			if files == nil {
				files = map[string][]byte{}
			}
			data := []byte(f.pem)
			if !bytes.HasSuffix(data, []byte("\n")) {
				data = append(data, '\n')
			}
			files[RegistryTLSPath(host, f.name)] = data
		}
	}
	return files
}

func encodeYAML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", err)
	}
	return buf.Bytes(), nil
}
