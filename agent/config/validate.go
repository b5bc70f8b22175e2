package config

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/etoile-os/etoile/agent/logfwd"
	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/internal/kubeyaml"
	"github.com/etoile-os/etoile/schema"
)

// Validate checks the meaning of every field and returns all problems at
// once, each naming its field path, plus warnings for what K3s or the agent
// would accept but is probably a mistake. Decoding problems (unknown fields,
// wrong types) are reported earlier, by Parse.
//
// Secrets (cluster.token, registry passwords) never appear in messages.
func (c *MachineConfig) Validate() (warnings []string, err error) {
	v := &validator{}
	if c.APIVersion != schema.APIVersion {
		v.errs.Add("apiVersion", "%q is not supported: use %s", c.APIVersion, schema.APIVersion)
	}
	if c.Kind != Kind {
		v.errs.Add("kind", "%q is not a machine config: use kind: %s", c.Kind, Kind)
	}
	if c.Hostname != "" {
		if msg := hostnameProblem(c.Hostname); msg != "" {
			v.errs.Add("hostname", "%q %s", c.Hostname, msg)
		}
	}
	if c.Site != "" {
		if msg := labelValueProblem(c.Site); msg != "" {
			v.errs.Add("site", "%q %s (the site becomes the node label %s)", c.Site, msg, SiteLabel)
		}
	}
	v.cluster(c)
	v.labels(c.Labels)
	v.taints(c.Taints)
	v.network(c.Network)
	v.time(c.Time)
	v.sysctls(c.Sysctls)
	v.kubeletSysctls(c)
	v.k3s(c)
	v.registries(c.Registries)
	v.proxy(c)
	v.hosts(c.Hosts)
	v.caCertificates(c.CACertificates, time.Now())
	v.manifests(c)
	v.logging(c.Logging)
	v.install(c.Install)
	v.constellation(c.Constellation, c.Role)
	return capWarnings(v.warns), v.errs.Err()
}

// capWarnings keeps the first schema.MaxShown warnings and counts the rest,
// as schema.Errors does with errors: the same mistake made a thousand
// times says nothing more than its first few, and every warning reaches
// the consoles and the log.
func capWarnings(warns []string) []string {
	if len(warns) <= schema.MaxShown {
		return warns
	}
	return append(warns[:schema.MaxShown:schema.MaxShown], fmt.Sprintf("... and %d more warnings, not shown", len(warns)-schema.MaxShown))
}

// The most entries a machine config may give in its lists and maps, far
// above what a machine needs (a trunk's VLANs are an interface each), so
// that a document cannot make validation, the K3s config and the agent's
// network setup arbitrarily long. A list over its bound is one error, and
// its entries are not checked one by one.
const (
	maxInterfaces      = 256
	maxBondMembers     = 32 // per bond
	maxAddresses       = 64 // per interface
	maxRoutes          = 64 // per interface
	maxLabels          = 128
	maxTaints          = 64
	maxRegistries      = 128 // mirrors, and configs
	maxMirrorEndpoints = 16  // per mirror
	maxDNS             = 16  // per interface: the resolver reads three
	maxTimeServers     = 32
	maxSysctls         = 1024
	maxK3sKeys         = 512 // K3s has about 200 options
	maxK3sItems        = 256 // in one option's list (kubelet-arg…)
	maxNoProxy         = 256 // proxy.no_proxy entries
	maxHosts           = 256 // hosts: entries
	maxHostNames       = 32  // names of one hosts: entry
	maxCACertificates  = 64  // ca_certificates entries (each may hold several)
	maxManifests       = 64  // manifests entries (each may hold many objects)
	maxLogDestinations = 8   // logging.destinations
)

// tooMany reports an error at path when n, the entries it gives, is over
// max: what they are, and how to need fewer.
func (v *validator) tooMany(path string, n, max int, what, fix string) bool {
	if n <= max {
		return false
	}
	v.errs.Add(path, "%d %s, more than the %d allowed: %s", n, what, max, fix)
	return true
}

type validator struct {
	errs  schema.Errors
	warns []string
}

func (v *validator) warn(path, format string, args ...any) {
	v.warns = append(v.warns, path+": "+fmt.Sprintf(format, args...))
}

func (v *validator) cluster(c *MachineConfig) {
	switch c.Role {
	case "":
		v.errs.Add("role", "missing: set role: server (runs the control plane) or agent (runs workloads only)")
	case RoleServer, RoleAgent:
	default:
		v.errs.Add("role", "%q: use server or agent", c.Role)
	}
	cl := c.Cluster
	if cl == nil {
		switch c.Role {
		case RoleServer:
			v.errs.Add("cluster", "missing: a server needs cluster: {init: true} to start a new cluster, or cluster: {server: https://HOST:6443, token: …} to join one")
		case RoleAgent:
			v.errs.Add("cluster", "missing: an agent needs cluster: {server: https://HOST:6443, token: …} to join a cluster")
		}
		return
	}
	switch {
	case cl.Init && cl.Server != "":
		server := "a value not shown"
		if shown, isURL := serverShown(cl.Server); isURL {
			server = shown
		}
		v.errs.Add("cluster.init", "init starts a new cluster and server (%s) joins an existing one: keep one of them", server)
	case cl.Init && c.Role == RoleAgent:
		v.errs.Add("cluster.init", "an agent cannot start a cluster: use role: server, or give cluster.server to join one")
	case !cl.Init && cl.Server == "":
		if c.Role == RoleAgent {
			v.errs.Add("cluster.server", "missing: give the URL of a server to join, https://HOST:6443")
		} else {
			v.errs.Add("cluster", "give init: true to start a new cluster, or server: https://HOST:6443 (and token) to join one")
		}
	}
	if cl.Server != "" {
		shown, isURL := serverShown(cl.Server)
		switch msg, warn := serverURLProblem(cl.Server); {
		case !isURL:
			v.errs.Add("cluster.server", "%s", msg)
		case msg != "":
			v.errs.Add("cluster.server", "%s %s", shown, msg)
		case warn != "":
			v.warn("cluster.server", "%s %s", shown, warn)
		}
		if cl.Token == "" {
			joining := "the cluster"
			if isURL {
				joining = unquote(shown)
			}
			v.errs.Add("cluster.token", "missing: a node joining %s needs the cluster's token (on the first server: /var/lib/rancher/k3s/server/token)", joining)
		}
	}
	if cl.Token != "" && strings.IndexFunc(cl.Token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		v.errs.Add("cluster.token", "contains spaces or control characters (a copy-paste accident?): a K3s token is one word")
	} else if _, isURL := serverShown(cl.Token); isURL {
		// Not shown all the same: whatever is in the token field may be
		// the secret.
		v.errs.Add("cluster.token", "is a URL (not shown): did you swap server and token? token is the cluster's secret, in /var/lib/rancher/k3s/server/token on the first server; server is the URL to join, https://HOST:6443")
	}
}

// serverShown is cluster.server as messages may show it, quoted, and
// whether it is a URL (scheme://…) at all. The values under cluster may hold
// the token, pasted in the wrong field or carried in a URL, and messages
// reach every console, the log and tickets: a URL is shown as
// scheme://host/path only, without its user and password, query (?token=…)
// or fragment, and any other value not at all (serverURLProblem describes
// it instead).
func serverShown(s string) (shown string, isURL bool) {
	scheme, _, host, path, ok := urlParts(s)
	if !ok {
		return "", false
	}
	return strconv.Quote(scheme + "://" + host + path), true
}

// urlParts splits scheme://userinfo@host/path?query#fragment as url.Parse
// would, without checking the parts; user says whether there is an '@'
// before the host, ok whether s starts with a scheme and "://" at all. It
// lets a message show a URL without its userinfo, query and fragment even
// when url.Parse refuses it.
func urlParts(s string) (scheme string, user bool, host, path string, ok bool) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme == "" || strings.IndexFunc(scheme, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '+' || r == '-' || r == '.')
	}) >= 0 {
		return "", false, "", "", false
	}
	// The userinfo ends at the last '@', even after a '/', '?' or '#':
	// a password may hold them (urlSecrets), and url.Parse would read
	// https://bob:p/ss@host as the host bob:p and the path /ss@host.
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, rest = true, rest[at+1:]
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	host = rest
	if i := strings.Index(rest, "/"); i >= 0 {
		host, path = rest[:i], rest[i:]
	}
	return scheme, user, host, path, true
}

// hostPortOnly is s as the host and port of a URL when s is an IP address
// or HOST:PORT and no more (a server given without https://), else "".
// Only such a value is shown: nothing else that may be a token has that
// shape.
func hostPortOnly(s string) string {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		if a.Is6() {
			return "[" + s + "]:6443"
		}
		return s + ":6443"
	}
	h, port, err := net.SplitHostPort(s)
	if err != nil || port == "" || portProblem(":"+port) != "" || hostProblem(h) != "" || strings.Contains(h, "%") {
		return ""
	}
	if _, err := netip.ParseAddr(h); err != nil && !strings.Contains(h, ".") {
		return "" // one word and a number: a name, perhaps, or not
	}
	return s
}

// serverURLProblem says what is wrong with cluster.server, a problem or a
// warning. It never repeats the value, which serverShown shows, or what
// serverShown leaves out: for a value that is not a URL, it says only what
// it looks like.
func serverURLProblem(s string) (problem, warning string) {
	shown, isURL := serverShown(s)
	if !isURL {
		if hostport := hostPortOnly(s); hostport != "" {
			return fmt.Sprintf("%q has no scheme: use https://%s", s, hostport), ""
		}
		if strings.HasPrefix(s, "K10") || strings.Contains(s, "::") {
			return "looks like a K3s token (not shown): did you swap server and token? server is the URL of a server to join, https://HOST:6443; token is the cluster's secret", ""
		}
		return "is not a URL (not shown, as it may be a secret): give the URL of a server to join, https://HOST:6443", ""
	}
	// Parsed without what is not shown, so that url.Parse's detail,
	// which quotes the part it stumbled on, cannot hold a secret either.
	u, err := url.Parse(unquote(shown))
	if err != nil {
		return "is not a URL" + urlErrDetail(err) + ": use https://HOST:6443", ""
	}
	if u.Scheme != "https" {
		return "must use https (K3s serves its API over TLS only): use https://HOST:6443", ""
	}
	if u.Hostname() == "" {
		return "has no host: use https://HOST:6443", ""
	}
	var extra []string
	if _, user, _, _, _ := urlParts(s); user {
		extra = append(extra, "a user name or password")
	}
	if strings.Contains(s, "?") {
		extra = append(extra, "a query")
	}
	if strings.Contains(s, "#") {
		extra = append(extra, "a fragment")
	}
	if len(extra) > 0 {
		// K3s takes scheme://host:port and nothing more; what else is
		// there may be the token, so it is named, not shown.
		return fmt.Sprintf("has %s (not shown): K3s wants only https://HOST:PORT: remove it", strings.Join(extra, " and ")), ""
	}
	if u.Path != "" && u.Path != "/" {
		return "must be only https://HOST:PORT, without a path", ""
	}
	if msg := hostProblem(u.Hostname()); msg != "" {
		return msg + ": use https://HOST:6443", ""
	}
	if msg := portProblem(u.Host); msg != "" {
		return msg + ": K3s servers listen on 6443 (https://HOST:6443)", ""
	}
	if u.Port() == "" {
		return "", "has no port, so 443 is used; K3s servers listen on 6443 unless a load balancer is in front"
	}
	return "", ""
}

// unquote undoes strconv.Quote, for a URL shown unquoted.
func unquote(q string) string {
	if s, err := strconv.Unquote(q); err == nil {
		return s
	}
	return q
}

// urlErrDetail is what url.Parse found wrong, without the URL it repeats
// (already shown quoted), as " (…)"; "" when there is no detail.
func urlErrDetail(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return " (" + ue.Err.Error() + ")"
	}
	return ""
}

// portProblem checks the port of a URL's host[:port] (or a registry name's):
// a number from 1 to 65535 when given. url.Parse only checks for digits.
func portProblem(hostport string) string {
	var port string
	if strings.HasPrefix(hostport, "[") { // [IPv6]:port
		_, rest, ok := strings.Cut(hostport, "]")
		if !ok || rest == "" {
			return ""
		}
		port, ok = strings.CutPrefix(rest, ":")
		if !ok {
			return ""
		}
	} else {
		i := strings.LastIndex(hostport, ":")
		if i < 0 {
			return ""
		}
		port = hostport[i+1:]
	}
	if port == "" {
		return "has ':' but no port after it"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("has port %q, which is not a number from 1 to 65535", port)
	}
	return ""
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// hostnameProblem checks an RFC 1123 host name that is also a valid
// Kubernetes node name: lowercase, dot-separated labels, and at most 63
// characters because Linux limits host names to 64 bytes.
func hostnameProblem(h string) string {
	if len(h) > 63 {
		return fmt.Sprintf("is %d characters long: Linux allows at most 63", len(h))
	}
	const rfc1123 = "use lowercase letters, digits and '-', in dot-separated parts that start and end with a letter or digit"
	suggest := ""
	if s := hostnameLike1123(h); s != "" && s != h {
		suggest = " (" + s + ", say)"
	}
	if strings.ToLower(h) != h {
		return "has capital letters: Kubernetes node names are lowercase: " + rfc1123 + suggest
	}
	for _, l := range strings.Split(h, ".") {
		if !dnsLabel.MatchString(l) {
			return "is not an RFC 1123 host name: " + rfc1123 + suggest
		}
	}
	if first, _, _ := strings.Cut(h, "."); first == "localhost" {
		return "is the name of every machine's loopback, and every node given it would have the same Kubernetes node name: give this machine its own name, or leave hostname out (the agent then uses the DHCP host name, else etoile-<end of the MAC>)"
	}
	return ""
}

// hostnameLike1123 makes h into an RFC 1123 host name, as a suggestion:
// lowercase, every other character a '-', no part starting or ending with
// one; "" when nothing is left of a part.
func hostnameLike1123(h string) string {
	parts := strings.Split(strings.ToLower(h), ".")
	for i, part := range parts {
		part = strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
				return r
			}
			return '-'
		}, part)
		if parts[i] = strings.Trim(part, "-"); parts[i] == "" {
			return ""
		}
	}
	return strings.Join(parts, ".")
}

var (
	qualifiedName = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	// kubeletLabels and kubeletLabelDomains are what a kubelet may set on
	// its own Node in the kubernetes.io and k8s.io namespaces
	// (k8s.io/kubelet/pkg/apis IsKubeletLabel); any other label there makes
	// the kubelet refuse to start.
	kubeletLabels = map[string]bool{
		"kubernetes.io/hostname":                   true,
		"kubernetes.io/os":                         true,
		"kubernetes.io/arch":                       true,
		"beta.kubernetes.io/os":                    true,
		"beta.kubernetes.io/arch":                  true,
		"beta.kubernetes.io/instance-type":         true,
		"node.kubernetes.io/instance-type":         true,
		"topology.kubernetes.io/zone":              true,
		"topology.kubernetes.io/region":            true,
		"failure-domain.beta.kubernetes.io/zone":   true,
		"failure-domain.beta.kubernetes.io/region": true,
	}
	kubeletLabelDomains = []string{"kubelet.kubernetes.io", "node.kubernetes.io"}
)

// labelKeyProblem checks a Kubernetes label (or taint) key: an optional DNS
// subdomain prefix and a slash, then a name of at most 63 characters.
func labelKeyProblem(k string) string {
	name := k
	if prefix, rest, ok := strings.Cut(k, "/"); ok {
		name = rest
		if prefix == "" || len(prefix) > 253 {
			return "has an empty or too long prefix before '/': the prefix is a DNS name of at most 253 characters"
		}
		for _, l := range strings.Split(prefix, ".") {
			if !dnsLabel.MatchString(l) {
				return fmt.Sprintf("has prefix %q, which is not a lowercase DNS name", prefix)
			}
		}
	}
	if name == "" || len(name) > 63 || !qualifiedName.MatchString(name) {
		return fmt.Sprintf("has name %q: a label name is 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", name)
	}
	return ""
}

// labelValueProblem checks a Kubernetes label (or taint) value.
func labelValueProblem(val string) string {
	if val == "" {
		return ""
	}
	if len(val) > 63 || !qualifiedName.MatchString(val) {
		return "is not a valid label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
	}
	return ""
}

func labelDomain(k string) string {
	prefix, _, ok := strings.Cut(k, "/")
	if !ok {
		return ""
	}
	return prefix
}

func inDomain(d, domain string) bool { return d == domain || strings.HasSuffix(d, "."+domain) }

func (v *validator) labels(labels map[string]string) {
	if v.tooMany("labels", len(labels), maxLabels, "labels", "give the labels that select this node (others can be set later with kubectl label)") {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		p := "labels." + k
		if msg := labelKeyProblem(k); msg != "" {
			v.errs.Add(p, "key %q %s", k, msg)
			continue
		}
		if msg := labelValueProblem(labels[k]); msg != "" {
			v.errs.Add(p, "value %q %s", labels[k], msg)
		}
		d := labelDomain(k)
		switch {
		case inDomain(d, "etoile.io"):
			v.errs.Add(p, "%q is in etoile.io/, which is reserved for the labels Étoile sets itself (%s from site, etoile.io/gpu.* from the hardware)", k, SiteLabel)
		case (inDomain(d, "kubernetes.io") || inDomain(d, "k8s.io")) && !kubeletLabels[k] &&
			!slices.ContainsFunc(kubeletLabelDomains, func(a string) bool { return inDomain(d, a) }):
			v.errs.Add(p, "%q: a kubelet may not set labels in %s on its own node and would refuse to start; use node.kubernetes.io/…, your own domain, or set it later with kubectl", k, d)
		}
	}
}

var taintEffects = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}

func (v *validator) taints(taints []string) {
	if v.tooMany("taints", len(taints), maxTaints, "taints", "give the taints that keep workloads off this node (others can be set later with kubectl taint)") {
		return
	}
	seen := map[string]int{}
	for i, t := range taints {
		p := fmt.Sprintf("taints[%d]", i)
		kv, effect, ok := cutLast(t, ":")
		if !ok {
			v.errs.Add(p, "%q has no effect: write key=value:Effect or key:Effect, with Effect one of %s", t, strings.Join(taintEffects, ", "))
			continue
		}
		if !slices.Contains(taintEffects, effect) {
			v.errs.Add(p, "%q has effect %q: use one of %s", t, effect, strings.Join(taintEffects, ", "))
			continue
		}
		key, val, _ := strings.Cut(kv, "=")
		if msg := labelKeyProblem(key); msg != "" {
			v.errs.Add(p, "%q: key %q %s", t, key, msg)
			continue
		}
		if msg := labelValueProblem(val); msg != "" {
			v.errs.Add(p, "%q: value %q %s", t, val, msg)
			continue
		}
		id := key + ":" + effect
		if j, dup := seen[id]; dup {
			v.errs.Add(p, "%q repeats taints[%d] (same key and effect): keep one", t, j)
			continue
		}
		seen[id] = i
	}
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func (v *validator) network(n Network) {
	if v.tooMany("network.interfaces", len(n.Interfaces), maxInterfaces, "interfaces", "list this machine's own interfaces and VLANs, each once") {
		return
	}
	seenIf := map[string]int{}
	seenAddr := map[netip.Addr]string{}
	gateways := map[bool]string{}    // is IPv4 → path of the first default route
	routed := map[routeKey]routeAt{} // every entry's routes, by the route the kernel keeps
	subnets, subnetPaths := knownSubnets(n.Interfaces)
	idOf := make([]string, len(n.Interfaces))
	var (
		members     []bondMember       // of every bond, in order
		addressless []int              // the bonds that only carry VLANs
		bondAt      = map[string]int{} // bond name → its entry
	)
	for i, ifc := range n.Interfaces {
		p := fmt.Sprintf("network.interfaces[%d]", i)
		var id string
		if ifc.Bond != nil && ifc.MAC != "" {
			// The agent makes the bond's link, which has no MAC of its
			// own until then (it takes a member's).
			if ifc.Name != "" {
				v.errs.Add(p+".mac", "%q beside name %q: a bond is given by name only, as the agent makes its link, which has no MAC of its own yet: remove mac (to pick the bond's ports by MAC, list their MACs under bond.members)", ifc.MAC, ifc.Name)
			} else {
				v.errs.Add(p+".mac", "%q: a bond is given by name, as the agent makes its link, which has no MAC of its own yet: write name: bond0 instead of mac (to pick the bond's ports by MAC, list their MACs under bond.members)", ifc.MAC)
			}
			ifc.MAC = "" // refused: the entry is judged by its name alone
		}
		switch {
		case ifc.Bond != nil && ifc.Name == "":
			if n.Interfaces[i].MAC == "" { // else said above
				v.errs.Add(p+".bond", "a bond needs a name, for the link the agent makes: give name: bond0")
			}
		case ifc.Name == "" && ifc.MAC == "":
			v.errs.Add(p, "give name (eth0) or mac (52:54:00:12:34:56) to say which interface this is")
		case ifc.Name != "" && ifc.MAC != "":
			v.errs.Add(p, "give name (%q) or mac (%q), not both: a mismatch would leave the machine off the network", ifc.Name, ifc.MAC)
		case ifc.Name != "":
			if msg := ifNameProblem(ifc.Name); msg != "" {
				v.errs.Add(p+".name", "%q %s", ifc.Name, msg)
			}
			id = "name " + ifc.Name
		default:
			hw, err := net.ParseMAC(ifc.MAC)
			if err != nil || len(hw) != 6 {
				v.errs.Add(p+".mac", "%q is not an Ethernet MAC address: write six hex bytes, 52:54:00:12:34:56", ifc.MAC)
			} else if msg := macProblem(hw); msg != "" {
				v.errs.Add(p+".mac", "%q %s, not the address of one interface: copy the interface's MAC from `etoile-agent inventory` or `ip link` on the machine", ifc.MAC, msg)
			} else {
				id = "mac " + hw.String()
			}
		}
		idOf[i] = id
		if ifc.Bond != nil {
			if j, dup := bondAt[ifc.Name]; dup && ifc.Name != "" {
				v.errs.Add(p+".bond", "%s is already a bond at network.interfaces[%d].bond: give its bond once (other entries put VLANs on it by its name, without bond)", ifc.Name, j)
			} else if ifc.Name != "" {
				bondAt[ifc.Name] = i
			}
			members = v.bond(p, ifc, members, i)
		}
		if ifc.VLAN != 0 {
			if ifc.VLAN < 1 || ifc.VLAN > 4094 {
				v.errs.Add(p+".vlan", "%d is out of range: VLAN ids are 1 to 4094", ifc.VLAN)
			} else if link := fmt.Sprintf("%s.%d", ifc.Name, ifc.VLAN); ifc.Name != "" && ifNameProblem(ifc.Name) == "" && len(link) > maxIfName {
				// agent/network's vlanName: parent.id, else v<parent's ifindex>.id.
				v.warn(p+".vlan", "VLAN %d on %q: %q would be longer than Linux's %d characters for a link name, so the agent names this VLAN's link v<ifindex of %s>.%d instead (ip link on the machine shows it): use that name wherever the link is named (sysctls, K3s options such as flannel-iface)", ifc.VLAN, ifc.Name, link, maxIfName, ifc.Name, ifc.VLAN)
			}
		}
		if id != "" {
			ids := []string{id}
			if ifc.VLAN != 0 {
				ids[0] += fmt.Sprintf(" vlan %d", ifc.VLAN)
				if link := fmt.Sprintf("%s.%d", ifc.Name, ifc.VLAN); ifc.Name != "" && len(link) <= maxIfName {
					ids = append(ids, "name "+link) // the VLAN's link, which an entry may name too
				}
			}
			dup := false
			for _, id := range ids {
				if j, ok := seenIf[id]; ok && !dup {
					v.errs.Add(p, "configures the same interface as network.interfaces[%d] (%s): merge them", j, id)
					dup = true
				}
			}
			for _, id := range ids {
				if _, ok := seenIf[id]; !ok {
					seenIf[id] = i
				}
			}
		}
		if ifc.MTU != 0 && (ifc.MTU < 68 || ifc.MTU > 65535) {
			v.errs.Add(p+".mtu", "%d is out of range: 68 to 65535 (1500 is Ethernet's default, 9000 jumbo frames)", ifc.MTU)
		}

		switch {
		case ifc.DHCP || len(ifc.Addresses) > 0:
		case ifc.Bond != nil && ifc.VLAN != 0:
			v.errs.Add(p, "static without addresses: VLAN %d over the bond would carry nothing: set dhcp: true, or list addresses such as 192.0.2.10/24 (or leave vlan out, for a bond that only carries the VLANs other entries put on it)", ifc.VLAN)
		case ifc.Bond != nil:
			// A bond that only carries VLANs, which other entries put
			// on it by its name: judged once every entry is read.
			addressless = append(addressless, i)
		default:
			v.errs.Add(p, "static without addresses: set dhcp: true, or list addresses such as 192.0.2.10/24")
		}
		var (
			prefixes []netip.Prefix
			pfPaths  []string // the field of each prefix
		)
		if v.tooMany(p+".addresses", len(ifc.Addresses), maxAddresses, "addresses", "give the addresses this interface has; a subnet is one address with its prefix length (192.0.2.10/24), not each of its addresses") {
			continue // its gateway and name servers would be judged against none
		}
		for j, a := range ifc.Addresses {
			ap := fmt.Sprintf("%s.addresses[%d]", p, j)
			if strings.Contains(a, "%") {
				v.errs.Add(ap, "%q has a zone: leave it out, the interface is the zone", a)
				continue
			}
			pf, err := netip.ParsePrefix(a)
			if err != nil {
				if addr, aerr := netip.ParseAddr(a); aerr == nil {
					bits := 24
					if addr.Is6() {
						bits = 64
					}
					v.errs.Add(ap, "%q has no prefix length: write it in CIDR form, such as %s/%d", a, a, bits)
				} else {
					v.errs.Add(ap, "%q is not an address in CIDR form, such as 192.0.2.10/24 or 2001:db8::10/64", a)
				}
				continue
			}
			if pf.Addr().Zone() != "" {
				v.errs.Add(ap, "%q has a zone: leave it out, the interface is the zone", a)
				continue
			}
			if what, hosts := hostAddrProblem(pf.Addr(), []netip.Prefix{pf}); hosts != "" {
				v.errs.Add(ap, "%q %s, not a host address: use one %s, with /%d", a, what, hosts, pf.Bits())
			} else if what != "" {
				example := "192.0.2.10/24"
				if pf.Addr().Is6() {
					example = "2001:db8::10/64"
				}
				v.errs.Add(ap, "%q %s, not a host address: give this machine's own address, such as %s", a, what, example)
			}
			if prev, dup := seenAddr[pf.Addr()]; dup {
				v.errs.Add(ap, "%s is already given at %s", pf.Addr(), prev)
			} else {
				seenAddr[pf.Addr()] = ap
			}
			prefixes = append(prefixes, pf)
			pfPaths = append(pfPaths, ap)
		}
		if ifc.DHCP {
			// DHCP is DHCPv4: it gives the link its IPv4 address (and
			// replaces it at each renewal), so a static IPv4 one beside
			// it is refused; IPv6 addresses are static beside the lease.
			for j, pf := range prefixes {
				if pf.Addr().Is4() {
					v.errs.Add(p, "dhcp: true and the static IPv4 address %s (%s) together: DHCP gives this interface its IPv4 address; choose one (remove dhcp, or remove the IPv4 addresses; IPv6 addresses may stay beside DHCP)", pf, pfPaths[j])
					break
				}
			}
		}
		at := reach{entry: i, prefixes: prefixes, pfPaths: pfPaths, subnets: subnets, subnetPaths: subnetPaths}
		gw4, _ := netip.ParseAddr(ifc.Gateway)
		gw6, _ := netip.ParseAddr(ifc.Gateway6)
		switch {
		case ifc.Gateway != "" && ifc.Gateway6 != "" && gw4.Is6() && gw6.Is6():
			v.errs.Add(p+".gateway6", "%q and gateway %q are both IPv6: an interface has one IPv6 default route: keep gateway6 for it, and give gateway the IPv4 one or remove it", ifc.Gateway6, ifc.Gateway)
		default:
			if ifc.Gateway != "" {
				v.gateway(p, "gateway", ifc.Gateway, ifc.DHCP, at, gateways)
			}
			if ifc.Gateway6 != "" {
				v.gateway(p, "gateway6", ifc.Gateway6, false, at, gateways)
			}
		}
		if len(ifc.Routes) > 0 {
			v.routes(p, ifc, at, routed)
		}
		if v.tooMany(p+".dns", len(ifc.DNS), maxDNS, "name servers", "give the few name servers this link reaches: the resolver asks the first three") {
			continue
		}
		for j, d := range ifc.DNS {
			switch a, err := netip.ParseAddr(d); {
			case err != nil:
				v.errs.Add(fmt.Sprintf("%s.dns[%d]", p, j), "%q is not an IP address: name servers are given by address", d)
			case a.Zone() != "":
				// The node writes /etc/resolv.conf without zones (musl's
				// resolver does not read them): refused here, rather than
				// the name server silently left out on the node.
				v.errs.Add(fmt.Sprintf("%s.dns[%d]", p, j), "%q has a zone (%%%s): Étoile does not write zones into resolv.conf, and a link-local name server needs one: use a global or ULA address", d, a.Zone())
			default:
				if msg := dnsServerProblem(a, prefixes); msg != "" {
					v.errs.Add(fmt.Sprintf("%s.dns[%d]", p, j), "%q %s", d, msg)
				}
			}
		}
	}
	// A bond's members are its ports: what an entry gives them (addresses,
	// a VLAN) the agent could not apply, or would take from the bond. The
	// entries come in any order, so this is judged once all are read; a
	// member and an entry spelled differently (one by name, one by MAC)
	// only the node can match.
	for i, id := range idOf {
		if id == "" {
			continue
		}
		for _, m := range members {
			if m.key != id || m.entry == i {
				continue
			}
			to := m.bond
			if vlan := n.Interfaces[i].VLAN; vlan != 0 {
				to = fmt.Sprintf("%s (name: %s, vlan: %d)", m.bond, m.bond, vlan)
			}
			v.errs.Add(fmt.Sprintf("network.interfaces[%d]", i), "%s is a member of %s (%s): a bond's member carries no addresses or VLANs of its own: put them on %s", m.shown, m.bond, m.path, to)
			break
		}
	}
	for _, i := range addressless {
		name := n.Interfaces[i].Name
		if !slices.ContainsFunc(n.Interfaces, func(o Interface) bool { return o.Name == name && o.VLAN != 0 }) {
			v.warn(fmt.Sprintf("network.interfaces[%d]", i), "%s has no address and no VLAN on it, so it carries nothing: set dhcp: true or list addresses, or put a VLAN on it with another entry (name: %s, vlan: 100, addresses: […])", name, name)
		}
	}
}

// bondModes, bondLACPRates and bondXmitPolicies are the bonding driver's
// names for the values of its options, in the order of the numbers it
// also takes for them (mode 1 is active-backup).
var (
	bondModes        = []string{"balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"}
	bondLACPRates    = []string{"slow", "fast"}
	bondXmitPolicies = []string{"layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4", "vlan+srcmac"}
)

// bondMember is a port of a bond, for the checks across entries.
type bondMember struct {
	key   string // "name eth0" or "mac 52:54:00:12:34:56", as an entry's id
	shown string // as the config writes it
	path  string // network.interfaces[N].bond.members[M]
	bond  string // the bond's name, or where it is when it has none
	entry int    // the bond's entry
}

// bond checks the bond of the entry ifc (at p, the i-th) and returns
// members with its own appended; members holds those of the bonds before
// it.
func (v *validator) bond(p string, ifc Interface, members []bondMember, i int) []bondMember {
	b := ifc.Bond
	bp := p + ".bond"
	name := ifc.Name
	if name == "" || ifNameProblem(name) != "" {
		name = "the bond at " + p
	}

	mp := bp + ".members"
	switch {
	case len(b.Members) == 0:
		v.errs.Add(mp, "empty: list the ports to bond, by name (eth0) or MAC address (52:54:00:12:34:56)")
	case v.tooMany(mp, len(b.Members), maxBondMembers, "members", "list the ports this bond joins, the ones cabled to one switch or LACP group"):
	default:
		seen := map[string]int{}
		for j, m := range b.Members {
			mjp := fmt.Sprintf("%s[%d]", mp, j)
			var key string
			if hw, err := net.ParseMAC(m); err == nil || strings.Contains(m, ":") {
				switch {
				case err != nil || len(hw) != 6:
					v.errs.Add(mjp, "%q is not an Ethernet MAC address: write six hex bytes, 52:54:00:12:34:56, or give the port's name (eth0)", m)
				case macProblem(hw) != "":
					v.errs.Add(mjp, "%q %s, not the address of one port: copy the port's MAC from `etoile-agent inventory` or `ip link` on the machine", m, macProblem(hw))
				default:
					key = "mac " + hw.String()
				}
			} else if m == "" {
				v.errs.Add(mjp, "empty: give the port's name (eth0) or MAC address (52:54:00:12:34:56)")
			} else if msg := ifNameProblem(m); msg != "" {
				v.errs.Add(mjp, "%q %s", m, msg)
			} else {
				key = "name " + m
			}
			if key == "" {
				continue
			}
			if ifc.Name != "" && key == "name "+ifc.Name {
				v.errs.Add(mjp, "%q is the bond itself: list the ports it joins (eth0, eth1)", m)
				continue
			}
			if k, dup := seen[key]; dup {
				v.errs.Add(mjp, "%q is also %s[%d]: list each port once", m, mp, k)
				continue
			}
			seen[key] = j
			if k := slices.IndexFunc(members, func(o bondMember) bool { return o.key == key }); k >= 0 {
				v.errs.Add(mjp, "%q is already a member of %s (%s): a port is in one bond at most: remove it from one of them", m, members[k].bond, members[k].path)
				continue
			}
			members = append(members, bondMember{key: key, shown: m, path: mjp, bond: name, entry: i})
		}
	}

	// The options that only some modes read are judged against the mode,
	// or against the one a number means (refused below all the same).
	mode := b.Mode
	if n, err := strconv.Atoi(mode); err == nil && n >= 0 && n < len(bondModes) && strconv.Itoa(n) == mode {
		mode = bondModes[n]
	}
	if !slices.Contains(bondModes, mode) {
		mode = ""
	}
	switch {
	case b.Mode == "":
		v.errs.Add(bp+".mode", "missing: give the bonding mode, one of %s (802.3ad for ports in one LACP group of the switch, active-backup for any switch)", strings.Join(bondModes, ", "))
	case strings.EqualFold(b.Mode, "lacp"):
		v.errs.Add(bp+".mode", "%q: the bonding driver calls LACP 802.3ad: write mode: 802.3ad", b.Mode)
	default:
		if msg := bondChoiceProblem(b.Mode, bondModes, "a bonding mode"); msg != "" {
			v.errs.Add(bp+".mode", "%s", msg)
		}
	}
	if b.Primary != "" {
		switch {
		case mode != "" && mode != "active-backup" && mode != "balance-tlb" && mode != "balance-alb":
			v.errs.Add(bp+".primary", "%q with mode %s, which has no primary port: primary is for active-backup, balance-tlb and balance-alb: remove it, or change the mode", b.Primary, mode)
		case !slices.Contains(b.Members, b.Primary):
			in := ""
			if len(b.Members) > 0 && len(b.Members) <= maxBondMembers {
				in = " (" + strings.Join(b.Members, ", ") + ")"
			}
			v.errs.Add(bp+".primary", "%q is not one of the bond's members%s: give one of them, written as in members", b.Primary, in)
		}
	}
	if b.LACPRate != "" {
		if mode != "" && mode != "802.3ad" {
			v.errs.Add(bp+".lacp_rate", "%q with mode %s, which sends no LACP frames: lacp_rate is for mode 802.3ad only: remove it, or change the mode", b.LACPRate, mode)
		} else if msg := bondChoiceProblem(b.LACPRate, bondLACPRates, "an LACP rate"); msg != "" {
			v.errs.Add(bp+".lacp_rate", "%s", msg)
		}
	}
	if b.XmitHashPolicy != "" {
		if mode != "" && mode != "balance-xor" && mode != "802.3ad" && mode != "balance-tlb" {
			v.errs.Add(bp+".xmit_hash_policy", "%q with mode %s, which does not hash packets to its ports: xmit_hash_policy is for balance-xor, 802.3ad and balance-tlb: remove it, or change the mode", b.XmitHashPolicy, mode)
		} else if msg := bondChoiceProblem(b.XmitHashPolicy, bondXmitPolicies, "a transmit hash policy"); msg != "" {
			v.errs.Add(bp+".xmit_hash_policy", "%s", msg)
		}
	}
	if b.MIIMon < 0 || b.MIIMon > 10000 {
		v.errs.Add(bp+".miimon", "%d is out of range: give 1 to 10000 milliseconds, or leave miimon out for Étoile's default, 100", b.MIIMon)
	}
	return members
}

// bondChoiceProblem says what is wrong with val, the value of a bonding
// option whose names are names (what they are), or "". The numbers the
// driver also takes for them are refused with the name to write: a number
// says nothing to whoever reads the config next.
func bondChoiceProblem(val string, names []string, what string) string {
	if slices.Contains(names, val) {
		return ""
	}
	if n, err := strconv.Atoi(val); err == nil && n >= 0 && n < len(names) && strconv.Itoa(n) == val {
		return fmt.Sprintf("%q is the bonding driver's number for %s: write %s", val, names[n], names[n])
	}
	return fmt.Sprintf("%q is not %s: use one of %s%s", val, what, strings.Join(names, ", "), schema.Suggest(val, names))
}

// StaticMetric is the metric of the routes of the machine config's first
// interface (network.interfaces[0]), its gateways' default routes and its
// routes that leave metric out: the entry at index i gets StaticMetric + i.
// It is agent/network's staticMetric, which the node applies: the two must
// stay equal, or validation would judge the routes' metrics otherwise than
// the kernel does.
const StaticMetric = 50

// reach is what the next hops of an entry (its gateways', its routes')
// are judged against: its own static prefixes, and those of the other
// entries, which a next hop of this one must not be on.
type reach struct {
	entry    int            // the entry's index in network.interfaces
	prefixes []netip.Prefix // its static addresses
	pfPaths  []string       // the field of each
	// Every entry's static prefixes and their fields, as knownSubnets
	// finds them (by index, this entry's among them).
	subnets     [][]netip.Prefix
	subnetPaths [][]string
}

// knownSubnets are the static prefixes of each entry of ifaces (by index)
// and the field of each: the subnets the config says the machine is on.
// An entry's IPv4 subnet under dhcp: true is the lease's, which only the
// node knows (a static IPv4 address beside it is refused); an entry over
// the bound on addresses is not judged.
func knownSubnets(ifaces []Interface) ([][]netip.Prefix, [][]string) {
	subnets := make([][]netip.Prefix, len(ifaces))
	paths := make([][]string, len(ifaces))
	for i, ifc := range ifaces {
		if len(ifc.Addresses) > maxAddresses {
			continue
		}
		for j, a := range ifc.Addresses {
			pf, err := netip.ParsePrefix(a)
			if err != nil || pf.Addr().Zone() != "" || ifc.DHCP && pf.Addr().Is4() {
				continue
			}
			subnets[i] = append(subnets[i], pf)
			paths[i] = append(paths[i], fmt.Sprintf("network.interfaces[%d].addresses[%d]", i, j))
		}
	}
	return subnets, paths
}

// elsewhere finds hop on another entry than at's: as the static address
// of one (own), else on the subnet of one; k is the entry, j its prefix.
// An IPv6 link-local address is only ever the link's own, and not looked
// for.
func (at reach) elsewhere(hop netip.Addr) (k, j int, own, found bool) {
	if hop.Is6() && hop.IsLinkLocalUnicast() {
		return 0, 0, false, false
	}
	for k, pfs := range at.subnets {
		if k == at.entry {
			continue
		}
		if j := slices.IndexFunc(pfs, func(pf netip.Prefix) bool { return pf.Addr() == hop }); j >= 0 {
			return k, j, true, true
		}
	}
	for k, pfs := range at.subnets {
		if k == at.entry {
			continue
		}
		if j := slices.IndexFunc(pfs, func(pf netip.Prefix) bool { return pf.Contains(hop) }); j >= 0 {
			return k, j, false, true
		}
	}
	return 0, 0, false, false
}

// gateway checks an interface's default route next hop at p.field: raw,
// reached from the entry's prefixes (at). gateway is IPv4 or IPv6, and
// refused with dhcp (DHCP gives the IPv4 one); gateway6 is IPv6 only.
// gateways holds the first default route of each family (is IPv4 → path).
func (v *validator) gateway(p, field, raw string, dhcp bool, at reach, gateways map[bool]string) {
	gp := p + "." + field
	gw, err := netip.ParseAddr(raw)
	switch {
	case err != nil:
		v.errs.Add(gp, "%q is not an IP address", raw)
	case gw.Zone() != "":
		v.errs.Add(gp, "%q has a zone: leave it out (%s: %s), the interface is the zone", raw, field, gw.WithZone(""))
	case field == "gateway6" && (gw.Is4() || gw.Is4In6()):
		v.errs.Add(gp, "%q is an IPv4 address: gateway6 is the IPv6 default route's next hop (2001:db8::1, or the router's fe80::1); give an IPv4 gateway as gateway", raw)
	case dhcp && gw.Is4():
		v.errs.Add(gp, "is only for static addresses: DHCP provides the gateway")
	case dhcp:
		v.errs.Add(gp, "%q with dhcp: true: DHCP provides the IPv4 gateway; give the IPv6 one beside it as gateway6: %s", raw, gw)
	case v.nextHop(gp, raw, gw, at, field):
		if prev, dup := gateways[gw.Is4()]; dup {
			v.warn(gp, "a second default route of the same family (the first is at %s): both are added, this one with a higher metric: traffic and K3s's node address follow the first, and this one only carries traffic when that route is gone (its link down); remove one if that is not what you want", prev)
		} else {
			gateways[gw.Is4()] = gp
		}
	}
}

// routeKey is what the kernel keeps one route of: a network and a metric,
// whichever link the route leaves by (a second one is refused, EEXIST).
type routeKey struct {
	to     netip.Prefix
	metric int
}

// routeAt is where a route the kernel keeps (routeKey) is given.
type routeAt struct {
	path  string // network.interfaces[N].routes[M]
	entry int    // N
	given bool   // its metric is given, not the entry's own
}

// routes checks the static routes of the interface ifc at p, reached from
// its static prefixes (at). routed holds the routes judged so far, of this
// entry and those before it, by network and metric: each route's metric is
// its own when given, else its entry's (StaticMetric + the entry's index),
// as the node adds them.
//
// On a dhcp: true entry, the IPv4 routes leave from the lease's address,
// which only the node knows: their next hops are judged against its subnet
// when it comes (outside it, on-link), here only against what no router
// can be and the other entries' subnets. Its IPv6 routes go beside its
// static IPv6 addresses, which DHCP (DHCPv4) leaves alone.
func (v *validator) routes(p string, ifc Interface, at reach, routed map[routeKey]routeAt) {
	rsp := p + ".routes"
	has6 := slices.ContainsFunc(at.prefixes, func(pf netip.Prefix) bool { return pf.Addr().Is6() })
	switch {
	case ifc.DHCP:
		// Each route is judged below, by its family.
	case len(ifc.Addresses) == 0:
		if ifc.Bond != nil && ifc.VLAN == 0 {
			v.errs.Add(rsp, "given on %s, which has no addresses and only carries the VLANs other entries put on it: put the routes on the entry that has the addresses they leave from (name: %s, vlan: 100, addresses: […])", ifc.Name, ifc.Name)
		}
		return // else the entry is refused already, for want of addresses
	}
	if v.tooMany(rsp, len(ifc.Routes), maxRoutes, "routes", "route the networks this interface reaches through a router; a summary prefix (10.0.0.0/8) covers many") {
		return
	}
	for j, r := range ifc.Routes {
		rp := fmt.Sprintf("%s[%d]", rsp, j)
		lease4 := ifc.DHCP && r.Is4() // leaves from the lease's address
		if ifc.DHCP && !lease4 && !has6 {
			shown := fmt.Sprintf("to %q", r.To)
			if r.To == "" {
				shown = fmt.Sprintf("via %q", r.Via)
			}
			v.errs.Add(rp, "an IPv6 route (%s) with dhcp: true, and this interface has no static IPv6 address for it to leave from: DHCP (DHCPv4) gives only the IPv4 address: list an IPv6 address of the link in addresses, or remove the route", shown)
			continue
		}
		to, toOK := v.routeTo(rp+".to", r.To)
		if r.Via == "" {
			// On the link: the kernel sends to the network's hosts
			// directly, from an address of their family on the link.
			if toOK && !lease4 && !slices.ContainsFunc(at.prefixes, func(pf netip.Prefix) bool { return pf.Addr().Is4() == to.Addr().Is4() }) {
				v.errs.Add(rp, "%s is on the link (no via), and this interface has no %s address to reach it from: give it one in addresses, or put the route on the entry that has one", to, family(to.Addr()))
			}
		} else {
			v.routeVia(rp+".via", r.Via, to, toOK, at, lease4)
		}
		metricOK := true
		switch {
		case r.Metric < 0:
			v.errs.Add(rp+".metric", "%d is negative: give 1 to 4294967295 (the lowest metric wins), or leave metric out for the interface's own", r.Metric)
			metricOK = false
		case int64(r.Metric) > math.MaxUint32:
			v.errs.Add(rp+".metric", "%d is out of range: give 1 to 4294967295 (the lowest metric wins), or leave metric out for the interface's own", r.Metric)
			metricOK = false
		}
		if !toOK || !metricOK {
			continue
		}
		for k, pf := range at.prefixes {
			if pf.Masked() == to {
				v.warn(rp+".to", "%s is the subnet of this interface's address %s (%s): the kernel already routes it on the link: remove this route", to, pf.Addr(), at.pfPaths[k])
				break
			}
		}
		// The node adds a route without metric with its entry's, so a
		// route of one entry and another's may clash either way.
		here := routeAt{path: rp, entry: at.entry, given: r.Metric != 0}
		key := routeKey{to, r.Metric}
		if !here.given {
			key.metric = StaticMetric + at.entry
		}
		prev, dup := routed[key]
		if !dup {
			routed[key] = here
			continue
		}
		ownMetric := func(a routeAt) string {
			if a.given {
				return ""
			}
			return fmt.Sprintf(" (its metric left out: network.interfaces[%d]'s own, %d + the entry's index)", a.entry, StaticMetric)
		}
		prevMetric := ownMetric(prev)
		if !prev.given && !here.given && prev.entry == here.entry {
			prevMetric = " (its metric left out too)"
		}
		link := ""
		if prev.entry != at.entry {
			link = ", whichever link it leaves by"
		}
		v.errs.Add(rp+".to", "%s with metric %d%s is already routed at %s with metric %d%s: the kernel keeps one route per network and metric%s, and refuses this one: give one of them another metric (the lowest wins), or remove one",
			to, key.metric, ownMetric(here), prev.path, key.metric, prevMetric, link)
	}
}

// routeTo checks raw, the network of a route at tp, and returns it.
func (v *validator) routeTo(tp, raw string) (netip.Prefix, bool) {
	if raw == "" {
		v.errs.Add(tp, "missing: give the network this route reaches, in CIDR form (10.20.0.0/16, 2001:db8:20::/48)")
		return netip.Prefix{}, false
	}
	if strings.Contains(raw, "%") {
		v.errs.Add(tp, "%q has a zone: leave it out, the interface is the zone", raw)
		return netip.Prefix{}, false
	}
	pf, err := netip.ParsePrefix(raw)
	if err != nil {
		if a, aerr := netip.ParseAddr(raw); aerr == nil {
			v.errs.Add(tp, "%q has no prefix length: write the network in CIDR form (10.20.0.0/16), or %s/%d for a route to this one host", raw, a, a.BitLen())
		} else {
			v.errs.Add(tp, "%q is not a network in CIDR form, such as 10.20.0.0/16 or 2001:db8:20::/48", raw)
		}
		return netip.Prefix{}, false
	}
	switch a := pf.Addr(); {
	case a.Is4In6():
		// The kernel routes it as IPv6, which no IPv4 packet follows.
		write := "the IPv4 network itself (10.20.0.0/16)"
		if pf.Bits() >= 96 {
			write = netip.PrefixFrom(a.Unmap(), pf.Bits()-96).Masked().String()
		}
		v.errs.Add(tp, "%q is an IPv4-mapped IPv6 network, which no IPv4 packet is routed by: write %s", raw, write)
	case pf.Bits() == 0:
		gw := "gateway"
		if a.Is6() {
			gw = "gateway6"
		}
		v.errs.Add(tp, "%q is the default route: give its next hop as this interface's %s, not as a route", raw, gw)
	case pf != pf.Masked():
		v.errs.Add(tp, "%q has host bits set, and a route reaches a network: write %s, or %s/%d for a route to the host %s alone", raw, pf.Masked(), a, a.BitLen(), a)
	default:
		return pf, true
	}
	return netip.Prefix{}, false
}

// routeVia checks raw, the next hop of a route at vp to the network to
// (when toOK), reached from the interface's prefixes (at).
//
// With lease4 the next hop is IPv4 and reached from a DHCP lease's subnet,
// unknown here (leaseHop).
func (v *validator) routeVia(vp, raw string, to netip.Prefix, toOK bool, at reach, lease4 bool) {
	via, err := netip.ParseAddr(raw)
	switch {
	case err != nil:
		if pf, perr := netip.ParsePrefix(raw); perr == nil {
			v.errs.Add(vp, "%q is a prefix: via is the router's address alone (via: %s)", raw, pf.Addr())
		} else {
			v.errs.Add(vp, "%q is not an IP address: give the router's address on one of this interface's subnets", raw)
		}
	case via.Zone() != "":
		v.errs.Add(vp, "%q has a zone: leave it out (via: %s), the interface is the zone", raw, via.WithZone(""))
	case via.Is4In6():
		v.errs.Add(vp, "%q is an IPv4-mapped IPv6 address: write the IPv4 address, %s", raw, via.Unmap())
	case toOK && via.Is4() != to.Addr().Is4():
		v.errs.Add(vp, "%q is an %s address and to (%s) an %s network: a route's next hop is of its network's family: give an %s router's address", raw, family(via), to, family(to.Addr()), family(to.Addr()))
	case lease4 && via.Is4():
		v.leaseHop(vp, raw, via, at)
	default:
		v.nextHop(vp, raw, via, at, "route")
	}
}

// leaseHop checks hop, the IPv4 next hop at np of a route beside a DHCP
// lease: whether it is on the lease's subnet (else the node adds the route
// on-link) is the node's to judge once the lease is there; here, what no
// router can be, and another entry's address or subnet, which the link of
// a lease cannot reach through its own.
func (v *validator) leaseHop(np, raw string, hop netip.Addr, at reach) {
	k, j, own, elsewhere := at.elsewhere(hop)
	bad, _ := hostAddrProblem(hop, nil)
	if hop == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		bad = "is the limited broadcast address"
	}
	switch {
	case bad != "":
		v.errs.Add(np, "%q %s, not a router's address: give the address of a router on the subnet DHCP gives this interface", raw, bad)
	case own:
		v.errs.Add(np, "%q is the address of network.interfaces[%d] (%s), another interface, and the kernel refuses one of the machine's own addresses as a next hop: put the route on network.interfaces[%d], via a router on its subnet %s", raw, k, at.subnetPaths[k][j], k, at.subnets[k][j].Masked())
	case elsewhere:
		v.errs.Add(np, "%s is on the subnet %s of network.interfaces[%d] (its address %s, %s), another interface: added here, it would send the traffic out this link, where that subnet is not: put the route on network.interfaces[%d]", hop, at.subnets[k][j].Masked(), k, at.subnets[k][j], at.subnetPaths[k][j], k)
	}
}

// family is "IPv4" or "IPv6", as a's family.
func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// nextHop checks hop (written raw), a next hop at np, against the prefixes
// of its interface (at): a router the interface reaches, on one of its
// subnets, or on the link itself (an IPv6 router's link-local address; any
// other address outside every subnet is warned about). what is the next
// hop's: "route", or the field of a gateway. It reports whether hop is
// usable: when not, it said why.
//
// A next hop that is another entry's own address (which the kernel
// refuses) or on another entry's subnet (which the route would leave for
// by this link, on-link, where that subnet is not) belongs to that entry.
// Only the subnets the config gives are known: a dhcp: true entry's IPv4
// one is the lease's, and a next hop on it only warned about as outside.
func (v *validator) nextHop(np, raw string, hop netip.Addr, at reach, what string) bool {
	prefixes := at.prefixes
	k, j, elsewhereOwn, elsewhere := at.elsewhere(hop)
	// Where hop belongs instead, when elsewhere: entry k, through a
	// router on its subnet (hop is one when not its own address).
	moveTo := func() string {
		entry, subnet := fmt.Sprintf("network.interfaces[%d]", k), at.subnets[k][j].Masked()
		switch {
		case what == "route" && elsewhereOwn:
			return fmt.Sprintf("put the route on %s, via a router on its subnet %s", entry, subnet)
		case what == "route":
			return "put the route on " + entry
		case elsewhereOwn:
			return fmt.Sprintf("give %s the %s instead, a router on its subnet %s", entry, what, subnet)
		}
		return fmt.Sprintf("give %s the %s instead", entry, what)
	}
	bad, hosts := hostAddrProblem(hop, prefixes)
	switch {
	case !slices.ContainsFunc(prefixes, func(pf netip.Prefix) bool { return pf.Addr().Is4() == hop.Is4() }):
		if elsewhere {
			v.errs.Add(np, "%s has no address of its family (IPv4/IPv6) on this interface to reach it from, and is on the subnet %s of network.interfaces[%d] (%s): %s", hop, at.subnets[k][j].Masked(), k, at.subnetPaths[k][j], moveTo())
			break
		}
		v.errs.Add(np, "%s has no address of its family (IPv4/IPv6) on this interface to reach it from", hop)
	case slices.Contains(pfAddrs(prefixes), hop):
		v.errs.Add(np, "%q is this interface's own address (%s): give the router's address on this subnet", raw, at.pfPaths[slices.Index(pfAddrs(prefixes), hop)])
	case elsewhereOwn:
		v.errs.Add(np, "%q is the address of network.interfaces[%d] (%s), another interface, and the kernel refuses one of the machine's own addresses as a next hop: %s", raw, k, at.subnetPaths[k][j], moveTo())
	case bad != "":
		hint := "give the router's address"
		if hosts != "" {
			hint += ", " + hosts
		}
		v.errs.Add(np, "%q %s, not a router's address: %s", raw, bad, hint)
	default:
		// An IPv6 router's link-local address is its usual one, reached
		// on the link (the route's interface is its zone).
		linkLocal6 := hop.Is6() && hop.IsLinkLocalUnicast()
		if linkLocal6 || slices.ContainsFunc(prefixes, func(pf netip.Prefix) bool { return pf.Contains(hop) }) {
			return true
		}
		if elsewhere {
			v.errs.Add(np, "%s is on the subnet %s of network.interfaces[%d] (its address %s, %s), another interface: added on-link here, it would send the traffic out this link, where that subnet is not: %s", hop, at.subnets[k][j].Masked(), k, at.subnets[k][j], at.subnetPaths[k][j], moveTo())
			return false
		}
		v.warn(np, "%s is outside every subnet of this interface: it will be added as an on-link route", hop)
		return true
	}
	return false
}

// dnsServerProblem says why a, given as a name server on an interface
// with the static prefixes, cannot be one, or "": resolv.conf sends each
// query to one unicast address, which something must answer.
func dnsServerProblem(a netip.Addr, prefixes []netip.Prefix) string {
	const give = "give the address of a name server on the network"
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		// Étoile runs no resolver of its own, and K3s, finding a
		// loopback name server in resolv.conf, gives CoreDNS and the
		// pods 8.8.8.8 instead, which a site's names are not in.
		return "is a loopback address: nothing answers DNS on the node's loopback, and K3s replaces a loopback name server with 8.8.8.8 for the pods: " + give
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "is the broadcast address, not a name server's: " + give
	case a.Is6() && a.IsLinkLocalUnicast():
		return "is an IPv6 link-local address, which needs a zone (the interface) that Étoile does not write into resolv.conf: use the name server's global or ULA address"
	}
	if what, _ := hostAddrProblem(a, prefixes); what != "" {
		return what + ", not a name server's: " + give
	}
	return ""
}

// Notes are what a machine config may do on some machines and not on
// others, which only the machine can tell: `etoile config validate` shows
// them; the node does not, and warns instead when it happens (a static
// link without a gateway is often a storage network's port, and harmless
// where another link keeps DHCP's default route).
func (c *MachineConfig) Notes() []string {
	var notes []string
	for i, ifc := range c.Network.Interfaces {
		// A bond's link is new, but its members had the boot's DHCP
		// lease, as a plain interface had: it is judged as one.
		had := "this link"
		switch {
		case ifc.DHCP || ifc.Gateway != "" || ifc.Gateway6 != "":
			return nil // a default route of the config's own, or DHCP's
		case ifc.VLAN != 0: // a VLAN link never had the boot's DHCP
			continue
		case ifc.Bond != nil && len(ifc.Addresses) == 0:
			continue // carries only VLANs: not a static link at all
		case ifc.Bond != nil:
			had = "a member of " + ifc.Name
		}
		notes = append(notes, fmt.Sprintf("network.interfaces[%d]: static without a gateway, and no interface of this config has one: if %s had the machine's default route from DHCP, it goes, and the machine reaches only its own subnets (the node warns when it happens; add gateway: if it is the machine's way out)", i, had))
	}
	return notes
}

// macProblem says why a MAC address is not one interface's own, or "".
func macProblem(hw net.HardwareAddr) string {
	switch {
	case bytes.Equal(hw, bytes.Repeat([]byte{0xff}, len(hw))):
		return "is the broadcast address"
	case bytes.Equal(hw, make([]byte, len(hw))):
		return "is all zeros"
	case hw[0]&1 != 0:
		return "is a multicast address (its first byte is odd)"
	}
	return ""
}

// hostAddrProblem says why a is not an address a host can have, or "": the
// unspecified, loopback and multicast addresses, and an IPv4 subnet's
// network and broadcast addresses, for the subnets in prefixes that hold a
// (except /31 and /32, which have neither). IPv4 link-local is allowed. For
// a subnet's own addresses, hosts is the range of its host addresses.
func hostAddrProblem(a netip.Addr, prefixes []netip.Prefix) (what, hosts string) {
	switch {
	case a.IsUnspecified():
		return "is the unspecified address", ""
	case a.IsLoopback():
		return "is a loopback address (lo has its own)", ""
	case a.IsMulticast():
		return "is a multicast address", ""
	}
	for _, pf := range prefixes {
		if !a.Is4() || !pf.Addr().Is4() || pf.Bits() >= 31 || !pf.Contains(a) {
			continue
		}
		network := pf.Masked().Addr()
		n4 := network.As4()
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(n4[:])|(1<<(32-pf.Bits())-1))
		broadcast := netip.AddrFrom4(b)
		hosts = fmt.Sprintf("from %s to %s", network.Next(), broadcast.Prev())
		switch a {
		case network:
			return "is the network address of " + pf.Masked().String(), hosts
		case broadcast:
			return "is the broadcast address of " + pf.Masked().String(), hosts
		}
	}
	return "", ""
}

func pfAddrs(prefixes []netip.Prefix) []netip.Addr {
	addrs := make([]netip.Addr, len(prefixes))
	for i, pf := range prefixes {
		addrs[i] = pf.Addr()
	}
	return addrs
}

// maxIfName is the longest Linux interface name (IFNAMSIZ less the NUL).
const maxIfName = 15

func ifNameProblem(n string) string {
	if len(n) > maxIfName || n == "." || n == ".." || strings.ContainsFunc(n, func(r rune) bool {
		return r == '/' || r == ':' || unicode.IsSpace(r) || r > unicode.MaxASCII || unicode.IsControl(r)
	}) {
		return "is not a Linux interface name: at most 15 characters, without '/', ':' or spaces"
	}
	return ""
}

func (v *validator) k3s(c *MachineConfig) {
	if v.tooMany("k3s", len(c.K3s), maxK3sKeys, "options", "give the K3s options this node changes from their defaults") {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(c.K3s)) {
		p := "k3s." + k
		base := strings.TrimSuffix(k, "+") // K3s's "key+:" appends to a list
		if c.K3s[k].node == nil {
			v.errs.Add(p, "empty: give a value, or remove the key")
			continue
		}
		if v.tooMany(p, len(c.K3s[k].Strings()), maxK3sItems, "values", "give the values this option needs; K3s passes each on") {
			continue
		}
		if strings.HasPrefix(k, "-") {
			v.errs.Add(p, "write K3s option names without the leading dashes: %s", strings.TrimLeft(base, "-"))
			continue
		}
		if msg, reserved := k3sReservedKeys[base]; reserved {
			v.errs.Add(p, "Étoile sets this itself: %s", msg)
			continue
		}
		if long, short := k3sShortNames[base]; short {
			v.errs.Add(p, "write %s instead of %s (K3s's short name for it), so that its value is checked as %s's", long, base, long)
			continue
		}
		if msg, oneShot := k3sOneShotKeys[base]; oneShot {
			v.errs.Add(p, "%s", msg)
			continue
		}
		if repl, removed := k3sRemovedKeys[base]; removed {
			v.errs.Add(p, "K3s no longer has this option: use %s", repl)
			continue
		}
		if repl, deprecated := k3sDeprecatedKeys[base]; deprecated {
			v.warn(p, "deprecated by K3s: use %s", repl) // and checked as its replacement below
		}
		if msg := k3sValueProblem(base, c.K3s[k]); msg != "" {
			v.errs.Add(p, "%s", msg)
			continue
		}
		if reserved := k3sReservedArgs[base]; reserved != nil {
			for i, item := range c.K3s[k].Strings() {
				ip := p
				if c.K3s[k].IsList() {
					ip = fmt.Sprintf("%s[%d]", p, i)
				}
				// K3s passes each item as --ITEM, and the components'
				// flag parsers take "--name=value" and read '_' as '-'.
				name := strings.TrimLeft(item, "-")
				if j := strings.IndexAny(name, "= \t"); j >= 0 {
					name = name[:j]
				}
				name = strings.ReplaceAll(name, "_", "-")
				if msg, ok := reserved[name]; ok {
					v.errs.Add(ip, "%q: %s is set by Étoile and K3s, not here: %s", item, name, msg)
				}
			}
		}
		if base == "disable" {
			for _, name := range c.K3s[k].Strings() {
				for _, part := range strings.Split(name, ",") {
					if part = strings.TrimSpace(part); !slices.Contains(k3sDisableable, part) {
						v.warn(p, "%q is not one of K3s's packaged components (%s)%s: K3s skips it without a word, and deploys what it meant to leave out", part, strings.Join(k3sDisableable, ", "), schema.Suggest(part, k3sDisableable))
					}
				}
			}
		}
		if base == "disable-apiserver" && c.K3sFlag(base) && c.Role != RoleAgent {
			v.warn(p, "this server runs no API server: the agent judges K3s ready from its /readyz and node, so K3s's state stays running (an etcd-only server is ready once the cluster's API servers list it)")
		}
		switch only := k3sOnlyFor(base); {
		case only != "":
			if c.Role != "" && c.Role != only {
				v.warn(p, "only k3s %s has this option; this node is %s, so it is left out of K3s's config", only, article(c.Role))
			}
		case k3sAgentSet[base]:
		default:
			v.warn(p, "not a K3s option in K3s's documentation%s; it is passed to K3s as written, which skips options it does not know", schema.Suggest(base, k3sAllKeys))
		}
	}
}

// k3sValueProblem checks the values K3s parses itself (booleans, numbers,
// durations, addresses, networks, choices), which would otherwise stop K3s
// at start.
func k3sValueProblem(key string, val K3sValue) string {
	if msg := k3sAddressProblem(key, val); msg != "" {
		return msg
	}
	var kind string
	var ok func(string) bool
	switch {
	case k3sChoiceKeys[key] != nil:
		choices := k3sChoiceKeys[key]
		kind, ok = "one of "+strings.Join(choices, ", "), func(s string) bool { return slices.Contains(choices, s) }
	case key == "service-node-port-range":
		kind, ok = "a port range such as 30000-32767", func(s string) bool { return portRangeOK(s) }
	case k3sBoolKeys[key]:
		kind, ok = "true or false", func(s string) bool { _, err := strconv.ParseBool(s); return err == nil }
	case k3sIntKeys[key]:
		if s := val.Strings(); !val.IsList() && len(s) == 1 && octalLike.MatchString(s[0]) {
			// K3s parses whole numbers as Go's flag package does, where a
			// leading 0 means octal: 010 is 8, and 09 does not parse.
			return fmt.Sprintf("%q: K3s reads a number with a leading 0 as octal (%s); write it without the 0: %s", s[0], octalReading(s[0]), decimalOf(s[0]))
		}
		kind, ok = "a whole number (decimal)", func(s string) bool { _, err := strconv.Atoi(s); return err == nil }
	case key == "write-kubeconfig-mode":
		// K3s parses it as octal (strconv.ParseInt(mode, 8, 0)) and only
		// logs an error when it does not parse.
		kind, ok = "a file mode in octal such as 0644 or 0600", func(s string) bool {
			m, err := strconv.ParseUint(s, 8, 32)
			return err == nil && m <= 0o7777
		}
	case k3sDurationKeys[key]:
		kind, ok = "a duration such as 5m0s", func(s string) bool { _, err := time.ParseDuration(s); return err == nil }
	case val.IsList() && knownK3sKey(key) && !k3sListKeys[key] && k3sAddressKeys[key] == "" && key != "disable":
		// K3s reads a list given to an option of one value and keeps
		// only its last item.
		return "a list: this option takes one value (K3s would keep only the list's last item)"
	default:
		return ""
	}
	if val.IsList() {
		return fmt.Sprintf("a list: this option takes one value, %s", kind)
	}
	if s := val.Strings()[0]; !ok(s) {
		if key == "write-kubeconfig-mode" {
			return fmt.Sprintf("%s: K3s expects %s, and would write the admin kubeconfig with its default mode (0600) instead", quoteURL(s), kind)
		}
		return fmt.Sprintf("%s: K3s expects %s and would refuse to start", quoteURL(s), kind)
	}
	return ""
}

// decimalOf writes s, a number with a leading 0, as the decimal it looks like.
func decimalOf(s string) string {
	if n, err := strconv.Atoi(strings.ReplaceAll(s, "_", "")); err == nil {
		return strconv.Itoa(n)
	}
	return strings.TrimLeft(s, "0")
}

// octalReading says what K3s makes of a number with a leading 0.
func octalReading(s string) string {
	if n, err := strconv.ParseInt(s, 0, 64); err == nil {
		return "it would be " + strconv.FormatInt(n, 10)
	}
	return "it would refuse to start on it"
}

// k3sAddressProblem checks the K3s options that take IP addresses or
// networks: K3s splits each list item at commas (a dual-stack pair,
// 10.0.0.5,2001:db8::5) and refuses to start on one that does not parse.
func k3sAddressProblem(key string, val K3sValue) string {
	kind, single := k3sAddressKeys[key], k3sSingleAddressKeys[key]
	if kind == "" {
		return ""
	}
	if single && val.IsList() {
		return fmt.Sprintf("a list: this option takes %s, one", kind)
	}
	var bad []string
	for _, item := range val.Strings() {
		parts := strings.Split(item, ",")
		if single && len(parts) > 1 {
			return fmt.Sprintf("%s: this option takes %s, one", quoteURL(item), kind)
		}
		for _, part := range parts {
			if part != strings.TrimSpace(part) {
				// K3s splits at the comma and does not trim.
				fixed := strings.Join(trimAll(parts), ",")
				return fmt.Sprintf("%s: K3s does not trim spaces (around a comma or the value) and would refuse to start: write %s", quoteURL(item), unquote(quoteURL(fixed)))
			}
			part = strings.TrimSpace(part)
			var err error
			if kind == "a network (CIDR)" {
				_, _, err = net.ParseCIDR(part)
			} else if net.ParseIP(part) == nil {
				err = errors.New("not an IP address")
			}
			if err != nil {
				bad = append(bad, quoteURL(part))
			}
		}
	}
	if len(bad) == 0 {
		return ""
	}
	example := "10.42.0.0/16 (a list, or two joined by a comma, for dual-stack: 10.42.0.0/16,2001:db8:42::/56)"
	if kind != "a network (CIDR)" {
		example = "10.0.0.5 (a list, or two joined by a comma, for dual-stack: 10.0.0.5,2001:db8::5)"
		if single {
			example = "10.0.0.5 or 2001:db8::5"
		}
	}
	return fmt.Sprintf("%s: not %s, and K3s would refuse to start: give one such as %s", strings.Join(bad, ", "), kind, example)
}

func trimAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.TrimSpace(s)
	}
	return out
}

// portRangeOK reports whether s is a port range as Kubernetes parses it:
// FIRST-LAST or FIRST+COUNT, within 1..65535.
func portRangeOK(s string) bool {
	first, rest, plus := strings.Cut(s, "+")
	if !plus {
		first, rest, _ = strings.Cut(s, "-")
	}
	a, err1 := strconv.Atoi(first)
	b, err2 := strconv.Atoi(rest)
	if err1 != nil || err2 != nil || a < 1 || a > 65535 || b < 0 {
		return false
	}
	if plus {
		b = a + b
	}
	return b >= a && b <= 65535
}

func (v *validator) registries(r *Registries) {
	if r == nil {
		return
	}
	if v.tooMany("registries.mirrors", len(r.Mirrors), maxRegistries, "mirrors", `list the registries this node pulls from ("*" stands for every other)`) ||
		v.tooMany("registries.configs", len(r.Configs), maxRegistries, "configs", "give one entry per registry host this node reaches") {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(r.Mirrors)) {
		p := "registries.mirrors." + withoutUserinfo(name)
		if name == "" || strings.Contains(name, "://") || strings.ContainsAny(name, " /@") {
			v.errs.Add(p, "%q is not a registry name: use a host with optional port (registry.example.com:5000), docker.io, or \"*\"", withoutUserinfo(name))
		} else if msg := portProblem(name); msg != "" {
			v.errs.Add(p, "%q %s: use a host with optional port (registry.example.com:5000)", name, msg)
		}
		m := r.Mirrors[name]
		endpoints := m.Endpoint
		if v.tooMany(p+".endpoint", len(m.Endpoint), maxMirrorEndpoints, "endpoints", "give the few endpoints that serve this registry: containerd tries them in order") {
			endpoints = nil
		}
		for i, e := range endpoints {
			ep := fmt.Sprintf("%s.endpoint[%d]", p, i)
			u, err := url.Parse(e)
			if _, user, _, _, _ := urlParts(e); user {
				// Judged without its userinfo, which ends at the last '@':
				// url.Parse reads https://bob:12#34@host as the host
				// bob:12, and its error's detail would quote a password
				// holding '/', '?' or '#' as the host's port.
				u, err = url.Parse(withoutUserinfo(e))
			}
			switch {
			case err != nil:
				v.errs.Add(ep, "%s is not a URL%s: use https://HOST[:PORT] (or http:// for a registry without TLS)", quoteURL(e), urlErrDetail(err))
			case u.Host == "":
				v.errs.Add(ep, "%s is not a URL: use https://HOST[:PORT] (or http:// for a registry without TLS)", quoteURL(e))
			case u.Scheme != "https" && u.Scheme != "http":
				v.errs.Add(ep, "%s: use an https:// or http:// URL", quoteURL(e))
			case u.User != nil:
				v.errs.Add(ep, "%s has credentials in the URL: put them in registries.configs.%s.auth", quoteURL(e), u.Host)
			case portProblem(u.Host) != "":
				v.errs.Add(ep, "%s %s: give the registry's port, or none for %s's default", quoteURL(e), portProblem(u.Host), u.Scheme)
			case hostProblem(u.Hostname()) != "":
				v.errs.Add(ep, "%s %s: use https://HOST[:PORT]", quoteURL(e), hostProblem(u.Hostname()))
			case u.Scheme == "http" && r.Configs[u.Host].Auth != nil:
				// containerd sends a host's credentials to each of its
				// endpoints, over the endpoint's scheme.
				v.warn(ep, "%s is plain http, and registries.configs.%s.auth gives credentials for %s: they would cross the network in clear, for anyone on the path to read: serve the registry over https, or give it no credentials (or ones that can only pull)", quoteURL(e), u.Host, u.Host)
			}
		}
		for _, pat := range slices.Sorted(maps.Keys(m.Rewrite)) {
			if _, err := regexp.Compile(pat); err != nil {
				v.errs.Add(p+".rewrite", "%q is not a regular expression (%v): K3s would skip this rewrite", pat, err)
			}
		}
	}
	for _, host := range slices.Sorted(maps.Keys(r.Configs)) {
		p := "registries.configs." + withoutUserinfo(host)
		if host == "" || strings.Contains(host, "://") || strings.ContainsAny(host, " /@") {
			v.errs.Add(p, "%q: use the registry host with optional port, as in the mirror endpoint, without scheme, credentials or path (credentials go in auth)", withoutUserinfo(host))
		} else if msg := portProblem(host); msg != "" {
			v.errs.Add(p, "%q %s: use the registry host with optional port, as in the mirror endpoint", host, msg)
		}
		rc := r.Configs[host]
		if a := rc.Auth; a != nil {
			switch {
			case (a.Username == "") != (a.Password == ""):
				v.errs.Add(p+".auth", "give username and password together")
			case a.Username == "" && a.Auth == "" && a.IdentityToken == "":
				v.errs.Add(p+".auth", "empty: give username and password, auth, or identity_token")
			}
		}
		if t := rc.TLS; t != nil {
			v.registryTLS(p+".tls", t)
		}
	}
}

// registryTLS checks one registry host's TLS client setup: files on the
// node (absolute paths), or the PEM itself (ca, cert and key), not both
// for one part; a client certificate with its key.
func (v *validator) registryTLS(p string, t *RegistryTLS) {
	const keyAdvice = "give a client certificate's key as key, and keep it out of ca and cert"
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		v.errs.Add(p, "give cert_file and key_file together: a client certificate needs its key")
	case (t.Cert == "") != (t.Key == ""):
		v.errs.Add(p, "give cert and key together: a client certificate needs its key")
	}
	for _, f := range []struct{ name, val string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"ca_file", t.CAFile}} {
		if f.val != "" && !path.IsAbs(f.val) {
			v.errs.Add(p+"."+f.name, "%q is relative: give the absolute path of the file on the node", f.val)
		}
	}
	if t.CA != "" && t.CAFile != "" {
		v.errs.Add(p+".ca", "given with ca_file: give the certificate authority once, as ca (its PEM) or ca_file (a file on the node)")
	} else if t.CA != "" {
		if certs, problem := PEMCertificates(t.CA, keyAdvice); problem != "" {
			v.errs.Add(p+".ca", "%s", problem)
		} else {
			for _, c := range certs {
				if msg := certValidity(c, time.Now()); msg != "" {
					v.warn(p+".ca", "%s %s: the registry's certificate cannot be checked against it", CertName(c), msg)
				}
			}
		}
	}
	if (t.Cert != "" || t.Key != "") && (t.CertFile != "" || t.KeyFile != "") {
		v.errs.Add(p+".cert", "given with cert_file and key_file: give the client certificate once, as cert and key (their PEM) or as files on the node")
	} else if t.Cert != "" && t.Key != "" {
		if certs, problem := PEMCertificates(t.Cert, keyAdvice); problem != "" {
			v.errs.Add(p+".cert", "%s", problem)
		} else {
			if msg := certValidity(certs[0], time.Now()); msg != "" {
				v.warn(p+".cert", "%s %s: the registry will refuse it", CertName(certs[0]), msg)
			}
			if problem := keyPairProblem(t.Cert, t.Key); problem != "" {
				v.errs.Add(p+".key", "%s", problem)
			}
		}
	}
	if t.InsecureSkipVerify {
		v.warn(p+".insecure_skip_verify", "the registry's certificate is not checked: anyone on the path can serve images")
	}
}

// caCertificates checks the site's certificate authorities: PEM
// certificates only (a private key pasted in is refused, never shown);
// one given twice, one that is not a CA's, and one outside its validity
// at now are warned about.
func (v *validator) caCertificates(list []string, now time.Time) {
	if v.tooMany("ca_certificates", len(list), maxCACertificates, "entries", "give the site's few certificate authorities; one entry may hold several certificates") {
		return
	}
	seen := map[[32]byte]string{} // certificate → where it is first given
	for i, text := range list {
		p := fmt.Sprintf("ca_certificates[%d]", i)
		certs, problem := PEMCertificates(text, "only the certificate authority's certificate belongs here: remove the key from the config, and keep it secret")
		if problem != "" {
			v.errs.Add(p, "%s", problem)
			continue
		}
		for j, c := range certs {
			where := p
			if len(certs) > 1 {
				where = fmt.Sprintf("%s (certificate %d)", p, j+1)
			}
			sum := sha256.Sum256(c.Raw)
			if prev, ok := seen[sum]; ok {
				v.warn(where, "%s is also %s: give it once", CertName(c), prev)
				continue
			}
			seen[sum] = where
			if !c.BasicConstraintsValid || !c.IsCA {
				v.warn(where, "%s is not a certificate authority's (no CA basic constraint): it vouches only for itself, the one server that presents it", CertName(c))
			}
			if msg := certValidity(c, now); msg != "" {
				v.warn(where, "%s %s: connections it should vouch for are refused: give the authority's current certificate", CertName(c), msg)
			}
		}
	}
}

// proxy checks the proxy section. Its URLs are shown by proxyShown, which
// hides their passwords, and its no_proxy entries by noProxyShown, which
// hides all before an '@': the messages reach every console and the log.
func (v *validator) proxy(c *MachineConfig) {
	p := c.Proxy
	if p == nil {
		return
	}
	before := len(v.errs)
	switch {
	case p.HTTPProxy == "" && p.HTTPSProxy == "" && len(p.NoProxy) == 0:
		v.errs.Add("proxy", "empty: give http_proxy or https_proxy (http://proxy.example.com:3128), or remove proxy")
	case p.HTTPProxy == "" && p.HTTPSProxy == "":
		v.errs.Add("proxy.no_proxy", "given without http_proxy or https_proxy, so it would do nothing: give the proxy (https_proxy: http://proxy.example.com:3128), or remove proxy")
	}
	for _, f := range []struct{ name, val string }{{"http_proxy", p.HTTPProxy}, {"https_proxy", p.HTTPSProxy}} {
		if f.val == "" {
			continue
		}
		if msg := proxyURLProblem(f.val); msg != "" {
			v.errs.Add("proxy."+f.name, "%s %s", proxyShown(f.val), msg)
		}
	}
	if v.tooMany("proxy.no_proxy", len(p.NoProxy), maxNoProxy, "entries", "a network (10.0.0.0/8) or a domain (example.com, with its subdomains) stands for many destinations") {
		return
	}
	seen := map[string]int{}
	for i, e := range p.NoProxy {
		ep := fmt.Sprintf("proxy.no_proxy[%d]", i)
		if msg := noProxyProblem(e); msg != "" {
			v.errs.Add(ep, "%s %s", noProxyShown(e), msg)
			continue
		}
		if j, dup := seen[strings.ToLower(e)]; dup {
			v.warn(ep, "%q is also proxy.no_proxy[%d]: remove one", e, j)
			continue
		}
		seen[strings.ToLower(e)] = i
		if e == "*" && (p.HTTPProxy != "" || p.HTTPSProxy != "") {
			v.warn(ep, `"*" sends every destination direct, so the proxy is never used: remove * (or the proxy section)`)
		}
	}
	if len(v.errs) > before {
		return
	}
	if p.HTTPProxy != "" && p.HTTPSProxy == "" {
		// Go's programs take the proxy of an https:// URL from
		// HTTPS_PROXY alone: HTTP_PROXY is for http:// ones.
		v.warn("proxy.http_proxy", "given without https_proxy: Go's programs (K3s, containerd, the agent's hub client) take the proxy for https:// URLs from HTTPS_PROXY alone, so image pulls from registries over https, and the hub, would go direct, not through this proxy: set https_proxy too (usually the same URL)")
	}
	if c.Cluster == nil || c.Cluster.Server == "" {
		return
	}
	if msg, _ := serverURLProblem(c.Cluster.Server); msg != "" {
		return // refused at cluster.server
	}
	u, err := url.Parse(c.Cluster.Server)
	if err != nil || !p.serverProxied(u) {
		return
	}
	// K3s's HTTP clients read HTTPS_PROXY (its requests to join the
	// server among them), and a site's proxy usually refuses CONNECT to
	// port 6443, or cannot reach the site's own networks at all.
	unless := ""
	if net.ParseIP(u.Hostname()) != nil {
		// The networks the agent adds match addresses, never names.
		unless = " unless it is on one of this machine's own networks, which the agent adds to NO_PROXY when K3s starts"
	}
	v.warn("proxy.no_proxy", "does not cover cluster.server's host %s, so K3s would reach the server %s://%s through the proxy (proxies usually refuse or break it)%s: add %s to no_proxy", u.Hostname(), u.Scheme, u.Host, unless, u.Hostname())
}

func (v *validator) time(t *Time) {
	if t == nil {
		return
	}
	if t.Disabled && len(t.Servers) > 0 {
		v.errs.Add("time", "servers are given with disabled: true: remove one (disabled leaves the clock alone)")
	}
	if v.tooMany("time.servers", len(t.Servers), maxTimeServers, "servers", "give the few NTP servers this site reaches (or a pool name)") {
		return
	}
	seen := map[string]int{}
	for i, s := range t.Servers {
		p := fmt.Sprintf("time.servers[%d]", i)
		if msg := ntpServerProblem(s); msg != "" {
			v.errs.Add(p, "%s %s", quoteURL(s), msg)
			continue
		}
		if j, ok := seen[strings.ToLower(s)]; ok {
			v.errs.Add(p, "%q is also time.servers[%d]", s, j)
		}
		seen[strings.ToLower(s)] = i
	}
}

// ntpServerProblem says what is wrong with an NTP server address (host,
// IP, host:port, [IPv6]:port), or "".
func ntpServerProblem(s string) string {
	const want = "is not an NTP server: give a host name or IP address, with :port when not 123 ([2001:db8::1]:123 for IPv6 with a port)"
	if strings.Contains(s, "://") {
		return want
	}
	host, port := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if inner, ok := strings.CutPrefix(s, "["); ok && strings.HasSuffix(inner, "]") {
		host = strings.TrimSuffix(inner, "]") // [2001:db8::1] without a port
		if _, err := netip.ParseAddr(host); err != nil {
			return want
		}
	} else if strings.Count(s, ":") == 1 || strings.HasPrefix(s, "[") {
		return want
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "has a port that is not 1..65535"
		}
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if hostnameLike(host) != nil {
		return want
	}
	return ""
}

// hostProblem says what is wrong with a URL's host (without brackets or
// port): neither an IP address nor a DNS name, or "".
func hostProblem(host string) string {
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if ipv4ish.MatchString(host) {
		return fmt.Sprintf("has host %q, which is not an IPv4 address (four numbers 0 to 255, without leading zeros)", host)
	}
	// Underscores are not RFC 1123, but resolvers (Go's, K3s's) take them
	// and internal names have them: allowed here.
	if err := hostnameLike(strings.ReplaceAll(host, "_", "x")); err != nil {
		return fmt.Sprintf("has host %q, which is neither an IP address nor a DNS name (letters, digits and -, between dots; no label starting or ending with -)", host)
	}
	return ""
}

// ipv4ish matches what can only be meant as an IPv4 address: digits and dots.
var ipv4ish = regexp.MustCompile(`^[0-9.]+$`)

// hostnameLike checks a DNS name: dot-separated RFC 1123 labels.
func hostnameLike(h string) error {
	if h == "" || len(h) > 253 {
		return errors.New("bad length")
	}
	for _, l := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if len(l) > 63 || !dnsLabel.MatchString(strings.ToLower(l)) {
			return fmt.Errorf("bad label %q", l)
		}
	}
	return nil
}

// hosts checks the /etc/hosts entries: an address each (no zone: the
// resolver reads none there), and names that are host names; a name given
// twice for one address is warned about. A name may have several addresses
// (Go's resolver, K3s's and containerd's, answers with all of them).
func (v *validator) hosts(hs []HostEntry) {
	if v.tooMany("hosts", len(hs), maxHosts, "entries", "give the few names this site's DNS does not know; the others belong in its DNS") {
		return
	}
	type named struct {
		path string
		addr netip.Addr
	}
	seen := map[string][]named{} // name → where it is given, by address
	for i, h := range hs {
		p := fmt.Sprintf("hosts[%d]", i)
		a, err := netip.ParseAddr(h.IP)
		switch {
		case h.IP == "":
			v.errs.Add(p+".ip", "missing: give the address the names resolve to, such as 192.0.2.10")
		case err != nil:
			v.errs.Add(p+".ip", "%q is not an IP address: write an IPv4 or IPv6 address, such as 192.0.2.10", h.IP)
		case a.Zone() != "":
			v.errs.Add(p+".ip", "%q has a zone: /etc/hosts takes none: give a global address", h.IP)
		case a.IsUnspecified() || a.IsMulticast():
			v.errs.Add(p+".ip", "%q is not one host's address: give the address of the machine the names name", h.IP)
		}
		if len(h.Names) == 0 {
			v.errs.Add(p+".names", "empty: give the names that resolve to %s, such as registry.example.com", h.IP)
			continue
		}
		if v.tooMany(p+".names", len(h.Names), maxHostNames, "names", "give the address's few names; more belong in the site's DNS") {
			continue
		}
		for j, n := range h.Names {
			np := fmt.Sprintf("%s.names[%d]", p, j)
			if hostnameLike(n) != nil || strings.HasSuffix(n, ".") {
				v.errs.Add(np, "%q is not a host name: letters, digits and hyphens in dot-separated labels, such as registry.example.com", n)
				continue
			}
			if !a.IsValid() {
				continue // its address is refused above
			}
			key := strings.ToLower(n)
			for _, prev := range seen[key] {
				switch {
				case prev.addr == a:
					v.warn(np, "%q is also %s, with the same address: give it once", n, prev.path)
				}
			}
			seen[key] = append(seen[key], named{path: np, addr: a})
		}
	}
}

var sysctlPart = regexp.MustCompile(`^[A-Za-z0-9_][-A-Za-z0-9_.:@]*$`)

func (v *validator) sysctls(m map[string]string) {
	if v.tooMany("sysctls", len(m), maxSysctls, "kernel parameters", "give the parameters this node needs changed from the kernel's defaults") {
		return
	}
	seen := map[string]string{} // file under /proc/sys → the first name for it
	for _, k := range slices.Sorted(maps.Keys(m)) {
		p := "sysctls." + k
		file := SysctlPath(k)
		parts := strings.Split(file, "/")
		ok := len(parts) >= 2
		for _, part := range parts {
			ok = ok && part != ".." && part != "." && sysctlPart.MatchString(part)
		}
		if !ok {
			v.errs.Add(p, "%q is not a kernel parameter name: write it as sysctl(8) does (net.ipv4.ip_forward), or with / between its parts when one holds a dot (net/ipv4/conf/eth0.42/forwarding, or net.ipv4.conf.eth0/42.forwarding)", k)
			continue
		}
		if first, dup := seen[file]; dup {
			// The agent would write both, and the kernel keep the value
			// written last: which one would depend on the spelling.
			v.errs.Add(p, "is the same kernel parameter as sysctls.%s (/proc/sys/%s), written another way: keep one", first, file)
			continue
		}
		seen[file] = k
		if val := m[k]; strings.TrimSpace(val) == "" || strings.ContainsAny(val, "\n\r") {
			v.errs.Add(p, "%q: give the value on one line, as written to /proc/sys/%s", val, file)
		}
	}
}

// kubeletSysctlValues are the kernel parameters the kubelet sets when it starts
// (its container manager's kernel tunables), unless protect-kernel-defaults
// makes it refuse to start where they differ instead; by their
// /proc/sys path.
var kubeletSysctlValues = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// kubeletSysctls warns of a sysctls: value the kubelet (K3s's, on a node
// that runs one) replaces when it starts, or, with K3s's
// protect-kernel-defaults, refuses to start with.
func (v *validator) kubeletSysctls(c *MachineConfig) {
	if c.Role == RoleServer && c.K3sFlag("disable-agent") {
		return // no kubelet
	}
	protect := c.K3sFlag("protect-kernel-defaults")
	for _, a := range c.K3s["kubelet-arg"].Strings() {
		a = strings.TrimPrefix(a, "--")
		if a == "protect-kernel-defaults" || strings.HasPrefix(a, "protect-kernel-defaults=") && strings.EqualFold(strings.TrimPrefix(a, "protect-kernel-defaults="), "true") {
			protect = true
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Sysctls)) {
		want, ok := kubeletSysctlValues[SysctlPath(k)]
		if !ok || strings.TrimSpace(c.Sysctls[k]) == want {
			continue
		}
		if protect {
			v.warn("sysctls."+k, "%q: with k3s protect-kernel-defaults the kubelet refuses to start unless it is %s: give %s, or drop protect-kernel-defaults", c.Sysctls[k], want, want)
		} else {
			v.warn("sysctls."+k, "%q lasts only until K3s's kubelet starts, which sets it to %s: leave it out (or set k3s protect-kernel-defaults: true and %s)", c.Sysctls[k], want, want)
		}
	}
}

func (v *validator) install(in *Install) {
	if in == nil || in.Disk == nil {
		return
	}
	d := in.Disk
	if *d == (DiskSelector{}) {
		v.errs.Add("install.disk", "empty: say which disk with path (/dev/disk/by-id/…), model, serial or wwn (as `etoile-agent inventory` shows them), or leave disk out")
	}
	if d.Path != "" && !strings.HasPrefix(d.Path, "/dev/") {
		v.errs.Add("install.disk.path", "%q: give a device path under /dev (best /dev/disk/by-id/…)", d.Path)
	}
}

func (v *validator) constellation(cs *Constellation, role string) {
	if cs == nil {
		return
	}
	if cs.Join != "" && role == RoleAgent {
		// A warning, not an error: the node still reports its health and
		// capacity to the hub, but K3s deploys the hub's templates only on
		// a server (an agent has no deploy controller), and the node says
		// they are not applied.
		v.warn("constellation.join", "on a role: agent node the hub's templates are not deployed: K3s deploys them only on a server; give the constellation section to the site's server")
	}
	// The join string holds the token's secret: messages never show it.
	if strings.IndexFunc(cs.Join, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		v.errs.Add("constellation.join", "contains spaces or control characters: a join string is one word, as printed by `etoile hub token create`")
		return
	}
	if cs.Join == "" {
		return
	}
	if _, err := api.ParseJoinString(cs.Join); err != nil {
		// url.Parse's errors quote the whole string.
		msg := strings.ReplaceAll(err.Error(), strconv.Quote(cs.Join), "(the join string)")
		msg = strings.ReplaceAll(msg, cs.Join, "(the join string)")
		switch {
		case strings.Contains(msg, "etoile hub token create"):
		case strings.Contains(msg, "://HOST"):
			msg += "; copy it again from `etoile hub token create`"
		default:
			msg += ": copy it again from `etoile hub token create`; it reads " + api.JoinScheme + "://HOST:PORT?token=ID.SECRET&ca=sha256:HEX"
		}
		v.errs.Add("constellation.join", "%s", msg)
	}
}

// article puts "a" or "an" before a role.
func article(role string) string {
	if role != "" && strings.ContainsRune("aeiou", rune(role[0])) {
		return "an " + role
	}
	return "a " + role
}

// withoutUserinfo is a registry key with what stands before its last '@'
// (user:password, after any scheme) shown as xxxxx: a key is written in
// field paths and messages, which reach every console.
func withoutUserinfo(k string) string {
	at := strings.LastIndex(k, "@")
	if at < 0 {
		return k
	}
	head := ""
	if i := strings.Index(k, "://"); i >= 0 && i < at {
		head = k[:i+3]
	}
	return head + "xxxxx" + k[at:]
}

// manifests checks the Kubernetes objects the config has K3s deploy: on a
// server only, each named once by a DNS label, each readable by K3s's
// deploy controller (kubeyaml.Check); a HelmChart with the Helm controller
// disabled is warned about.
func (v *validator) manifests(c *MachineConfig) {
	list := c.Manifests
	if len(list) == 0 {
		return
	}
	if c.Role == RoleAgent {
		v.errs.Add("manifests", "given on an agent: K3s deploys manifests on servers only (their deploy controller applies the files of %s): put them in a server's config", "/"+ManifestDir)
		return
	}
	if v.tooMany("manifests", len(list), maxManifests, "entries", "one entry may hold many objects, separated by ---") {
		return
	}
	seen := map[string]int{}
	for i, m := range list {
		p := fmt.Sprintf("manifests[%d]", i)
		switch {
		case m.Name == "":
			v.errs.Add(p+".name", "missing: name the manifest (metallb-pool): it names its file, %s, and the AddOn K3s tracks it by", "/"+ManifestFile("NAME"))
		case len(m.Name) > 63 || !dnsLabel.MatchString(m.Name):
			v.errs.Add(p+".name", "%q is not a DNS label: lowercase letters, digits and inner '-', 63 at most (K3s names the AddOn after the file)", m.Name)
		default:
			if j, dup := seen[m.Name]; dup {
				v.errs.Add(p+".name", "%q is also manifests[%d]'s name: each names its own file; give another name, or put the objects in one manifest", m.Name, j)
			} else {
				seen[m.Name] = i
			}
		}
		if strings.TrimSpace(m.Contents) == "" {
			v.errs.Add(p+".contents", "missing: give the Kubernetes objects to deploy, as YAML documents separated by ---")
			continue
		}
		if err := kubeyaml.Check(m.Contents); err != nil {
			v.errs.Add(p+".contents", "%v: K3s would skip the file with only an event in kube-system", err)
		} else if kind := kubeyaml.HelmKind(m.Contents); kind != "" && c.K3sFlag("disable-helm-controller") {
			v.warn(p+".contents", "holds a %s, and k3s.disable-helm-controller is set: nothing on this server installs it", kind)
		}
	}
}

// logging checks the log collectors: each endpoint one (logfwd's rules),
// once, in a format the forwarder writes.
func (v *validator) logging(l *Logging) {
	if l == nil {
		return
	}
	if v.tooMany("logging.destinations", len(l.Destinations), maxLogDestinations, "destinations", "send the logs to a collector that fans them out") {
		return
	}
	seen := map[string]int{}
	for i, d := range l.Destinations {
		p := fmt.Sprintf("logging.destinations[%d]", i)
		switch d.Format {
		case "", logfwd.FormatRFC5424, logfwd.FormatJSONLines:
		default:
			v.errs.Add(p+".format", "%q is not a format: use %s (syslog's, the default) or %s", d.Format, logfwd.FormatRFC5424, logfwd.FormatJSONLines)
		}
		if d.Endpoint == "" {
			v.errs.Add(p+".endpoint", "missing: give the collector as udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")
			continue
		}
		scheme, address, err := logfwd.ParseEndpoint(d.Endpoint)
		if err != nil {
			v.errs.Add(p+".endpoint", "%v", err)
			continue
		}
		host, _, _ := net.SplitHostPort(address)
		if msg := endpointHostProblem(host); msg != "" {
			v.errs.Add(p+".endpoint", "%q: %s", d.Endpoint, msg)
			continue
		}
		key := scheme + "://" + strings.ToLower(address) + " " + cmp.Or(d.Format, logfwd.FormatRFC5424)
		if j, dup := seen[key]; dup {
			v.errs.Add(p, "the same collector and format as logging.destinations[%d]: each line would reach it twice", j)
			continue
		}
		seen[key] = i
	}
}

// endpointHostProblem says why host cannot be a log collector's, "" when
// it can: an IP address no host has, or what is no DNS name.
func endpointHostProblem(host string) string {
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "an address with a zone: give a global or ULA address"
		}
		// A loopback address is a collector on the node itself (a
		// DaemonSet on the host's network).
		switch bad, _ := hostAddrProblem(a.Unmap(), nil); {
		case bad != "" && !a.Unmap().IsLoopback():
			return host + " " + bad
		case a.Unmap() == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			return "the limited broadcast address, which the agent does not send to: give the collector's own address"
		case a.Is6() && a.IsLinkLocalUnicast():
			return "an IPv6 link-local address, which names no link here: give the collector's global or ULA address"
		}
		return ""
	}
	if msg := hostProblem(host); msg != "" {
		return msg
	}
	return ""
}
