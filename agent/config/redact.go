package config

import "fmt"

// Redacted is what stands in for a secret in Redacted's copy.
const Redacted = "REDACTED"

// secretK3sKeys are the K3s options (under k3s:) whose values are secrets;
// the *-file options name files, and etcd-s3-config-secret names a
// Kubernetes secret: neither is one.
var secretK3sKeys = map[string]bool{
	"token": true, "agent-token": true, "cluster-secret": true,
	"datastore-endpoint": true, // postgres://user:password@…
	"etcd-s3-access-key": true, "etcd-s3-secret-key": true, "etcd-s3-session-token": true,
}

// Redacted returns a copy of c with its secrets replaced by "REDACTED":
// cluster.token, the constellation's join string, registry credentials and
// K3s options that hold a token, a password, a secret key or a datastore
// endpoint (which may carry credentials). What it shows is safe to paste
// into a ticket; file paths (a key file's) are not secrets and stay.
func (c *MachineConfig) Redacted() (*MachineConfig, error) {
	data, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	r, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("copying the machine config: %w", err)
	}
	if r.Cluster != nil && r.Cluster.Token != "" {
		r.Cluster.Token = Redacted
	}
	if r.Constellation != nil && r.Constellation.Join != "" {
		r.Constellation.Join = Redacted
	}
	if r.Registries != nil {
		for host, rc := range r.Registries.Configs {
			if a := rc.Auth; a != nil {
				for _, f := range []*string{&a.Password, &a.Auth, &a.IdentityToken} {
					if *f != "" {
						*f = Redacted
					}
				}
			}
			r.Registries.Configs[host] = rc
		}
	}
	for k := range r.K3s {
		if secretK3sKeys[k] {
			r.K3s[k] = K3sString(Redacted)
		}
	}
	return r, nil
}
