package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/image/k3s"
)

// TestStandinVersionMatchesDefault: the stand-in claims the K3s version
// images get by default, so a stand-in release passes for that version.
func TestStandinVersionMatchesDefault(t *testing.T) {
	if version != k3s.DefaultVersion {
		t.Errorf("stand-in version %q, image/k3s.DefaultVersion %q: keep them equal", version, k3s.DefaultVersion)
	}
	code, out := runStandin(t, t.TempDir(), nil, "--version")
	if code != 0 {
		t.Fatalf("--version exit %d", code)
	}
	first := strings.SplitN(out, "\n", 2)[0]
	if first != "k3s version "+version+" (standin)" {
		t.Errorf("first line %q, want K3s's format with (standin)", first)
	}
	// Scripts read the version as the third field of the first line.
	if f := strings.Fields(first); len(f) < 3 || f[2] != version {
		t.Errorf("third field of %q is not the version", first)
	}
	mustContain(t, "--version", out, "not K3s")
}

// TestStandinFlagRejection: flags and config keys K3s does not have are
// refused with K3s's wording and exit status 1.
func TestStandinFlagRejection(t *testing.T) {
	tests := []struct {
		name    string
		config  string // /etc/rancher/k3s/config.yaml under the root
		dropin  string // config.yaml.d/10-x.yaml
		env     map[string]string
		args    []string
		wantErr string
	}{
		{name: "unknown server flag", args: []string{"server", "--no-such-flag"}, wantErr: "flag provided but not defined: -no-such-flag"},
		{name: "unknown flag with value", args: []string{"server", "--nodename=x"}, wantErr: "flag provided but not defined: -nodename"},
		{name: "server flag on agent", args: []string{"agent", "--cluster-init"}, wantErr: "flag provided but not defined: -cluster-init"},
		{name: "removed flag", args: []string{"server", "--no-deploy", "traefik"}, wantErr: "flag provided but not defined: -no-deploy"},
		{name: "int flag with text", args: []string{"server", "--https-listen-port", "https"}, wantErr: `invalid value "https" for flag -https-listen-port`},
		{name: "bool flag with text", args: []string{"server", "--cluster-init=yes"}, wantErr: `invalid value "yes" for flag -cluster-init`},
		{name: "duration flag", args: []string{"server", "--etcd-s3-timeout=5"}, wantErr: `invalid value "5" for flag -etcd-s3-timeout`},
		{name: "missing value", args: []string{"server", "--node-name"}, wantErr: "flag needs an argument: -node-name"},
		{name: "positional argument", args: []string{"server", "extra"}, wantErr: `unexpected argument "extra"`},
		{name: "unknown command", args: []string{"serve"}, wantErr: "No help topic for 'serve'"},
		{name: "unknown config key", args: []string{"server"}, config: "node-name: a\nnotaflag: true\n",
			wantErr: "Unknown flag --notaflag found in config.yaml"},
		{name: "misspelt config key", args: []string{"server"}, config: "kublet-arg: max-pods=10\n",
			wantErr: "Unknown flag --kublet-arg found in config.yaml"},
		{name: "agent-only key on server", args: []string{"server"}, config: "disable-apiserver-lb: true\n",
			wantErr: "Unknown flag --disable-apiserver-lb"},
		{name: "server key in agent config", args: []string{"agent"}, config: "cluster-init: true\n",
			wantErr: "Unknown flag --cluster-init"},
		{name: "short name as key", args: []string{"server"}, config: "t: abc\n", wantErr: "Unknown flag --t"},
		{name: "unknown key in drop-in", args: []string{"server"}, dropin: "bogus: 1\n", wantErr: "Unknown flag --bogus found in 10-x.yaml"},
		{name: "list for a single value", args: []string{"server"}, config: "node-name: [a, b]\n", wantErr: "a list is only valid for flags that repeat"},
		{name: "map value", args: []string{"server"}, config: "node-label: {a: b}\n", wantErr: "want a string, number, boolean or list"},
		{name: "bool key with text", args: []string{"server"}, config: "cluster-init: maybe\n", wantErr: `invalid value "maybe" for flag -cluster-init`},
		{name: "not a map", args: []string{"server"}, config: "- a\n", wantErr: "cannot unmarshal"},
		{name: "bad YAML", args: []string{"server"}, config: "a: [\n", wantErr: "failed to parse"},
		{name: "explicit config missing", args: []string{"server", "--config", "/etc/nope.yaml"}, wantErr: "unable to read config file"},
		{name: "bad env value", args: []string{"server"}, env: map[string]string{"K3S_CLUSTER_INIT": "sure"}, wantErr: "K3S_CLUSTER_INIT"},
		{name: "agent without server", args: []string{"agent", "--token", "x"}, wantErr: "--server is required"},
		{name: "agent without token", args: []string{"agent", "--server", "https://127.0.0.1:6443"}, wantErr: "--token is required"},
		{name: "bad node label", args: []string{"server", "--node-label", "novalue", "--https-listen-port", "0"}, wantErr: `invalid node-label "novalue"`},
		{name: "bad node taint", args: []string{"server", "--node-taint", "a=b:Sometimes", "--https-listen-port", "0"}, wantErr: `invalid node-taint "a=b:Sometimes"`},
		{name: "bad kubeconfig mode", args: []string{"server", "--write-kubeconfig-mode", "rw", "--https-listen-port", "0"}, wantErr: `invalid write-kubeconfig-mode "rw"`},
		{name: "bad stand-in file", args: []string{"server"}, config: "", wantErr: "stand-in behaviour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.config != "" {
				writeFile(t, filepath.Join(root, defaultConfigPath), tt.config)
			}
			if tt.dropin != "" {
				writeFile(t, filepath.Join(root, defaultConfigPath+".d", "10-x.yaml"), tt.dropin)
			}
			if tt.name == "bad stand-in file" {
				writeFile(t, filepath.Join(root, standinConfigPath), "crashAftr: 5\n")
			}
			code, out := runStandin(t, root, tt.env, tt.args...)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			// The log quotes msg as logrus does; compare the text inside.
			mustContain(t, "log", strings.ReplaceAll(out, `\"`, `"`), tt.wantErr, "level=fatal")
		})
	}
}

// TestStandinAcceptsEveryK3sFlag: every flag in the table parses on the
// command line and as a config key, so the table and the parser agree.
func TestStandinAcceptsEveryK3sFlag(t *testing.T) {
	for _, sub := range []string{"server", "agent"} {
		fs := newFlagSet(sub)
		var args []string
		var cfg strings.Builder
		for name, def := range fs.byName {
			if len(name) == 1 || name == "config" {
				continue
			}
			val := map[flagKind]string{kindBool: "true", kindString: "x", kindSlice: "a=b", kindInt: "1", kindDuration: "5m"}[def.kind]
			args = append(args, "--"+name+"="+val)
			cfg.WriteString(name + ": \"" + val + "\"\n")
		}
		root := t.TempDir()
		if _, err := parseOptions(sub, args, root, envFunc(root, nil)); err != nil {
			t.Errorf("%s: command line: %v", sub, err)
		}
		writeFile(t, filepath.Join(root, defaultConfigPath), cfg.String())
		if _, err := parseOptions(sub, nil, root, envFunc(root, nil)); err != nil {
			t.Errorf("%s: config file: %v", sub, err)
		}
	}
}

func TestStandinOptionPrecedence(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, defaultConfigPath), "node-name: from-config\nnode-label:\n  - a=1\ntoken: cfgtoken\nwrite-kubeconfig-mode: 0644\n")
	writeFile(t, filepath.Join(root, defaultConfigPath+".d", "50-gpu.yaml"), "node-label+:\n  - gpu=true\n")
	env := map[string]string{"K3S_NODE_NAME": "from-env", "K3S_URL": "https://10.0.0.1:6443", "K3S_TOKEN": "envtoken"}
	o, err := parseOptions("server", []string{"--node-name", "from-cli", "-t", "clitoken", "--node-label=b=2"}, root, envFunc(root, env))
	if err != nil {
		t.Fatal(err)
	}
	if got := o.str("node-name", ""); got != "from-cli" {
		t.Errorf("node-name = %q, want the command line's", got)
	}
	if got := o.str("token", ""); got != "clitoken" {
		t.Errorf("token = %q, want the command line's (short -t)", got)
	}
	if got := o.list("node-label"); !slices.Equal(got, []string{"a=1", "gpu=true", "b=2"}) {
		t.Errorf("node-label = %q, want config, drop-in, then command line", got)
	}
	if got := o.str("server", ""); got != "https://10.0.0.1:6443" {
		t.Errorf("server = %q, want K3S_URL's", got)
	}
	// K3s's YAML 1.1 reads an unquoted 0644 as octal, the number 420, whose
	// text is the flag's value (Étoile writes every value quoted).
	if got := o.str("write-kubeconfig-mode", ""); got != "420" {
		t.Errorf("write-kubeconfig-mode = %q, want 420 as K3s reads an unquoted 0644", got)
	}
	// A --config path inside the test root is used as given.
	other := filepath.Join(root, "other.yaml")
	writeFile(t, other, "node-name: other\n")
	o, err = parseOptions("server", []string{"--config", other}, root, envFunc(root, nil))
	if err != nil || o.str("node-name", "") != "other" {
		t.Errorf("--config %s: node-name %q, err %v", other, o.str("node-name", ""), err)
	}
}

// TestStandinConfigFilesAsK3s: a drop-in's key replaces the file's value
// unless it ends in "+"; .yml drop-ins count; numbers are K3s's (base 0);
// an address list is split at commas and not trimmed, as K3s does, which
// then refuses to start.
func TestStandinConfigFilesAsK3s(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, defaultConfigPath), "node-label: [a=1]\ntls-san: [x.example]\nhttps-listen-port: '010'\nnode-name: n\n")
	writeFile(t, filepath.Join(root, defaultConfigPath+".d", "10-site.YML"), "node-label: [site=lyon]\ntls-san+: [y.example]\n")
	writeFile(t, filepath.Join(root, defaultConfigPath+".d", "20-notes.txt"), "not: yaml: at all: [\n")
	o, err := parseOptions("server", nil, root, envFunc(root, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := o.list("node-label"); !slices.Equal(got, []string{"site=lyon"}) {
		t.Errorf("node-label = %q, want the drop-in's alone (no +: it replaces)", got)
	}
	if got := o.list("tls-san"); !slices.Equal(got, []string{"x.example", "y.example"}) {
		t.Errorf("tls-san = %q, want both (+ appends)", got)
	}
	if got := o.integer("https-listen-port", 6443); got != 8 {
		t.Errorf("https-listen-port 010 = %d, want 8 (octal, as Go's flag parsing)", got)
	}
	for _, tc := range []struct{ cfg, want string }{
		{"node-ip: '10.0.0.7, 2001:db8::7'\n", "invalid node-ip: invalid ip format ' 2001:db8::7'"},
		{"cluster-cidr: '10.42.0.0/16, 2001:cafe:42::/56'\n", "invalid cluster-cidr ' 2001:cafe:42::/56'"},
		{"https-listen-port: '09'\n", `invalid value "09" for flag -https-listen-port`},
	} {
		writeFile(t, filepath.Join(root, defaultConfigPath), tc.cfg)
		os.RemoveAll(filepath.Join(root, defaultConfigPath+".d"))
		o, err := parseOptions("server", nil, root, envFunc(root, nil))
		if err == nil {
			err = checkAddresses(o)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.cfg, err, tc.want)
		}
	}
	writeFile(t, filepath.Join(root, defaultConfigPath), "node-ip: '10.0.0.7,2001:db8::7'\ncluster-cidr: [10.42.0.0/16]\ncluster-dns: 10.43.0.10\n")
	if o, err := parseOptions("server", nil, root, envFunc(root, nil)); err != nil || checkAddresses(o) != nil {
		t.Errorf("good addresses: %v, %v", err, checkAddresses(o))
	}
}

// FuzzStandinConfig: config files are input; parsing must not panic and
// what it accepts must be known flags.
func FuzzStandinConfig(f *testing.F) {
	f.Add([]byte("node-name: a\nnode-label:\n  - a=b\ncluster-init: true\n"))
	f.Add([]byte("notaflag: 1\n"))
	f.Add([]byte("- a\n"))
	f.Add([]byte("node-label+: [x=y]\n"))
	fs := newFlagSet("server")
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		args, err := fs.configArgs(path)
		if err != nil {
			return
		}
		o := &options{vals: map[string][]string{}, set: map[string]bool{}}
		if err := fs.parseArgs(args, o); err != nil {
			t.Fatalf("config accepted but its flags %q do not parse: %v", args, err)
		}
	})
}
