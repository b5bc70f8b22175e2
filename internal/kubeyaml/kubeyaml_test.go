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

// TestCheckAsK3sReads: what K3s's deploy controller (its document splitting,
// YAML 1.1 and its JSON reading) accepts and refuses, kubeyaml too.
func TestCheckAsK3sReads(t *testing.T) {
	const ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n"
	for _, tt := range []struct{ name, manifest, want string }{
		{"JSON", `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}` + "\n", ""},
		{"a flow mapping that is not JSON", "{apiVersion: v1, kind: Namespace, metadata: {name: a}}\n", "document 1 (line 1) begins with {, and K3s then reads it as JSON"},
		{"a document on the separator's line", ns + "--- {apiVersion: v1, kind: Namespace, metadata: {name: b}}\n", "manifest line 5: \"--- {apiVersion"},
		{"a comment on the separator's line", ns + "--- # the second\n" + ns, ""},
		{"empty documents", "---\n# nothing\n---\n" + ns + "---\n\n", ""},
		{"a null document", ns + "---\n~\n", "manifest document 2 (line 6) is null (~)"},
		{"a key given twice", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\nmetadata: {labels: {x: y}}\n", "not YAML"},
		{"a YAML 1.1 boolean name", "apiVersion: v1\nkind: Namespace\nmetadata: {name: on}\n", `name "on" is a boolean as K3s reads YAML (1.1): quote it`},
		{"a quoted one", "apiVersion: v1\nkind: Namespace\nmetadata: {name: \"on\"}\n", ""},
		{"a date for a name", "apiVersion: v1\nkind: Namespace\nmetadata: {name: 2024-01-01}\n", ""},
		{"merge keys", "base: &b {apiVersion: v1, kind: Namespace}\n<<: *b\nmetadata: {name: a}\n", ""},
		{"an alias for metadata", "x: &m {name: a}\napiVersion: v1\nkind: Namespace\nmetadata: *m\n", ""},
		{"items without a List kind", "apiVersion: v1\nkind: Things\nitems:\n- " + strings.ReplaceAll(strings.TrimSuffix(ns, "\n"), "\n", "\n  ") + "\n", ""},
		{"the line of a later document's error", ns + "---\napiVersion: v1\nkind: Namespace\nmetadata: [\n", "manifest document 2 is not YAML: yaml: line 8"},
	} {
		err := Check(tt.manifest)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestRedactHelmValues: a HelmChart's values (valuesContent, set) are not
// shown; a Secret written with a merge key or an alias is not shown at all.
func TestRedactHelmValues(t *testing.T) {
	chart := "apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata: {name: db}\nspec:\n  chart: postgresql\n  set: {auth.postgresPassword: hunter2}\n  valuesContent: |\n    auth: {password: hunter3}\n"
	got, found := RedactSecrets(chart, "REDACTED")
	if !found || strings.Contains(got, "hunter") || !strings.Contains(got, "chart: postgresql") || !strings.Contains(got, "valuesContent: REDACTED") {
		t.Errorf("a HelmChart: %v\n%s", found, got)
	}
	for _, secret := range []string{
		"base: &b {password: hunter2}\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: *b\n",
		"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n<<: {stringData: {password: hunter2}}\n",
	} {
		if got, found := RedactSecrets(secret, "REDACTED"); !found || strings.Contains(got, "hunter2") {
			t.Errorf("%q: %v\n%s", secret, found, got)
		}
	}
}
