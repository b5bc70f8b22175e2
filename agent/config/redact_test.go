package config

import (
	"strconv"
	"strings"
	"testing"
)

func TestRedacted(t *testing.T) {
	c, err := Parse([]byte(`apiVersion: etoile.io/v1alpha1
kind: MachineConfig
hostname: edge-1
role: agent
cluster:
  server: https://10.0.0.1:6443
  token: K10abc::server:supersecret
k3s:
  etcd-s3-secret-key+: s3cr3t
  vpn-auth: name=tailscale,joinKey=tskey-abc
  etcd-s3-proxy: http://proxyuser:pr0xypass@proxy.example.com:3128
  etcd-s3-endpoint: https://s3.example.com/bucket?X-Amz-Signature=SIGSECRET
  agent-token-file: /etc/agent-token
  node-ip: 10.0.0.5
registries:
  mirrors:
    docker.io:
      endpoint: ["https://mirror.example.com/v2?token=QUERYSECRET"]
  configs:
    registry.example.com:
      auth: {username: bob, password: hunter2}
      tls: {cert_file: /etc/ssl/reg.crt, key_file: /etc/ssl/reg.key}
constellation:
  join: etoile://hub.example.com:8443?token=0123456789abcdef.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcde&ca=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
`))
	if err != nil {
		t.Fatal(err)
	}
	out := redactedYAML(t, c)
	for _, secret := range []string{"supersecret", "K10abc", "s3cr3t", "hunter2", "AbCdEfGhIjKlMnOp", "tskey-abc", "pr0xypass", "SIGSECRET", "QUERYSECRET"} {
		if strings.Contains(out, secret) {
			t.Errorf("the redacted config shows %q:\n%s", secret, out)
		}
	}
	for _, kept := range []string{"hostname: edge-1", "server: https://10.0.0.1:6443", "username: bob", "key_file: /etc/ssl/reg.key",
		"agent-token-file: /etc/agent-token", "node-ip: 10.0.0.5", "token: REDACTED", "password: REDACTED", "etcd-s3-secret-key+: REDACTED", "vpn-auth: REDACTED", "join: REDACTED",
		"etcd-s3-proxy: http://proxyuser:REDACTED@proxy.example.com:3128", "https://s3.example.com/bucket?X-Amz-Signature=REDACTED",
		"https://mirror.example.com/v2?token=REDACTED"} {
		if !strings.Contains(out, kept) {
			t.Errorf("the redacted config lacks %q:\n%s", kept, out)
		}
	}
	// The original is untouched.
	if c.Cluster.Token != "K10abc::server:supersecret" || c.Registries.Configs["registry.example.com"].Auth.Password != "hunter2" {
		t.Error("Redacted changed the config it copied")
	}
}

func TestSecretK3sKey(t *testing.T) {
	for key, want := range map[string]bool{
		"token": true, "agent-token+": true, "datastore-endpoint": true, "vpn-auth": true, "etcd-s3-secret-key": true,
		"agent-token-file": false, "token-file": false, "etcd-s3-config-secret": false, "secrets-encryption": false, "node-ip": false,
		// Options Étoile does not know, named like secrets.
		"my-future-auth-key": true, "some-password": true, "Token": true, "some-password-file": false, "flannel-iface": false,
	} {
		if got := secretK3sKey(key); got != want {
			t.Errorf("secretK3sKey(%q) = %v, want %v", key, got, want)
		}
	}
}

// specialPasswords are passwords that url.Parse reads as something else: a
// '#' starts a fragment, a '/' a path and a '?' a query (so that the
// password is read as the host's port, or the path), and an '@' is read
// as the end of the userinfo unless the last one is taken.
var specialPasswords = []string{"pa#ss", "p/ss", "p?ss", "p@ss"}

// TestURLPasswordsHidden: quoteURL, urlWithoutSecrets and proxyMasked find
// a password whatever it holds, the same way, and show the rest of the URL.
func TestURLPasswordsHidden(t *testing.T) {
	// Passwords that start with digits are worse: https://bob:12#34@host
	// parses, with the host bob and the port 12, and no password at all.
	for _, pw := range append(specialPasswords, "12#34", "1/x", "1?x", "1@x", "p://ss") {
		for _, tc := range []struct{ in, quoted, redacted string }{
			{"https://bob:" + pw + "@mirror.example.com:5000/v2", `"https://bob:xxxxx@mirror.example.com:5000/v2"`, "https://bob:REDACTED@mirror.example.com:5000/v2"},
			{"https://bob:" + pw + "@mirror.example.com/v2?token=abc#top", `"https://bob:xxxxx@mirror.example.com/v2?xxxxx#top"`, "https://bob:REDACTED@mirror.example.com/v2?token=REDACTED#top"},
			{"bob:" + pw + "@ntp.example.com", `"xxxxx@ntp.example.com"`, "REDACTED@ntp.example.com"},
			{"http:bob:" + pw + "@cp.example.com", `"http:bob:xxxxx@cp.example.com"`, "REDACTED@cp.example.com"},
			// A URL in a K3s component flag.
			{"oidc-issuer-url=https://bob:" + pw + "@id.example.com", `"oidc-issuer-url=https://bob:xxxxx@id.example.com"`, "oidc-issuer-url=https://bob:REDACTED@id.example.com"},
		} {
			if got := quoteURL(tc.in); got != tc.quoted {
				t.Errorf("quoteURL(%q) = %s, want %s", tc.in, got, tc.quoted)
			}
			if got, ok := urlWithoutSecrets(tc.in); got != tc.redacted || !ok {
				t.Errorf("urlWithoutSecrets(%q) = %q, %v, want %q, true", tc.in, got, ok, tc.redacted)
			}
			for _, mask := range []string{"xxxxx", Redacted} {
				if got := proxyMasked(tc.in, mask); strings.Contains(got, pw) {
					t.Errorf("proxyMasked(%q, %q) = %q, which shows the password", tc.in, mask, got)
				}
			}
		}
	}
	// An '@' in the query is no userinfo's: the query is hidden all the
	// same.
	if got := quoteURL("https://mirror.example.com/v2?token=abc@def"); got != `"https://mirror.example.com/v2?xxxxx"` {
		t.Errorf("quoteURL shows a query with an '@': %s", got)
	}
	// A query item without a name is all value.
	if got, _ := urlWithoutSecrets("https://s3.example.com/b?X-Amz-Signature=S1&TOKEN2&&b="); got != "https://s3.example.com/b?X-Amz-Signature=REDACTED&REDACTED&&b=REDACTED" {
		t.Errorf("urlWithoutSecrets = %q", got)
	}
}

// TestURLsStillShown: what holds no password or query is shown as written,
// and Redacted leaves K3s values that are no URLs alone.
func TestURLsStillShown(t *testing.T) {
	for _, s := range []string{"https://mirror.example.com:5000/v2", "http://10.0.0.9:5000", "https://[2001:db8::1]:5000/v2",
		"https://bob@mirror.example.com", "https://mirror.example.com/#top", "pool.ntp.org", "[2001:db8::1]:123", "%zz", ""} {
		if got := quoteURL(s); got != strconv.Quote(s) {
			t.Errorf("quoteURL(%q) = %s, want it as written", s, got)
		}
	}
	for _, s := range []string{"https://mirror.example.com:5000/v2", "https://bob@mirror.example.com", "10.0.0.5", "max-pods=200",
		"owner=bob@example.com", "/etc/rancher/k3s/audit.yaml", "%zz"} {
		if got, ok := urlWithoutSecrets(s); got != s || ok {
			t.Errorf("urlWithoutSecrets(%q) = %q, %v, want it unchanged", s, got, ok)
		}
	}
}

// TestURLPasswordsNotInErrorsOrRedacted: each place a URL is quoted or
// redacted, with a password url.Parse misreads: neither the validation
// error (nor its warnings), nor Redacted's error for a config that does not
// validate, nor Redacted's YAML for one that does, shows it.
func TestURLPasswordsNotInErrorsOrRedacted(t *testing.T) {
	base := header + "role: server\ncluster: {init: true}\n"
	for _, pw := range specialPasswords {
		for _, tc := range []struct {
			name string
			body string               // after base
			set  func(*MachineConfig) // the same, on a config that validated, for Redacted
		}{
			{"mirror endpoint", "registries: {mirrors: {docker.io: {endpoint: ['https://bob:" + pw + "@mirror.example.com']}}}\n",
				func(c *MachineConfig) {
					c.Registries = &Registries{Mirrors: map[string]Mirror{"docker.io": {Endpoint: []string{"https://bob:" + pw + "@mirror.example.com"}}}}
				}},
			{"endpoint of a registry without auth", "registries: {mirrors: {registry.example.com: {endpoint: ['https://bob:" + pw + "@registry.example.com:5000']}}, configs: {registry.example.com: {tls: {insecure_skip_verify: true}}}}\n",
				func(c *MachineConfig) {
					c.Registries = &Registries{
						Mirrors: map[string]Mirror{"registry.example.com": {Endpoint: []string{"https://bob:" + pw + "@registry.example.com:5000"}}},
						Configs: map[string]RegistryConfig{"registry.example.com": {TLS: &RegistryTLS{InsecureSkipVerify: true}}},
					}
				}},
			{"registry config key", "registries: {configs: {'https://bob:" + pw + "@registry.example.com': {}}}\n",
				func(c *MachineConfig) {
					c.Registries = &Registries{Configs: map[string]RegistryConfig{"https://bob:" + pw + "@registry.example.com": {}}}
				}},
			{"time server URL", "time: {servers: ['ntp://bob:" + pw + "@ntp.example.com']}\n",
				func(c *MachineConfig) { c.Time = &Time{Servers: []string{"ntp://bob:" + pw + "@ntp.example.com"}} }},
			{"time server without scheme", "time: {servers: ['bob:" + pw + "@ntp.example.com']}\n",
				func(c *MachineConfig) { c.Time = &Time{Servers: []string{"bob:" + pw + "@ntp.example.com"}} }},
			{"K3s option", "k3s: {etcd-s3-proxy: 'http://bob:" + pw + "@proxy.example.com:3128'}\n",
				func(c *MachineConfig) {
					c.K3s = map[string]K3sValue{"etcd-s3-proxy": K3sString("http://bob:" + pw + "@proxy.example.com:3128")}
				}},
			{"K3s component flag", "k3s: {kube-apiserver-arg: ['oidc-issuer-url=https://bob:" + pw + "@id.example.com']}\n",
				func(c *MachineConfig) {
					c.K3s = map[string]K3sValue{"kube-apiserver-arg": K3sList("oidc-issuer-url=https://bob:" + pw + "@id.example.com")}
				}},
		} {
			t.Run(tc.name+" "+pw, func(t *testing.T) {
				_, warns, err := Check([]byte(base + tc.body))
				if err != nil && strings.Contains(err.Error(), pw) {
					t.Errorf("the error shows the password %q:\n%v", pw, err)
				}
				if w := strings.Join(warns, "\n"); strings.Contains(w, pw) {
					t.Errorf("a warning shows the password %q:\n%s", pw, w)
				}
				c, perr := Parse([]byte(base))
				if perr != nil {
					t.Fatal(perr)
				}
				tc.set(c)
				r, rerr := c.Redacted()
				switch {
				case rerr != nil && err == nil:
					t.Fatalf("Redacted refused a config that validates: %v", rerr)
				case rerr != nil:
					if strings.Contains(rerr.Error(), pw) {
						t.Errorf("Redacted's error shows the password %q:\n%v", pw, rerr)
					}
				default:
					out, merr := r.Marshal()
					if merr != nil {
						t.Fatal(merr)
					}
					if strings.Contains(string(out), pw) {
						t.Errorf("the redacted config shows the password %q:\n%s", pw, out)
					}
					if !strings.Contains(string(out), "bob:REDACTED@") {
						t.Errorf("the redacted config lacks bob:REDACTED@:\n%s", out)
					}
				}
			})
		}
	}
}

// TestMirrorPasswordsThatParse: a password that url.Parse reads as the
// host's port (https://bob:12#34@mirror, the host bob, the port 12) is
// hidden all the same: in the plain-http warning and in Redacted, or in
// the error should validation refuse the endpoint for its credentials.
func TestMirrorPasswordsThatParse(t *testing.T) {
	for _, pw := range []string{"12#34", "12/34", "12?34"} {
		// The auth for the host url.Parse sees, bob:12, for the warning.
		doc := header + "role: server\ncluster: {init: true}\nregistries: {mirrors: {docker.io: {endpoint: ['http://bob:" + pw +
			"@mirror.example.com']}}, configs: {'bob:12': {auth: {username: u, password: p}}}}\n"
		c, warns, err := Check([]byte(doc))
		if err != nil {
			if strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), `"http://bob:xxxxx@mirror.example.com"`) {
				t.Errorf("%s: the error shows the password, or not the URL:\n%v", pw, err)
			}
			continue
		}
		if w := strings.Join(warns, "\n"); strings.Contains(w, pw) || !strings.Contains(w, `"http://bob:xxxxx@mirror.example.com" is plain http`) {
			t.Errorf("%s: the plain-http warning shows the password, or not the URL:\n%s", pw, w)
		}
		out := redactedYAML(t, c)
		if strings.Contains(out, pw) || !strings.Contains(out, "http://bob:REDACTED@mirror.example.com") {
			t.Errorf("%s: the redacted config shows the password, or not the URL:\n%s", pw, out)
		}
	}
}
