package hub

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"
)

// ValidateManifest checks that a template is one or more Kubernetes objects
// (K3s HelmChart resources included) before any site sees it: each YAML
// document must carry apiVersion, kind and metadata.name. K3s would skip a
// broken file silently at the site; the hub refuses it at the source.
func ValidateManifest(manifest string) error {
	dec := yaml.NewDecoder(strings.NewReader(manifest))
	n := 0
	for i := 0; ; i++ {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("manifest document %d is not YAML: %w", i+1, err)
		}
		if doc == nil {
			continue
		}
		n++
		for _, f := range []string{"apiVersion", "kind"} {
			if s, ok := doc[f].(string); !ok || s == "" {
				return fmt.Errorf("manifest document %d has no %s", i+1, f)
			}
		}
		md, _ := doc["metadata"].(map[string]any)
		if s, ok := md["name"].(string); !ok || s == "" {
			return fmt.Errorf("manifest document %d (%v) has no metadata.name", i+1, doc["kind"])
		}
	}
	if n == 0 {
		return errors.New("manifest holds no Kubernetes object")
	}
	return nil
}
