package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml2 "gopkg.in/yaml.v2"
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

// The flags of `k3s server` and `k3s agent` in K3s v1.34.9 (version), from
// the K3s documentation (https://docs.k3s.io/cli/server,
// https://docs.k3s.io/cli/agent) and the flag declarations in k3s-io/k3s
// pkg/cli/cmds/{server,agent}.go, hidden and deprecated flags included since
// K3s still accepts them. The stand-in rejects anything else, so a key the
// agent writes that K3s does not have fails a test here instead of being
// ignored on a real node. The agent's own list of K3s options
// (agent/config/k3skeys.go) must agree, flag for flag, role for role and
// kind for kind: TestStandinFlagsMatchAgentKeys checks it.

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
	// Not helm-controller-arg: K3s added it in v1.34.10 (k3s-io/k3s #14185,
	// release-1.34 backport #14303), after the v1.34.9 the stand-in imitates.
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
	n, _ := strconv.ParseInt(o.str(name, ""), 0, 64) // validated at parse time
	return int(n)
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
		// urfave/cli's IntFlag, as Go's flag package: base 0, so 010 is 8
		// and 0x10 16.
		_, err = strconv.ParseInt(val, 0, 64)
	case kindDuration:
		_, err = time.ParseDuration(val)
	}
	if err != nil {
		return fmt.Errorf("invalid value %q for flag -%s: parse error", val, def.name)
	}
	return nil
}

// configArgs turns a K3s config file into flags the way K3s does
// (k3s-io/k3s pkg/configfilearg, readConfigFile): the file, then the
// config.yaml.d drop-ins (.yaml or .yml in any case, in name order), each
// read with K3s's YAML 1.1 parser (gopkg.in/yaml.v2); a key in a later file
// replaces the earlier value unless it ends in "+", which appends; each
// value becomes its flag's text as K3s's convert.ToString makes it
// (fmt.Sprint, trimmed: an unquoted 1.10 is "1.1", 0644 "420"), and a list
// the flag repeated. Real K3s warns about an unknown key and skips it; the
// stand-in refuses it, so that tests catch it, and refuses a list for a flag
// that takes one value and a map anywhere (K3s would pass their text).
func (fs flagSet) configArgs(path string) ([]string, error) {
	files, err := dropIns(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		files = append([]string{path}, files...)
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	var order []string
	values := map[string][]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var doc yaml2.MapSlice
		if err := yaml2.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("failed to parse %s: %v", f, err)
		}
		for _, item := range doc {
			raw := k3sText(item.Key)
			key := strings.TrimSuffix(raw, "+")
			def, ok := fs.byName[key]
			if !ok || len(key) == 1 {
				//lint:ignore ST1005 K3s's own wording, which tests and users grep for
				return nil, fmt.Errorf("Unknown flag --%s found in %s (real K3s skips it with a warning; the stand-in refuses it)", raw, filepath.Base(f))
			}
			if key == "config" {
				continue
			}
			vals, err := configValues(f, key, def, item.Value)
			if err != nil {
				return nil, err
			}
			if _, seen := values[key]; !seen {
				order = append(order, key)
			}
			if strings.HasSuffix(raw, "+") {
				values[key] = append(values[key], vals...)
			} else {
				values[key] = vals
			}
		}
	}
	var args []string
	for _, key := range order {
		for _, val := range values[key] {
			if err := checkValue(fs.byName[key], val); err != nil {
				return nil, err
			}
			args = append(args, "--"+key+"="+val)
		}
	}
	return args, nil
}

// dropIns lists path's config.yaml.d files as K3s does (dotDFiles).
func dropIns(path string) ([]string, error) {
	entries, err := os.ReadDir(path + ".d")
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		lower := strings.ToLower(e.Name())
		if !e.IsDir() && (strings.HasSuffix(lower, ".yaml") || strings.HasSuffix(lower, ".yml")) {
			out = append(out, filepath.Join(path+".d", e.Name()))
		}
	}
	return out, nil
}

// configValues is a config file value's flag texts.
func configValues(file, key string, def flagDef, v any) ([]string, error) {
	switch v := v.(type) {
	case []any:
		if def.kind != kindSlice {
			return nil, fmt.Errorf("%s: %s: a list is only valid for flags that repeat", file, key)
		}
		var out []string
		for _, e := range v {
			if !isScalar(e) {
				return nil, fmt.Errorf("%s: %s: list entries must be strings", file, key)
			}
			out = append(out, k3sText(e))
		}
		return out, nil
	default:
		if !isScalar(v) {
			return nil, fmt.Errorf("%s: %s: want a string, number, boolean or list", file, key)
		}
		return []string{k3sText(v)}, nil
	}
}

func isScalar(v any) bool {
	switch v.(type) {
	case nil, string, bool, int, int64, uint64, float64:
		return true
	}
	return false
}

// k3sText is K3s's convert.ToString of a parsed value.
func k3sText(v any) string {
	if v == nil {
		return ""
	}
	return strings.TrimSpace(fmt.Sprint(v))
}

// checkAddresses checks the options K3s parses as addresses and networks
// the way it does at start (pkg/util ParseStringSliceToIPs and the server's
// cluster-cidr, service-cidr and cluster-dns loops): each value is split at
// commas, not trimmed, and one that does not parse stops K3s.
func checkAddresses(o *options) error {
	for _, name := range []string{"node-ip", "node-external-ip", "advertise-address", "bind-address", "cluster-dns", "cluster-cidr", "service-cidr"} {
		for _, v := range o.vals[name] {
			for _, part := range strings.Split(v, ",") {
				if name == "cluster-cidr" || name == "service-cidr" {
					if _, _, err := net.ParseCIDR(part); err != nil {
						return fmt.Errorf("invalid %s '%s': %v", name, part, err)
					}
				} else if net.ParseIP(part) == nil {
					return fmt.Errorf("invalid %s: invalid ip format '%s'", name, part)
				}
			}
		}
	}
	return nil
}
