package config

import (
	"strings"
	"testing"
)

// TestErrorsNeverShowSecrets checks that a config whose secrets stand where
// another kind of value is expected (a join token pasted as cluster:, a
// registry's user:password as its auth:) or in a URL with credentials is
// refused with the field's path and the kind of value, never the secret:
// the messages reach every console, the status's k3s reason and the answer
// of `etoile-agent config show`, which is meant to be pasted into tickets.
func TestErrorsNeverShowSecrets(t *testing.T) {
	for _, tc := range []struct {
		name, body, secret string
		want               []string // in the error: the path, what was expected, the kind found
	}{
		{"cluster as a token", "role: agent\ncluster: \"K10SECRET::server:abc\"\n", "K10SECRET",
			[]string{"cluster (line 4): expected a mapping, got a string (not shown"}},
		{"constellation as a join string", server + "constellation: \"etoile://hub.example:7443?token=id.SECRETJOIN\"\n", "SECRETJOIN",
			[]string{"constellation (line 5): expected a mapping, got a string"}},
		{"registry auth as user:password", server + "registries:\n  configs:\n    r.example:\n      auth: \"bob:SECRETPW\"\n", "SECRETPW",
			[]string{"registries.configs.r.example.auth (line 8): expected a mapping, got a string"}},
		{"registries as a URL", server + "registries: \"user:SECRETPW@host\"\n", "SECRETPW",
			[]string{"registries (line 5): expected a mapping, got a string"}},
		{"registry tls as key data", server + "registries:\n  configs:\n    r.example:\n      tls: \"SECRETKEYDATA\"\n", "SECRETKEYDATA",
			[]string{"registries.configs.r.example.tls (line 8): expected a mapping, got a string"}},
		{"mirror endpoint a string", server + "registries: {mirrors: {docker.io: {endpoint: 'https://bob:SECRETPW@m.example'}}}\n", "SECRETPW",
			[]string{"registries.mirrors.docker.io.endpoint (line 5): expected a list, got a string"}},
		{"k3s as a string", server + "k3s: \"datastore-endpoint=postgres://u:SECRETPW@h\"\n", "SECRETPW",
			[]string{"k3s (line 5): expected a mapping, got a string"}},
		{"document is a token", "", "", nil}, // filled below
		{"mirror endpoint with credentials", server + "registries: {mirrors: {docker.io: {endpoint: ['https://bob:SECRETPW@m.example']}}}\n", "SECRETPW",
			[]string{`"https://bob:xxxxx@m.example" has credentials in the URL`, "registries.configs.m.example.auth"}},
		{"mirror endpoint user:password@host without a scheme", server + "registries: {mirrors: {docker.io: {endpoint: ['bob:PWLEAK@m.example']}}}\n", "PWLEAK",
			[]string{`"xxxxx@m.example" is not a URL`}},
		{"registry config keyed by a URL with credentials", server + "registries: {configs: {'http://u:PWREG@reg.example': {tls: {insecure_skip_verify: true}}}}\n", "PWREG",
			[]string{`registries.configs.http://xxxxx@reg.example: "http://xxxxx@reg.example": use the registry host`}},
		{"registry config keyed by user:password@host", server + "registries: {configs: {'u:PWREG@reg.example': {tls: {insecure_skip_verify: true}}}}\n", "PWREG",
			[]string{`registries.configs.xxxxx@reg.example: "xxxxx@reg.example": use the registry host`}},
		{"mirror keyed by user:password@host", server + "registries: {mirrors: {'u:PWREG@docker.io': {endpoint: ['https://m.example']}}}\n", "PWREG",
			[]string{`registries.mirrors.xxxxx@docker.io: "xxxxx@docker.io" is not a registry name`}},
		{"mirror endpoint with a token in its query", server + "registries: {mirrors: {docker.io: {endpoint: ['ftp://m.example/v2?token=SECRETQ']}}}\n", "SECRETQ",
			[]string{`"ftp://m.example/v2?xxxxx": use an https:// or http:// URL`}},
		{"mirror endpoint with credentials and a bad port", server + "registries: {mirrors: {docker.io: {endpoint: ['https://bob:SECRETPW@m.example:x']}}}\n", "SECRETPW",
			[]string{`"https://bob:xxxxx@m.example:x" is not a URL`}},
		{"server URL with credentials", "role: agent\ncluster: {server: 'https://user:SECRETPW@cp.example:6443', token: t}\n", "SECRETPW",
			[]string{`cluster.server: "https://cp.example:6443" has a user name or password (not shown)`, "K3s wants only https://HOST:PORT"}},
		{"init with a server with credentials", "role: server\ncluster: {init: true, server: 'https://user:SECRETPW@cp.example:6443', token: t}\n", "SECRETPW",
			[]string{`server ("https://cp.example:6443")`}},
		{"join without token, server with credentials", "role: agent\ncluster: {server: 'https://user:SECRETPW@cp.example:6443'}\n", "SECRETPW",
			[]string{"cluster.token: missing: a node joining https://cp.example:6443 needs"}},
		// A join token pasted as the server (and the server as the
		// token), or a token carried in the server URL's query: the
		// cluster section's values are shown only as far as they are
		// a URL's scheme, host and path.
		{"token and server swapped", "role: agent\ncluster: {server: \"K10c1d2e3f4::server:0123456789abcdefSECRET\", token: \"https://10.0.0.1:6443\"}\n", "SECRET",
			[]string{"cluster.server: looks like a K3s token (not shown): did you swap server and token?", "cluster.token: is a URL (not shown): did you swap server and token?"}},
		{"token without K10 as the server", "role: agent\ncluster: {server: \"0123456789abcdefSECRET\", token: t}\n", "SECRET",
			[]string{"cluster.server: is not a URL (not shown"}},
		{"token with :: alone as the server", "role: agent\ncluster: {server: \"abc::server:SECRET\", token: t}\n", "SECRET",
			[]string{"cluster.server: looks like a K3s token"}},
		{"init with a token as the server", "role: server\ncluster: {init: true, server: \"K10abc::server:SECRET\", token: t}\n", "SECRET",
			[]string{"server (a value not shown) joins an existing one", "cluster.server: looks like a K3s token"}},
		{"join without token, token as the server", "role: agent\ncluster: {server: \"K10abc::server:SECRET\"}\n", "SECRET",
			[]string{"cluster.token: missing: a node joining the cluster needs"}},
		{"server URL with a token in its query", "role: agent\ncluster: {server: 'https://10.0.0.1:6443/?token=SECRETQ', token: t}\n", "SECRETQ",
			[]string{`cluster.server: "https://10.0.0.1:6443/" has a query (not shown): K3s wants only https://HOST:PORT: remove it`}},
		{"server URL with a fragment", "role: agent\ncluster: {server: 'https://10.0.0.1:6443#SECRETF', token: t}\n", "SECRETF",
			[]string{`cluster.server: "https://10.0.0.1:6443" has a fragment (not shown)`}},
		{"server URL not https with a query", "role: agent\ncluster: {server: 'http://10.0.0.1:6443?token=SECRETQ', token: t}\n", "SECRETQ",
			[]string{`cluster.server: "http://10.0.0.1:6443" must use https`}},
		{"server URL with a bad escape in its query", "role: agent\ncluster: {server: 'https://10.0.0.1:6443/?t=SECRET%zz', token: t}\n", "SECRET",
			[]string{`cluster.server: "https://10.0.0.1:6443/" has a query (not shown)`}},
		{"server URL with credentials and a bad port", "role: agent\ncluster: {server: 'https://u:SECRETPW@cp.example:x', token: t}\n", "SECRETPW",
			[]string{`cluster.server: "https://cp.example:x" is not a URL (invalid port ":x" after host)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\n" + tc.body
			if tc.name == "document is a token" {
				doc, tc.secret = "K10SECRETDOC::server:abc\n", "SECRETDOC"
				tc.want = []string{"expected a mapping with apiVersion and kind, got a string (not shown"}
			}
			_, _, err := Check([]byte(doc))
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Errorf("the error shows the secret %q:\n%v", tc.secret, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
		})
	}
}

// TestErrorsStillShowOrdinaryValues: only values that may be secrets are
// hidden; a mistyped number elsewhere is still shown, as the user needs it.
func TestErrorsStillShowOrdinaryValues(t *testing.T) {
	_, _, err := Check([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: yes-please}\nnetwork: {interfaces: [{name: eth0, dhcp: true, vlan: ten}]}\n"))
	for _, w := range []string{`cluster.init (line 4): expected true or false, got "yes-please"`, `got "ten"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
}

func TestQuoteURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://cp.example:6443":        `"https://cp.example:6443"`,
		"https://u:pw@cp.example:6443":   `"https://u:xxxxx@cp.example:6443"`,
		"https://u:pw@cp.example:x/path": `"https://u:xxxxx@cp.example:x/path"`,
		"http:u:pw@cp.example":           `"http:u:xxxxx@cp.example"`,
		"%zz":                            `"%zz"`,
	} {
		if got := quoteURL(in); got != want {
			t.Errorf("quoteURL(%q) = %s, want %s", in, got, want)
		}
	}
}
