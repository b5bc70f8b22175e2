package hub

import "github.com/etoile-os/etoile/internal/kubeyaml"

// ValidateManifest checks that a template is one or more Kubernetes objects
// (K3s HelmChart resources included, a List of them too) before any site
// sees it: each YAML document must carry apiVersion, kind and
// metadata.name. K3s would skip a broken file silently at the site; the hub
// refuses it at the source.
func ValidateManifest(manifest string) error {
	return kubeyaml.Check(manifest)
}
