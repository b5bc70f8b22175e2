package config

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/etoile-os/etoile/internal/golden"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/schema"
	yaml2 "gopkg.in/yaml.v2"
)

const header = "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\n"

// minimal is the smallest valid config; rejection cases change one thing.
const minimal = header + `hostname: node-1
role: server
cluster:
  init: true
`

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestExampleValidates(t *testing.T) {
	c, warnings, err := Check(Example())
	if err != nil {
		t.Fatalf("the example does not validate:\n%v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("the example has warnings: %q", warnings)
	}
	if c.Hostname != "edge-lyon-01" || c.Role != RoleServer || c.Cluster == nil || !c.Cluster.Init {
		t.Errorf("example decoded as %+v", c)
	}
	// Every top-level field is explained in the example, reserved ones included.
	for _, field := range []string{"hostname:", "site:", "role:", "cluster:", "labels:", "taints:", "network:", "k3s:", "registries:", "install:", "constellation:"} {
		if !bytes.Contains(Example(), []byte(field)) {
			t.Errorf("example does not show %s", field)
		}
	}
	if !bytes.Contains(Example(), []byte("\n# ")) {
		t.Error("example has no comments")
	}
}

// TestMarshalStability keeps the canonical encoding of MachineConfig from
// drifting: decode → encode must give the golden bytes, and decoding the
// golden again must give the same bytes.
func TestMarshalStability(t *testing.T) {
	for _, tc := range []struct{ name, in, golden string }{
		{"example", "", "machineconfig-example.golden"},
		{"full", "full.yaml", "machineconfig-full.golden"},
		{"agent", "agent.yaml", "machineconfig-agent.golden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Example()
			if tc.in != "" {
				in = mustRead(t, tc.in)
			}
			c, err := Parse(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			golden.Compare(t, tc.golden, out)
			again, err := Parse(out)
			if err != nil {
				t.Fatalf("the encoded config does not parse: %v\n%s", err, out)
			}
			out2, err := again.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, out2) {
				t.Errorf("encoding is not stable:\n%s\n---\n%s", out, out2)
			}
		})
	}
}

func TestK3sConfigGolden(t *testing.T) {
	gpu := map[string]string{
		"etoile.io/gpu.vendor":   "nvidia",
		"etoile.io/gpu.model":    "NVIDIA-H100-80GB-HBM3",
		"etoile.io/gpu.count":    "1",
		"nvidia.com/gpu.present": "true",
	}
	for _, tc := range []struct {
		name, in string
		extra    map[string]string
		golden   string
	}{
		{"example server", "", nil, "k3s-example.golden"},
		{"full server with gpu labels", "full.yaml", gpu, "k3s-full.golden"},
		{"agent", "agent.yaml", gpu, "k3s-agent.golden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Example()
			if tc.in != "" {
				in = mustRead(t, tc.in)
			}
			c, err := Parse(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := c.K3sConfig(tc.extra)
			if err != nil {
				t.Fatal(err)
			}
			golden.Compare(t, tc.golden, out)
			again, err := c.K3sConfig(tc.extra)
			if err != nil || !bytes.Equal(out, again) {
				t.Errorf("rendering twice differs (err %v)", err)
			}
		})
	}
}

func TestK3sConfigContent(t *testing.T) {
	c, err := Parse(mustRead(t, "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.K3sConfig(map[string]string{"example.com/rack": "from-detection", "nvidia.com/gpu.present": "true"})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{
		"server: \"https://10.0.0.1:6443\"\n",
		"token: \"K10abc::server:secret\"\n",
		"node-name: \"worker-7\"\n",
		"  - \"example.com/rack=r7\"\n", // the config's label wins over detection
		"  - \"nvidia.com/gpu.present=true\"\n",
		"  - \"etoile.io/site=paris\"\n",
		"  - \"gpu=true:NoSchedule\"\n",
		"node-ip: \"10.0.0.7\"\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("K3s config lacks %q:\n%s", want, s)
		}
	}
	// write-kubeconfig-mode is server-only: K3s's agent would skip it.
	for _, absent := range []string{"cluster-init", "write-kubeconfig-mode", "from-detection"} {
		if strings.Contains(s, absent) {
			t.Errorf("K3s config of an agent has %q:\n%s", absent, s)
		}
	}
	// Étoile's keys come first, in a fixed order.
	var keys []string
	for _, line := range strings.Split(s, "\n") {
		if k, _, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
			keys = append(keys, k)
		}
	}
	if want := []string{"server", "token", "node-name", "node-label", "node-taint"}; !slices.Equal(keys[:5], want) {
		t.Errorf("keys start %q, want %q", keys, want)
	}
	if _, err := c.K3sConfig(map[string]string{"bad key!": "x"}); err == nil || !strings.Contains(err.Error(), "bad key!") {
		t.Errorf("a bad detected label gave %v", err)
	}
}

// TestK3sValuesKeptAsWritten reads the rendered config the way K3s does
// (gopkg.in/yaml.v2, YAML 1.1, then each value's fmt.Sprint as the flag's
// text: k3s-io/k3s pkg/configfilearg) and checks that K3s gets the text the
// operator wrote: an unquoted 0644 or 0o644 would be 420 there (mode 0420
// for the kubeconfig), "on" and "no" booleans, 1.10 would be 1.1, 0x10 16.
func TestK3sValuesKeptAsWritten(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(minimal, "hostname: ", "hostname: on\n# ", 1) +
		"k3s:\n  write-kubeconfig-mode: 0644\n  cluster-dns: '10.43.0.10'\n  cluster-domain: 0x10\n  v: 2\n" +
		"  tls-san: [10.0.0.1, no, 1e3]\n  etcd-s3-folder: 1.10\n  etcd-s3-bucket: 0o10\n  helm-job-image: 1_000\n" +
		"  default-local-storage-path: +5\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.K3sConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	var read yaml2.MapSlice
	if err := yaml2.Unmarshal(out, &read); err != nil {
		t.Fatalf("K3s's YAML parser refuses the config: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, kv := range read {
		if items, ok := kv.Value.([]any); ok {
			var texts []string
			for _, it := range items {
				texts = append(texts, fmt.Sprint(it))
			}
			got[fmt.Sprint(kv.Key)] = strings.Join(texts, " ")
			continue
		}
		got[fmt.Sprint(kv.Key)] = fmt.Sprint(kv.Value)
	}
	for k, want := range map[string]string{
		"node-name": "on", "write-kubeconfig-mode": "0644", "cluster-dns": "10.43.0.10", "cluster-domain": "0x10",
		"v": "2", "tls-san": "10.0.0.1 no 1e3", "etcd-s3-folder": "1.10", "etcd-s3-bucket": "0o10",
		"helm-job-image": "1_000", "default-local-storage-path": "+5",
	} {
		if got[k] != want {
			t.Errorf("K3s reads %s as %q, want %q:\n%s", k, got[k], want, out)
		}
	}
}

func TestK3sConfigRefusesInvalid(t *testing.T) {
	c := &MachineConfig{APIVersion: schema.APIVersion, Kind: Kind, Role: RoleAgent}
	if _, err := c.K3sConfig(nil); err == nil || !strings.Contains(err.Error(), "cluster") {
		t.Errorf("rendering an agent without cluster gave %v", err)
	}
}

func TestRegistriesYAML(t *testing.T) {
	c, err := Parse(mustRead(t, "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.RegistriesYAML()
	if err != nil {
		t.Fatal(err)
	}
	golden.Compare(t, "registries-full.golden", out)

	for _, body := range []string{"", "registries: {}\n", "registries:\n  mirrors: {}\n"} {
		c, err := Parse([]byte(minimal + body))
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.RegistriesYAML()
		if err != nil || out != nil {
			t.Errorf("registries %q rendered %q, %v; want nil", body, out, err)
		}
	}
}

func TestBuiltInGoValues(t *testing.T) {
	// Configs built in Go (the console, netboot profiles) render the same way.
	c := &MachineConfig{
		APIVersion: schema.APIVersion, Kind: Kind, Hostname: "n1", Role: RoleServer,
		Cluster: &Cluster{Init: true},
		K3s:     map[string]K3sValue{"tls-san": K3sList("a.example", "b.example"), "secrets-encryption": K3sBool(true), "cluster-domain": K3sString("edge.local")},
	}
	out, err := c.K3sConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "cluster-init: \"true\"\nnode-name: \"n1\"\ncluster-domain: \"edge.local\"\nsecrets-encryption: \"true\"\ntls-san:\n  - \"a.example\"\n  - \"b.example\"\n"
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	if got := c.K3s["tls-san"].Strings(); !slices.Equal(got, []string{"a.example", "b.example"}) || !c.K3s["tls-san"].IsList() {
		t.Errorf("Strings() = %q", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Load(good); err != nil || c.Hostname != "node-1" {
		t.Errorf("Load(good) = %+v, %v", c, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(minimal+"hostnam: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `did you mean "hostname"`) {
		t.Errorf("Load(bad) error %v should name the file and the field", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error", err)
	}
	huge := filepath.Join(dir, "huge.yaml")
	if err := os.WriteFile(huge, bytes.Repeat([]byte("#"), MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(huge); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(huge) = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Example())
	f.Add([]byte(minimal))
	for _, name := range []string{"full.yaml", "agent.yaml"} {
		if data, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(header + "k3s: {a: &x [1, 2], b: *x}\nrole: agent\n"))
	f.Add([]byte(header + "network: {interfaces: [{mac: zz, vlan: 99999}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatal("Parse returned a config with an error")
			}
			return
		}
		// Whatever parses must encode, parse again the same, and render.
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("the encoding of a valid config does not parse: %v\n%s", err, out)
		}
		out2, err := c2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not stable (%v):\n%s\n---\n%s", err, out, out2)
		}
		if _, err := c.K3sConfig(nil); err != nil {
			t.Fatalf("K3sConfig of a valid config: %v", err)
		}
		if _, err := c.RegistriesYAML(); err != nil {
			t.Fatalf("RegistriesYAML of a valid config: %v", err)
		}
	})
}

func TestEtcdOnlyServerIsWarnedAbout(t *testing.T) {
	_, warns, err := Check([]byte(minimal + "k3s:\n  disable-apiserver: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(warns, func(w string) bool {
		return strings.Contains(w, "k3s.disable-apiserver: this server runs no API server")
	}) {
		t.Errorf("warnings %q lack the disable-apiserver one", warns)
	}
}

// TestK3sFlagReadsAsK3s: the agent reads a boolean K3s option as K3s does
// (strconv.ParseBool, through urfave/cli), and validation accepts the same
// words: disable-agent: 1 is a server without a kubelet for both, or the
// agent would wait for a node K3s never registers.
func TestK3sFlagReadsAsK3s(t *testing.T) {
	for val, want := range map[string]bool{
		"1": true, "t": true, "T": true, "TRUE": true, "true": true, "True": true, "'1'": true,
		"0": false, "f": false, "F": false, "FALSE": false, "false": false,
	} {
		c, _, err := Check([]byte(minimal + "k3s:\n  disable-agent: " + val + "\n"))
		if err != nil {
			t.Errorf("disable-agent: %s refused: %v", val, err)
			continue
		}
		if got := c.K3sFlag("disable-agent"); got != want {
			t.Errorf("disable-agent: %s: K3sFlag = %v, want %v (as K3s reads it)", val, got, want)
		}
	}
	for _, val := range []string{"yes", "on", "'tRuE'", "2"} {
		if _, _, err := Check([]byte(minimal + "k3s:\n  disable-agent: " + val + "\n")); err == nil {
			t.Errorf("disable-agent: %s accepted: K3s refuses it", val)
		}
	}
}
