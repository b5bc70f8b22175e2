package config

import (
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
	r, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"supersecret", "K10abc", "s3cr3t", "hunter2", "AbCdEfGhIjKlMnOp", "tskey-abc", "pr0xypass", "SIGSECRET", "QUERYSECRET"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("the redacted config shows %q:\n%s", secret, out)
		}
	}
	for _, kept := range []string{"hostname: edge-1", "server: https://10.0.0.1:6443", "username: bob", "key_file: /etc/ssl/reg.key",
		"agent-token-file: /etc/agent-token", "node-ip: 10.0.0.5", "token: REDACTED", "password: REDACTED", "etcd-s3-secret-key+: REDACTED", "vpn-auth: REDACTED", "join: REDACTED",
		"etcd-s3-proxy: http://proxyuser:REDACTED@proxy.example.com:3128", "https://s3.example.com/bucket?X-Amz-Signature=REDACTED",
		"https://mirror.example.com/v2?token=REDACTED"} {
		if !strings.Contains(string(out), kept) {
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
