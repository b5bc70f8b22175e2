package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestManifestRejections(t *testing.T) {
	const ns = `"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"`
	for _, tc := range []struct {
		name, body, path string
		want             []string
	}{
		{"on an agent", "role: agent\ncluster: {server: \"https://10.0.0.1:6443\", token: t}\nmanifests: [{name: a, contents: " + ns + "}]\n",
			"manifests", []string{"given on an agent", "on servers only", "/var/lib/rancher/k3s/server/manifests", "server's config"}},
		{"no name", server + "manifests: [{contents: " + ns + "}]\n", "manifests[0].name",
			[]string{"missing", "/var/lib/rancher/k3s/server/manifests/etoilecfg-NAME.yaml"}},
		{"a name with capitals", server + "manifests: [{name: MetalLB, contents: " + ns + "}]\n", "manifests[0].name",
			[]string{`"MetalLB" is not a DNS label`}},
		{"a name with a dot", server + "manifests: [{name: a.b, contents: " + ns + "}]\n", "manifests[0].name",
			[]string{`"a.b" is not a DNS label`}},
		{"a name twice", server + "manifests: [{name: a, contents: " + ns + "}, {name: a, contents: " + ns + "}]\n", "manifests[1].name",
			[]string{`"a" is also manifests[0]'s name`}},
		{"no contents", server + "manifests: [{name: a}]\n", "manifests[0].contents", []string{"missing", "YAML documents"}},
		{"not YAML", server + "manifests: [{name: a, contents: \"a: [\"}]\n", "manifests[0].contents",
			[]string{"document 1 is not YAML", "K3s would skip the file"}},
		{"an object without a name", server + "manifests: [{name: a, contents: \"apiVersion: v1\\nkind: Namespace\\n\"}]\n", "manifests[0].contents",
			[]string{"manifest document 1 (Namespace, line 1) has no metadata.name"}},
		{"the second document without a kind", server + "manifests: [{name: a, contents: \"apiVersion: v1\\nkind: Namespace\\nmetadata: {name: a}\\n---\\napiVersion: v1\\nmetadata: {name: b}\\n\"}]\n",
			"manifests[0].contents", []string{"manifest document 2 (line 5) has no kind"}},
		{"only comments", server + "manifests: [{name: a, contents: \"# later\\n\"}]\n", "manifests[0].contents", []string{"no Kubernetes object"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Check([]byte(header + tc.body))
			fe := findField(err, tc.path)
			if fe == nil {
				t.Fatalf("no error at %s:\n%v", tc.path, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(fe.Msg, w) {
					t.Errorf("%s: %q lacks %q", tc.path, fe.Msg, w)
				}
			}
		})
	}
	many := strings.Repeat("{name: a, contents: "+ns+"}, ", 65)
	if _, _, err := Check([]byte(header + server + "manifests: [" + many + "]\n")); findField(err, "manifests") == nil || !strings.Contains(err.Error(), "65 entries, more than the 64 allowed") {
		t.Errorf("65 manifests: %v", err)
	}
}

// TestManifestsAccepted: HelmChart resources, several objects in one
// manifest, a List; each written to its file on a server.
func TestManifestsAccepted(t *testing.T) {
	doc := header + server + `manifests:
  - name: metallb
    contents: |
      apiVersion: helm.cattle.io/v1
      kind: HelmChart
      metadata:
        name: metallb
        namespace: kube-system
      spec:
        repo: https://metallb.github.io/metallb
        chart: metallb
        targetNamespace: metallb-system
        createNamespace: true
  - name: teams
    contents: |
      apiVersion: v1
      kind: Namespace
      metadata: {name: team-a}
      ---
      apiVersion: v1
      kind: List
      items:
        - {apiVersion: v1, kind: Namespace, metadata: {name: team-b}}
`
	c, w, err := Check([]byte(doc))
	if err != nil || len(w) != 0 {
		t.Fatalf("warnings %q, err %v", w, err)
	}
	files := c.ManifestFiles()
	if len(files) != 2 || !strings.HasPrefix(string(files["var/lib/rancher/k3s/server/manifests/etoilecfg-metallb.yaml"]), "apiVersion: helm.cattle.io/v1\nkind: HelmChart\n") ||
		!strings.Contains(string(files["var/lib/rancher/k3s/server/manifests/etoilecfg-teams.yaml"]), "---\napiVersion: v1\nkind: List\n") {
		t.Errorf("files: %q", fmt.Sprint(files))
	}
}

// TestExampleManifests: the example's commented-out manifests validate once
// uncommented, and make the file K3s reads.
func TestExampleManifests(t *testing.T) {
	doc := exampleWith("", "manifests:")
	if !strings.Contains(doc, "\nmanifests:\n  - name: metallb\n") {
		t.Fatalf("the example's manifests were not found to uncomment:\n%s", doc)
	}
	c, w, err := Check([]byte(doc))
	if err != nil || len(w) != 0 {
		t.Fatalf("the example with its manifests: warnings %q, err %v", w, err)
	}
	if f := c.ManifestFiles()["var/lib/rancher/k3s/server/manifests/etoilecfg-metallb.yaml"]; !strings.Contains(string(f), "kind: HelmChart\n") {
		t.Errorf("the example's manifest file: %q", f)
	}
}

// TestManifestSecretsRedacted: the running config as shown (Redacted)
// keeps a manifest's objects but not its Secrets' values.
func TestManifestSecretsRedacted(t *testing.T) {
	c, err := Parse([]byte(header + server + `manifests:
  - name: creds
    contents: |
      apiVersion: v1
      kind: Secret
      metadata: {name: s3, namespace: backup}
      stringData: {secret-key: hunter2}
`))
	if err != nil {
		t.Fatal(err)
	}
	out := redactedYAML(t, c)
	if strings.Contains(out, "hunter2") || !strings.Contains(out, "secret-key: REDACTED") || !strings.Contains(out, "name: s3") {
		t.Errorf("redacted:\n%s", out)
	}
	if !strings.Contains(string(c.ManifestFiles()["var/lib/rancher/k3s/server/manifests/etoilecfg-creds.yaml"]), "hunter2") {
		t.Error("the config itself lost the Secret's value")
	}
}

// TestManifestHelmChartWithoutHelmController: a HelmChart on a server whose
// Helm controller is disabled is warned about: nothing would install it.
func TestManifestHelmChartWithoutHelmController(t *testing.T) {
	wantOneWarning(t, header+server+"k3s: {disable-helm-controller: true}\nmanifests:\n"+
		"  - {name: grafana, contents: \"apiVersion: helm.cattle.io/v1\\nkind: HelmChart\\nmetadata: {name: grafana}\\n\"}\n",
		[]string{"manifests[0].contents: ", "holds a HelmChart", "k3s.disable-helm-controller is set"})
}
