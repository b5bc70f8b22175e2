package configcli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/internal/testca"
	"github.com/etoile-os/etoile/schema"
)

func runCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Command(context.Background(), "etoile-agent", args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "machine.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleThenValidate(t *testing.T) {
	out, _, err := runCmd(t, "example")
	if err != nil || out != string(config.Example()) {
		t.Fatalf("example: %v", err)
	}
	file := write(t, out)
	out, errOut, err := runCmd(t, "validate", file)
	if err != nil {
		t.Fatalf("the example does not validate: %v", err)
	}
	if !strings.Contains(out, file+": valid machine config (role server, hostname edge-lyon-01, site lyon-factory)") || errOut != "" {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
}

// TestValidateStandardInput: `etoile config example | etoile-agent config
// validate -`, and the K3s rendering of what arrives on standard input.
func TestValidateStandardInput(t *testing.T) {
	defer func(r io.Reader) { stdin = r }(stdin)
	stdin = bytes.NewReader(config.Example())
	out, errOut, err := runCmd(t, "validate", "-")
	if err != nil || !strings.Contains(out, "standard input: valid machine config (role server") {
		t.Fatalf("validate -: %v\nstdout %q stderr %q", err, out, errOut)
	}
	stdin = strings.NewReader("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\nhostname: -bad\n")
	if _, _, err := runCmd(t, "validate", "-"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "standard input") || !strings.Contains(err.Error(), "hostname") {
		t.Errorf("invalid config on standard input: %v", err)
	}
	stdin = bytes.NewReader(config.Example())
	if out, _, err := runCmd(t, "k3s", "-"); err != nil || !strings.Contains(out, "cluster-init: \"true\"") {
		t.Errorf("k3s -: %v\n%s", err, out)
	}
	stdin = bytes.NewReader(bytes.Repeat([]byte("#"), config.MaxSize+1))
	if _, _, err := runCmd(t, "validate", "-"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized standard input: %v", err)
	}
}

func TestValidateReportsFieldPaths(t *testing.T) {
	file := write(t, "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: agent\ncluster: {server: 'http://10.0.0.1:6443', token: t}\nnetwork: {interfaces: [{name: eth0, vlan: 5000}]}\nhostnam: x\n")
	_, _, err := runCmd(t, "validate", file)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
	var es schema.Errors
	if !errors.As(err, &es) {
		t.Fatalf("error does not carry the field errors: %v", err)
	}
	for _, want := range []string{file, "cluster.server", `"http://10.0.0.1:6443"`, "network.interfaces[0].vlan", "5000", `hostnam (line 6)`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestValidateWarningsAndStrict(t *testing.T) {
	file := write(t, "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\nk3s: {tls-sans: [a]}\n")
	out, errOut, err := runCmd(t, "validate", file)
	if err != nil {
		t.Fatalf("warnings alone failed validation: %v", err)
	}
	if !strings.Contains(errOut, `warning: k3s.tls-sans: `) || !strings.Contains(errOut, `did you mean "tls-san"`) || !strings.Contains(out, "1 warning(s)") {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
	if _, _, err := runCmd(t, "validate", "--strict", file); !errors.Is(err, ErrInvalid) {
		t.Errorf("--strict with a warning gave %v", err)
	}
	// Flags may follow the file, as people write them.
	for _, args := range [][]string{{"validate", file, "--strict"}, {"validate", file, "-strict=true"}} {
		if _, errOut, err := runCmd(t, args...); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "--strict") {
			t.Errorf("%q gave %v\nstderr %q", args, err, errOut)
		}
	}
	if _, _, err := runCmd(t, "validate", file, "--strict=false"); err != nil {
		t.Errorf("--strict=false after the file gave %v", err)
	}
	// After "--", a name that looks like a flag is a file.
	if _, _, err := runCmd(t, "validate", "--", "--strict"); err == nil || errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--strict: no such file") {
		t.Errorf("validate -- --strict gave %v", err)
	}
}

// TestValidateNotes: what only the machine can tell (a static link without
// a gateway: its default route goes only if DHCP gave it one) is a note on
// stderr, which --strict does not refuse.
func TestValidateNotes(t *testing.T) {
	file := write(t, "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\nnetwork: {interfaces: [{name: eth1, addresses: [10.1.0.2/24]}]}\n")
	out, errOut, err := runCmd(t, "validate", "--strict", file)
	if err != nil {
		t.Fatalf("a note failed validation: %v\nstderr %q", err, errOut)
	}
	if !strings.Contains(errOut, "note: network.interfaces[0]: static without a gateway") || strings.Contains(errOut, "warning:") || strings.Contains(out, "warning(s)") {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
}

func TestK3sRender(t *testing.T) {
	file := write(t, string(config.Example()))
	out, _, err := runCmd(t, "k3s", file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cluster-init: \"true\"\n", "node-name: \"edge-lyon-01\"\n", "# /etc/rancher/k3s/registries.yaml\n", "mirrors:\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestK3sRenderInlineTLS: a registry's TLS given as PEM shows in
// registries.yaml as the files the agent writes it to, named below it; the
// PEM itself, a client key among it, is not printed.
func TestK3sRenderInlineTLS(t *testing.T) {
	ca := testca.New(t, "Registry CA")
	certPEM, keyPEM := ca.ClientCertPEM(t, "edge")
	block := func(b []byte) string {
		return "|\n          " + strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "\n          ") + "\n"
	}
	file := write(t, "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\nregistries:\n  configs:\n    r.site.test:\n      tls:\n        ca: "+
		block(ca.PEM)+"        cert: "+block(certPEM)+"        key: "+block(keyPEM))
	out, errOut, err := runCmd(t, "k3s", file)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	for _, want := range []string{"ca_file: /etc/rancher/k3s/registries-tls/r.site.test/ca.crt\n", "key_file: /etc/rancher/k3s/registries-tls/r.site.test/client.key\n",
		"# also written: /etc/rancher/k3s/registries-tls/r.site.test/client.key (from the PEM in registries.configs)\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "BEGIN") {
		t.Errorf("output shows PEM:\n%s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	// Each usage error says on its first line what was wrong, then shows
	// the usage.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "no command given"},
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"validate"}, "no FILE given"},
		{[]string{"validate", "a", "b"}, `one FILE at a time, got 2: ["a" "b"]`},
		{[]string{"validate", "a", "--strict", "b"}, `one FILE at a time, got 2`},
		{[]string{"validate", "--bogus", "a"}, "flag provided but not defined: -bogus"},
		{[]string{"validate", "a", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"validate", "--strict=maybe", "a"}, `invalid boolean value "maybe" for -strict`},
		{[]string{"example", "x"}, `takes no arguments, got ["x"]`},
		{[]string{"k3s"}, "no FILE given"},
		{[]string{"k3s", "a", "b"}, "one FILE at a time"},
		{[]string{"k3s", "--strict", "a"}, "unknown option --strict"},
	} {
		out, errOut, err := runCmd(t, tc.args...)
		if !errors.Is(err, ErrUsage) {
			t.Errorf("%q gave %v, want ErrUsage", tc.args, err)
		}
		first, rest, _ := strings.Cut(errOut, "\n")
		if !strings.HasPrefix(first, "etoile-agent config") || !strings.Contains(first, tc.want) || !strings.Contains(rest, "usage: etoile-agent config <command>") || out != "" {
			t.Errorf("%q: stdout %q, stderr:\n%s\nwant a first line with %q, then the usage", tc.args, out, errOut, tc.want)
		}
	}
	// Asking for help is not an error.
	for _, args := range [][]string{{"help"}, {"validate", "-h"}, {"validate", "a.yaml", "--help"}, {"k3s", "--help"}} {
		if out, errOut, err := runCmd(t, args...); err != nil || !strings.HasPrefix(out, "usage: ") || errOut != "" {
			t.Errorf("%q gave %v, stdout %q, stderr %q", args, err, out, errOut)
		}
	}
	if _, _, err := runCmd(t, "validate", filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file gave %v", err)
	}
}

// TestValidateNamedPipe: a named pipe is refused at once (it used to block,
// deaf to ^C, waiting for a writer), with what to do instead.
func TestValidateNamedPipe(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "machine.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := runCmd(t, "validate", fifo)
		done <- err
	}()
	select {
	case err := <-done:
		for _, want := range []string{fifo + " is a named pipe", "use - "} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v, want an error with %q", err, want)
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("validate hangs on a named pipe")
	}
}

// TestK3sRenderManifests: the files a server's manifests are written to are
// named below K3s's config.
func TestK3sRenderManifests(t *testing.T) {
	file := write(t, "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\nmanifests:\n"+
		"  - {name: team-a, contents: \"apiVersion: v1\\nkind: Namespace\\nmetadata: {name: team-a}\\n\"}\n")
	out, errOut, err := runCmd(t, "k3s", file)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if want := "# also written: /var/lib/rancher/k3s/server/manifests/etoilecfg-team-a.yaml (manifests[].contents, deployed by K3s)\n"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}
