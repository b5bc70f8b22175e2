package kubeyaml

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// HelmKind is the kind of the first resource of K3s's Helm controller
// (helm.cattle.io: HelmChart, HelmChartConfig) in manifest, a List's items
// included; "" for none, or for a manifest Check refuses.
func HelmKind(manifest string) string {
	if Check(manifest) != nil {
		return ""
	}
	dec := yaml.NewDecoder(strings.NewReader(manifest))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			return "" // the end: Check read the same stream whole
		}
		if len(doc.Content) == 0 {
			continue
		}
		if k := helmKind(doc.Content[0]); k != "" {
			return k
		}
	}
}

// helmKind is HelmKind of one object, or of a list's items.
func helmKind(node *yaml.Node) string {
	if node.Kind != yaml.MappingNode {
		return ""
	}
	var apiVersion, kind string
	var items *yaml.Node
	for i := 0; i+1 < len(node.Content); i += 2 {
		switch v := node.Content[i+1]; node.Content[i].Value {
		case "apiVersion":
			apiVersion = v.Value
		case "kind":
			kind = v.Value
		case "items":
			items = v
		}
	}
	if strings.HasPrefix(apiVersion, "helm.cattle.io/") {
		return kind
	}
	if items != nil && strings.HasSuffix(kind, "List") {
		for _, it := range items.Content {
			if k := helmKind(it); k != "" {
				return k
			}
		}
	}
	return ""
}
