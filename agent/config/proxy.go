package config

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/net/http/httpproxy"
)

// loopbackNoProxy are the destinations the agent adds to no_proxy: the
// node's own services (K3s's API on 127.0.0.1:6443, containerd's) are
// never reached through the site's proxy.
var loopbackNoProxy = []string{"localhost", "127.0.0.0/8", "::1"}

// Env is the proxy as environment variables for K3s: HTTP_PROXY,
// HTTPS_PROXY and NO_PROXY (the config's entries, then
// localhost,127.0.0.0/8,::1 unless already there), only those set; nil for
// a nil Proxy.
func (p *Proxy) Env() []string {
	if p == nil {
		return nil
	}
	var env []string
	if p.HTTPProxy != "" {
		env = append(env, "HTTP_PROXY="+p.HTTPProxy)
	}
	if p.HTTPSProxy != "" {
		env = append(env, "HTTPS_PROXY="+p.HTTPSProxy)
	}
	return append(env, "NO_PROXY="+p.noProxy())
}

// ProxyFunc is the proxy for the agent's own HTTP clients
// (http.Transport.Proxy), honouring no_proxy and the loopback as Env does;
// nil for a nil Proxy.
func (p *Proxy) ProxyFunc() func(*http.Request) (*url.URL, error) {
	if p == nil {
		return nil
	}
	// httpproxy is what net/http reads the environment with, so the
	// agent decides as K3s and containerd do with Env's variables.
	cfg := httpproxy.Config{HTTPProxy: p.HTTPProxy, HTTPSProxy: p.HTTPSProxy, NoProxy: p.noProxy()}
	f := cfg.ProxyFunc()
	return func(r *http.Request) (*url.URL, error) { return f(r.URL) }
}

// noProxy is NO_PROXY's value: the config's entries, then those of the
// loopback it lacks.
func (p *Proxy) noProxy() string {
	entries := append([]string(nil), p.NoProxy...)
	for _, l := range loopbackNoProxy {
		if !containsFold(p.NoProxy, l) {
			entries = append(entries, l)
		}
	}
	return strings.Join(entries, ",")
}

func containsFold(list []string, s string) bool {
	for _, e := range list {
		if strings.EqualFold(e, s) {
			return true
		}
	}
	return false
}

// proxyMasked is s, a proxy URL (or what was written for one), with its
// password and its whole query replaced by mask, found as urlSecrets finds
// them (quoteURL's and Redacted's, so that no URL shows a password that
// another hides): after the last '@', as the user meant it, even when the
// password holds '/', '?' or '#' (which url.Parse reads as the end of the
// host, so that the password would be shown as the host, port or path),
// and in a value without a scheme (user:password@host:port), where nothing
// before the '@' can be told from a password and all of it is masked. A
// user name alone (http://TOKEN@proxy:3128, or http://TOKEN:@proxy:3128
// with an empty password) is masked too, unlike url.URL.Redacted: a proxy
// that takes a user without a password takes a token there.
func proxyMasked(s, mask string) string {
	a := schemeEnd(s)
	pass, _ := urlSecrets(s, a)
	masked, _ := urlMasked(s, a, mask, func(string) string { return mask })
	if a < 0 || pass[0] >= 0 && pass[0] < pass[1] {
		return masked // no scheme: all before the '@' is masked; or a password, masked
	}
	// A user alone, or with an empty password (http://TOKEN:@proxy, as
	// curl -u TOKEN: writes it): the user is the secret. The query is
	// masked already: an '@' left is the userinfo's.
	if at := strings.LastIndex(masked[a:], "@"); at >= 0 {
		masked = masked[:a] + mask + masked[a+at:]
	}
	return masked
}

// proxyShown is a proxy URL quoted for a message, its password and query
// shown as xxxxx, as quoteURL shows other URLs.
func proxyShown(s string) string { return strconv.Quote(proxyMasked(s, "xxxxx")) }

// proxyWithoutSecrets is s, a proxy URL, with its password (and query)
// replaced by REDACTED, for Redacted.
func proxyWithoutSecrets(s string) string { return proxyMasked(s, Redacted) }

// hasSpaceOrControl says whether s holds white space or a control
// character, which no URL or host name has.
func hasSpaceOrControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0
}

// proxyURLProblem says what is wrong with a proxy URL (http_proxy or
// https_proxy), or "". It never repeats the value, which proxyShown
// shows; it never shows the user name and password, nor parts of them.
func proxyURLProblem(s string) string {
	const want = "http://HOST:PORT (http://proxy.example.com:3128)"
	if hasSpaceOrControl(s) {
		return "contains spaces or control characters: write the URL as one word (in a password, percent-encode them: a space is %20)"
	}
	_, rest, hasScheme := strings.Cut(s, "://")
	if !hasScheme {
		// K3s and the agent would read HOST:PORT as http://HOST:PORT;
		// a reader of the config cannot tell which was meant.
		hostport := s[strings.LastIndex(s, "@")+1:]
		if hostPortLike(hostport) {
			write := "http://" + proxyMasked(s, "xxxxx")
			if strings.Contains(s, "@") {
				write += " (with the user and password where xxxxx stands)"
			}
			return "has no scheme: write " + write
		}
		return "is not a URL: give the proxy as " + want
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo := rest[:at]
		if strings.ContainsAny(userinfo, "/?#") {
			return "has '/', '?' or '#' in its user name or password (not shown), where a URL reads them as the end of the host: percent-encode them there (%2F, %3F, %23)"
		}
		if _, err := url.Parse("http://" + userinfo + "@host"); err != nil {
			return "has a user name or password (not shown) that a URL cannot hold as written: percent-encode the characters other than letters, digits and -._~!$&'()*+,;=: in it (@ is %40, % itself %25)"
		}
	}
	// Parsed without the password, so that url.Parse's detail, which
	// quotes the part it stumbled on, cannot show it.
	masked := proxyMasked(s, "xxxxx")
	u, err := url.Parse(masked)
	if err != nil {
		return "is not a URL" + urlErrDetail(err) + ": use " + want
	}
	switch u.Scheme {
	case "http", "https", "socks5":
	case "socks5h":
		return "uses socks5h: write socks5:// instead (Go's programs, K3s and the agent among them, already let the SOCKS proxy resolve names with socks5)"
	default:
		return "is not an http, https or socks5 URL: give the proxy as http://HOST:PORT (the proxy for https:// destinations is usually an http:// one too)"
	}
	if u.Hostname() == "" {
		return "has no host: use " + want
	}
	if msg := hostProblem(u.Hostname()); msg != "" {
		return msg + ": use " + want
	}
	if msg := portProblem(u.Host); msg != "" {
		return msg + ": give the proxy's port (3128 is common), or none for the scheme's default"
	}
	if p := u.EscapedPath(); p != "" && p != "/" {
		return fmt.Sprintf("has a path (%s): a proxy is given as %s://HOST:PORT alone: remove it", p, u.Scheme)
	}
	if strings.ContainsAny(masked, "?#") {
		return fmt.Sprintf("has a query or fragment: a proxy is given as %s://HOST:PORT alone: remove it", u.Scheme)
	}
	return ""
}

// hostPortLike says whether s is a host (a DNS name or IP address) with an
// optional port, as a proxy written without its scheme would be.
func hostPortLike(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return true
	}
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		if portProblem(":"+port) != "" {
			return false
		}
		host = h
	}
	return host != "" && hostProblem(host) == ""
}

// noProxyShown is a no_proxy entry quoted for a message, all that stands
// before its last '@' (a user name, a password, or a token given as the
// user) and its query shown as xxxxx: an entry with an '@' is a proxy URL
// pasted in the wrong place, or credentials that have no place there.
func noProxyShown(e string) string { return strconv.Quote(noProxyMasked(e)) }

// noProxyMasked is a part of a no_proxy entry, hidden as noProxyShown
// hides the entry: what a message repeats of an entry goes through it.
func noProxyMasked(s string) string { return proxyMasked(withoutUserinfo(s), "xxxxx") }

// noProxyProblem says what is wrong with a no_proxy entry, or "", as Go's
// programs (K3s, containerd, the agent: golang.org/x/net/http/httpproxy)
// read NO_PROXY: an entry they would skip, or read as a name that no
// destination has, is refused rather than left to proxy what it names.
//
// An entry with an '@' is refused first, with a message that repeats none
// of it: a no_proxy entry names a destination, and no host, domain or
// network holds an '@', so what stands around it is credentials (a proxy
// URL with its password pasted there), which no part of a message may
// show. The entry itself is shown by noProxyShown.
func noProxyProblem(e string) string {
	if strings.Contains(e, "@") {
		return "holds '@', which no destination's name has: a no_proxy entry names a destination (a host, a domain or a network), never a user or password: write the destination's host alone (example.com), and give the proxy's user and password in http_proxy or https_proxy"
	}
	return noProxyFormProblem(e)
}

// noProxyFormProblem is noProxyProblem for an entry without '@'. What its
// messages repeat of the entry goes through noProxyMasked all the same,
// should a password reach it some other way.
func noProxyFormProblem(e string) string {
	const give = "give a domain name (example.com, or .example.com for its subdomains only), an IP address or a network (10.0.0.0/8), with :PORT for one port only, or * alone"
	switch {
	case e == "":
		return "is empty: remove it"
	case strings.Contains(e, ","):
		var items []string
		for _, it := range strings.Split(e, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, noProxyMasked(it))
			}
		}
		return fmt.Sprintf("holds a comma: no_proxy is a list already: write one entry per item ([%s])", strings.Join(items, ", "))
	case hasSpaceOrControl(e):
		return "holds spaces or control characters: write the entry alone, without them"
	case strings.Contains(e, "://"):
		_, _, host, _, _ := urlParts(e)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host = strings.Trim(host, "[]"); host == "" || hostPortLike(host) {
			if host == "" {
				host = "HOST"
			}
			return "is a URL: no_proxy takes the host alone, without scheme or path: write " + noProxyMasked(host)
		}
		return "is a URL: no_proxy takes the host alone: " + give
	case e == "*":
		return ""
	case strings.HasPrefix(e, "*."):
		return fmt.Sprintf("is a wildcard: write %s for the subdomains of %s only, or %s for it and its subdomains", noProxyMasked(e[1:]), noProxyMasked(e[2:]), noProxyMasked(e[2:]))
	}
	if before, after, isCIDR := strings.Cut(e, "/"); isCIDR {
		if before == "" {
			return "has no host: " + give
		}
		if _, err := netip.ParseAddr(before); err != nil {
			return "has a path: no_proxy takes a host (with :PORT for one port only), not a URL: write " + noProxyMasked(before)
		}
		if _, port, hasPort := strings.Cut(after, ":"); hasPort && port != "" {
			return fmt.Sprintf("is a network with a port, which Go's programs read as a name that no destination has: a network takes no port: write %s/%s", before, noProxyMasked(strings.SplitN(after, ":", 2)[0]))
		}
		pf, err := netip.ParsePrefix(e)
		if err != nil {
			return "is not a network in CIDR form: write it as 10.0.0.0/8 or 2001:db8::/32"
		}
		if pf != pf.Masked() {
			return fmt.Sprintf("has host bits set: write %s for the network, or %s alone for this host", pf.Masked(), pf.Addr())
		}
		return ""
	}
	if a, err := netip.ParseAddr(e); err == nil {
		// An IPv6 address, or an IPv4 one, without a port.
		if a.Zone() != "" {
			return "has a zone, which Go's programs do not match: write " + a.WithZone("").String()
		}
		return ""
	}
	host, port := e, ""
	if strings.HasPrefix(e, "[") {
		h, p, err := net.SplitHostPort(e)
		if err != nil {
			inner := strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
			if a, aerr := netip.ParseAddr(inner); aerr == nil && a.Is6() && a.Zone() == "" && strings.HasSuffix(e, "]") {
				return "has brackets without a port: write " + inner + " (brackets go with a port: [" + inner + "]:443)"
			}
			return "is not an IPv6 address with a port: write 2001:db8::1, or [2001:db8::1]:443 for one port only"
		}
		if a, aerr := netip.ParseAddr(h); aerr != nil || !a.Is6() {
			return "is not an IPv6 address with a port: write 2001:db8::1, or [2001:db8::1]:443 for one port only"
		}
		host, port = h, p
	} else if h, p, ok := strings.Cut(e, ":"); ok {
		if strings.Contains(p, ":") {
			return "is neither an IP address nor a name with a port: " + give
		}
		host, port = h, p
	}
	if port != "" || strings.HasSuffix(e, ":") {
		// Judged as shown: the same port, unless it holds what
		// noProxyMasked hides ('@', '?'), which no port has.
		if msg := portProblem(":" + noProxyMasked(port)); msg != "" {
			return msg + ": give the port the destination listens on, or none for every port"
		}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "has a zone, which Go's programs do not match: leave it out"
		}
		return ""
	}
	domain := strings.TrimPrefix(host, ".")
	switch {
	case domain == "":
		return "has no host: " + give
	case strings.HasSuffix(domain, "."):
		return "ends with '.', which no request's host does (Go's programs match names as written): write " + noProxyMasked(strings.TrimSuffix(e, "."))
	}
	// Judged as shown, as the port above: no name holds '@' or '?'.
	if msg := hostProblem(noProxyMasked(domain)); msg != "" {
		return msg + ": " + give
	}
	return ""
}

// serverProxied says whether K3s would reach server, the cluster's https
// URL, through the proxy, as Go's programs read Env's variables: through
// HTTPS_PROXY unless NO_PROXY matches its host (and port). An https URL
// takes no proxy from HTTP_PROXY.
func (p *Proxy) serverProxied(server *url.URL) bool {
	if p.HTTPSProxy == "" {
		return false
	}
	cfg := httpproxy.Config{HTTPSProxy: p.HTTPSProxy, NoProxy: strings.Join(p.NoProxy, ",")}
	u, err := cfg.ProxyFunc()(server)
	return err == nil && u != nil
}
