package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/schema"
)

const server = "role: server\ncluster: {init: true}\n"

// A join string's token and CA pin, in the shapes `etoile hub token create` prints.
const (
	joinToken = "0123456789abcdef.0s6BAprqLazyJiwASvIXFRvjDbw_-7p_Q8oWIdqneyg"
	joinPin   = "14bb57aa51ae64d9b3d4fb2f8614cf3ab685f1dd5a9bc46c7911f4ab45a7d1c1"
)

// TestRejections checks every rejection: the error must name the field path
// and show the bad value, as a user needs both to fix the file.
func TestRejections(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string // after apiVersion and kind
		path string
		want []string // substrings of that field's message: the bad value, the hint
	}{
		// Decoding (package schema): unknown fields, wrong types, header.
		{"unknown field", server + "hostnam: x\n", "hostnam", []string{`did you mean "hostname"`}},
		{"unknown nested field", "role: agent\ncluster: {server: 'https://a:6443', tokn: x}\n", "cluster.tokn", []string{`did you mean "token"`}},
		{"unknown registry auth field", server + "registries: {configs: {r.example: {auth: {token: x}}}}\n", "registries.configs.r.example.auth.token", []string{"identity_token"}},
		{"wrong type bool", "role: server\ncluster: {init: yes-please}\n", "cluster.init", []string{`"yes-please"`}},
		{"wrong type int", server + "network: {interfaces: [{name: eth0, dhcp: true, vlan: ten}]}\n", "network.interfaces[0].vlan", []string{`"ten"`}},
		{"labels as list", server + "labels: [a=b]\n", "labels", []string{"expected a mapping"}},
		{"taints as string", server + "taints: a=b:NoSchedule\n", "taints", []string{"expected a list"}},
		{"k3s value mapping", server + "k3s: {kubelet-arg: {max-pods: 200}}\n", "k3s.kubelet-arg", []string{"a mapping", "kubelet-arg: [\"max-pods=200\"]"}},
		{"k3s value empty", server + "k3s: {tls-san: }\n", "k3s.tls-san", []string{"empty"}},
		{"k3s nested list", server + "k3s: {tls-san: [[a]]}\n", "k3s.tls-san", []string{"list inside a list"}},
		{"k3s empty list item", server + "k3s: {tls-san: [a, ~]}\n", "k3s.tls-san", []string{"list item is empty"}},

		// Identity.
		{"hostname not RFC 1123", server + "hostname: node_1\n", "hostname", []string{`"node_1"`, "RFC 1123"}},
		{"hostname capitals", server + "hostname: Node1\n", "hostname", []string{`"Node1"`, "lowercase", "(node1, say)"}},
		{"hostname capitals and underscore", server + "hostname: My_Host\n", "hostname", []string{`"My_Host"`, "(my-host, say)"}},
		{"hostname underscore", server + "hostname: rack_1.site\n", "hostname", []string{`"rack_1.site"`, "RFC 1123", "(rack-1.site, say)"}},
		{"hostname leading dash", server + "hostname: -node\n", "hostname", []string{`"-node"`}},
		{"hostname too long", server + "hostname: " + strings.Repeat("a", 64) + "\n", "hostname", []string{strings.Repeat("a", 64), "63"}},
		{"hostname localhost", server + "hostname: localhost\n", "hostname", []string{`"localhost"`, "same Kubernetes node name", "leave hostname out"}},
		{"hostname localhost.localdomain", server + "hostname: localhost.localdomain\n", "hostname", []string{`"localhost.localdomain"`, "same Kubernetes node name"}},
		{"site not a label value", server + "site: lyon factory\n", "site", []string{`"lyon factory"`, SiteLabel}},

		// Role and cluster.
		{"role missing", "cluster: {init: true}\n", "role", []string{"missing", "server", "agent"}},
		{"role unknown", "role: master\ncluster: {init: true}\n", "role", []string{`"master"`}},
		{"server without cluster", "role: server\n", "cluster", []string{"missing", "init: true"}},
		{"agent without cluster", "role: agent\n", "cluster", []string{"missing", "https://HOST:6443"}},
		{"init with server", "role: server\ncluster: {init: true, server: 'https://a:6443', token: t}\n", "cluster.init", []string{`"https://a:6443"`, "keep one"}},
		{"agent with init", "role: agent\ncluster: {init: true}\n", "cluster.init", []string{"agent cannot start a cluster"}},
		{"agent without server", "role: agent\ncluster: {token: t}\n", "cluster.server", []string{"missing"}},
		{"server neither init nor server", "role: server\ncluster: {token: t}\n", "cluster", []string{"init: true"}},
		{"server URL not https", "role: agent\ncluster: {server: 'http://10.0.0.1:6443', token: t}\n", "cluster.server", []string{`"http://10.0.0.1:6443"`, "https"}},
		{"server URL with path", "role: agent\ncluster: {server: 'https://10.0.0.1:6443/api', token: t}\n", "cluster.server", []string{`"https://10.0.0.1:6443/api"`}},
		{"server URL without host", "role: agent\ncluster: {server: 'https://:6443', token: t}\n", "cluster.server", []string{`"https://:6443"`, "no host"}},
		{"server URL not a URL", "role: agent\ncluster: {server: '%zz', token: t}\n", "cluster.server", []string{"not a URL (not shown", "https://HOST:6443"}},
		{"server without scheme", "role: agent\ncluster: {server: 'cp.example:6443', token: t}\n", "cluster.server", []string{`"cp.example:6443" has no scheme: use https://cp.example:6443`}},
		{"server an IPv6 address", "role: agent\ncluster: {server: '2001:db8::1', token: t}\n", "cluster.server", []string{`"2001:db8::1" has no scheme: use https://[2001:db8::1]:6443`}},
		{"server an IPv4 address and port", "role: agent\ncluster: {server: '10.0.0.1:6443', token: t}\n", "cluster.server", []string{`"10.0.0.1:6443" has no scheme: use https://10.0.0.1:6443`}},
		{"server URL bad escape", "role: agent\ncluster: {server: 'https://10.0.0.1:6443/%zz', token: t}\n", "cluster.server", []string{`"https://10.0.0.1:6443/%zz" is not a URL (invalid URL escape "%zz")`}},
		{"server URL port out of range", "role: agent\ncluster: {server: 'https://10.0.0.1:99999', token: t}\n", "cluster.server", []string{`"https://10.0.0.1:99999"`, `port "99999"`, "1 to 65535", "6443"}},
		{"server URL bad IPv4", "role: agent\ncluster: {server: 'https://10.0.0.256:6443', token: t}\n", "cluster.server", []string{`"10.0.0.256"`, "IPv4"}},
		{"server URL bad DNS name", "role: agent\ncluster: {server: 'https://-bad-.example..com:6443', token: t}\n", "cluster.server", []string{`"-bad-.example..com"`, "DNS name"}},
		{"server URL port zero", "role: agent\ncluster: {server: 'https://cp.example:0', token: t}\n", "cluster.server", []string{`port "0"`}},
		{"server URL port empty", "role: agent\ncluster: {server: 'https://cp.example:', token: t}\n", "cluster.server", []string{`"https://cp.example:"`, "no port"}},
		{"server URL port not a number", "role: agent\ncluster: {server: 'https://cp.example:https', token: t}\n", "cluster.server", []string{`"https://cp.example:https"`, "port", "https://HOST:6443"}},
		{"server URL IPv6 port out of range", "role: agent\ncluster: {server: 'https://[2001:db8::1]:70000', token: t}\n", "cluster.server", []string{`port "70000"`}},
		{"token missing to join", "role: agent\ncluster: {server: 'https://10.0.0.1:6443'}\n", "cluster.token", []string{"missing", "https://10.0.0.1:6443"}},
		{"token with space", "role: server\ncluster: {init: true, token: 'abc def'}\n", "cluster.token", []string{"spaces"}},

		// Name servers that cannot be one.
		{"dns unspecified", server + "network: {interfaces: [{name: eth0, dhcp: true, dns: [0.0.0.0]}]}\n", "network.interfaces[0].dns[0]", []string{`"0.0.0.0"`, "unspecified", "name server"}},
		{"dns multicast", server + "network: {interfaces: [{name: eth0, dhcp: true, dns: [10.0.0.53, 224.0.0.251]}]}\n", "network.interfaces[0].dns[1]", []string{`"224.0.0.251"`, "multicast"}},
		{"dns loopback", server + "network: {interfaces: [{name: eth0, dhcp: true, dns: [127.0.0.1]}]}\n", "network.interfaces[0].dns[0]", []string{`"127.0.0.1"`, "loopback", "8.8.8.8"}},
		{"dns IPv6 loopback", server + "network: {interfaces: [{name: eth0, dhcp: true, dns: ['::1']}]}\n", "network.interfaces[0].dns[0]", []string{`"::1"`, "loopback"}},
		{"dns broadcast", server + "network: {interfaces: [{name: eth0, dhcp: true, dns: [255.255.255.255]}]}\n", "network.interfaces[0].dns[0]", []string{`"255.255.255.255"`, "broadcast"}},
		{"dns subnet broadcast", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], dns: [10.0.0.255]}]}\n", "network.interfaces[0].dns[0]", []string{`"10.0.0.255"`, "broadcast address of 10.0.0.0/24"}},
		{"dns IPv6 link-local", server + "network: {interfaces: [{name: eth0, dhcp: true, dns: ['fe80::1']}]}\n", "network.interfaces[0].dns[0]", []string{`"fe80::1"`, "link-local", "zone"}},
		{"dns IPv6 multicast", server + "network: {interfaces: [{name: eth0, dhcp: true, dns: ['ff02::fb']}]}\n", "network.interfaces[0].dns[0]", []string{`"ff02::fb"`, "multicast"}},

		// Component flags that would override what Étoile and K3s set.
		{"kubelet-arg hostname-override", server + "k3s: {kubelet-arg: [max-pods=200, hostname-override=other]}\n", "k3s.kubelet-arg[1]", []string{`"hostname-override=other"`, "set hostname instead"}},
		{"kubelet-arg node-labels with dashes", server + "k3s: {kubelet-arg: ['--node-labels=etoile.io/site=x']}\n", "k3s.kubelet-arg[0]", []string{`"--node-labels=etoile.io/site=x"`, "set labels instead"}},
		{"kubelet-arg register-with-taints", server + "k3s: {kubelet-arg: ['register-with-taints=a:NoSchedule']}\n", "k3s.kubelet-arg[0]", []string{"set taints instead"}},
		{"kubelet-arg+ node-ip", server + "k3s: {kubelet-arg+: [node-ip=10.0.0.7]}\n", "k3s.kubelet-arg+[0]", []string{"node-ip: …"}},
		{"kubelet-arg scalar root-dir", server + "k3s: {kubelet-arg: root-dir=/data}\n", "k3s.kubelet-arg", []string{`"root-dir=/data"`, "/var/lib/kubelet"}},
		{"kubelet-arg underscores", server + "k3s: {kubelet-arg: [hostname_override=x]}\n", "k3s.kubelet-arg[0]", []string{"hostname-override is set by"}},
		{"kubelet-arg kubeconfig", server + "k3s: {kubelet-arg: [kubeconfig=/x]}\n", "k3s.kubelet-arg[0]", []string{"kubelet.kubeconfig"}},
		{"kubelet-arg bootstrap-kubeconfig", server + "k3s: {kubelet-arg: [bootstrap-kubeconfig=/x]}\n", "k3s.kubelet-arg[0]", []string{"leave it out"}},
		{"kubelet-arg config", server + "k3s: {kubelet-arg: [config=/x]}\n", "k3s.kubelet-arg[0]", []string{"one by one"}},
		{"kubelet-arg cert-dir", server + "k3s: {kubelet-arg: [cert-dir=/x]}\n", "k3s.kubelet-arg[0]", []string{"certificates"}},
		{"kube-proxy-arg hostname-override", server + "k3s: {kube-proxy-arg: [hostname-override=x]}\n", "k3s.kube-proxy-arg[0]", []string{"set hostname instead"}},

		// Time.
		{"time server URL", server + "time: {servers: ['ntp://ntp.example.com']}\n", "time.servers[0]", []string{`"ntp://ntp.example.com"`, "host name or IP address"}},
		{"time server bad port", server + "time: {servers: ['ntp.example.com:99999']}\n", "time.servers[0]", []string{`"ntp.example.com:99999"`, "1..65535"}},
		{"time server bad name", server + "time: {servers: [ntp.example.com, 'ntp server.example.com']}\n", "time.servers[1]", []string{`"ntp server.example.com"`}},
		{"time server IPv6 port without brackets", server + "time: {servers: ['2001:db8::1:123x']}\n", "time.servers[0]", []string{`"2001:db8::1:123x"`}},
		{"time server twice", server + "time: {servers: [ntp.example.com, NTP.example.com]}\n", "time.servers[1]", []string{"time.servers[0]"}},
		{"time disabled with servers", server + "time: {servers: [ntp.example.com], disabled: true}\n", "time", []string{"disabled: true"}},
		{"time unknown field", server + "time: {server: [ntp.example.com]}\n", "time.server", []string{`did you mean "servers"`}},

		// Sysctls.
		{"sysctl not a name", server + "sysctls: {'net ipv4 ip_forward': '1'}\n", "sysctls.net ipv4 ip_forward", []string{`"net ipv4 ip_forward"`, "net.ipv4.ip_forward"}},
		{"sysctl one part", server + "sysctls: {swappiness: '10'}\n", "sysctls.swappiness", []string{`"swappiness"`}},
		{"sysctl escapes /proc/sys", server + "sysctls: {'../../etc/passwd': x}\n", "sysctls.../../etc/passwd", []string{"not a kernel parameter"}},
		{"sysctl empty value", server + "sysctls: {vm.swappiness: ''}\n", "sysctls.vm.swappiness", []string{"/proc/sys/vm/swappiness"}},
		{"sysctl value mapping", server + "sysctls: {vm.swappiness: {a: 1}}\n", "sysctls.vm.swappiness", []string{"expected a string"}},

		// Labels and taints.
		{"label key bad name", server + "labels: {'bad key': x}\n", "labels.bad key", []string{`"bad key"`}},
		{"label key bad prefix", server + "labels: {'Example.com/a': x}\n", "labels.Example.com/a", []string{`"Example.com"`}},
		{"label key two slashes", server + "labels: {'a/b/c': x}\n", "labels.a/b/c", []string{`"b/c"`}},
		{"label value bad", server + "labels: {tier: '-1'}\n", "labels.tier", []string{`"-1"`}},
		{"label value too long", server + "labels: {tier: " + strings.Repeat("v", 64) + "}\n", "labels.tier", []string{strings.Repeat("v", 64)}},
		{"label etoile.io reserved", server + "labels: {etoile.io/site: x}\n", "labels.etoile.io/site", []string{`"etoile.io/site"`, "reserved"}},
		{"label kubernetes.io refused by kubelet", server + "labels: {node-role.kubernetes.io/worker: 'true'}\n", "labels.node-role.kubernetes.io/worker", []string{`"node-role.kubernetes.io/worker"`, "refuse to start"}},
		{"label k8s.io refused by kubelet", server + "labels: {example.k8s.io/x: y}\n", "labels.example.k8s.io/x", []string{`"example.k8s.io/x"`}},
		{"taint without effect", server + "taints: [dedicated=gpu]\n", "taints[0]", []string{`"dedicated=gpu"`, "NoSchedule"}},
		{"taint bad effect", server + "taints: ['dedicated=gpu:NoScheduling']\n", "taints[0]", []string{`"NoScheduling"`}},
		{"taint bad key", server + "taints: ['bad key=x:NoSchedule']\n", "taints[0]", []string{`"bad key"`}},
		{"taint bad value", server + "taints: ['k=bad value:NoSchedule']\n", "taints[0]", []string{`"bad value"`}},
		{"taint duplicate", server + "taints: ['k=a:NoSchedule', 'k=b:NoSchedule']\n", "taints[1]", []string{`"k=b:NoSchedule"`, "taints[0]"}},

		// Network.
		{"interface without name or mac", server + "network: {interfaces: [{dhcp: true}]}\n", "network.interfaces[0]", []string{"name", "mac"}},
		{"interface with name and mac", server + "network: {interfaces: [{name: eth0, mac: '52:54:00:00:00:01', dhcp: true}]}\n", "network.interfaces[0]", []string{`"eth0"`, `"52:54:00:00:00:01"`}},
		{"interface bad name", server + "network: {interfaces: [{name: 'eth/0', dhcp: true}]}\n", "network.interfaces[0].name", []string{`"eth/0"`}},
		{"interface name too long", server + "network: {interfaces: [{name: abcdefghijklmnop, dhcp: true}]}\n", "network.interfaces[0].name", []string{`"abcdefghijklmnop"`, "15"}},
		{"interface bad mac", server + "network: {interfaces: [{mac: '52:54:00:zz:00:01', dhcp: true}]}\n", "network.interfaces[0].mac", []string{`"52:54:00:zz:00:01"`}},
		{"interface broadcast mac", server + "network: {interfaces: [{mac: 'ff:ff:ff:ff:ff:ff', dhcp: true}]}\n", "network.interfaces[0].mac", []string{`"ff:ff:ff:ff:ff:ff"`, "broadcast", "etoile-agent inventory"}},
		{"interface zero mac", server + "network: {interfaces: [{mac: '00:00:00:00:00:00', dhcp: true}]}\n", "network.interfaces[0].mac", []string{`"00:00:00:00:00:00"`, "all zeros"}},
		{"interface multicast mac", server + "network: {interfaces: [{mac: '01:00:5e:00:00:01', dhcp: true}]}\n", "network.interfaces[0].mac", []string{`"01:00:5e:00:00:01"`, "multicast"}},
		{"interface long mac", server + "network: {interfaces: [{mac: '00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01', dhcp: true}]}\n", "network.interfaces[0].mac", []string{`"00:00:00:00:fe:80`}},
		{"vlan too high", server + "network: {interfaces: [{name: eth0, vlan: 4095, dhcp: true}]}\n", "network.interfaces[0].vlan", []string{"4095", "1 to 4094"}},
		{"vlan negative", server + "network: {interfaces: [{name: eth0, vlan: -1, dhcp: true}]}\n", "network.interfaces[0].vlan", []string{"-1"}},
		{"duplicate interface by name", server + "network: {interfaces: [{name: eth0, dhcp: true}, {name: eth0, dhcp: true}]}\n", "network.interfaces[1]", []string{"network.interfaces[0]", "eth0"}},
		{"duplicate interface by mac", server + "network: {interfaces: [{mac: '52:54:00:AB:00:01', dhcp: true}, {mac: '52:54:00:ab:00:01', dhcp: true}]}\n", "network.interfaces[1]", []string{"network.interfaces[0]", "52:54:00:ab:00:01"}},
		{"duplicate vlan", server + "network: {interfaces: [{name: eth0, vlan: 7, dhcp: true}, {name: eth0, vlan: 7, dhcp: true}]}\n", "network.interfaces[1]", []string{"vlan 7"}},
		{"static without addresses", server + "network: {interfaces: [{name: eth0}]}\n", "network.interfaces[0]", []string{"static without addresses", "dhcp: true"}},
		{"dhcp with addresses", server + "network: {interfaces: [{name: eth0, dhcp: true, addresses: [10.0.0.2/24]}]}\n", "network.interfaces[0]", []string{"choose one"}},
		{"address without prefix", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.2]}]}\n", "network.interfaces[0].addresses[0]", []string{`"10.0.0.2"`, "10.0.0.2/24"}},
		{"address not CIDR", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.300/24]}]}\n", "network.interfaces[0].addresses[0]", []string{`"10.0.0.300/24"`}},
		{"address prefix too long", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/33]}]}\n", "network.interfaces[0].addresses[0]", []string{`"10.0.0.2/33"`}},
		{"network address", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.0/24]}]}\n", "network.interfaces[0].addresses[0]", []string{`"10.0.0.0/24"`, "network address"}},
		{"broadcast address", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.255/24]}]}\n", "network.interfaces[0].addresses[0]", []string{`"10.0.0.255/24"`, "broadcast address of 10.0.0.0/24", "10.0.0.1 to 10.0.0.254"}},
		{"broadcast address /30", server + "network: {interfaces: [{name: eth0, addresses: [192.0.2.7/30]}]}\n", "network.interfaces[0].addresses[0]", []string{`"192.0.2.7/30"`, "broadcast", "192.0.2.5 to 192.0.2.6"}},
		{"loopback address", server + "network: {interfaces: [{name: eth0, addresses: [127.0.0.2/8]}]}\n", "network.interfaces[0].addresses[0]", []string{`"127.0.0.2/8"`, "loopback"}},
		{"loopback address IPv6", server + "network: {interfaces: [{name: eth0, addresses: ['::1/128']}]}\n", "network.interfaces[0].addresses[0]", []string{`"::1/128"`, "loopback"}},
		{"multicast address", server + "network: {interfaces: [{name: eth0, addresses: [224.0.0.5/24]}]}\n", "network.interfaces[0].addresses[0]", []string{`"224.0.0.5/24"`, "multicast"}},
		{"multicast address IPv6", server + "network: {interfaces: [{name: eth0, addresses: ['ff02::1/64']}]}\n", "network.interfaces[0].addresses[0]", []string{`"ff02::1/64"`, "multicast"}},
		{"unspecified address", server + "network: {interfaces: [{name: eth0, addresses: [0.0.0.0/0]}]}\n", "network.interfaces[0].addresses[0]", []string{`"0.0.0.0/0"`, "unspecified"}},
		{"vlan link named twice", server + "network: {interfaces: [{name: eth0, vlan: 42, dhcp: true}, {name: eth0.42, dhcp: true}]}\n", "network.interfaces[1]", []string{"network.interfaces[0]", "eth0.42", "merge"}},
		{"vlan link named first", server + "network: {interfaces: [{name: eth0.42, dhcp: true}, {name: eth0, vlan: 42, dhcp: true}]}\n", "network.interfaces[1]", []string{"network.interfaces[0]", "eth0.42", "merge"}},
		{"IPv6 address without prefix", server + "network: {interfaces: [{name: eth0, addresses: ['2001:db8::10']}]}\n", "network.interfaces[0].addresses[0]", []string{`"2001:db8::10"`, "2001:db8::10/64"}},
		{"IPv4 address without prefix", server + "network: {interfaces: [{name: eth0, addresses: [192.0.2.10]}]}\n", "network.interfaces[0].addresses[0]", []string{`"192.0.2.10"`, "192.0.2.10/24"}},
		{"IPv6 address with zone", server + "network: {interfaces: [{name: eth0, addresses: ['fe80::1%eth0/64']}]}\n", "network.interfaces[0].addresses[0]", []string{`"fe80::1%eth0/64"`, "has a zone"}},
		{"unspecified address IPv6", server + "network: {interfaces: [{name: eth0, addresses: ['::/64']}]}\n", "network.interfaces[0].addresses[0]", []string{`"::/64"`, "unspecified"}},
		{"duplicate address", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24]}, {name: eth1, addresses: [10.0.0.2/16]}]}\n", "network.interfaces[1].addresses[0]", []string{"10.0.0.2", "network.interfaces[0].addresses[0]"}},
		{"gateway6 IPv4", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24, '2001:db8::2/64'], gateway6: 10.0.0.1}]}\n", "network.interfaces[0].gateway6", []string{`"10.0.0.1"`, "IPv4", "give an IPv4 gateway as gateway"}},
		{"gateway6 IPv4-mapped", server + "network: {interfaces: [{name: eth0, addresses: ['2001:db8::2/64'], gateway6: '::ffff:10.0.0.1'}]}\n", "network.interfaces[0].gateway6", []string{`"::ffff:10.0.0.1"`, "IPv4"}},
		{"two IPv6 gateways", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24, '2001:db8::2/64'], gateway: '2001:db8::1', gateway6: 'fe80::1'}]}\n", "network.interfaces[0].gateway6", []string{`"fe80::1"`, `gateway "2001:db8::1"`, "both IPv6"}},
		{"gateway6 without IPv6 address", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], gateway: 10.0.0.1, gateway6: '2001:db8::1'}]}\n", "network.interfaces[0].gateway6", []string{"2001:db8::1", "no address of its family"}},
		{"gateway6 own address", server + "network: {interfaces: [{name: eth0, dhcp: true, addresses: ['2001:db8::2/64'], gateway6: '2001:db8::2'}]}\n", "network.interfaces[0].gateway6", []string{`"2001:db8::2"`, "own address", "network.interfaces[0].addresses[0]"}},
		{"gateway6 multicast", server + "network: {interfaces: [{name: eth0, addresses: ['2001:db8::2/64'], gateway6: 'ff02::2'}]}\n", "network.interfaces[0].gateway6", []string{`"ff02::2"`, "multicast"}},
		{"gateway6 with a zone", server + "network: {interfaces: [{name: eth0, addresses: ['2001:db8::2/64'], gateway6: 'fe80::1%eth0'}]}\n", "network.interfaces[0].gateway6", []string{`"fe80::1%eth0"`, "zone", "gateway6: fe80::1"}},
		{"dhcp with static IPv4 beside IPv6", server + "network: {interfaces: [{name: eth0, dhcp: true, addresses: ['2001:db8::2/64', 10.0.0.2/24]}]}\n", "network.interfaces[0]", []string{"10.0.0.2/24", "network.interfaces[0].addresses[1]", "DHCP gives this interface its IPv4 address", "IPv6 addresses may stay"}},
		{"dhcp with IPv6 gateway", server + "network: {interfaces: [{name: eth0, dhcp: true, addresses: ['2001:db8::2/64'], gateway: '2001:db8::1'}]}\n", "network.interfaces[0].gateway", []string{`"2001:db8::1"`, "gateway6: 2001:db8::1"}},
		{"gateway not IP", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], gateway: router}]}\n", "network.interfaces[0].gateway", []string{`"router"`}},
		{"gateway with dhcp", server + "network: {interfaces: [{name: eth0, dhcp: true, gateway: 10.0.0.1}]}\n", "network.interfaces[0].gateway", []string{"DHCP"}},
		{"gateway other family", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], gateway: '2001:db8::1'}]}\n", "network.interfaces[0].gateway", []string{"2001:db8::1"}},
		{"gateway is the network address", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.5/24], gateway: 10.0.0.0}]}\n", "network.interfaces[0].gateway", []string{`"10.0.0.0"`, "network address of 10.0.0.0/24", "router"}},
		{"gateway is the broadcast address", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.5/24], gateway: 10.0.0.255}]}\n", "network.interfaces[0].gateway", []string{`"10.0.0.255"`, "broadcast"}},
		{"gateway is the own address", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.5/24], gateway: 10.0.0.5}]}\n", "network.interfaces[0].gateway", []string{`"10.0.0.5"`, "own address", "network.interfaces[0].addresses[0]"}},
		{"gateway is the own IPv6 address", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.5/24, '2001:db8::5/64'], gateway: '2001:db8::5'}]}\n", "network.interfaces[0].gateway", []string{`"2001:db8::5"`, "network.interfaces[0].addresses[1]"}},
		{"gateway loopback", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.5/24], gateway: 127.0.0.1}]}\n", "network.interfaces[0].gateway", []string{`"127.0.0.1"`, "loopback"}},
		{"dns not IP", server + "network: {interfaces: [{name: eth0, dhcp: true, dns: [ns1.example.com]}]}\n", "network.interfaces[0].dns[0]", []string{`"ns1.example.com"`}},
		{"gateway with a zone", server + "network: {interfaces: [{name: eth0, addresses: ['fe80::2/64'], gateway: 'fe80::1%eth0'}]}\n", "network.interfaces[0].gateway", []string{`"fe80::1%eth0"`, "zone", "gateway: fe80::1"}},
		{"dns with a zone", server + "network: {interfaces: [{name: eth0, dhcp: true, dns: ['fe80::1%eth0']}]}\n", "network.interfaces[0].dns[0]", []string{`"fe80::1%eth0"`, "zone", "global or ULA address"}},
		{"mtu out of range", server + "network: {interfaces: [{name: eth0, dhcp: true, mtu: 67}]}\n", "network.interfaces[0].mtu", []string{"67"}},

		// K3s pass-through: keys Étoile sets itself point at the right field.
		{"k3s token", server + "k3s: {token: x}\n", "k3s.token", []string{"cluster.token"}},
		{"k3s token-file", server + "k3s: {token-file: /x}\n", "k3s.token-file", []string{"cluster.token"}},
		{"k3s server", server + "k3s: {server: 'https://a:6443'}\n", "k3s.server", []string{"cluster.server"}},
		{"k3s cluster-init", server + "k3s: {cluster-init: true}\n", "k3s.cluster-init", []string{"cluster.init"}},
		{"k3s node-label", server + "k3s: {node-label: [a=b]}\n", "k3s.node-label", []string{"labels"}},
		{"k3s node-label append", server + "k3s: {node-label+: [a=b]}\n", "k3s.node-label+", []string{"labels"}},
		{"k3s node-taint", server + "k3s: {node-taint: ['a=b:NoSchedule']}\n", "k3s.node-taint", []string{"taints"}},
		{"k3s node-name", server + "k3s: {node-name: x}\n", "k3s.node-name", []string{"hostname"}},
		{"k3s with-node-id", server + "k3s: {with-node-id: true}\n", "k3s.with-node-id", []string{"unique hostname"}},
		{"k3s private-registry", server + "k3s: {private-registry: /x.yaml}\n", "k3s.private-registry", []string{"registries"}},
		{"k3s data-dir", server + "k3s: {data-dir: /data}\n", "k3s.data-dir", []string{"/var/lib/rancher/k3s"}},
		{"k3s write-kubeconfig", server + "k3s: {write-kubeconfig: /root/k.yaml}\n", "k3s.write-kubeconfig", []string{"/etc/rancher/k3s/k3s.yaml"}},
		{"k3s cluster-secret", server + "k3s: {cluster-secret: x}\n", "k3s.cluster-secret", []string{"cluster.token"}},
		{"k3s removed no-flannel", server + "k3s: {no-flannel: true}\n", "k3s.no-flannel", []string{"flannel-backend: none"}},
		{"k3s removed no-deploy", server + "k3s: {no-deploy: [traefik]}\n", "k3s.no-deploy", []string{"disable"}},
		{"k3s bool not bool", server + "k3s: {secrets-encryption: yes}\n", "k3s.secrets-encryption", []string{`"yes"`, "true or false"}},
		{"k3s int not int", server + "k3s: {https-listen-port: 6443/tcp}\n", "k3s.https-listen-port", []string{`"6443/tcp"`, "whole number"}},
		{"k3s int as list", server + "k3s: {etcd-snapshot-retention: [5]}\n", "k3s.etcd-snapshot-retention", []string{"one value"}},
		{"k3s duration", server + "k3s: {etcd-s3-timeout: 5 minutes}\n", "k3s.etcd-s3-timeout", []string{`"5 minutes"`, "duration"}},
		{"k3s cluster-cidr not a CIDR", server + "k3s: {cluster-cidr: not-a-cidr}\n", "k3s.cluster-cidr", []string{`"not-a-cidr"`, "network (CIDR)", "10.42.0.0/16"}},
		{"k3s service-cidr prefix too long", server + "k3s: {service-cidr: 10.43.0.0/33}\n", "k3s.service-cidr", []string{`"10.43.0.0/33"`}},
		{"k3s dual-stack cidr half bad", server + "k3s: {cluster-cidr: '10.42.0.0/16,fd00:42::/129'}\n", "k3s.cluster-cidr", []string{`"fd00:42::/129"`}},
		{"k3s node-ip not an IP", server + "k3s: {node-ip: 999.1.1.1}\n", "k3s.node-ip", []string{`"999.1.1.1"`, "IP address"}},
		{"k3s node-external-ip list item bad", server + "k3s: {node-external-ip: [192.0.2.7, gw.example]}\n", "k3s.node-external-ip", []string{`"gw.example"`}},
		{"k3s cluster-dns leading zeros", server + "k3s: {cluster-dns: 010.043.000.010}\n", "k3s.cluster-dns", []string{`"010.043.000.010"`}},
		{"k3s bind-address two", server + "k3s: {bind-address: '10.0.0.1,10.0.0.2'}\n", "k3s.bind-address", []string{"one"}},
		{"k3s advertise-address list", server + "k3s: {advertise-address: [10.0.0.1]}\n", "k3s.advertise-address", []string{"a list"}},
		{"k3s flannel-backend removed", server + "k3s: {flannel-backend: ipsec}\n", "k3s.flannel-backend", []string{`"ipsec"`, "wireguard-native"}},
		{"k3s egress-selector-mode", server + "k3s: {egress-selector-mode: full}\n", "k3s.egress-selector-mode", []string{`"full"`, "pod"}},
		{"k3s node port range backwards", server + "k3s: {service-node-port-range: 32767-30000}\n", "k3s.service-node-port-range", []string{`"32767-30000"`, "30000-32767"}},
		{"k3s leading dashes", server + "k3s: {--tls-san: x}\n", "k3s.--tls-san", []string{"without the leading dashes", "tls-san"}},
		// K3s splits an address list at the comma and does not trim: it would stop.
		{"k3s dual-stack node-ip with a space", server + "k3s: {node-ip: '10.0.0.7, 2001:db8::7'}\n", "k3s.node-ip", []string{`"10.0.0.7, 2001:db8::7"`, "does not trim", "10.0.0.7,2001:db8::7"}},
		{"k3s node-ip with a leading space", server + "k3s: {node-ip: ' 10.0.0.7'}\n", "k3s.node-ip", []string{`" 10.0.0.7"`, "does not trim", ": write 10.0.0.7"}},
		{"k3s cluster-cidr list item with a space", server + "k3s: {cluster-cidr: ['10.42.0.0/16 ,2001:cafe:42::/56']}\n", "k3s.cluster-cidr", []string{"10.42.0.0/16,2001:cafe:42::/56"}},
		// Go's flag parsing, K3s's, reads a leading 0 as octal.
		{"k3s int leading zero", server + "k3s: {etcd-snapshot-retention: 010}\n", "k3s.etcd-snapshot-retention", []string{`"010"`, "octal", "would be 8", "10"}},
		{"k3s port leading zero", server + "k3s: {https-listen-port: '06443'}\n", "k3s.https-listen-port", []string{`"06443"`, "would be 3363", "6443"}},
		{"k3s int leading zero not octal", server + "k3s: {etcd-snapshot-retention: '09'}\n", "k3s.etcd-snapshot-retention", []string{`"09"`, "refuse to start", ": 9"}},
		{"k3s kubeconfig mode not octal", server + "k3s: {write-kubeconfig-mode: '0o644'}\n", "k3s.write-kubeconfig-mode", []string{`"0o644"`, "octal", "0644"}},
		{"k3s kubeconfig mode 8", server + "k3s: {write-kubeconfig-mode: '0648'}\n", "k3s.write-kubeconfig-mode", []string{`"0648"`}},
		{"k3s reconcile interval", server + "k3s: {etcd-snapshot-reconcile-interval: 10 minutes}\n", "k3s.etcd-snapshot-reconcile-interval", []string{`"10 minutes"`, "duration"}},

		// Registries.
		{"mirror endpoint bad scheme", server + "registries: {mirrors: {docker.io: {endpoint: ['ftp://m.example']}}}\n", "registries.mirrors.docker.io.endpoint[0]", []string{`"ftp://m.example"`}},
		{"mirror endpoint not URL", server + "registries: {mirrors: {docker.io: {endpoint: ['m.example:5000']}}}\n", "registries.mirrors.docker.io.endpoint[0]", []string{`"m.example:5000"`}},
		{"mirror endpoint with credentials", server + "registries: {mirrors: {docker.io: {endpoint: ['https://u:p@m.example']}}}\n", "registries.mirrors.docker.io.endpoint[0]", []string{"registries.configs.m.example.auth"}},
		{"mirror endpoint port out of range", server + "registries: {mirrors: {docker.io: {endpoint: ['https://m.example:99999']}}}\n", "registries.mirrors.docker.io.endpoint[0]", []string{`"https://m.example:99999"`, `port "99999"`, "1 to 65535"}},
		{"mirror endpoint port not a number", server + "registries: {mirrors: {docker.io: {endpoint: ['https://m.example:five']}}}\n", "registries.mirrors.docker.io.endpoint[0]", []string{`"https://m.example:five"`, "port"}},
		{"mirror name port out of range", server + "registries: {mirrors: {'r.example:70000': {endpoint: ['https://m.example']}}}\n", "registries.mirrors.r.example:70000", []string{`"r.example:70000"`, `port "70000"`}},
		{"config host port out of range", server + "registries: {configs: {'m.example:0': {auth: {username: u, password: p}}}}\n", "registries.configs.m.example:0", []string{`"m.example:0"`, `port "0"`}},
		{"mirror endpoint bad host", server + "registries: {mirrors: {docker.io: {endpoint: ['https://bad_host!:5000']}}}\n", "registries.mirrors.docker.io.endpoint[0]", []string{`"bad_host!"`, "DNS name"}},
		{"mirror endpoint bad IPv4", server + "registries: {mirrors: {docker.io: {endpoint: ['https://10.0.0.256:5000']}}}\n", "registries.mirrors.docker.io.endpoint[0]", []string{`"10.0.0.256"`, "IPv4"}},
		{"mirror name with scheme", server + "registries: {mirrors: {'https://docker.io': {endpoint: ['https://m.example']}}}\n", "registries.mirrors.https://docker.io", []string{`"https://docker.io"`}},
		{"rewrite bad regexp", server + "registries: {mirrors: {docker.io: {endpoint: ['https://m.example'], rewrite: {'^(rancher': x}}}}\n", "registries.mirrors.docker.io.rewrite", []string{`"^(rancher"`}},
		{"config host with scheme", server + "registries: {configs: {'https://m.example': {tls: {insecure_skip_verify: false}}}}\n", "registries.configs.https://m.example", []string{`"https://m.example"`}},
		{"auth username without password", server + "registries: {configs: {m.example: {auth: {username: u}}}}\n", "registries.configs.m.example.auth", []string{"username and password"}},
		{"auth empty", server + "registries: {configs: {m.example: {auth: {}}}}\n", "registries.configs.m.example.auth", []string{"empty"}},
		{"tls cert without key", server + "registries: {configs: {m.example: {tls: {cert_file: /c.pem}}}}\n", "registries.configs.m.example.tls", []string{"key_file"}},
		{"tls relative ca", server + "registries: {configs: {m.example: {tls: {ca_file: ca.pem}}}}\n", "registries.configs.m.example.tls.ca_file", []string{`"ca.pem"`}},

		// Reserved sections keep their shape.
		{"install disk path", server + "install: {disk: {path: sda}}\n", "install.disk.path", []string{`"sda"`, "/dev"}},
		{"install disk empty", server + "install: {disk: {}}\n", "install.disk", []string{"empty", "path", "model", "serial", "wwn"}},
		{"install unknown field", server + "install: {disk: {size: 1T}}\n", "install.disk.size", []string{"unknown field"}},
		{"constellation join with space", server + "constellation: {join: 'a b'}\n", "constellation.join", []string{"spaces"}},
		{"constellation join wrong scheme", server + "constellation: {join: 'https://hub.example:8443?token=" + joinToken + "&ca=sha256:" + joinPin + "'}\n", "constellation.join", []string{`"https"`, "etoile://HOST:PORT", "etoile hub token create"}},
		{"constellation join bad port", server + "constellation: {join: 'etoile://hub.example:99999?token=" + joinToken + "&ca=sha256:" + joinPin + "'}\n", "constellation.join", []string{`"99999"`, "1 to 65535"}},
		{"constellation join no token", server + "constellation: {join: 'etoile://hub.example:8443?ca=sha256:" + joinPin + "'}\n", "constellation.join", []string{"token is not ID.SECRET"}},
		{"constellation join bad pin", server + "constellation: {join: 'etoile://hub.example:8443?token=" + joinToken + "&ca=sha256:abc'}\n", "constellation.join", []string{"ca is not sha256:"}},
		{"constellation join old form", server + "constellation: {join: 'etoile1:hub.example.com:8443:tok_abc:secret'}\n", "constellation.join", []string{"etoile://HOST:PORT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := wantRefused(t, header+tc.body, tc.path, tc.want); !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error text does not name %q: %v", tc.path, err)
			}
		})
	}
}

func findField(err error, path string) *schema.FieldError {
	var es schema.Errors
	if !errors.As(err, &es) {
		return nil
	}
	for _, fe := range es {
		if fe.Path == path {
			return fe
		}
	}
	return nil
}

func TestSysctlPath(t *testing.T) {
	for name, want := range map[string]string{
		"net.ipv4.ip_forward":              "net/ipv4/ip_forward",
		"net/ipv4/conf/eth0.42/forwarding": "net/ipv4/conf/eth0.42/forwarding",
		"/vm/max_map_count":                "vm/max_map_count",
		// sysctl.d(5): when the first separator is a dot, a slash stands
		// for a dot inside a part.
		"net.ipv4.conf.eth0/42.forwarding": "net/ipv4/conf/eth0.42/forwarding",
		"net/ipv4.ip_forward":              "net/ipv4.ip_forward",
	} {
		if got := SysctlPath(name); got != want {
			t.Errorf("SysctlPath(%q) = %q, want %q", name, got, want)
		}
	}
	c, _, err := Check([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\n" + server + "sysctls: {vm.max_map_count: 262144, net/ipv4/conf/eth0.42/forwarding: '1', fs.inotify.max_user_instances: \"8192\"}\n"))
	if err != nil || c.Sysctls["vm.max_map_count"] != "262144" {
		t.Fatalf("sysctls: %v %+v", err, c)
	}
	if _, _, err := Check([]byte(header + server + "sysctls: {net.ipv4.conf.eth0/42.forwarding: '1'}\n")); err != nil {
		t.Errorf("sysctl.d's eth0/42 for the VLAN eth0.42: %v", err)
	}
}

// TestSysctlSpellingsOfOneParameter: two names for one file under
// /proc/sys are refused, naming both, instead of the value of whichever
// the agent wrote last winning.
func TestSysctlSpellingsOfOneParameter(t *testing.T) {
	_, _, err := Check([]byte(header + server + "sysctls: {net.ipv4.ip_forward: '1', net/ipv4/ip_forward: '0', /net/ipv4/ip_forward: '1', net.ipv4.conf.eth0/42.rp_filter: '0', net/ipv4/conf/eth0.42/rp_filter: '2'}\n"))
	for p, want := range map[string]string{
		"sysctls.net/ipv4/ip_forward":             "is the same kernel parameter as sysctls./net/ipv4/ip_forward (/proc/sys/net/ipv4/ip_forward), written another way: keep one",
		"sysctls.net.ipv4.ip_forward":             "is the same kernel parameter as sysctls./net/ipv4/ip_forward",
		"sysctls.net/ipv4/conf/eth0.42/rp_filter": "is the same kernel parameter as sysctls.net.ipv4.conf.eth0/42.rp_filter (/proc/sys/net/ipv4/conf/eth0.42/rp_filter)",
	} {
		if fe := findField(err, p); fe == nil || !strings.Contains(fe.Msg, want) {
			t.Errorf("%s: want %q in:\n%v", p, want, err)
		}
	}
	if es, _ := err.(schema.Errors); len(es) != 3 {
		t.Errorf("%d errors, want 3:\n%v", len(es), err)
	}
}

// TestRoleProblemsBesideAClusterDecodingProblem: a cluster field that did
// not decode does not hide that role is missing or misspelt, which no
// cluster field changes: one run reports both.
func TestRoleProblemsBesideAClusterDecodingProblem(t *testing.T) {
	for body, want := range map[string]string{
		"cluster: {init: yes}\n":               "missing: set role: server",
		"role: sevrer\ncluster: {init: yes}\n": `"sevrer": use server or agent`,
		"role: sevrer\ncluster: {init: [x]}\n": `"sevrer": use server or agent`,
		"cluster: {server: [x], token: t}\n":   "missing: set role: server",
	} {
		_, _, err := Check([]byte(header + body))
		if fe := findField(err, "role"); fe == nil || !strings.Contains(fe.Msg, want) {
			t.Errorf("%q: want role: %q in:\n%v", body, want, err)
		}
		if findField(err, "cluster.init") == nil && findField(err, "cluster.server") == nil {
			t.Errorf("%q: the cluster field's own error is missing:\n%v", body, err)
		}
	}
}

func TestNTPServersAccepted(t *testing.T) {
	for _, s := range []string{"ntp.example.com", "pool.ntp.org.", "10.0.0.1", "10.0.0.1:123", "2001:db8::1", "[2001:db8::1]:123", "[2001:db8::1]", "ntp1:1123", "NTP.Example.com"} {
		if msg := ntpServerProblem(s); msg != "" {
			t.Errorf("%q rejected: %s", s, msg)
		}
	}
}

// TestDottedMapKeysKeepTheirErrors: a decoding problem at one map key does
// not hide the problems of another key that only starts like it.
func TestDottedMapKeysKeepTheirErrors(t *testing.T) {
	doc := header + server + "registries: {mirrors: {docker: x, docker.io: {endpoint: ['ftp://x']}}}\n"
	_, err := Parse([]byte(doc))
	for _, p := range []string{"registries.mirrors.docker", "registries.mirrors.docker.io.endpoint[0]"} {
		if findField(err, p) == nil {
			t.Errorf("no error at %s in:\n%v", p, err)
		}
	}
}

func TestHeaderRejected(t *testing.T) {
	for _, tc := range []struct{ doc, path, want string }{
		{"apiVersion: etoile.io/v2\nkind: MachineConfig\n" + server, "apiVersion", `"etoile.io/v2"`},
		{"apiVersion: etoile.io/v1alpha1\nkind: ImageSpec\n" + server, "kind", `"ImageSpec"`},
		{server, "apiVersion", "missing"},
	} {
		_, err := Parse([]byte(tc.doc))
		fe := findField(err, tc.path)
		if fe == nil || !strings.Contains(fe.Msg, tc.want) {
			t.Errorf("header problem at %s not reported with %q: %v", tc.path, tc.want, err)
		}
	}
	// Configs built in Go are checked too.
	c := &MachineConfig{Role: RoleServer, Cluster: &Cluster{Init: true}}
	if _, err := c.Validate(); findField(err, "apiVersion") == nil || findField(err, "kind") == nil {
		t.Errorf("empty header not reported: %v", err)
	}
}

// TestEveryProblemAtOnce: one run names every mistake, as Talos does, so a
// technician at the console fixes the file in one go.
func TestEveryProblemAtOnce(t *testing.T) {
	doc := header + `hostname: Bad_Host
role: agent
cluster: {init: true}
labels: {etoile.io/x: y}
network: {interfaces: [{name: eth0, vlan: 5000}]}
k3s: {token: x}
`
	_, err := Parse([]byte(doc))
	for _, p := range []string{"hostname", "cluster.init", "labels.etoile.io/x", "network.interfaces[0].vlan", "network.interfaces[0]", "k3s.token"} {
		if findField(err, p) == nil {
			t.Errorf("no error at %s in:\n%v", p, err)
		}
	}

	// Decoding and validation problems come together; what only follows
	// from a decoding problem is not reported again (a mistyped field would
	// otherwise also read as missing).
	doc = header + `hostname: Bad_Host
role: agent
cluster: {server: 'https://a:6443', tokn: x}
taints: [nope]
network: {interfaces: [{name: eth0, vlan: ten}]}
`
	_, err = Parse([]byte(doc))
	for _, p := range []string{"hostname", "cluster.tokn", "taints[0]", "network.interfaces[0].vlan"} {
		if findField(err, p) == nil {
			t.Errorf("no error at %s in:\n%v", p, err)
		}
	}
	for _, p := range []string{"cluster.token", "network.interfaces[0]"} {
		if findField(err, p) != nil {
			t.Errorf("echo error at %s in:\n%v", p, err)
		}
	}

	// A wrong type in one registries block hides neither the other block's
	// problems nor its own siblings'.
	doc = header + server + `registries: {configs: {r.example: {tls: {insecure_skip_verify: "yes"}}}, mirrors: {docker.io: {endpoint: ["not a url", "ftp://x"]}}}
`
	_, err = Parse([]byte(doc))
	for _, p := range []string{"registries.configs.r.example.tls.insecure_skip_verify", "registries.mirrors.docker.io.endpoint[0]", "registries.mirrors.docker.io.endpoint[1]"} {
		if findField(err, p) == nil {
			t.Errorf("no error at %s in:\n%v", p, err)
		}
	}

	// A mistyped field does not hide its siblings' problems, nor another
	// list item's.
	doc = header + server + `network: {interfaces: [{name: eth0, adresses: [10.0.0.5/24], vlan: 5000}, {name: eth1, mtu: 20}]}
`
	_, err = Parse([]byte(doc))
	for _, p := range []string{"network.interfaces[0].adresses", "network.interfaces[0].vlan", "network.interfaces[1].mtu"} {
		if findField(err, p) == nil {
			t.Errorf("no error at %s in:\n%v", p, err)
		}
	}

	// A field no check of the interface reads (mtu, dns, gateway) that
	// did not decode hides none of the interface's own problems.
	doc = header + server + `network: {interfaces: [{name: eth0, mtu: big, addresses: [10.0.0.5/24], dhcp: true}, {name: eth1, dns: {a: b}}, {name: eth2, gateway: [x], dhcp: true, addresses: [10.0.2.5/24]}]}
`
	_, err = Parse([]byte(doc))
	for _, p := range []string{"network.interfaces[0].mtu", "network.interfaces[0]", "network.interfaces[1].dns", "network.interfaces[1]", "network.interfaces[2].gateway", "network.interfaces[2]"} {
		if findField(err, p) == nil {
			t.Errorf("no error at %s in:\n%v", p, err)
		}
	}
}

func TestSecretsNotShown(t *testing.T) {
	doc := header + "role: server\ncluster: {init: true, token: 'top secret'}\nregistries: {configs: {m.example: {auth: {password: hunter2}}}}\n"
	_, err := Parse([]byte(doc))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, secret := range []string{"top secret", "hunter2"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the secret %q: %v", secret, err)
		}
	}
}

func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string // substrings of one warning
	}{
		{"unknown k3s key", server + "k3s: {tls-sans: [a]}\n", []string{"k3s.tls-sans", `did you mean "tls-san"`}},
		{"unknown k3s key far from any", server + "k3s: {frobnicate: true}\n", []string{"k3s.frobnicate", "not a K3s option"}},
		{"server-only key on agent", "role: agent\ncluster: {server: 'https://a:6443', token: t}\nk3s: {tls-san: [a]}\n", []string{"k3s.tls-san", "only k3s server"}},
		{"agent-only key on server", server + "k3s: {disable-apiserver-lb: true}\n", []string{"k3s.disable-apiserver-lb", "only k3s agent"}},
		{"deprecated key", server + "k3s: {kube-controller-arg: [a=b]}\n", []string{"k3s.kube-controller-arg", "kube-controller-manager-arg"}},
		{"deprecated server-only key on agent", "role: agent\ncluster: {server: 'https://a:6443', token: t}\nk3s: {kube-controller-arg: [a=b]}\n", []string{"k3s.kube-controller-arg", "only k3s server", "left out"}},
		{"disable typo", server + "k3s: {disable: [servicelb, traefic]}\n", []string{"k3s.disable", `"traefic"`, "skips it", `did you mean "traefik"`}},
		{"disable typo in a comma list", server + "k3s: {disable: 'traefik,metric-server'}\n", []string{"k3s.disable", `"metric-server"`, "metrics-server"}},
		{"server URL without port", "role: agent\ncluster: {server: 'https://cp.example', token: t}\n", []string{"cluster.server", "6443"}},
		{"gateway outside subnet", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], gateway: 10.9.0.1}]}\n", []string{"network.interfaces[0].gateway", "10.9.0.1", "outside"}},
		{"gateway6 outside subnet", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24, '2001:db8::2/64'], gateway: 10.0.0.1, gateway6: '2001:db8:9::1'}]}\n", []string{"network.interfaces[0].gateway6", "2001:db8:9::1", "outside"}},
		{"two IPv6 default routes", server + "network: {interfaces: [{name: eth0, addresses: ['2001:db8::2/64'], gateway: '2001:db8::1'}, {name: eth1, dhcp: true, addresses: ['2001:db8:1::2/64'], gateway6: '2001:db8:1::1'}]}\n", []string{"network.interfaces[1].gateway6", "network.interfaces[0].gateway"}},
		{"two default routes", server + "network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], gateway: 10.0.0.1}, {name: eth1, addresses: [10.1.0.2/24], gateway: 10.1.0.1}]}\n", []string{"network.interfaces[1].gateway", "network.interfaces[0].gateway"}},
		{"registry credentials over http", server + "registries: {mirrors: {docker.io: {endpoint: ['http://r.example.com:5000']}}, configs: {'r.example.com:5000': {auth: {username: u, password: SECRETPW}}}}\n",
			[]string{"registries.mirrors.docker.io.endpoint[0]", `"http://r.example.com:5000" is plain http`, "registries.configs.r.example.com:5000.auth", "cross the network in clear"}},
		{"registry identity token over http", server + "registries: {mirrors: {'*': {endpoint: ['https://a.example', 'http://10.0.0.5:5000']}}, configs: {'10.0.0.5:5000': {auth: {identity_token: SECRETTOKEN}}}}\n",
			[]string{"registries.mirrors.*.endpoint[1]", "10.0.0.5:5000", "in clear"}},
		{"insecure registry", server + "registries: {configs: {m.example: {tls: {insecure_skip_verify: true}}}}\n", []string{"registries.configs.m.example.tls.insecure_skip_verify"}},
		{"VLAN link name too long", server + "network: {interfaces: [{name: enp0s31f6abcd, vlan: 4000, dhcp: true}]}\n", []string{"network.interfaces[0].vlan", `"enp0s31f6abcd.4000"`, "15", "v<ifindex of enp0s31f6abcd>.4000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, warnings, err := Check([]byte(header + tc.body))
			if err != nil {
				t.Fatalf("a warning case was rejected: %v", err)
			}
			if c == nil {
				t.Fatal("no config")
			}
			for _, w := range warnings {
				if strings.Contains(w, "SECRET") {
					t.Errorf("a warning shows a secret: %s", w)
				}
			}
			for _, w := range warnings {
				ok := true
				for _, s := range tc.want {
					ok = ok && strings.Contains(w, s)
				}
				if ok {
					return
				}
			}
			t.Errorf("no warning with %q; got %q", tc.want, warnings)
		})
	}
	// A static link without a gateway beside one that has one, or beside
	// DHCP, is fine; alone, it is a note (a storage port is harmless where
	// another link keeps DHCP's default route, which only the node knows),
	// never a warning.
	for _, tc := range []struct {
		body string
		note bool
	}{
		{"network: {interfaces: [{name: eth0, addresses: [10.0.0.2/24], gateway: 10.0.0.1}, {name: eth1, addresses: [10.1.0.2/24]}]}\n", false},
		{"network: {interfaces: [{name: eth0, dhcp: true}, {name: eth1, addresses: [10.1.0.2/24]}]}\n", false},
		{"network: {interfaces: [{name: eth1, addresses: [10.1.0.2/24]}]}\n", true},
		{"network: {interfaces: [{name: eth1, vlan: 42, addresses: [10.1.0.2/24]}]}\n", false}, // never had the boot's DHCP
		{"network: {interfaces: [{name: eth1, addresses: ['2001:db8::2/64'], gateway6: '2001:db8::1'}]}\n", false},
	} {
		c, w, err := Check([]byte(header + server + tc.body))
		if err != nil || len(w) != 0 {
			t.Errorf("%s: warnings %q, err %v", tc.body, w, err)
			continue
		}
		notes := c.Notes()
		if got := len(notes) == 1 && strings.Contains(notes[0], "network.interfaces[0]") && strings.Contains(notes[0], "add gateway"); got != tc.note {
			t.Errorf("%s: notes %q, want a note: %v", tc.body, notes, tc.note)
		}
	}
	// A clean config has no warnings.
	if _, w, err := Check([]byte(header + "role: agent\ncluster: {server: 'https://a:6443', token: t}\nk3s: {node-ip: 10.0.0.7, kubelet-arg+: [a=b]}\n")); err != nil || len(w) != 0 {
		t.Errorf("clean agent config: warnings %q, err %v", w, err)
	}
	if _, w, err := Check([]byte(header + server + "k3s: {disable: [traefik, 'servicelb,metrics-server'], etcd-snapshot-reconcile-interval: 15m, kube-apiserver-arg: [a=b], write-kubeconfig-mode: '0640', node-ip: '10.0.0.7,2001:db8::7', https-listen-port: 0}\n")); err != nil || len(w) != 0 {
		t.Errorf("clean agent config: warnings %q, err %v", w, err)
	}
}

// TestNetworkAccepted: what the network checks must not refuse.
func TestNetworkAccepted(t *testing.T) {
	for _, body := range []string{
		// IPv4 link-local, /31 and /32 (no network or broadcast address).
		"network: {interfaces: [{name: eth0, addresses: [169.254.10.1/16]}, {name: eth1, dhcp: true}]}\n",
		"network: {interfaces: [{name: eth0, addresses: [192.0.2.0/31, 192.0.2.255/32], gateway: 192.0.2.1}]}\n",
		// IPv6 has no broadcast: the all-ones host part is an address.
		"network: {interfaces: [{name: eth0, addresses: ['2001:db8::ffff:ffff:ffff:ffff/64'], gateway: '2001:db8::1'}]}\n",
		// A locally administered unicast MAC; an explicit vlan: 0 is untagged.
		"network: {interfaces: [{mac: '02:00:00:00:00:01', vlan: 0, dhcp: true}]}\n",
		// A VLAN whose link name fits, and a long one found by MAC (the
		// parent's name is not known until the machine runs).
		"network: {interfaces: [{name: enp0s31f6, vlan: 4000, dhcp: true}, {mac: '52:54:00:00:00:01', vlan: 4000, dhcp: true}]}\n",
		"hostname: localhost-1\n",
		"registries: {mirrors: {'r.example:5000': {endpoint: ['https://m.example:65535', 'http://[2001:db8::1]:5000', 'https://[2001:db8::2]']}}, configs: {'r.example:5000': {auth: {username: u, password: p}}}}\n",
		"install: {disk: {serial: S123}}\n",
		// Name servers: IPv4 link-local (a cloud's resolver), ULA, global.
		"network: {interfaces: [{name: eth0, dhcp: true, dns: [169.254.169.253, 10.0.0.53, 'fd00::53', '2001:db8::53']}]}\n",
		// Credentials for an https endpoint; an http one without any.
		"registries: {mirrors: {docker.io: {endpoint: ['https://r.example:5000', 'http://p.example:5000']}}, configs: {'r.example:5000': {auth: {username: u, password: p}}, 'p.example:5000': {tls: {ca_file: /etc/ca.pem}}}}\n",
		// Dual stack: an IPv4 and an IPv6 default route on one interface
		// (the router's link-local address is the usual IPv6 gateway);
		// DHCPv4 with static IPv6 addresses and gateway6 beside it.
		"network: {interfaces: [{name: eth0, addresses: [192.0.2.10/24, '2001:db8::10/64'], gateway: 192.0.2.1, gateway6: '2001:db8::1'}]}\n",
		"network: {interfaces: [{name: eth0, addresses: [192.0.2.10/24, '2001:db8::10/64'], gateway: 192.0.2.1, gateway6: 'fe80::1'}]}\n",
		"network: {interfaces: [{name: eth0, addresses: ['2001:db8::10/64'], gateway: 'fe80::1'}]}\n",
		"network: {interfaces: [{name: eth0, dhcp: true, addresses: ['2001:db8::10/64', 'fd00::10/64'], gateway6: '2001:db8::1'}, {name: eth1, dhcp: true, addresses: ['2001:db8:1::10/64']}]}\n",
		"constellation: {join: 'etoile://hub.example.com:8443?token=" + joinToken + "&ca=sha256:" + joinPin + "'}\n",
	} {
		if _, w, err := Check([]byte(header + server + body)); err != nil || len(w) != 0 {
			t.Errorf("%s: warnings %q, err %v", body, w, err)
		}
	}
	if _, w, err := Check([]byte(header + "role: agent\ncluster: {server: 'https://[2001:db8::1]:6443', token: t}\n")); err != nil || len(w) != 0 {
		t.Errorf("IPv6 server URL: warnings %q, err %v", w, err)
	}
}

// TestJoinStringNotShown: the join string holds the token's secret, so no
// message shows it, even when the URL parser quotes its input.
func TestJoinStringNotShown(t *testing.T) {
	for _, join := range []string{
		"etoile://hub.ex%zzample:8443?token=" + joinToken + "&ca=sha256:" + joinPin,
		"etoile://hub.example:8443?token=" + joinToken + "&ca=sha256:" + joinPin + "&x=%zz",
		"https://hub.example:8443?token=" + joinToken + "&ca=sha256:" + joinPin,
	} {
		_, err := Parse([]byte(header + server + "constellation: {join: '" + join + "'}\n"))
		if findField(err, "constellation.join") == nil {
			t.Errorf("%s accepted: %v", join, err)
			continue
		}
		if secret := joinToken[17:]; strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the token's secret: %v", err)
		}
	}
}

// TestHostsWithUnderscores: internal host names with _ (not RFC 1123, but
// resolved by Go's resolver, so by K3s's) are accepted in cluster.server and
// registry endpoints, as they were before hosts were checked.
func TestHostsWithUnderscores(t *testing.T) {
	doc := header + "role: agent\ncluster: {server: 'https://cp_1.site.internal:6443', token: t}\n" +
		"registries: {mirrors: {docker.io: {endpoint: ['https://registry_mirror:5000']}}}\n"
	if _, err := Parse([]byte(doc)); err != nil {
		t.Errorf("refused: %v", err)
	}
}

// TestK3sListForOneValue: a list given to a K3s option of one value is
// refused (K3s would keep only its last item); lists stay fine where K3s
// takes them.
func TestK3sListForOneValue(t *testing.T) {
	_, _, err := Check([]byte(header + "role: agent\ncluster: {server: 'https://a:6443', token: t}\nk3s: {flannel-iface: [eth0, eth1]}\n"))
	if err == nil || !strings.Contains(err.Error(), "k3s.flannel-iface") || !strings.Contains(err.Error(), "takes one value") {
		t.Errorf("flannel-iface as a list: err %v, want it refused naming the key", err)
	}
	if _, _, err := Check([]byte(header + "role: agent\ncluster: {server: 'https://a:6443', token: t}\nk3s: {kubelet-arg: [a=b, c=d], tls-san: [a.example, b.example]}\n")); err != nil {
		t.Errorf("list options refused: %v", err)
	}
}

// TestLeadingZerosAndTagsInAMachineConfig: what YAML readers disagree on
// is refused at its field rather than read one way: vlan: 0100 was VLAN
// 64, a token tagged !!binary (Python's bytes) reached K3s as its base64,
// and hostname: !!null foo left the node without its name. A secret's
// value is never shown.
func TestLeadingZerosAndTagsInAMachineConfig(t *testing.T) {
	for _, tc := range []struct{ body, path, want, secret string }{
		{server + "network: {interfaces: [{name: eth0, dhcp: true, vlan: 0100}]}\n", "network.interfaces[0].vlan", `"0100" has a leading 0, which YAML 1.1 reads as octal (it would be 64): write it without the 0: 100`, ""},
		{server + "network: {interfaces: [{name: eth0, dhcp: true, mtu: 01500}]}\n", "network.interfaces[0].mtu", "write it without the 0: 1500", ""},
		{server + "network: {interfaces: [{name: eth0, dhcp: true, vlan: 09}]}\n", "network.interfaces[0].vlan", "write it without the 0: 9", ""},
		{"role: agent\ncluster: {server: 'https://a.example:6443', token: !!binary aGVsbG8=}\n", "cluster.token", "the YAML tag !!binary", "aGVsbG8="},
		{"role: agent\ncluster: {server: 'https://a.example:6443', token: !secret K10abc}\n", "cluster.token", "the YAML tag !secret is not one Étoile reads: remove it", "K10abc"},
		{server + "hostname: !!null foo\n", "hostname", "the YAML tag !!null says there is no value, but one is given", ""},
		{server + "hostname: !!int node1\n", "hostname", "the YAML tag !!int does not fit: this field takes text", ""},
		{server + "hostname: !foo bar\n", "hostname", "the YAML tag !foo is not one Étoile reads", ""},
		{server + "registries: {configs: {r.example: {auth: {username: u, password: !!binary aHVudGVyMg==}}}}\n", "registries.configs.r.example.auth.password", "the YAML tag !!binary", "aHVudGVyMg=="},
		{server + "k3s: {node-ip: !!binary MTAuMC4wLjU=}\n", "k3s.node-ip", "the YAML tag !!binary", ""},
	} {
		_, _, err := Check([]byte(header + tc.body))
		if fe := findField(err, tc.path); fe == nil || !strings.Contains(fe.Msg, tc.want) {
			t.Errorf("%s: want %s: %q in:\n%v", strings.TrimSpace(tc.body), tc.path, tc.want, err)
		}
		if es, _ := err.(schema.Errors); len(es) != 1 {
			t.Errorf("%s: want one error, got:\n%v", strings.TrimSpace(tc.body), err)
		}
		if tc.secret != "" && err != nil && strings.Contains(err.Error(), tc.secret) {
			t.Errorf("%s: the error shows the secret:\n%v", strings.TrimSpace(tc.body), err)
		}
	}
}

// TestSysctlsTheKubeletSets: a sysctls value the kubelet replaces when it
// starts is warned about, saying so; with protect-kernel-defaults, that the
// kubelet would refuse to start; the kubelet's own value, or a server
// without a kubelet, is not.
func TestSysctlsTheKubeletSets(t *testing.T) {
	wantOneWarning(t, header+server+"sysctls: {kernel.panic: '0'}\n", []string{"sysctls.kernel.panic", `"0" lasts only until K3s's kubelet starts, which sets it to 10`})
	wantOneWarning(t, header+server+"sysctls: {vm/overcommit_memory: '2'}\nk3s: {protect-kernel-defaults: true}\n",
		[]string{"sysctls.vm/overcommit_memory", "the kubelet refuses to start unless it is 1"})
	wantOneWarning(t, header+server+"sysctls: {kernel.panic: '0'}\nk3s: {kubelet-arg: [max-pods=200, protect-kernel-defaults=true]}\n",
		[]string{"sysctls.kernel.panic", "the kubelet refuses to start unless it is 10"})
	for _, body := range []string{
		server + "sysctls: {kernel.panic: '10', kernel.keys.root_maxkeys: '1000000'}\n",
		server + "sysctls: {kernel.panic: '0'}\nk3s: {disable-agent: true}\n",
		server + "sysctls: {vm.max_map_count: '262144'}\n",
	} {
		if _, w, err := Check([]byte(header + body)); err != nil || len(w) != 0 {
			t.Errorf("%s: warnings %q, err %v", body, w, err)
		}
	}
}
