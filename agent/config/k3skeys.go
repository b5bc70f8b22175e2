package config

import (
	"slices"
	"strings"
)

// The K3s option names the k3s: section may use, so that a typo
// ("tls-sans") is caught at validation instead of being skipped by K3s with
// only a log line ("Unknown flag … found in config.yaml, skipping").
//
// Taken from the K3s documentation, docs.k3s.io/cli/agent and
// docs.k3s.io/cli/server (the "K3s Agent CLI Help" and "K3s Server CLI
// Help" blocks, k3s-io/docs docs/cli/agent.md and server.md), completed
// with the hidden flags declared in k3s-io/k3s pkg/cli/cmds/agent.go and
// server.go, for the K3s images get by default (image/k3s.DefaultVersion,
// v1.34.9+k3s1). The K3s stand-in (qa/k3sstandin/flags.go) accepts the
// same set with the same roles and kinds: TestStandinFlagsMatchAgentKeys
// there compares the two through K3sKeys. A key missing here is only a
// warning, so a newer K3s option still works: add it here (and to the
// stand-in) when K3s is bumped.

// k3sAgentKeys are the options both `k3s agent` and `k3s server` have
// (a server runs an agent too).
var k3sAgentKeys = []string{
	"airgap-extra-registry",
	"alsologtostderr",
	"bind-address",
	"config",
	"container-runtime-endpoint",
	"data-dir",
	"debug",
	"default-runtime",
	"disable-default-registry-endpoint",
	"docker",
	"enable-pprof",
	"flannel-cni-conf",
	"flannel-conf",
	"flannel-iface",
	"image-credential-provider-bin-dir",
	"image-credential-provider-config",
	"image-service-endpoint",
	"kube-proxy-arg",
	"kubelet-arg",
	"lb-server-port",
	"log",
	"node-external-dns",
	"node-external-ip",
	"node-internal-dns",
	"node-ip",
	"node-label",
	"node-name",
	"node-taint",
	"nonroot-devices",
	"pause-image",
	"prefer-bundled-bin",
	"private-registry",
	"protect-kernel-defaults",
	"resolv-conf",
	"rootless",
	"selinux",
	"server",
	"snapshotter",
	"token",
	"token-file",
	"v",
	"vmodule",
	"vpn-auth",
	"vpn-auth-file",
	"with-node-id",
}

// k3sAgentOnlyKeys are the options only `k3s agent` has; on a server K3s
// would refuse or skip them, so validation warns and rendering leaves them out.
var k3sAgentOnlyKeys = []string{
	"disable-apiserver-lb",
}

// k3sServerOnlyKeys are the options only `k3s server` has; on an agent
// node K3s would skip them, so validation warns and rendering leaves them out.
var k3sServerOnlyKeys = []string{
	"advertise-address",
	"advertise-port",
	"agent-token",
	"agent-token-file",
	"apiserver-bind-address",
	"apiserver-port",
	"cluster-cidr",
	"cluster-dns",
	"cluster-domain",
	"cluster-init",
	"cluster-reset",
	"cluster-reset-restore-path",
	"datastore-cafile",
	"datastore-certfile",
	"datastore-endpoint",
	"datastore-keyfile",
	"default-local-storage-path",
	"disable",
	"disable-agent",
	"disable-apiserver",
	"disable-cloud-controller",
	"disable-controller-manager",
	"disable-etcd",
	"disable-helm-controller",
	"disable-kube-proxy",
	"disable-network-policy",
	"disable-scheduler",
	"egress-selector-mode",
	"embedded-registry",
	"etcd-arg",
	"etcd-disable-snapshots",
	"etcd-expose-metrics",
	"etcd-s3",
	"etcd-s3-access-key",
	"etcd-s3-bucket",
	"etcd-s3-bucket-lookup-type",
	"etcd-s3-config-secret",
	"etcd-s3-endpoint",
	"etcd-s3-endpoint-ca",
	"etcd-s3-folder",
	"etcd-s3-insecure",
	"etcd-s3-proxy",
	"etcd-s3-region",
	"etcd-s3-retention",
	"etcd-s3-secret-key",
	"etcd-s3-session-token",
	"etcd-s3-skip-ssl-verify",
	"etcd-s3-timeout",
	"etcd-snapshot-compress",
	"etcd-snapshot-dir",
	"etcd-snapshot-name",
	"etcd-snapshot-reconcile-interval",
	"etcd-snapshot-retention",
	"etcd-snapshot-schedule-cron",
	"flannel-backend",
	"flannel-external-ip",
	"flannel-ipv6-masq",
	// Not "helm-controller-arg": K3s added it in v1.34.10 (k3s-io/k3s
	// #14185, backported to release-1.34 by #14303, first validated on
	// v1.34.10-rc1+k3s1); v1.34.9 skips it as an unknown key.
	"helm-job-image",
	"https-listen-port",
	"kube-apiserver-arg",
	"kube-cloud-controller-manager-arg",
	"kube-controller-manager-arg",
	"kine-tls",
	"kube-scheduler-arg",
	"secrets-encryption",
	"secrets-encryption-provider",
	"service-cidr",
	"service-node-port-range",
	"servicelb-namespace",
	"supervisor-metrics",
	"supervisor-port",
	"system-default-registry",
	"tls-san",
	"tls-san-security",
	"write-kubeconfig",
	"write-kubeconfig-group",
	"write-kubeconfig-mode",
}

// k3sDeprecatedKeys are hidden, deprecated names K3s still accepts, with
// their replacement: a warning. Each has its replacement's role and kind
// (k3s-io/k3s pkg/cli/cmds/server.go declares both as hidden server
// StringSliceFlags).
var k3sDeprecatedKeys = map[string]string{
	"kube-controller-arg":       "kube-controller-manager-arg",
	"kube-cloud-controller-arg": "kube-cloud-controller-manager-arg",
}

// k3sRemovedKeys are documented as deprecated but gone from current K3s's
// flag declarations: an error, since K3s would not apply them.
var k3sRemovedKeys = map[string]string{
	"no-flannel": "flannel-backend: none",
	"no-deploy":  "disable (a list of packaged components)",
}

// k3sReservedKeys are the options Étoile sets itself, each with the
// MachineConfig field that says it instead. Short aliases (t, s, d, o, c)
// are listed too, since K3s's config file accepts them.
var k3sReservedKeys = map[string]string{
	"token":            "set cluster.token instead",
	"t":                "set cluster.token instead",
	"token-file":       "set cluster.token instead (the agent writes the token into K3s's config itself)",
	"cluster-secret":   "set cluster.token instead (cluster-secret is the token's old name, gone from current K3s)",
	"server":           "set cluster.server instead",
	"s":                "set cluster.server instead",
	"cluster-init":     "set cluster.init: true instead",
	"node-label":       "set labels instead (a map of key: value)",
	"node-taint":       "set taints instead (a list of key=value:Effect)",
	"node-name":        "set hostname instead: it is the node name",
	"with-node-id":     "K3s would register the node as <hostname>-<id>, a name the agent does not know, and its readiness would never show: give each node a unique hostname instead",
	"private-registry": "set registries instead: the agent writes /etc/rancher/k3s/registries.yaml from it",
	"data-dir":         "Étoile keeps K3s's state in /var/lib/rancher/k3s on the STATE partition, where upgrades and the airgap images expect it",
	"d":                "Étoile keeps K3s's state in /var/lib/rancher/k3s on the STATE partition, where upgrades and the airgap images expect it",
	"config":           "the agent writes K3s's config file itself, from this document",
	"c":                "the agent writes K3s's config file itself, from this document",
	"write-kubeconfig": "the agent judges K3s's readiness through the admin kubeconfig at /etc/rancher/k3s/k3s.yaml; it must stay there",
	"o":                "the agent judges K3s's readiness through the admin kubeconfig at /etc/rancher/k3s/k3s.yaml; it must stay there",
}

// k3sShortNames are the one-letter aliases of K3s options (`-i` for
// --node-ip), which K3s's config file takes too (it passes a one-letter key
// as -KEY): the k3s: section refuses them, naming the long name, so that
// each value is checked as its option's (node-ip's addresses), and so that
// an alias and its long name cannot both be given. From the flag
// declarations of k3s-io/k3s pkg/cli/cmds (v1.34), as the K3s stand-in's
// table (qa/k3sstandin/flags.go) holds them; v is an option of its own
// (the log verbosity), not an alias. Those of options Étoile sets itself
// are in k3sReservedKeys as well, whose message says what to set instead.
var k3sShortNames = map[string]string{
	"c": "config",
	"d": "data-dir",
	"i": "node-ip",
	"l": "log",
	"o": "write-kubeconfig",
	"s": "server",
	"t": "token",
}

// k3sOneShotKeys are K3s options that ask for a one-time operation, not
// a setting, each with why the k3s: section refuses it: K3s does the
// operation, says to start it again without the option and exits, and the
// agent starts K3s again with the same config.yaml (its supervisor after
// each exit, every boot) — for ever. The others are settings: the
// etcd-snapshot-* options schedule snapshots; `k3s etcd-snapshot save`,
// `restore`… are subcommands, not options.
var k3sOneShotKeys = map[string]string{
	"cluster-reset": "a one-time K3s operation, not a setting: K3s resets the embedded etcd's membership to this server alone and exits, " +
		"asking to be started again without it; the agent would start it with the option again after each exit and on every boot, " +
		"and K3s then refuses to start (the cluster was reset already): the server would never run again. Remove it: " +
		"Étoile has no command to run a one-time K3s operation, so resetting a cluster's membership is not supported on an Étoile node",
	"cluster-reset-restore-path": "a one-time K3s operation, not a setting: K3s restores the etcd snapshot, replacing the cluster's data, and exits, " +
		"asking to be started again without it; the agent would start it with the option again after each exit and on every boot, " +
		"and K3s would restore the snapshot again and exit each time: the server would never run again. Remove it: " +
		"Étoile has no command to run a one-time K3s operation, so restoring an etcd snapshot is not supported on an Étoile node",
}

// k3sReservedArgs are, for the K3s options that pass flags on to a
// component (kubelet-arg, kube-proxy-arg), the component's flags K3s sets
// from what Étoile writes or that the agent relies on, each with what to do
// instead. A flag given there wins over K3s's own: hostname-override would
// register the node under a name the agent does not know, so that its
// readiness never shows (as with-node-id would), and node-labels or
// register-with-taints would replace the labels and taints the machine
// config gives.
var k3sReservedArgs = map[string]map[string]string{
	"kubelet-arg": {
		"hostname-override":    "set hostname instead: it is the node name, and a kubelet registered under another name is a node the agent does not know, whose readiness never shows",
		"node-labels":          "set labels instead (a map of key: value): this flag would replace them, and the site and GPU labels",
		"register-with-taints": "set taints instead (a list of key=value:Effect): this flag would replace them",
		"node-ip":              "set k3s: {node-ip: …} instead: K3s passes it to the kubelet and uses it itself (flannel, the node's addresses)",
		"root-dir":             "the kubelet keeps pods' volumes in /var/lib/kubelet, where K3s and the CSI drivers expect them: leave it out",
		"kubeconfig":           "the kubelet uses the kubeconfig K3s writes for it (/var/lib/rancher/k3s/agent/kubelet.kubeconfig), which the agent reads too to judge the node's readiness: leave it out",
		"bootstrap-kubeconfig": "K3s registers the kubelet with credentials of its own: leave it out",
		"config":               "K3s writes the kubelet's configuration file itself: give kubelet options one by one instead (kubelet-arg: [max-pods=200])",
		"cert-dir":             "K3s gives the kubelet its certificates itself: leave it out",
	},
	"kube-proxy-arg": {
		"hostname-override": "set hostname instead: K3s gives kube-proxy the node name, by which it finds its own node",
		"kubeconfig":        "kube-proxy uses the kubeconfig K3s writes for it: leave it out",
	},
}

var (
	k3sAgentSet      = toSet(k3sAgentKeys)
	k3sAgentOnlySet  = toSet(k3sAgentOnlyKeys)
	k3sServerOnlySet = toSet(k3sServerOnlyKeys)
	k3sAllKeys       = append(append(append([]string{}, k3sAgentKeys...), k3sAgentOnlyKeys...), k3sServerOnlyKeys...)
)

// k3sOnlyFor returns the role a K3s option is limited to ("server" or
// "agent"), or "" when both have it (or it is unknown). A deprecated name
// has its replacement's role: kube-controller-arg is a server option, which
// `k3s agent` does not know either.
func k3sOnlyFor(key string) string {
	if repl, ok := k3sDeprecatedKeys[key]; ok {
		key = repl
	}
	switch {
	case k3sServerOnlySet[key]:
		return RoleServer
	case k3sAgentOnlySet[key]:
		return RoleAgent
	}
	return ""
}

func toSet(keys []string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// Value kinds of the single-valued K3s options that are not strings, from
// the flag declarations in k3s-io/k3s pkg/cli/cmds: K3s refuses to start
// when their value does not parse, so validation checks them.
var (
	k3sBoolKeys = toSet([]string{
		"alsologtostderr", "cluster-init", "cluster-reset", "debug", "disable-agent",
		"disable-apiserver", "disable-apiserver-lb", "disable-cloud-controller",
		"disable-controller-manager", "disable-default-registry-endpoint", "disable-etcd",
		"disable-helm-controller", "disable-kube-proxy", "disable-network-policy",
		"disable-scheduler", "docker", "embedded-registry", "enable-pprof",
		"etcd-disable-snapshots", "etcd-expose-metrics", "etcd-s3", "etcd-s3-insecure",
		"etcd-s3-skip-ssl-verify", "etcd-snapshot-compress", "flannel-external-ip",
		"flannel-ipv6-masq", "kine-tls", "nonroot-devices", "prefer-bundled-bin",
		"protect-kernel-defaults", "rootless", "secrets-encryption", "selinux",
		"supervisor-metrics", "tls-san-security", "with-node-id",
	})
	k3sIntKeys = toSet([]string{
		"advertise-port", "apiserver-port", "etcd-s3-retention", "etcd-snapshot-retention",
		"https-listen-port", "lb-server-port", "supervisor-port", "v",
	})
	k3sDurationKeys = toSet([]string{"etcd-s3-timeout", "etcd-snapshot-reconcile-interval"})
	// k3sListKeys are the repeatable options (urfave/cli StringSliceFlag):
	// a list in the config file, each item one value.
	k3sListKeys = toSet([]string{
		"airgap-extra-registry", "cluster-cidr", "cluster-dns", "disable", "etcd-arg",
		"kube-apiserver-arg", "kube-cloud-controller-manager-arg", "kube-controller-manager-arg",
		"kube-proxy-arg", "kube-scheduler-arg", "kubelet-arg", "node-external-dns",
		"node-external-ip", "node-internal-dns", "node-ip", "node-label", "node-taint",
		"service-cidr", "tls-san",
	})
)

// K3sKeyKind is how a K3s option takes its value, from its flag's type in
// k3s-io/k3s pkg/cli/cmds.
type K3sKeyKind string

// The kinds of K3s options.
const (
	K3sKindBool     K3sKeyKind = "bool"     // BoolFlag: --flag, or true/false
	K3sKindString   K3sKeyKind = "string"   // StringFlag: one value
	K3sKindInt      K3sKeyKind = "int"      // IntFlag: one whole number
	K3sKindDuration K3sKeyKind = "duration" // DurationFlag: one duration such as 5m
	K3sKindList     K3sKeyKind = "list"     // StringSliceFlag: repeatable, a list in the config file
)

// K3sKeyUse is what the k3s: section may do with a K3s option.
type K3sKeyUse string

// The uses of K3s options.
const (
	K3sKeyAccepted   K3sKeyUse = "accepted"   // the k3s: section may set it
	K3sKeyReserved   K3sKeyUse = "reserved"   // Étoile writes it itself: an error in the k3s: section
	K3sKeyDeprecated K3sKeyUse = "deprecated" // K3s still takes it: a warning
	K3sKeyOneShot    K3sKeyUse = "one-shot"   // a one-time operation, not a setting: an error in the k3s: section
)

// K3sKey is one K3s option Étoile knows.
type K3sKey struct {
	Name string     // long name, as a config file key
	Role string     // RoleServer or RoleAgent when only that subcommand has it; "" for both
	Kind K3sKeyKind // how it takes its value
	Use  K3sKeyUse
}

// K3sKeys lists, sorted by name, the K3s options Étoile knows and K3s has:
// those the k3s: section may set, those Étoile writes itself, the
// one-time operations it refuses, and the deprecated names K3s still
// takes. Short aliases (t, s, …) are left out.
func K3sKeys() []K3sKey {
	var out []K3sKey
	add := func(name string, use K3sKeyUse) {
		if _, reserved := k3sReservedKeys[name]; reserved && use == K3sKeyAccepted {
			use = K3sKeyReserved
		}
		if _, oneShot := k3sOneShotKeys[name]; oneShot && use == K3sKeyAccepted {
			use = K3sKeyOneShot
		}
		out = append(out, K3sKey{Name: name, Role: k3sOnlyFor(name), Kind: k3sKindOf(name), Use: use})
	}
	for _, k := range k3sAllKeys {
		add(k, K3sKeyAccepted)
	}
	for k := range k3sDeprecatedKeys {
		add(k, K3sKeyDeprecated)
	}
	slices.SortFunc(out, func(a, b K3sKey) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// K3sUnknownKeys lists, sorted, the option names the k3s: section refuses
// because K3s no longer has them (no-flannel, cluster-secret, …): K3s
// would skip them.
func K3sUnknownKeys() []string {
	known := toSet(k3sAllKeys)
	var out []string
	for k := range k3sRemovedKeys {
		out = append(out, k)
	}
	for k := range k3sReservedKeys {
		if len(k) > 1 && !known[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// k3sKindOf is how the K3s option key takes its value; a deprecated name
// takes it as its replacement does.
func k3sKindOf(key string) K3sKeyKind {
	if repl, ok := k3sDeprecatedKeys[key]; ok {
		key = repl
	}
	switch {
	case k3sBoolKeys[key]:
		return K3sKindBool
	case k3sIntKeys[key]:
		return K3sKindInt
	case k3sDurationKeys[key]:
		return K3sKindDuration
	case k3sListKeys[key]:
		return K3sKindList
	}
	return K3sKindString
}

// The K3s options that take IP addresses or networks (k3sAddressProblem),
// by what they take; k3sSingleAddressKeys take one, the others a list.
var (
	k3sAddressKeys = map[string]string{
		"advertise-address": "an IP address", "bind-address": "an IP address",
		"node-ip": "an IP address", "node-external-ip": "an IP address", "cluster-dns": "an IP address",
		"cluster-cidr": "a network (CIDR)", "service-cidr": "a network (CIDR)",
	}
	k3sSingleAddressKeys = toSet([]string{"advertise-address", "bind-address"})
)

// k3sDisableable are the packaged components `disable` names (docs.k3s.io
// cli/server, "--disable value"); K3s skips any other name without a word,
// so validation warns.
var k3sDisableable = []string{"coredns", "servicelb", "traefik", "local-storage", "metrics-server", "runtimes"}

// k3sChoiceKeys are the options that take one of a few words, from their
// flags' help in k3s-io/k3s pkg/cli/cmds (v1.34): K3s refuses any other.
var k3sChoiceKeys = map[string][]string{
	"flannel-backend":      {"none", "vxlan", "host-gw", "wireguard-native"},
	"egress-selector-mode": {"agent", "cluster", "disabled", "pod"},
}
