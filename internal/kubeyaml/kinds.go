package kubeyaml

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// HelmKind is the kind of the first resource of K3s's Helm controller
// (helm.cattle.io: HelmChart, HelmChartConfig) in manifest, a list's items
// included; "" for none, or for a manifest Check refuses.
func HelmKind(manifest string) string {
	if Check(manifest) != nil {
		return ""
	}
	docs, _ := Documents(manifest)
	for _, d := range docs {
		if k := helmKind(d); k != "" {
			return k
		}
	}
	return ""
}

// helmKind is HelmKind of one object, or of a list's items.
func helmKind(node *yaml.Node) string {
	if items := Field(node, "items"); items != nil && items.Kind == yaml.SequenceNode {
		for _, it := range items.Content {
			if k := helmKind(it); k != "" {
				return k
			}
		}
		return ""
	}
	apiVersion, _ := text(Field(node, "apiVersion"))
	if kind, _ := text(Field(node, "kind")); strings.HasPrefix(apiVersion, "helm.cattle.io/") {
		return kind
	}
	return ""
}
