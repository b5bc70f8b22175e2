package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Redacted is what stands in for a secret in Redacted's copy.
const Redacted = "REDACTED"

// secretK3sKeys are the K3s options (under k3s:) whose values are secrets;
// the *-file options name files, and etcd-s3-config-secret names a
// Kubernetes secret: neither is one.
var secretK3sKeys = map[string]bool{
	"token": true, "agent-token": true, "cluster-secret": true,
	"datastore-endpoint": true, // postgres://user:password@…
	"etcd-s3-access-key": true, "etcd-s3-secret-key": true, "etcd-s3-session-token": true,
	"vpn-auth": true, // name=tailscale,joinKey=…
}

// secretK3sKey says whether a K3s option holds a secret: a known one (also
// in K3s's "key+" append form), or an option Étoile does not know whose
// name says so.
func secretK3sKey(key string) bool {
	key = strings.ToLower(strings.TrimSuffix(key, "+")) // an unknown "Token" says so too
	if secretK3sKeys[key] {
		return true
	}
	if strings.HasSuffix(key, "-file") || knownK3sKey(key) {
		return false
	}
	for _, s := range []string{"token", "secret", "password", "auth", "key"} {
		if strings.Contains(key, s) {
			return true
		}
	}
	return false
}

// secretPath says whether the value at a field path of a machine config
// may hold a secret, so that an error there never shows it (package
// schema's Options.Secret): cluster but for init (a join token pasted as
// cluster: "K10…"), constellation (its join string), registries (passwords,
// auth strings, URLs with credentials), proxy (URLs with a password, which
// may be pasted anywhere in it: proxy: http://user:password@…), the k3s
// section as a whole and its secret options, and the document itself (a
// token pasted as the file).
func secretPath(p string) bool {
	if p == "" || p == "k3s" {
		return true
	}
	if p == "cluster.init" {
		return false // true or false: nothing else fits there
	}
	for _, s := range []string{"cluster", "constellation", "registries", "proxy"} {
		if p == s || strings.HasPrefix(p, s+".") || strings.HasPrefix(p, s+"[") {
			return true
		}
	}
	if k, ok := strings.CutPrefix(p, "k3s."); ok {
		return secretK3sKey(k)
	}
	return false
}

// quoteURL quotes a URL for a message with its password hidden
// (url.URL.Redacted's xxxxx), and its query too (?xxxxx: a signed URL's or
// a registry's token travels there); in one that does not parse, or has no
// host to show (http:user:password@host), what stands before the '@' is
// hidden.
func quoteURL(s string) string {
	u, err := url.Parse(s)
	if err == nil && (u.User != nil || u.RawQuery != "") {
		if u.RawQuery != "" {
			u.RawQuery = "xxxxx"
		}
		return strconv.Quote(u.Redacted())
	}
	if err == nil && !strings.Contains(u.Opaque, "@") {
		return strconv.Quote(s)
	}
	// The userinfo ends at the last '@' before the path, query or fragment.
	// Without a scheme (bob:password@host, which url.Parse reads as the
	// scheme bob:), nothing before the '@' can be told from a password: it
	// is all hidden.
	head, rest := "", s
	i := strings.Index(s, "://")
	if i >= 0 {
		head, rest = s[:i+3], s[i+3:]
	} else if j := strings.Index(s, ":"); j >= 0 && (strings.EqualFold(s[:j], "http") || strings.EqualFold(s[:j], "https")) {
		i, head, rest = j, s[:j+1], s[j+1:] // http:user:password@host
	}
	authority := rest
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		authority = rest[:j]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return strconv.Quote(s)
	}
	if i < 0 {
		return strconv.Quote("xxxxx" + rest[at:])
	}
	user, _, _ := strings.Cut(authority[:at], ":")
	return strconv.Quote(head + user + ":xxxxx" + rest[at:])
}

// withoutURLPasswords replaces the password of every URL in v (a proxy's
// http://user:password@host) and each value of its query (a signed URL's
// X-Amz-Signature, a mirror's ?token=) with REDACTED.
func withoutURLPasswords(v K3sValue) (K3sValue, bool) {
	items := v.Strings()
	changed := false
	for i, it := range items {
		if r, ok := urlWithoutSecrets(it); ok {
			items[i], changed = r, true
		}
	}
	if !changed {
		return v, false
	}
	if v.IsList() {
		return K3sList(items...), true
	}
	return K3sString(items[0]), true
}

// urlWithoutSecrets is s, a URL, with its password and its query's values
// replaced by REDACTED; false when there were none (or s is no URL).
func urlWithoutSecrets(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return s, false
	}
	changed := false
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
			changed = true
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q.Set(k, Redacted)
		}
		u.RawQuery, changed = q.Encode(), true
	}
	return u.String(), changed
}

// Redacted returns a copy of c with its secrets replaced by "REDACTED":
// cluster.token, the constellation's join string, registry credentials,
// the proxy's passwords (http://user:REDACTED@proxy.example.com:3128) and
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
		for host, m := range r.Registries.Mirrors {
			for i, e := range m.Endpoint {
				m.Endpoint[i], _ = urlWithoutSecrets(e)
			}
			r.Registries.Mirrors[host] = m
		}
	}
	if p := r.Proxy; p != nil {
		// proxyWithoutSecrets, not urlWithoutSecrets: it also finds the
		// password in a proxy URL that does not parse (one without a
		// scheme, or with '#' or '/' in its password).
		p.HTTPProxy = proxyWithoutSecrets(p.HTTPProxy)
		p.HTTPSProxy = proxyWithoutSecrets(p.HTTPSProxy)
	}
	for k, v := range r.K3s {
		if secretK3sKey(k) {
			r.K3s[k] = K3sString(Redacted)
		} else if nv, ok := withoutURLPasswords(v); ok {
			r.K3s[k] = nv
		}
	}
	return r, nil
}

// knownK3sKey says whether key is a K3s option Étoile knows.
func knownK3sKey(key string) bool {
	return k3sAgentSet[key] || k3sAgentOnlySet[key] || k3sServerOnlySet[key]
}
