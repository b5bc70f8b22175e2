package config

// The K3s option names the k3s: section may use, so that a typo
// ("tls-sans") is caught at validation instead of being skipped by K3s with
// only a log line ("Unknown flag … found in config.yaml, skipping").
//
// Taken from the K3s documentation, docs.k3s.io/cli/agent and
// docs.k3s.io/cli/server (the "K3s Agent CLI Help" and "K3s Server CLI
// Help" blocks, k3s-io/docs docs/cli/agent.md and server.md), completed
// with the hidden flags declared in k3s-io/k3s pkg/cli/cmds, for v1.34; the
// K3s stand-in (qa/k3sstandin/flags.go) accepts the same set. A key missing
// here is only a warning, so a newer K3s option still works: add it here
// (and to the stand-in) when K3s is bumped.

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
	"helm-controller-arg",
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
// their replacement: a warning.
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
	"cluster-secret":   "set cluster.token instead (cluster-secret is K3s's deprecated name for the token)",
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

var (
	k3sAgentSet      = toSet(k3sAgentKeys)
	k3sAgentOnlySet  = toSet(k3sAgentOnlyKeys)
	k3sServerOnlySet = toSet(k3sServerOnlyKeys)
	k3sAllKeys       = append(append(append([]string{}, k3sAgentKeys...), k3sAgentOnlyKeys...), k3sServerOnlyKeys...)
)

// k3sOnlyFor returns the role a K3s option is limited to ("server" or
// "agent"), or "" when both have it (or it is unknown).
func k3sOnlyFor(key string) string {
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
)

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
