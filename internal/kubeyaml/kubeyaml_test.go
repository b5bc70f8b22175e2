package kubeyaml

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	const ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n"
	for _, tt := range []struct{ name, manifest, want string }{
		{"namespace", ns, ""},
		{"two docs and an empty one", ns + "---\n---\napiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: b\n", ""},
		{"a List", "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(ns, "\n", "\n  ") + "\n", ""},
		{"a HelmChartList", "apiVersion: helm.cattle.io/v1\nkind: HelmChartList\nitems:\n- apiVersion: helm.cattle.io/v1\n  kind: HelmChart\n  metadata: {name: b}\n", ""},
		{"not yaml", "a: [", "document 1 is not YAML"},
		{"no kind", "apiVersion: v1\nmetadata:\n  name: a\n", "document 1 (line 1) has no kind"},
		{"no name in the second", ns + "---\napiVersion: v1\nkind: Namespace\n", "document 2 (Namespace, line 6) has no metadata.name"},
		{"a number for a name", "apiVersion: v1\nkind: Namespace\nmetadata: {name: 7}\n", "has no metadata.name"},
		{"a list item without a name", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace}\n", "document 1, item 1 of its List (Namespace, line 4) has no metadata.name"},
		{"items not a list", "apiVersion: v1\nkind: List\nitems: {a: b}\n", "the items of a List are not a list"},
		{"a scalar", "hello\n", "is not a mapping"},
		{"only comments", "# nothing\n", "no Kubernetes object"},
		{"an empty list", "apiVersion: v1\nkind: List\nitems: []\n", "no Kubernetes object"},
	} {
		err := Check(tt.manifest)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestRedactSecrets(t *testing.T) {
	const secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  password: c2VjcmV0\nstringData:\n  token: hunter2\n"
	const ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n"
	got, found := RedactSecrets(ns+"---\n"+secret, "REDACTED")
	if !found || strings.Contains(got, "c2VjcmV0") || strings.Contains(got, "hunter2") ||
		!strings.Contains(got, "password: REDACTED") || !strings.Contains(got, "token: REDACTED") || !strings.Contains(got, "name: a\n---\n") {
		t.Errorf("a Secret beside a Namespace: %v\n%s", found, got)
	}
	if err := Check(got); err != nil {
		t.Errorf("the redacted manifest is no longer one: %v", err)
	}
	list := "apiVersion: v1\nkind: List\nitems:\n  - " + strings.ReplaceAll(strings.TrimSuffix(secret, "\n"), "\n", "\n    ") + "\n"
	if got, found := RedactSecrets(list, "REDACTED"); !found || strings.Contains(got, "hunter2") {
		t.Errorf("a Secret in a List: %v\n%s", found, got)
	}
	for _, m := range []string{ns, "a: ["} {
		if got, found := RedactSecrets(m, "REDACTED"); found || got != m {
			t.Errorf("%q came back as %q, %v", m, got, found)
		}
	}
}

func TestHelmKind(t *testing.T) {
	const ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"
	const chart = "apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata: {name: b}\n"
	for _, tt := range []struct{ manifest, want string }{
		{ns, ""},
		{ns + "---\n" + chart, "HelmChart"},
		{"apiVersion: helm.cattle.io/v1\nkind: HelmChartConfig\nmetadata: {name: traefik}\n", "HelmChartConfig"},
		{"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n- {apiVersion: helm.cattle.io/v1, kind: HelmChart, metadata: {name: b}}\n", "HelmChart"},
		{"a: [", ""},
	} {
		if got := HelmKind(tt.manifest); got != tt.want {
			t.Errorf("HelmKind(%q) = %q, want %q", tt.manifest, got, tt.want)
		}
	}
}
