package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/etoile-os/etoile/internal/kubeyaml"
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
// section as a whole and its secret options, ca_certificates (where a
// private key may be pasted by mistake), and the document itself (a token
// pasted as the file).
func secretPath(p string) bool {
	if p == "" || p == "k3s" {
		return true
	}
	if p == "cluster.init" {
		return false // true or false: nothing else fits there
	}
	for _, s := range []string{"cluster", "constellation", "registries", "proxy", "ca_certificates"} {
		if p == s || strings.HasPrefix(p, s+".") || strings.HasPrefix(p, s+"[") {
			return true
		}
	}
	if k, ok := strings.CutPrefix(p, "k3s."); ok {
		return secretK3sKey(k)
	}
	return false
}

// urlSecrets finds where s, a URL or what was written for one, may hold a
// secret: its password and its query (after the '?'), each as s[from:to],
// or from -1 when there is none. authority is where the authority starts
// (after scheme://), or -1 when s has no scheme.
//
// It does not ask url.Parse, which ends the authority at the first '/',
// '?' or '#': it reads https://user:pa#ss@host as the host user, the port
// pa and a fragment, and https://user:p/ss@host as a path, so that
// url.URL.Redacted would show the password. The userinfo ends at the last
// '@' instead, as the user meant it, even when the password holds '/',
// '?', '#' or '@'. A URL whose path, query or fragment holds an '@'
// (https://host:5000/a@b) has more hidden than it needs, never less: the
// two cannot be told apart. Without a scheme (user:password@host), nothing
// before the '@' can be told from a password, and all of it is hidden. A
// user name alone (https://user@host) stays, as url.URL.Redacted leaves it.
func urlSecrets(s string, authority int) (pass, query [2]int) {
	pass, query = [2]int{-1, -1}, [2]int{-1, -1}
	from := max(authority, 0)
	if at := strings.LastIndex(s[from:], "@"); at >= 0 {
		at += from
		if authority < 0 {
			pass, from = [2]int{0, at}, at+1
		} else if colon := strings.Index(s[from:at], ":"); colon >= 0 {
			pass, from = [2]int{from + colon + 1, at}, at+1
		}
		// With no password, the '@' may as well be in the query
		// (https://host/?token=abc@x), which is looked for from the
		// authority on.
	}
	// The first '?' even after a '#' (https://user#x@host?token=abc reads
	// as a fragment to url.Parse): a fragment with a '?' shows less.
	if q := strings.Index(s[from:], "?"); q >= 0 {
		q += from + 1
		end := len(s)
		if h := strings.Index(s[q:], "#"); h >= 0 {
			end = q + h
		}
		query = [2]int{q, end}
	}
	return pass, query
}

// urlMasked is s with its password (urlSecrets's) replaced by mask and
// its query by what queryMasked makes of it, and whether it had either.
func urlMasked(s string, authority int, mask string, queryMasked func(string) string) (string, bool) {
	pass, query := urlSecrets(s, authority)
	if query[0] >= 0 {
		s = s[:query[0]] + queryMasked(s[query[0]:query[1]]) + s[query[1]:]
	}
	if pass[0] >= 0 { // before the query: its place has not moved
		s = s[:pass[0]] + mask + s[pass[1]:]
	}
	return s, pass[0] >= 0 || query[0] >= 0
}

// schemeEnd is where the authority of s starts, after scheme://, or -1
// when s has no scheme. What stands before the "://" is taken for the
// scheme (oidc-issuer-url=https://… too, as K3s's component flags write
// it) unless it holds a ':' or '@', which only userinfo would: in
// user:pa://ss@host, the "://" is the password's.
func schemeEnd(s string) int {
	i := strings.Index(s, "://")
	if i < 0 || strings.ContainsAny(s[:i], ":@") {
		return -1
	}
	return i + 3
}

// quoteURL quotes a URL for a message with its password and its query
// shown as xxxxx (a signed URL's or a registry's token travels in the
// query), found as urlSecrets finds them: whatever the password holds, it
// is not shown. In http:user:password@host (no "//"), the user name is
// shown as in a URL; in a value with no scheme, all before the '@' is
// hidden.
func quoteURL(s string) string {
	authority := schemeEnd(s)
	if scheme, _, ok := strings.Cut(s, ":"); authority < 0 && ok && (strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https")) {
		authority = len(scheme) + 1
	}
	shown, _ := urlMasked(s, authority, "xxxxx", func(string) string { return "xxxxx" })
	return strconv.Quote(shown)
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
// replaced by REDACTED (the names stay: ?token=REDACTED), found as
// urlSecrets finds them; false when there were none, or s is no URL: it
// has no scheme, nor user:password@ before a host (a K3s option's value,
// such as a kubelet-arg, is left as it is).
func urlWithoutSecrets(s string) (string, bool) {
	authority := schemeEnd(s)
	if at := strings.LastIndex(s, "@"); authority < 0 && (at < 0 || !strings.Contains(s[:at], ":")) {
		return s, false
	}
	return urlMasked(s, authority, Redacted, func(q string) string {
		params := strings.Split(q, "&")
		for i, p := range params {
			if name, _, ok := strings.Cut(p, "="); ok {
				params[i] = name + "=" + Redacted
			} else if p != "" {
				params[i] = Redacted // ?TOKEN: no name, all value
			}
		}
		return strings.Join(params, "&")
	})
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
			if t := rc.TLS; t != nil && t.Key != "" {
				t.Key = Redacted
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
		// proxyWithoutSecrets, not urlWithoutSecrets: it hides the whole
		// query (a proxy has none) and a proxy written without its
		// scheme all the same (bob@proxy:3128).
		p.HTTPProxy = proxyWithoutSecrets(p.HTTPProxy)
		p.HTTPSProxy = proxyWithoutSecrets(p.HTTPSProxy)
	}
	for i, m := range r.Manifests {
		// A Secret's values and a HelmChart's; the rest of the
		// objects as they are.
		r.Manifests[i].Contents, _ = kubeyaml.RedactSecrets(m.Contents, Redacted)
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
