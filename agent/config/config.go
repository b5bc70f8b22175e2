// Package config is the machine config: what one Étoile node is (hostname,
// site, role, cluster, labels and taints, network, K3s settings, registries,
// and the sections reserved for install and constellation).
//
// A MachineConfig is a versioned YAML document (apiVersion: etoile.io/v1alpha1,
// kind: MachineConfig), decoded strictly by package schema: unknown fields,
// wrong types and a wrong header are errors naming their field path. Validate
// then checks meaning (addresses, URLs, label syntax, which cluster fields go
// together) and returns warnings for what is allowed but probably a mistake.
//
// K3s settings use K3s's own names: K3sConfig renders
// /etc/rancher/k3s/config.yaml and RegistriesYAML renders
// /etc/rancher/k3s/registries.yaml, so that K3s's documentation applies as is.
//
// # Where the agent finds the config
//
// The agent tries these sources in order; the first one that has a config
// wins, and the later ones are not read:
//
//  1. the kernel argument etoile.config=<http(s) URL> (FromURL, URLSource);
//  2. a volume labelled ETOILE-CFG (FAT or ISO9660) holding config.yaml at
//     its root, like cloud-init's NoCloud (VolumeSource, on the folder where
//     the agent mounted it);
//  3. /etoile/config.yaml on the boot medium, which `etoile build --config
//     FILE` bakes in (BootMediumSource);
//  4. the state partition once installed (StateSource).
//
// A source that exists but cannot be read (a download that fails, a file
// that is too large) stops the search with its error rather than falling
// through to an older config: a machine must not silently boot with a
// config other than the one it was given. FirstFound implements the order.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/etoile-os/etoile/schema"
)

// Kind is the kind of document a machine config is.
const Kind = "MachineConfig"

// Roles a node can have.
const (
	RoleServer = "server" // runs the Kubernetes control plane (k3s server)
	RoleAgent  = "agent"  // runs workloads only (k3s agent)
)

// MachineConfig is what one node is.
type MachineConfig struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	// Hostname is the machine's host name and its Kubernetes node name.
	// Empty: the agent derives one from the machine.
	Hostname string `yaml:"hostname,omitempty"`
	// Site names the site this node belongs to; it becomes the node label
	// etoile.io/site.
	Site string `yaml:"site,omitempty"`
	// Role is server or agent.
	Role    string   `yaml:"role"`
	Cluster *Cluster `yaml:"cluster,omitempty"`
	// Labels are Kubernetes node labels, set when the node registers.
	Labels map[string]string `yaml:"labels,omitempty"`
	// Taints are Kubernetes node taints, as key=value:Effect or key:Effect.
	Taints  []string `yaml:"taints,omitempty"`
	Network Network  `yaml:"network,omitempty"`
	// Time says how the clock is kept.
	Time *Time `yaml:"time,omitempty"`
	// Sysctls are kernel parameters set before K3s starts, by sysctl(8)
	// names (net.ipv4.ip_forward, or with / as the separator when a part
	// holds a dot: net/ipv4/conf/eth0.42/forwarding, which sysctl.d(5)
	// also writes net.ipv4.conf.eth0/42.forwarding) and the value as
	// written to /proc/sys.
	Sysctls map[string]string `yaml:"sysctls,omitempty"`
	// K3s is passed through to /etc/rancher/k3s/config.yaml under K3s's
	// own option names (those of `k3s server --help` without the dashes).
	K3s        map[string]K3sValue `yaml:"k3s,omitempty"`
	Registries *Registries         `yaml:"registries,omitempty"`
	// Proxy is the site's web proxy, for K3s (its image pulls, Helm
	// charts) and the agent's own connections to the constellation hub.
	Proxy *Proxy `yaml:"proxy,omitempty"`
	// Hosts are static name-to-address entries added to /etc/hosts: a
	// registry or server a site's DNS does not know (K3s and containerd
	// read /etc/hosts; pods use the cluster's DNS, not it).
	Hosts []HostEntry `yaml:"hosts,omitempty"`
	// CACertificates are the site's own certificate authorities (PEM,
	// one or more certificates each), trusted on the node beside the
	// image's: added to /etc/ssl/certs/ca-certificates.crt, which K3s,
	// its containerd (image pulls, through a proxy that inspects TLS
	// too) and the node's other programs read.
	CACertificates []string `yaml:"ca_certificates,omitempty"`
	// Manifests are Kubernetes objects a server deploys: each is written to
	// K3s's manifests folder (ManifestFile), which K3s applies at start and
	// whenever a file there changes (its "auto-deploying manifests",
	// HelmChart resources included).
	Manifests []Manifest `yaml:"manifests,omitempty"`
	// Logging sends the node's logs to the site's log collectors.
	Logging *Logging `yaml:"logging,omitempty"`
	// Install and Constellation are reserved for the installer and the
	// constellation join client; their issues fill them.
	Install       *Install       `yaml:"install,omitempty"`
	Constellation *Constellation `yaml:"constellation,omitempty"`
}

// Logging is where the node's logs go beside its own memory and consoles.
type Logging struct {
	// Destinations are log collectors: each gets every line of the
	// agent's, K3s's and the kernel's logs and what daemons send to
	// /dev/log, from the oldest the node still holds on.
	Destinations []LogDestination `yaml:"destinations,omitempty"`
}

// LogDestination is one log collector.
type LogDestination struct {
	// Endpoint is udp://HOST[:PORT] or tcp://HOST[:PORT] (syslog, port
	// 514 when left out), or tls://HOST[:PORT] (syslog over TLS, 6514;
	// its certificate checked against the image's and ca_certificates'
	// authorities).
	Endpoint string `yaml:"endpoint"`
	// Format is rfc5424 (syslog's, the default) or json_lines.
	Format string `yaml:"format,omitempty"`
}

// Manifest is one file of Kubernetes objects for K3s to deploy.
type Manifest struct {
	// Name names the file, and the AddOn K3s tracks it by (kubectl get
	// addons -n kube-system): a DNS label, unique in the config.
	Name string `yaml:"name"`
	// Contents are the objects, YAML documents separated by ---, each
	// with apiVersion, kind and metadata.name (or a List of such).
	Contents string `yaml:"contents"`
}

// ManifestDir is K3s's folder of manifests it deploys, relative to the
// machine's root (its documented default).
const ManifestDir = "var/lib/rancher/k3s/server/manifests"

// ManifestPrefix begins the name of each file the machine config's
// manifests are written to. K3s names a file's AddOn after its name up to
// the first dot, so it has none; the constellation's templates are
// etoile-NAME (and own every etoile-*.yaml), K3s's own components coredns,
// traefik…: none is ever another's.
const ManifestPrefix = "etoilecfg-"

// ManifestFile is the file, relative to the machine's root, manifest name
// is written to; K3s's AddOn for it is etoilecfg-NAME.
func ManifestFile(name string) string {
	return ManifestDir + "/" + ManifestPrefix + name + ".yaml"
}

// ManifestFiles are the files the config's manifests are written to (by
// path relative to the machine's root): none on an agent, where K3s
// deploys nothing.
func (c *MachineConfig) ManifestFiles() map[string][]byte {
	if c == nil || c.Role == RoleAgent || len(c.Manifests) == 0 {
		return nil
	}
	files := map[string][]byte{}
	for _, m := range c.Manifests {
		files[ManifestFile(m.Name)] = []byte(m.Contents)
	}
	return files
}

// CABundlePath is the system's bundle of trusted certificate authorities,
// relative to the machine's root, in Debian's place, where Go's crypto/x509
// (K3s, containerd, the agent) and most tools look: the system image
// carries the Mozilla set there, and the agent adds CACertificates.
const CABundlePath = "etc/ssl/certs/ca-certificates.crt"

// HostEntry is one /etc/hosts line: an address and its names.
type HostEntry struct {
	// IP is the address, IPv4 or IPv6.
	IP string `yaml:"ip,omitempty"`
	// Names are the host names that resolve to it, the canonical one first
	// (registry.example.com, registry).
	Names []string `yaml:"names,omitempty"`
}

// Proxy is a web proxy, under the environment variables' own names: K3s
// and containerd read HTTP_PROXY, HTTPS_PROXY and NO_PROXY (K3s adds its
// cluster's pod and service networks and cluster domain to NO_PROXY itself).
type Proxy struct {
	// HTTPProxy is the proxy for http:// URLs: http://proxy.example.com:3128
	// (user:password@ inside it when the proxy asks for them).
	HTTPProxy string `yaml:"http_proxy,omitempty"`
	// HTTPSProxy is the proxy for https:// URLs (usually the same one).
	HTTPSProxy string `yaml:"https_proxy,omitempty"`
	// NoProxy are the destinations reached directly, as Go's programs
	// (K3s, containerd, the agent) read NO_PROXY: domain names (example.com
	// covers it and its subdomains, .example.com its subdomains only), IP
	// addresses and networks in CIDR form, a name or address with :port
	// for that port only, or * for every destination. The agent adds the
	// loopback (localhost, 127.0.0.0/8, ::1).
	NoProxy []string `yaml:"no_proxy,omitempty"`
}

// Cluster says whether this node starts a new cluster or joins one.
type Cluster struct {
	// Init starts a new cluster with embedded etcd (K3s cluster-init). Only
	// for the first server.
	Init bool `yaml:"init,omitempty"`
	// Server is the URL of an existing server to join, https://HOST:6443.
	Server string `yaml:"server,omitempty"`
	// Token is the cluster's shared secret: required to join; optional with
	// init (K3s then generates one in /var/lib/rancher/k3s/server/token).
	Token string `yaml:"token,omitempty"`
}

// Network configures the node's interfaces. With no interfaces listed the
// agent runs DHCP on every wired interface that has a carrier.
type Network struct {
	Interfaces []Interface `yaml:"interfaces,omitempty"`
}

// Interface is one network interface, found by name or by MAC address.
type Interface struct {
	// Name is the kernel's interface name (eth0, enp1s0); give name or mac.
	Name string `yaml:"name,omitempty"`
	// MAC finds the interface by hardware address, which survives renaming.
	MAC string `yaml:"mac,omitempty"`
	// VLAN, when set (1..4094), configures a tagged VLAN interface on top of
	// the one named; the addresses below then belong to the VLAN.
	VLAN int `yaml:"vlan,omitempty"`
	// DHCP asks a DHCP server (DHCPv4) for the IPv4 address; otherwise
	// Addresses is static. With DHCP, Addresses may list IPv6 addresses,
	// static beside the lease.
	DHCP bool `yaml:"dhcp,omitempty"`
	// Addresses are static addresses in CIDR form (192.0.2.10/24, 2001:db8::10/64).
	Addresses []string `yaml:"addresses,omitempty"`
	// Gateway is the default route's next hop, for static addresses: IPv4,
	// or IPv6 where the interface has no IPv4 default route.
	Gateway string `yaml:"gateway,omitempty"`
	// Gateway6 is the IPv6 default route's next hop (2001:db8::1, or a
	// router's link-local fe80::1), beside an IPv4 gateway or DHCP's.
	Gateway6 string `yaml:"gateway6,omitempty"`
	// DNS lists name servers (IP addresses).
	DNS []string `yaml:"dns,omitempty"`
	// MTU, when set, overrides the link's MTU (68..65535; 9000 for jumbo frames).
	MTU int `yaml:"mtu,omitempty"`
	// Routes are static routes to other networks through this interface,
	// beside its default route (gateway, gateway6, or DHCP's). With DHCP
	// the IPv4 ones leave from the lease's address: added once the lease
	// is there (a next hop outside its subnet on-link), again whenever a
	// renewal brings another address, and gone with the lease; beside the
	// routes the DHCP server gives (option 121).
	Routes []Route `yaml:"routes,omitempty"`
	// Bond, when set, makes the link Name a bond (link aggregation) of its
	// members; the entry's addresses, DHCP, gateway, VLAN and MTU are then
	// the bond's. An entry with a bond may have neither addresses nor DHCP:
	// the bond then only carries the VLANs other entries put on it (by its
	// name).
	Bond *Bond `yaml:"bond,omitempty"`
}

// Route is a static route: to a network, through a next hop or on the link.
type Route struct {
	// To is the network reached, in CIDR form (10.20.0.0/16, 2001:db8:20::/48).
	To string `yaml:"to,omitempty"`
	// Via is the next hop, an address the interface reaches (a router on
	// one of its subnets, or an IPv6 router's link-local fe80::1); left out,
	// the network is on the link itself.
	Via string `yaml:"via,omitempty"`
	// Metric orders routes to the same network, lowest first; 0 means the
	// interface's own (that of its gateway: 50 for the config's first
	// interface, 51 for the second…).
	Metric int `yaml:"metric,omitempty"`
}

// Is4 says whether r is an IPv4 route, by its network, else (a network
// that is not one) by its next hop.
func (r Route) Is4() bool {
	if pf, err := netip.ParsePrefix(r.To); err == nil {
		return pf.Addr().Is4()
	}
	if a, err := netip.ParseAddr(r.To); err == nil {
		return a.Is4()
	}
	a, err := netip.ParseAddr(r.Via)
	return err == nil && a.Is4()
}

// Bond is a Linux bond: its options have the bonding driver's own names
// and values (modinfo bonding, the kernel's bonding.rst).
type Bond struct {
	// Members are the ports bonded, each by name (eth0) or by MAC address.
	// They take no addresses of their own: no other entry may list them.
	Members []string `yaml:"members,omitempty"`
	// Mode is the bonding mode: active-backup (one port at a time, with
	// any switch), 802.3ad (LACP: the switch ports in one LACP group),
	// balance-xor, balance-rr, broadcast, balance-tlb or balance-alb.
	Mode string `yaml:"mode,omitempty"`
	// Primary (active-backup, balance-tlb, balance-alb) is the member used
	// whenever it has carrier, written as in Members.
	Primary string `yaml:"primary,omitempty"`
	// LACPRate (802.3ad) is how often the switch is asked to send LACP
	// frames: slow (every 30 s, the kernel's default) or fast (every second).
	LACPRate string `yaml:"lacp_rate,omitempty"`
	// XmitHashPolicy (balance-xor, 802.3ad, balance-tlb) picks the port of
	// each packet: layer2 (the kernel's default), layer2+3, layer3+4,
	// encap2+3, encap3+4 or vlan+srcmac.
	XmitHashPolicy string `yaml:"xmit_hash_policy,omitempty"`
	// MIIMon is how often, in milliseconds, the members' carrier is
	// checked; 0 means Étoile's default, 100 (the kernel's own 0 would never
	// notice a member losing its link).
	MIIMon int `yaml:"miimon,omitempty"`
}

// SysctlPath is the file under /proc/sys of a sysctl name, read as
// sysctl.d(5) and procps's sysctl(8) read it: when the first separator is a
// slash, slashes separate the parts and dots are part of them
// (net/ipv4/conf/eth0.42/forwarding); when it is a dot, dots separate the
// parts and a slash stands for a dot inside one
// (net.ipv4.conf.eth0/42.forwarding, the same file).
func SysctlPath(name string) string {
	if i := strings.IndexAny(name, "./"); i < 0 || name[i] == '/' {
		return strings.Trim(name, "/")
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, name)
}

// Time is how the node keeps its clock: NTP (SNTP) against Servers, else
// the servers DHCP gives, else pool.ntp.org.
type Time struct {
	// Servers are NTP servers, asked in order: host names or IP addresses,
	// with :port when not 123 ([v6]:port for IPv6).
	Servers []string `yaml:"servers,omitempty"`
	// Disabled leaves the clock alone (a hypervisor or PTP keeps it).
	Disabled bool `yaml:"disabled,omitempty"`
}

// TimeServers returns the configured NTP servers (none when c or its time
// section is nil).
func (c *MachineConfig) TimeServers() []string {
	if c == nil || c.Time == nil {
		return nil
	}
	return c.Time.Servers
}

// TimeDisabled reports whether the config asks to leave the clock alone.
func (c *MachineConfig) TimeDisabled() bool {
	return c != nil && c.Time != nil && c.Time.Disabled
}

// Registries is K3s's registries.yaml, under K3s's own names.
type Registries struct {
	// Mirrors maps a registry name (docker.io, registry.example.com:5000,
	// "*") to the endpoints that serve it.
	Mirrors map[string]Mirror `yaml:"mirrors,omitempty"`
	// Configs maps a registry host (as in a mirror endpoint) to its
	// credentials and TLS settings.
	Configs map[string]RegistryConfig `yaml:"configs,omitempty"`
}

// Mirror is one registry's endpoints and image-name rewrites.
type Mirror struct {
	Endpoint []string `yaml:"endpoint,omitempty"`
	// Rewrite maps a regular expression on the image name to its
	// replacement ("^rancher/(.*)": "mirror/rancher/$1").
	Rewrite map[string]string `yaml:"rewrite,omitempty"`
}

// RegistryConfig is how to talk to one registry host.
type RegistryConfig struct {
	Auth *RegistryAuth `yaml:"auth,omitempty"`
	TLS  *RegistryTLS  `yaml:"tls,omitempty"`
}

// RegistryAuth holds registry credentials: username and password, or auth
// (base64 of user:password), or identity_token. These are the names of K3s's
// own registries.yaml (rancher/wharfie's AuthConfig).
type RegistryAuth struct {
	Username      string `yaml:"username,omitempty"`
	Password      string `yaml:"password,omitempty"`
	Auth          string `yaml:"auth,omitempty"`
	IdentityToken string `yaml:"identity_token,omitempty"`
}

// RegistryTLS is the TLS client setup for one registry host: K3s's file
// paths (on the node: a file the system image or an extension carries), or
// Étoile's ca, cert and key, the PEM itself, which the agent writes into
// files of its own (RegistryTLSFiles) and names in registries.yaml.
type RegistryTLS struct {
	CertFile           string `yaml:"cert_file,omitempty"`
	KeyFile            string `yaml:"key_file,omitempty"`
	CAFile             string `yaml:"ca_file,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify,omitempty"`
	// CA is the certificate authority (PEM) the registry's certificate
	// is checked against, instead of ca_file.
	CA string `yaml:"ca,omitempty"`
	// Cert and Key are a client certificate and its private key (PEM),
	// instead of cert_file and key_file. Key is a secret: never shown.
	Cert string `yaml:"cert,omitempty"`
	Key  string `yaml:"key,omitempty"`
}

// Install is reserved for the installer's issue, which fills it: which disk
// to install to and how. Today only the disk selector is read (and checked
// for shape, not acted on).
type Install struct {
	Disk *DiskSelector `yaml:"disk,omitempty"`
}

// DiskSelector picks the install disk; every field given must match. The
// installer's issue decides the final set of fields.
type DiskSelector struct {
	Path   string `yaml:"path,omitempty"`   // /dev/disk/by-id/… or /dev/sda
	Model  string `yaml:"model,omitempty"`  // as in `etoile-agent inventory`
	Serial string `yaml:"serial,omitempty"` // as in `etoile-agent inventory`
	WWN    string `yaml:"wwn,omitempty"`    // as in `etoile-agent inventory`
}

// Constellation is reserved for the constellation issue, which fills it:
// Join holds a join string (from `etoile hub token create`) for an
// unattended join.
type Constellation struct {
	Join string `yaml:"join,omitempty"`
}

// Parse decodes a machine config strictly and validates it. The error names
// every problem with its field path. Warnings are not returned: use Check,
// or call Validate on the result.
func Parse(data []byte) (*MachineConfig, error) {
	c, _, err := Check(data)
	return c, err
}

// Check decodes and validates data like Parse and also returns the
// warnings, for `config validate` commands.
//
// When decoding finds problems (unknown fields, wrong types), the document
// is still validated, so that one run reports every mistake; validation
// problems in a top-level section that already has a decoding problem are
// left out, as they would only echo it (a mistyped field reads as missing).
func Check(data []byte) (*MachineConfig, []string, error) {
	if len(data) > MaxSize {
		return nil, nil, fmt.Errorf("machine config is %d bytes, more than the %d allowed: is this the right file?", len(data), MaxSize)
	}
	var c MachineConfig
	derr := schema.DecodeWith(data, Kind, &c, schema.Options{Secret: secretPath})
	var decodeErrs schema.Errors
	if derr != nil && !errors.As(derr, &decodeErrs) {
		return nil, nil, derr
	}
	for _, e := range decodeErrs {
		if e.Path == "" {
			// Not a document at all (bad YAML, empty, several documents).
			return nil, nil, derr
		}
	}
	warnings, verr := c.Validate()
	if derr == nil {
		if verr != nil {
			return nil, warnings, verr
		}
		return &c, warnings, nil
	}
	all := decodeErrs
	var validateErrs schema.Errors
	errors.As(verr, &validateErrs)
	entries := mapEntries(&c)
	for _, e := range validateErrs {
		if !cascade(e.Path, decodeErrs, entries) {
			all = append(all, e)
		}
	}
	return nil, warnings, all.Err()
}

// cascade reports whether a validation problem at path may only follow from
// a decoding problem (a value that did not decode is left empty): at the
// same field or inside it, or at the object holding it ("cluster: give init
// or server" after cluster.init failed to decode). Other problems, a
// sibling's included, are reported with the decoding ones, all at once.
func cascade(path string, decodeErrs schema.Errors, entries []string) bool {
	for _, d := range decodeErrs {
		switch {
		case path == d.Path, strings.HasPrefix(path, d.Path+"["):
			return true
		case strings.HasPrefix(path, d.Path+"."):
			// Unless it is under another map key that only starts like
			// d's (registries.mirrors.docker.io after .docker failed).
			if !underOtherEntry(path, d.Path, entries) {
				return true
			}
		case path == parentPath(d.Path):
			// Unless no check of the object reads that field: an
			// interface's mtu, dns or gateway that did not decode leaves
			// "dhcp and addresses together" as true as it was.
			if !checkedAlone.MatchString(d.Path) {
				return true
			}
		case didYouMean(d.Msg) != "" && path == joinPath(parentPath(d.Path), didYouMean(d.Msg)):
			return true // cluster.tokn: the "missing token" that follows is the same mistake
		case path != "role" && section(path) == "cluster" && section(d.Path) == "cluster" && !strings.ContainsAny(path, ".["):
			// Role and cluster are checked together: a role that did not
			// decode hides "cluster: …" problems. A role's own problems
			// (missing, misspelt) follow from no cluster field, and are
			// reported with them.
			return true
		}
	}
	return false
}

// checkedAlone matches the fields only their own checks read: a value of
// theirs that did not decode hides nothing about the object holding them
// (an interface's mtu, dns or gateway).
var checkedAlone = regexp.MustCompile(`^network\.interfaces\[\d+\]\.(mtu|dns|gateway)$`)

// mapEntries lists the paths of the config's map entries, whose keys may
// hold dots (labels, k3s keys, sysctls, registry names).
func mapEntries(c *MachineConfig) []string {
	var out []string
	for k := range c.Labels {
		out = append(out, "labels."+k)
	}
	for k := range c.K3s {
		out = append(out, "k3s."+k)
	}
	for k := range c.Sysctls {
		out = append(out, "sysctls."+k)
	}
	if r := c.Registries; r != nil {
		for k := range r.Mirrors {
			out = append(out, "registries.mirrors."+k)
		}
		for k := range r.Configs {
			out = append(out, "registries.configs."+k)
		}
	}
	return out
}

// underOtherEntry reports whether path is at or under a map entry other
// than parent that parent's path is a prefix of.
func underOtherEntry(path, parent string, entries []string) bool {
	for _, e := range entries {
		if e != parent && strings.HasPrefix(e, parent+".") &&
			(path == e || strings.HasPrefix(path, e+".") || strings.HasPrefix(path, e+"[")) {
			return true
		}
	}
	return false
}

var didYouMeanRE = regexp.MustCompile(`did you mean "([^"]+)"`)

// didYouMean is the field an unknown-field message suggests, or "".
func didYouMean(msg string) string {
	if m := didYouMeanRE.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	return ""
}

func joinPath(parent, field string) string {
	if parent == "" {
		return field
	}
	return parent + "." + field
}

// parentPath is the path of the object or list holding path's field.
func parentPath(path string) string {
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return ""
}

// section is the top-level field a path is in; role and cluster are checked
// together, so they count as one.
func section(path string) string {
	if i := strings.IndexAny(path, ".["); i >= 0 {
		path = path[:i]
	}
	switch path {
	case "role":
		return "cluster"
	case "kind":
		return "apiVersion"
	}
	return path
}

// Load reads and parses a machine config file.
func Load(path string) (*MachineConfig, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading machine config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("machine config %s:\n%w", path, err)
	}
	return c, nil
}

// Marshal encodes the config in its canonical form (the one the golden tests
// keep stable); the agent uses it to save the config it runs with.
func (c *MachineConfig) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encoding machine config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding machine config: %w", err)
	}
	return buf.Bytes(), nil
}

// readFile reads at most MaxSize bytes, so that pointing the agent at a disk
// image by mistake fails fast instead of filling memory.
func readFile(path string) ([]byte, error) {
	return schema.ReadFile(path, MaxSize)
}
