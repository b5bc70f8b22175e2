package config

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// joining is a node that joins the server at cp.example.com.
const joining = "role: agent\ncluster: {server: 'https://cp.example.com:6443', token: t}\n"

// TestProxyRejections: each rule of the proxy section refuses at its
// field, showing the bad value and saying what to write instead.
func TestProxyRejections(t *testing.T) {
	many := make([]string, maxNoProxy+1)
	for i := range many {
		many[i] = fmt.Sprintf("h%d.example.com", i)
	}
	for _, tc := range []struct {
		name string
		body string // after the header and server
		path string
		want []string // substrings of that field's message
	}{
		// The section as a whole.
		{"empty section", "proxy: {}\n", "proxy", []string{"empty", "give http_proxy or https_proxy", "or remove proxy"}},
		{"no_proxy alone", "proxy: {no_proxy: [10.0.0.0/8]}\n", "proxy.no_proxy", []string{"without http_proxy or https_proxy", "would do nothing", "remove proxy"}},
		{"too many no_proxy entries", "proxy: {https_proxy: 'http://p.example:3128', no_proxy: [" + strings.Join(many, ", ") + "]}\n", "proxy.no_proxy",
			[]string{"257 entries, more than the 256 allowed", "10.0.0.0/8"}},

		// The proxy URLs.
		{"bare host:port", "proxy: {http_proxy: 'proxy.example.com:3128'}\n", "proxy.http_proxy",
			[]string{`"proxy.example.com:3128" has no scheme: write http://proxy.example.com:3128`}},
		{"bare IP", "proxy: {https_proxy: '10.0.0.9'}\n", "proxy.https_proxy", []string{`"10.0.0.9" has no scheme: write http://10.0.0.9`}},
		{"bare user:password@host:port", "proxy: {http_proxy: 'bob:PW@proxy.example.com:3128'}\n", "proxy.http_proxy",
			[]string{`"xxxxx@proxy.example.com:3128" has no scheme: write http://xxxxx@proxy.example.com:3128 (with the user and password where xxxxx stands)`}},
		{"not a URL", "proxy: {http_proxy: 'a proxy'}\n", "proxy.http_proxy", []string{`"a proxy" contains spaces`, "one word"}},
		{"a word", "proxy: {http_proxy: '3128'}\n", "proxy.http_proxy", []string{`"3128" is not a URL`, "http://proxy.example.com:3128"}},
		{"ftp scheme", "proxy: {http_proxy: 'ftp://proxy.example.com:21'}\n", "proxy.http_proxy",
			[]string{`"ftp://proxy.example.com:21" is not an http, https or socks5 URL`, "http://HOST:PORT"}},
		{"socks5h scheme", "proxy: {https_proxy: 'socks5h://proxy.example.com:1080'}\n", "proxy.https_proxy", []string{"socks5h", "write socks5://"}},
		{"no host", "proxy: {http_proxy: 'http://:3128'}\n", "proxy.http_proxy", []string{`"http://:3128" has no host`}},
		{"bad host", "proxy: {http_proxy: 'http://proxy..example:3128'}\n", "proxy.http_proxy", []string{`has host "proxy..example"`, "DNS name"}},
		{"bad IPv4 host", "proxy: {http_proxy: 'http://10.0.0.300:3128'}\n", "proxy.http_proxy", []string{`"10.0.0.300", which is not an IPv4 address`}},
		{"port zero", "proxy: {http_proxy: 'http://proxy.example.com:0'}\n", "proxy.http_proxy", []string{`port "0"`, "1 to 65535", "3128 is common"}},
		{"port too large", "proxy: {http_proxy: 'http://[2001:db8::1]:70000'}\n", "proxy.http_proxy", []string{`port "70000"`}},
		{"port not a number", "proxy: {http_proxy: 'http://proxy.example.com:squid'}\n", "proxy.http_proxy", []string{`"http://proxy.example.com:squid" is not a URL (invalid port ":squid" after host)`}},
		{"empty port", "proxy: {http_proxy: 'http://proxy.example.com:'}\n", "proxy.http_proxy", []string{"has ':' but no port"}},
		{"path", "proxy: {http_proxy: 'http://proxy.example.com:3128/proxy.pac'}\n", "proxy.http_proxy",
			[]string{`"http://proxy.example.com:3128/proxy.pac" has a path (/proxy.pac)`, "http://HOST:PORT alone: remove it"}},
		{"query", "proxy: {https_proxy: 'https://proxy.example.com:3128/?a=b'}\n", "proxy.https_proxy", []string{`"https://proxy.example.com:3128/?xxxxx" has a query or fragment`}},
		{"fragment", "proxy: {https_proxy: 'https://proxy.example.com:3128#top'}\n", "proxy.https_proxy", []string{"has a query or fragment", "https://HOST:PORT alone"}},
		{"password with a '#'", "proxy: {http_proxy: 'http://bob:PW#LEAK@proxy.example.com:3128'}\n", "proxy.http_proxy",
			[]string{`"http://bob:xxxxx@proxy.example.com:3128" has '/', '?' or '#' in its user name or password (not shown)`, "%23"}},
		{"password a URL cannot hold", "proxy: {http_proxy: 'http://bob:PW%zz@proxy.example.com:3128'}\n", "proxy.http_proxy",
			[]string{`"http://bob:xxxxx@proxy.example.com:3128" has a user name or password (not shown) that a URL cannot hold`, "%25"}},

		// no_proxy entries.
		{"no_proxy empty entry", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['']}\n", "proxy.no_proxy[0]", []string{`"" is empty: remove it`}},
		{"no_proxy comma", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: [a.example, 'b.example, 10.0.0.0/8']}\n", "proxy.no_proxy[1]",
			[]string{`"b.example, 10.0.0.0/8" holds a comma`, "a list already", "one entry per item ([b.example, 10.0.0.0/8])"}},
		{"no_proxy space", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['a.example b.example']}\n", "proxy.no_proxy[0]", []string{`"a.example b.example" holds spaces`}},
		{"no_proxy URL", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['https://git.example.com:8443/repo']}\n", "proxy.no_proxy[0]",
			[]string{`"https://git.example.com:8443/repo" is a URL`, "the host alone", "write git.example.com"}},
		{"no_proxy URL with a password", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['http://bob:PW@git.example.com']}\n", "proxy.no_proxy[0]",
			[]string{`"http://xxxxx@git.example.com" holds '@'`, "names a destination", "never a user or password"}},
		{"no_proxy path", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: [git.example.com/repo]}\n", "proxy.no_proxy[0]",
			[]string{`"git.example.com/repo" has a path`, "write git.example.com"}},
		{"no_proxy wildcard", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['*.example.com']}\n", "proxy.no_proxy[0]",
			[]string{`"*.example.com" is a wildcard`, "write .example.com", "or example.com for it and its subdomains"}},
		{"no_proxy star in a name", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['git*.example.com']}\n", "proxy.no_proxy[0]",
			[]string{`has host "git*.example.com"`, "give a domain name"}},
		{"no_proxy bad name", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: [-bad.example]}\n", "proxy.no_proxy[0]", []string{`has host "-bad.example"`}},
		{"no_proxy bad IPv4", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: [10.0.0.256]}\n", "proxy.no_proxy[0]", []string{`"10.0.0.256", which is not an IPv4 address`}},
		{"no_proxy trailing dot", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: [example.com.]}\n", "proxy.no_proxy[0]", []string{"ends with '.'", "write example.com"}},
		{"no_proxy dot alone", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: [.]}\n", "proxy.no_proxy[0]", []string{`"." has no host`}},
		{"no_proxy port alone", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: [':443']}\n", "proxy.no_proxy[0]", []string{`":443" has no host`}},
		{"no_proxy bad port", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['git.example.com:99999']}\n", "proxy.no_proxy[0]", []string{`port "99999"`, "or none for every port"}},
		{"no_proxy empty port", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['git.example.com:']}\n", "proxy.no_proxy[0]", []string{"has ':' but no port"}},
		{"no_proxy CIDR with host bits", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: [10.1.2.3/8]}\n", "proxy.no_proxy[0]",
			[]string{`"10.1.2.3/8" has host bits set: write 10.0.0.0/8 for the network, or 10.1.2.3 alone for this host`}},
		{"no_proxy IPv6 CIDR with host bits", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['2001:db8::1/32']}\n", "proxy.no_proxy[0]", []string{"write 2001:db8::/32"}},
		{"no_proxy bad prefix length", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: [10.0.0.0/33]}\n", "proxy.no_proxy[0]", []string{`"10.0.0.0/33" is not a network in CIDR form`}},
		{"no_proxy CIDR with a port", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['10.0.0.0/8:443']}\n", "proxy.no_proxy[0]",
			[]string{`"10.0.0.0/8:443" is a network with a port`, "takes no port: write 10.0.0.0/8"}},
		{"no_proxy IPv6 in brackets", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['[2001:db8::1]']}\n", "proxy.no_proxy[0]",
			[]string{`"[2001:db8::1]" has brackets without a port: write 2001:db8::1`}},
		{"no_proxy bracketed name", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['[git.example.com]:443']}\n", "proxy.no_proxy[0]", []string{"is not an IPv6 address with a port"}},
		{"no_proxy zone", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['fe80::1%eth0']}\n", "proxy.no_proxy[0]", []string{"has a zone", "write fe80::1"}},
		{"no_proxy two colons", "proxy: {http_proxy: 'http://p.example:3128', no_proxy: ['git.example.com:443:80']}\n", "proxy.no_proxy[0]", []string{"neither an IP address nor a name with a port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wantRefused(t, header+server+tc.body, tc.path, tc.want)
			for _, secret := range []string{"PW", "LEAK"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows the password:\n%v", err)
				}
			}
		})
	}
}

// TestProxyAccepted: proxies and no_proxy entries as Go's programs read
// them, accepted without a warning.
func TestProxyAccepted(t *testing.T) {
	for _, body := range []string{
		server + "proxy: {https_proxy: 'http://proxy.example.com:3128/'}\n",
		server + "proxy: {http_proxy: 'http://bob:s3cr%23t@proxy.example.com:3128', https_proxy: 'https://bob@proxy.example.com'}\n",
		server + "proxy: {https_proxy: 'socks5://10.0.0.9:1080'}\n",
		server + "proxy: {https_proxy: 'HTTP://[2001:db8::9]:3128'}\n",
		server + "proxy: {http_proxy: 'http://proxy_1.corp:8080', https_proxy: 'http://proxy_1.corp:8080', no_proxy: [example.com, .corp.example, Intranet, 'registry.example.com:5000', 10.0.0.9, '10.0.0.9:8443', " +
			"10.0.0.0/8, 192.168.0.0/16, '2001:db8::1', '[2001:db8::1]:443', '2001:db8::/32', 10.0.0.9/32]}\n",
		// The server's host in no_proxy, in each form that covers it.
		joining + "proxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: [cp.example.com]}\n",
		joining + "proxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: [example.com]}\n",
		joining + "proxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: [.example.com]}\n",
		joining + "proxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: ['cp.example.com:6443']}\n",
		"role: agent\ncluster: {server: 'https://10.1.2.3:6443', token: t}\nproxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: [10.0.0.0/8]}\n",
		"role: agent\ncluster: {server: 'https://[2001:db8::5]:6443', token: t}\nproxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: ['2001:db8::/32']}\n",
		// The server on the loopback, which Go's programs never proxy.
		"role: agent\ncluster: {server: 'https://127.0.0.1:6443', token: t}\nproxy: {https_proxy: 'http://proxy.example.com:3128'}\n",
	} {
		if _, w, err := Check([]byte(header + body)); err != nil || len(w) != 0 {
			t.Errorf("%s: warnings %q, err %v", strings.TrimSpace(body), w, err)
		}
	}
}

func TestProxyWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string // substrings of the one warning
	}{
		{"server not in no_proxy", joining + "proxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: [10.0.0.0/8]}\n",
			[]string{"proxy.no_proxy: ", "cluster.server's host cp.example.com", "K3s would reach the server https://cp.example.com:6443 through the proxy", "add cp.example.com to no_proxy"}},
		{"server and no no_proxy", joining + "proxy: {https_proxy: 'http://proxy.example.com:3128'}\n",
			[]string{"proxy.no_proxy: ", "add cp.example.com to no_proxy"}},
		{"server on another port than no_proxy's", joining + "proxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: ['cp.example.com:443']}\n",
			[]string{"add cp.example.com to no_proxy"}},
		{"subdomains only", "role: agent\ncluster: {server: 'https://example.com:6443', token: t}\nproxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: [.example.com]}\n",
			[]string{"add example.com to no_proxy"}},
		{"IP server outside the network", "role: agent\ncluster: {server: 'https://192.0.2.10:6443', token: t}\nproxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: [10.0.0.0/8]}\n",
			[]string{"https://192.0.2.10:6443 through the proxy", "add 192.0.2.10 to no_proxy"}},
		{"duplicate entry", server + "proxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: [10.0.0.0/8, Example.com, example.com]}\n",
			[]string{"proxy.no_proxy[2]: ", `"example.com" is also proxy.no_proxy[1]: remove one`}},
		{"star", server + "proxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: ['*']}\n",
			[]string{"proxy.no_proxy[0]: ", "every destination direct", "the proxy is never used"}},
		// Go's programs take an https:// URL's proxy from HTTPS_PROXY
		// alone: image pulls and the hub would go direct.
		{"http_proxy alone", server + "proxy: {http_proxy: 'http://proxy.example.com:3128'}\n",
			[]string{"proxy.http_proxy: given without https_proxy", "HTTPS_PROXY alone", "registries over https", "the hub", "set https_proxy too (usually the same URL)"}},
		// Only http_proxy: K3s's https connections to the server go
		// direct, so that warning alone, not the server's.
		{"http_proxy alone, joining", joining + "proxy: {http_proxy: 'http://proxy.example.com:3128', no_proxy: [10.0.0.0/8]}\n",
			[]string{"proxy.http_proxy: given without https_proxy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantOneWarning(t, header+tc.body, tc.want)
		})
	}
	// "*" given twice: warned about once as "*", once as a duplicate.
	if _, w, err := Check([]byte(header + server + "proxy: {https_proxy: 'http://proxy.example.com:3128', no_proxy: ['*', '*']}\n")); err != nil || len(w) != 2 ||
		!strings.Contains(w[0], "proxy.no_proxy[0]: \"*\" sends every destination direct") || !strings.Contains(w[1], "proxy.no_proxy[1]: \"*\" is also proxy.no_proxy[0]") {
		t.Errorf("no_proxy [*, *]: warnings %q, err %v", w, err)
	}
	// A refused proxy section is not also warned about.
	for _, body := range []string{
		"proxy: {https_proxy: 'proxy.example.com:3128'}\n",
		"proxy: {http_proxy: 'proxy.example.com:3128'}\n",
		"proxy: {http_proxy: 'http://proxy.example.com:3128', no_proxy: ['']}\n",
	} {
		if _, w, _ := Check([]byte(header + joining + body)); len(w) != 0 {
			t.Errorf("%s: warnings beside a refused proxy: %q", strings.TrimSpace(body), w)
		}
	}
	// https_proxy alone is common, and fine.
	if _, w, err := Check([]byte(header + server + "proxy: {https_proxy: 'http://proxy.example.com:3128'}\n")); err != nil || len(w) != 0 {
		t.Errorf("https_proxy alone: warnings %q, err %v", w, err)
	}
}

func TestProxyEnv(t *testing.T) {
	if env := (*Proxy)(nil).Env(); env != nil {
		t.Errorf("nil proxy: Env() = %q", env)
	}
	for _, tc := range []struct {
		p    Proxy
		want []string
	}{
		{Proxy{HTTPProxy: "http://p.example:3128", HTTPSProxy: "http://u:pw@p.example:3128", NoProxy: []string{".example.com", "10.0.0.0/8"}},
			[]string{"HTTP_PROXY=http://p.example:3128", "HTTPS_PROXY=http://u:pw@p.example:3128", "NO_PROXY=.example.com,10.0.0.0/8,localhost,127.0.0.0/8,::1"}},
		{Proxy{HTTPSProxy: "http://p.example:3128"},
			[]string{"HTTPS_PROXY=http://p.example:3128", "NO_PROXY=localhost,127.0.0.0/8,::1"}},
		// The loopback entries already given are not added again.
		{Proxy{HTTPProxy: "http://p.example:3128", NoProxy: []string{"::1", "example.com", "LOCALHOST"}},
			[]string{"HTTP_PROXY=http://p.example:3128", "NO_PROXY=::1,example.com,LOCALHOST,127.0.0.0/8"}},
	} {
		if got := tc.p.Env(); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: Env() = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestProxyFunc(t *testing.T) {
	if f := (*Proxy)(nil).ProxyFunc(); f != nil {
		t.Error("nil proxy: ProxyFunc() is not nil")
	}
	p := &Proxy{
		HTTPProxy:  "http://plain.example:3128",
		HTTPSProxy: "http://bob:pw@tls.example:3128",
		NoProxy:    []string{".corp.example", "10.0.0.0/8", "git.example.com:8443"},
	}
	f := p.ProxyFunc()
	for target, want := range map[string]string{
		"http://www.example.org/":            "http://plain.example:3128",
		"https://hub.example.org:8443/v1":    "http://bob:pw@tls.example:3128",
		"https://registry.corp.example/v2/":  "", // a subdomain of .corp.example
		"https://corp.example/":              "http://bob:pw@tls.example:3128",
		"https://10.20.30.40:6443/":          "",
		"https://11.0.0.1/":                  "http://bob:pw@tls.example:3128",
		"https://git.example.com:8443/":      "",
		"https://git.example.com/":           "http://bob:pw@tls.example:3128", // another port
		"https://localhost:6443/":            "",
		"http://127.0.0.1:10248/healthz":     "",
		"https://[::1]:6443/":                "",
		"https://node.example.org:6443/path": "http://bob:pw@tls.example:3128",
	} {
		req, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		u, err := f(req)
		got := ""
		if u != nil {
			got = u.String()
		}
		if err != nil || got != want {
			t.Errorf("%s: proxy %q (err %v), want %q", target, got, err, want)
		}
	}
	// No https_proxy: https destinations go direct, as with HTTPS_PROXY unset.
	req, _ := http.NewRequest(http.MethodGet, "https://www.example.org/", nil)
	if u, err := (&Proxy{HTTPProxy: "http://plain.example:3128"}).ProxyFunc()(req); u != nil || err != nil {
		t.Errorf("https without https_proxy: proxy %v, err %v", u, err)
	}
}

func TestProxyRedacted(t *testing.T) {
	c, err := Parse([]byte(header + server + "proxy: {http_proxy: 'http://bob:HUNTER2@proxy.example.com:3128', https_proxy: 'https://alice:S3CR%23T@proxy.example.com:3129', no_proxy: [10.0.0.0/8]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	out := redactedYAML(t, c)
	for _, secret := range []string{"HUNTER2", "S3CR"} {
		if strings.Contains(out, secret) {
			t.Errorf("the redacted config shows %q:\n%s", secret, out)
		}
	}
	for _, kept := range []string{"http_proxy: http://bob:REDACTED@proxy.example.com:3128", "https_proxy: https://alice:REDACTED@proxy.example.com:3129", "- 10.0.0.0/8"} {
		if !strings.Contains(out, kept) {
			t.Errorf("the redacted config lacks %q:\n%s", kept, out)
		}
	}
	if c.Proxy.HTTPProxy != "http://bob:HUNTER2@proxy.example.com:3128" {
		t.Error("Redacted changed the config it copied")
	}

	// Proxy URLs that url.Parse reads otherwise, or not at all.
	for in, want := range map[string]string{
		"":                                     "",
		"http://proxy.example.com:3128":        "http://proxy.example.com:3128",
		"http://bob@proxy.example.com:3128":    "http://REDACTED@proxy.example.com:3128", // a user alone may be a token
		"http://TOKEN@proxy.example.com/?a@b":  "http://REDACTED@proxy.example.com/?REDACTED",
		"http://TOKEN:@proxy.example.com:3128": "http://REDACTED@proxy.example.com:3128", // curl -u TOKEN:
		"http://proxy.example.com/?t=a@b":      "http://proxy.example.com/?REDACTED",
		"http://bob:pa#ss@proxy.example.com":   "http://bob:REDACTED@proxy.example.com",
		"http://bob:12/x?y@proxy.example.com":  "http://bob:REDACTED@proxy.example.com",
		"bob:pw@proxy.example.com:3128":        "REDACTED@proxy.example.com:3128",
		"http://bob:p@ss@proxy.example.com":    "http://bob:REDACTED@proxy.example.com",
		"http://proxy.example.com/?token=abc":  "http://proxy.example.com/?REDACTED",
		"http://b:pw@proxy.example.com/?t=abc": "http://b:REDACTED@proxy.example.com/?REDACTED",
	} {
		if got := proxyWithoutSecrets(in); got != want {
			t.Errorf("proxyWithoutSecrets(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestProxyErrorsHidePasswords: a proxy's password is never in an error,
// whether validation refuses the URL or decoding finds the section of
// the wrong kind.
func TestProxyErrorsHidePasswords(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"bad port", "proxy: {http_proxy: 'http://bob:SECRETPW@proxy.example.com:99999'}\n",
			[]string{`proxy.http_proxy: "http://bob:xxxxx@proxy.example.com:99999" has port "99999"`}},
		{"token as the user", "proxy: {http_proxy: 'http://SECRETPW@proxy.example.com:99999'}\n",
			[]string{`proxy.http_proxy: "http://xxxxx@proxy.example.com:99999" has port "99999"`}},
		{"password with a slash", "proxy: {https_proxy: 'http://bob:SECRET/PW@proxy.example.com:3128'}\n",
			[]string{`proxy.https_proxy: "http://bob:xxxxx@proxy.example.com:3128" has '/', '?' or '#'`}},
		{"password with a '#' and digits", "proxy: {https_proxy: 'http://bob:12#SECRETPW@proxy.example.com:3128'}\n",
			[]string{`"http://bob:xxxxx@proxy.example.com:3128" has '/', '?' or '#'`}},
		{"password with a bad escape", "proxy: {https_proxy: 'http://bob:SECRET%zzPW@proxy.example.com:3128'}\n",
			[]string{`"http://bob:xxxxx@proxy.example.com:3128" has a user name or password (not shown)`}},
		{"password and a bad scheme", "proxy: {https_proxy: 'ftp://bob:SECRETPW@proxy.example.com'}\n",
			[]string{`"ftp://bob:xxxxx@proxy.example.com" is not an http, https or socks5 URL`}},
		{"password in no_proxy", "proxy: {https_proxy: 'http://p.example:3128', no_proxy: ['http://bob:SECRETPW@proxy.example.com:3128']}\n",
			[]string{`proxy.no_proxy[0]: "http://xxxxx@proxy.example.com:3128" holds '@'`}},
		{"proxy as a URL", "proxy: 'http://bob:SECRETPW@proxy.example.com:3128'\n",
			[]string{"proxy (line 5): expected a mapping, got a string (not shown"}},
		{"http_proxy as a list", "proxy: {http_proxy: ['http://bob:SECRETPW@proxy.example.com:3128']}\n",
			[]string{"proxy.http_proxy (line 5): expected a string, got a list"}},
		{"no_proxy as a string", "proxy: {https_proxy: 'http://p.example:3128', no_proxy: 'http://bob:SECRETPW@proxy.example.com'}\n",
			[]string{"proxy.no_proxy (line 5): expected a list, got a string (not shown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Check([]byte(header + server + tc.body))
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("the error shows the password:\n%v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
		})
	}
	// An unknown field under proxy is still named, with a suggestion.
	_, _, err := Check([]byte(header + server + "proxy: {httpproxy: 'http://p.example:3128'}\n"))
	if fe := findField(err, "proxy.httpproxy"); fe == nil || !strings.Contains(fe.Msg, `did you mean "http_proxy"`) {
		t.Errorf("unknown field under proxy: %v", err)
	}
}

// TestExampleProxy: the commented-out proxy in the example validates once
// uncommented, and says what it shows.
func TestExampleProxy(t *testing.T) {
	doc := exampleWith("", "proxy:")
	c, w, err := Check([]byte(doc))
	if err != nil || len(w) != 0 {
		t.Fatalf("the example with its proxy: warnings %q, err %v\n%s", w, err, doc)
	}
	want := Proxy{HTTPProxy: "http://proxy.example.com:3128", HTTPSProxy: "http://proxy.example.com:3128", NoProxy: []string{".example.com", "10.0.0.0/8", "192.168.0.0/16"}}
	if c.Proxy == nil || c.Proxy.HTTPProxy != want.HTTPProxy || c.Proxy.HTTPSProxy != want.HTTPSProxy || !slices.Equal(c.Proxy.NoProxy, want.NoProxy) {
		t.Errorf("the example's proxy decoded as %+v, want %+v", c.Proxy, want)
	}
}

// noProxyWithPasswords are no_proxy entries with a password (SECRET), one
// shaped for each check of noProxyFormProblem, which each would reach but
// for its '@'.
var noProxyWithPasswords = []string{
	"http://user:SECRET@proxy:3128,foo",        // a comma
	"foo,user:SECRET@proxy",                    // a comma, no scheme
	"user:SECRET@ proxy",                       // a space
	"http://user:SECRET@proxy:3128",            // a URL
	"http://user:SECRET@/x",                    // a URL without a host
	"http://user:SECRET@proxy:3128/x",          // a URL with a path
	"http://SECRET@proxy",                      // a URL with a token as its user
	"https://user:SECRET@[2001:db8::1]:443",    // a URL to an IPv6 address
	"ftp://user:SECRET@bad_host!/",             // a URL whose host is not one
	"*.user:SECRET@proxy",                      // a wildcard
	"*.SECRET@proxy",                           // a wildcard, no user
	"/user:SECRET@proxy",                       // a path without a host
	"user:SECRET@proxy:3128/",                  // a path
	"10.0.0.0/8:SECRET@proxy",                  // a network with a port
	"10.0.0.0/SECRET@proxy",                    // a network's bad prefix length
	"fe80::1%user:SECRET@eth0",                 // a zone
	"[user:SECRET@proxy]:443",                  // brackets
	"[2001:db8::1]:SECRET@proxy",               // brackets and a port
	"[2001:db8::1%SECRET@eth0]",                // brackets and a zone
	"[fe80::1%SECRET@eth0]:443",                // brackets, a zone and a port
	"user:SECRET@proxy",                        // a port
	"SECRET@proxy:",                            // a port, empty
	"user:SECRET@proxy:3128:80",                // two colons
	"10.0.0.1%SECRET@eth0:443",                 // an address with a zone and a port
	"SECRET@proxy.",                            // a trailing dot
	".SECRET@",                                 // a dot and no name
	"SECRET@proxy.example.com",                 // a name that is not one
	"SECRET@10.0.0.300",                        // an IPv4 address that is not one
	"http://user:SECRET@proxy:3128/?token=abc", // a query
}

// TestNoProxyHidesPasswords: a no_proxy entry with credentials is refused
// for its '@', and no error or warning shows its password, whatever the
// entry looks like otherwise; noProxyFormProblem, which such an entry
// never reaches, hides it as well in each of its checks.
func TestNoProxyHidesPasswords(t *testing.T) {
	for i, e := range noProxyWithPasswords {
		doc := header + server + fmt.Sprintf("proxy: {https_proxy: 'http://p.example:3128', no_proxy: [%q]}\n", e)
		_, w, err := Check([]byte(doc))
		fe := findField(err, "proxy.no_proxy[0]")
		if fe == nil || !strings.Contains(fe.Msg, "holds '@', which no destination's name has") || !strings.Contains(fe.Msg, "never a user or password") {
			t.Errorf("%d: %q: no error for its '@' at proxy.no_proxy[0]: %v", i, e, err)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") || strings.Contains(strings.Join(w, "\n"), "SECRET") {
			t.Errorf("%d: %q: the password is shown:\n%v\n%q", i, e, err, w)
		}
		if msg := noProxyFormProblem(e); msg == "" || strings.Contains(msg, "SECRET") {
			t.Errorf("%d: %q: noProxyFormProblem says %q", i, e, msg)
		}
	}
}

// TestServerProxiedWarningByName: the machine's own networks, which the
// agent adds to NO_PROXY, match a server given by address, never one given
// by name: only the first warning says so.
func TestServerProxiedWarningByName(t *testing.T) {
	for server, unless := range map[string]bool{"https://192.0.2.10:6443": true, "https://k3s.example.lan:6443": false} {
		doc := header + "role: agent\ncluster: {server: '" + server + "', token: t}\nproxy: {https_proxy: 'http://proxy.example.com:3128'}\n"
		_, w, err := Check([]byte(doc))
		if err != nil || len(w) != 1 {
			t.Fatalf("%s: warnings %q, err %v", server, w, err)
		}
		if got := strings.Contains(w[0], "unless it is on one of this machine's own networks"); got != unless {
			t.Errorf("%s: the warning's unless-clause present %v, want %v: %s", server, got, unless, w[0])
		}
	}
}
