package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// flagKind is the value type of a K3s flag, as urfave/cli declares it.
type flagKind int

const (
	kindBool     flagKind = iota // --flag, --flag=true|false
	kindString                   // --flag value, --flag=value
	kindSlice                    // repeatable; config: a list or a string
	kindInt                      // --flag 6443
	kindDuration                 // --flag 5m
)

type flagDef struct {
	name  string
	alias string // one-letter form, "" if none
	kind  flagKind
}

// The flags of `k3s server` and `k3s agent` in K3s v1.34, from the K3s
// documentation (https://docs.k3s.io/cli/server, https://docs.k3s.io/cli/agent)
// and the flag declarations in k3s-io/k3s pkg/cli/cmds/{server,agent}.go,
// hidden and deprecated flags included since K3s still accepts them. The
// stand-in rejects anything else, so a key the agent writes that K3s does
// not have fails a test here instead of being ignored on a real node.

// commonFlags are accepted by both subcommands (a server also runs an agent).
var commonFlags = []flagDef{
	{"config", "c", kindString},
	{"debug", "", kindBool},
	{"v", "", kindInt},
	{"vmodule", "", kindString},
	{"log", "l", kindString},
	{"alsologtostderr", "", kindBool},
	{"token", "t", kindString},
	{"token-file", "", kindString},
	{"server", "s", kindString},
	{"data-dir", "d", kindString},
	{"bind-address", "", kindString},
	{"node-name", "", kindString},
	{"with-node-id", "", kindBool},
	{"node-label", "", kindSlice},
	{"node-taint", "", kindSlice},
	{"image-credential-provider-bin-dir", "", kindString},
	{"image-credential-provider-config", "", kindString},
	{"selinux", "", kindBool},
	{"lb-server-port", "", kindInt},
	{"protect-kernel-defaults", "", kindBool},
	{"container-runtime-endpoint", "", kindString},
	{"default-runtime", "", kindString},
	{"image-service-endpoint", "", kindString},
	{"disable-default-registry-endpoint", "", kindBool},
	{"nonroot-devices", "", kindBool},
	{"pause-image", "", kindString},
	{"snapshotter", "", kindString},
	{"private-registry", "", kindString},
	{"airgap-extra-registry", "", kindSlice},
	{"node-ip", "i", kindSlice},
	{"node-external-ip", "", kindSlice},
	{"node-internal-dns", "", kindSlice},
	{"node-external-dns", "", kindSlice},
	{"resolv-conf", "", kindString},
	{"flannel-iface", "", kindString},
	{"flannel-conf", "", kindString},
	{"flannel-cni-conf", "", kindString},
	{"vpn-auth", "", kindString},
	{"vpn-auth-file", "", kindString},
	{"kubelet-arg", "", kindSlice},
	{"kube-proxy-arg", "", kindSlice},
	{"enable-pprof", "", kindBool},
	{"rootless", "", kindBool},
	{"prefer-bundled-bin", "", kindBool},
	{"docker", "", kindBool},
}

var agentOnlyFlags = []flagDef{
	{"disable-apiserver-lb", "", kindBool},
}

var serverOnlyFlags = []flagDef{
	{"https-listen-port", "", kindInt},
	{"supervisor-port", "", kindInt},
	{"apiserver-port", "", kindInt},
	{"apiserver-bind-address", "", kindString},
	{"advertise-address", "", kindString},
	{"advertise-port", "", kindInt},
	{"tls-san", "", kindSlice},
	{"tls-san-security", "", kindBool},
	{"cluster-cidr", "", kindSlice},
	{"service-cidr", "", kindSlice},
	{"service-node-port-range", "", kindString},
	{"cluster-dns", "", kindSlice},
	{"cluster-domain", "", kindString},
	{"flannel-backend", "", kindString},
	{"flannel-ipv6-masq", "", kindBool},
	{"flannel-external-ip", "", kindBool},
	{"egress-selector-mode", "", kindString},
	{"servicelb-namespace", "", kindString},
	{"write-kubeconfig", "o", kindString},
	{"write-kubeconfig-mode", "", kindString},
	{"write-kubeconfig-group", "", kindString},
	{"helm-job-image", "", kindString},
	{"agent-token", "", kindString},
	{"agent-token-file", "", kindString},
	{"cluster-init", "", kindBool},
	{"cluster-reset", "", kindBool},
	{"cluster-reset-restore-path", "", kindString},
	{"kube-apiserver-arg", "", kindSlice},
	{"etcd-arg", "", kindSlice},
	{"kube-controller-manager-arg", "", kindSlice},
	{"kube-scheduler-arg", "", kindSlice},
	{"kube-cloud-controller-manager-arg", "", kindSlice},
	{"helm-controller-arg", "", kindSlice},
	{"kine-tls", "", kindBool},
	{"datastore-endpoint", "", kindString},
	{"datastore-cafile", "", kindString},
	{"datastore-certfile", "", kindString},
	{"datastore-keyfile", "", kindString},
	{"etcd-expose-metrics", "", kindBool},
	{"etcd-disable-snapshots", "", kindBool},
	{"etcd-snapshot-name", "", kindString},
	{"etcd-snapshot-schedule-cron", "", kindString},
	{"etcd-snapshot-reconcile-interval", "", kindDuration},
	{"etcd-snapshot-retention", "", kindInt},
	{"etcd-snapshot-dir", "", kindString},
	{"etcd-snapshot-compress", "", kindBool},
	{"etcd-s3", "", kindBool},
	{"etcd-s3-endpoint", "", kindString},
	{"etcd-s3-endpoint-ca", "", kindString},
	{"etcd-s3-skip-ssl-verify", "", kindBool},
	{"etcd-s3-access-key", "", kindString},
	{"etcd-s3-secret-key", "", kindString},
	{"etcd-s3-session-token", "", kindString},
	{"etcd-s3-bucket", "", kindString},
	{"etcd-s3-bucket-lookup-type", "", kindString},
	{"etcd-s3-retention", "", kindInt},
	{"etcd-s3-region", "", kindString},
	{"etcd-s3-folder", "", kindString},
	{"etcd-s3-proxy", "", kindString},
	{"etcd-s3-config-secret", "", kindString},
	{"etcd-s3-insecure", "", kindBool},
	{"etcd-s3-timeout", "", kindDuration},
	{"default-local-storage-path", "", kindString},
	{"disable", "", kindSlice},
	{"disable-scheduler", "", kindBool},
	{"disable-cloud-controller", "", kindBool},
	{"disable-kube-proxy", "", kindBool},
	{"disable-network-policy", "", kindBool},
	{"disable-helm-controller", "", kindBool},
	{"disable-apiserver", "", kindBool},
	{"disable-controller-manager", "", kindBool},
	{"disable-etcd", "", kindBool},
	{"embedded-registry", "", kindBool},
	{"supervisor-metrics", "", kindBool},
	{"system-default-registry", "", kindString},
	{"secrets-encryption", "", kindBool},
	{"secrets-encryption-provider", "", kindString},
	// Hidden or deprecated, still accepted by K3s.
	{"disable-agent", "", kindBool},
	{"kube-controller-arg", "", kindSlice},
	{"kube-cloud-controller-arg", "", kindSlice},
}

// flagSet is the flags one subcommand accepts.
type flagSet struct {
	byName map[string]flagDef // long and short names
}

func newFlagSet(sub string) flagSet {
	defs := slices.Clone(commonFlags)
	switch sub {
	case "server":
		defs = append(defs, serverOnlyFlags...)
	case "agent":
		defs = append(defs, agentOnlyFlags...)
	}
	fs := flagSet{byName: map[string]flagDef{}}
	for _, d := range defs {
		fs.byName[d.name] = d
		if d.alias != "" {
			fs.byName[d.alias] = d
		}
	}
	return fs
}

// options are the parsed flags: every value of every flag given, by long
// name, in order (scalars: the last one wins, as in urfave/cli).
type options struct {
	vals map[string][]string
	set  map[string]bool
}

func (o *options) str(name, def string) string {
	if v := o.vals[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	return def
}

func (o *options) list(name string) []string {
	var out []string
	for _, v := range o.vals[name] {
		// urfave/cli's StringSlice splits on commas too.
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func (o *options) boolean(name string) bool {
	v := o.str(name, "false")
	b, _ := strconv.ParseBool(v) // validated at parse time
	return b
}

func (o *options) integer(name string, def int) int {
	if !o.set[name] {
		return def
	}
	n, _ := strconv.Atoi(o.str(name, "")) // validated at parse time
	return n
}

// parseArgs parses the flags of a subcommand the way urfave/cli does:
// --name value, --name=value, -n value, bool flags without a value. The
// error wording follows urfave/cli's, which K3s prints.
func (fs flagSet) parseArgs(args []string, o *options) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				return fmt.Errorf("unexpected argument %q", args[i+1])
			}
			return nil
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			// K3s takes no positional arguments for server and agent.
			return fmt.Errorf("unexpected argument %q: %s takes only flags", a, "k3s")
		}
		name := strings.TrimLeft(a, "-")
		val, hasVal := "", false
		if n, v, ok := strings.Cut(name, "="); ok {
			name, val, hasVal = n, v, true
		}
		def, ok := fs.byName[name]
		if !ok {
			return fmt.Errorf("flag provided but not defined: -%s", name)
		}
		if def.kind == kindBool {
			if !hasVal {
				val = "true"
			}
		} else if !hasVal {
			if i+1 >= len(args) {
				return fmt.Errorf("flag needs an argument: -%s", name)
			}
			i++
			val = args[i]
		}
		if err := checkValue(def, val); err != nil {
			return err
		}
		o.vals[def.name] = append(o.vals[def.name], val)
		o.set[def.name] = true
	}
	return nil
}

func checkValue(def flagDef, val string) error {
	var err error
	switch def.kind {
	case kindBool:
		_, err = strconv.ParseBool(val)
	case kindInt:
		_, err = strconv.Atoi(val)
	case kindDuration:
		_, err = time.ParseDuration(val)
	}
	if err != nil {
		return fmt.Errorf("invalid value %q for flag -%s: parse error", val, def.name)
	}
	return nil
}

// configArgs turns a K3s config file into flags, the way K3s does: each key
// is a flag's long name, a list is the flag repeated, and "key+" appends to
// a list from an earlier file. Real K3s warns about an unknown key and
// skips it; the stand-in refuses it, so that tests catch it.
func (fs flagSet) configArgs(path string) ([]string, error) {
	files := []string{path}
	// K3s also reads config.yaml.d/*.yaml, in name order, after the file.
	if extra, err := filepath.Glob(path + ".d/*.yaml"); err == nil {
		sort.Strings(extra)
		files = append(files, extra...)
	}
	var args []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			if os.IsNotExist(err) && f == path {
				continue
			}
			return nil, err
		}
		a, err := fs.configFileArgs(f, data)
		if err != nil {
			return nil, err
		}
		args = append(args, a...)
	}
	return args, nil
}

func (fs flagSet) configFileArgs(file string, data []byte) ([]string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("failed to parse %s: %v", file, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("failed to parse %s: the top level must be a map of flag names to values", file)
	}
	var args []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := strings.TrimSuffix(k.Value, "+")
		def, ok := fs.byName[key]
		if !ok || len(key) == 1 {
			//lint:ignore ST1005 K3s's own wording, which tests and users grep for
			return nil, fmt.Errorf("Unknown flag --%s found in %s (real K3s skips it with a warning; the stand-in refuses it)", k.Value, filepath.Base(file))
		}
		if key == "config" {
			continue
		}
		var vals []string
		switch v.Kind {
		case yaml.ScalarNode:
			vals = []string{v.Value}
		case yaml.SequenceNode:
			if def.kind != kindSlice {
				return nil, fmt.Errorf("%s: %s: line %d: a list is only valid for flags that repeat", file, key, v.Line)
			}
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("%s: %s: line %d: list entries must be strings", file, key, e.Line)
				}
				vals = append(vals, e.Value)
			}
		default:
			return nil, fmt.Errorf("%s: %s: line %d: want a string, number, boolean or list", file, key, v.Line)
		}
		for _, val := range vals {
			if err := checkValue(def, val); err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			args = append(args, "--"+key+"="+val)
		}
	}
	return args, nil
}
