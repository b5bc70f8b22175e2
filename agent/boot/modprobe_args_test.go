package boot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/agent/kmod"
)

// TestParseModprobeArgs: the command lines modprobe's callers use parse as
// kmod's getopt_long parses them: options after the module too (libxtables
// runs `modprobe ip_tables -q`), "--", grouped short options, long ones and
// their unique prefixes; without -a, what follows the module is its
// parameters.
func TestParseModprobeArgs(t *testing.T) {
	for _, tt := range []struct {
		args   []string
		want   modprobeArgs
		errHas string
	}{
		{args: []string{"ip_tables", "-q"}, want: modprobeArgs{quiet: true, names: []string{"ip_tables"}}},
		{args: []string{"-q", "--", "fs-iso9660"}, want: modprobeArgs{quiet: true, names: []string{"fs-iso9660"}}},
		{args: []string{"--", "br_netfilter"}, want: modprobeArgs{names: []string{"br_netfilter"}}},
		{args: []string{"overlay"}, want: modprobeArgs{names: []string{"overlay"}}},
		{args: []string{"--", "-q"}, want: modprobeArgs{names: []string{"-q"}}},
		{args: []string{"-qbv", "x"}, want: modprobeArgs{quiet: true, useBlacklist: true, verbose: true, names: []string{"x"}}},
		{args: []string{"--quiet", "--use-blacklist", "--syslog", "x"}, want: modprobeArgs{quiet: true, useBlacklist: true, syslog: true, names: []string{"x"}}},
		{args: []string{"--qui", "x"}, want: modprobeArgs{quiet: true, names: []string{"x"}}},
		{args: []string{"-s", "-n", "x", "--first-time"}, want: modprobeArgs{syslog: true, dryRun: true, firstTime: true, names: []string{"x"}}},
		{args: []string{"--dry-run", "x"}, want: modprobeArgs{dryRun: true, names: []string{"x"}}},
		{args: []string{"--show", "x"}, want: modprobeArgs{dryRun: true, names: []string{"x"}}},
		{args: []string{"-a", "a", "b", "-q"}, want: modprobeArgs{all: true, quiet: true, names: []string{"a", "b"}}},
		{args: []string{"--all", "a", "b=1"}, want: modprobeArgs{all: true, names: []string{"a", "b=1"}}},
		{args: []string{"nfs", "nfs4_disable_idmapping=0", "debug", "name=a b"},
			want: modprobeArgs{names: []string{"nfs"}, params: `nfs4_disable_idmapping=0 debug name="a b"`}},
		{args: []string{"-r", "x"}, errHas: "modprobe -r: removing modules is not supported"},
		{args: []string{"x", "--remove"}, errHas: "modprobe --remove: removing modules is not supported"},
		{args: []string{"-f", "x"}, errHas: "modprobe -f: forcing"},
		{args: []string{"-z", "x"}, errHas: "unknown option -z"},
		{args: []string{"--bogus", "x"}, errHas: "unknown option --bogus"},
		{args: []string{"--s", "x"}, errHas: "option --s is ambiguous"},
		{args: []string{"-d", "/x", "y"}, errHas: "modprobe -d: another root is not supported"},
	} {
		got, err := parseModprobeArgs(tt.args)
		if tt.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("parse %q: %v, want an error with %q", tt.args, err, tt.errHas)
			}
			continue
		}
		if err != nil {
			t.Errorf("parse %q: %v", tt.args, err)
			continue
		}
		if !slices.Equal(got.names, tt.want.names) || got.params != tt.want.params {
			t.Errorf("parse %q: names %q params %q, want %q %q", tt.args, got.names, got.params, tt.want.names, tt.want.params)
		}
		got.names, tt.want.names = nil, nil
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parse %q: %+v, want %+v", tt.args, got, tt.want)
		}
	}
}

const modprobeRelease = "6.1.0-test"

// modprobeRoot is a machine for the agent's modprobe: modules, the
// modprobe.d files given, an empty kernel log.
func modprobeRoot(t *testing.T, conf string) (modprobeEnv, string) {
	t.Helper()
	root := t.TempDir()
	mods := "lib/modules/" + modprobeRelease + "/"
	dep := "kernel/net/ip_tables.ko:\nkernel/fs/isofs.ko: kernel/fs/cdrom.ko\nkernel/fs/cdrom.ko:\n" +
		"kernel/net/wireguard.ko: kernel/lib/curve25519.ko\nkernel/lib/curve25519.ko:\nkernel/fs/nfs.ko:\nkernel/net/dccp.ko:\n"
	files := map[string]string{
		mods + "modules.dep":        dep,
		mods + "modules.alias":      "alias fs-iso9660 isofs\n",
		"etc/modprobe.d/local.conf": conf,
		"kmsg":                      "",
		"sys/.keep":                 "",
	}
	for _, line := range strings.Split(dep, "\n") {
		if f, _, ok := strings.Cut(line, ":"); ok {
			files[mods+f] = ""
		}
	}
	fakeroot.Write(t, root, files)
	return modprobeEnv{root: root, release: modprobeRelease, kmsg: filepath.Join(root, "kmsg")}, root
}

// TestModprobeCommand: the agent's modprobe loads what its callers ask for
// with their options where they put them, passes parameters to the module,
// and fails — exit status 1, with a message naming the module and the
// kernel's error, or silently with -q — when a module does not load.
func TestModprobeCommand(t *testing.T) {
	ctx := context.Background()
	rec := &kmod.Recorder{Fail: map[string]error{"wireguard": unix.ENOEXEC}}
	env, root := modprobeRoot(t, "install dccp /bin/false\n")
	env.loader = rec
	var stdout, stderr bytes.Buffer
	if err := modprobe(ctx, []string{"ip_tables", "-q"}, &stdout, &stderr, env); err != nil {
		t.Errorf("modprobe ip_tables -q: %v", err)
	}
	if err := modprobe(ctx, []string{"-q", "--", "fs-iso9660"}, &stdout, &stderr, env); err != nil {
		t.Errorf("modprobe -q -- fs-iso9660: %v", err)
	}
	if err := modprobe(ctx, []string{"nfs", "nfs4_disable_idmapping=0", "name=a b"}, &stdout, &stderr, env); err != nil {
		t.Errorf("modprobe nfs with parameters: %v", err)
	}
	if got, want := rec.Loaded(), []string{"ip_tables", "cdrom", "isofs", "nfs"}; !slices.Equal(got, want) {
		t.Errorf("loaded %q, want %q", got, want)
	}
	if got := rec.Params["nfs"]; got != `nfs4_disable_idmapping=0 name="a b"` {
		t.Errorf("nfs's parameters %q", got)
	}

	err := modprobe(ctx, []string{"wireguard"}, &stdout, &stderr, env)
	if err == nil || IsQuiet(err) || !strings.Contains(err.Error(), "modprobe wireguard: loading module wireguard") || !strings.Contains(err.Error(), "exec format error") {
		t.Errorf("modprobe wireguard, init_module failing: %v; want an error naming wireguard and the kernel's error", err)
	}
	if err := modprobe(ctx, []string{"-q", "wireguard"}, &stdout, &stderr, env); err == nil || !IsQuiet(err) {
		t.Errorf("modprobe -q wireguard, init_module failing: %v; want a silent failure", err)
	}
	if b, _ := os.ReadFile(env.kmsg); !strings.Contains(string(b), "<4>etoile-agent modprobe: wireguard: loading module wireguard") {
		t.Errorf("the failure is not in the kernel's log:\n%s", b)
	}
	if err := modprobe(ctx, []string{"dccp"}, &stdout, &stderr, env); err == nil || !strings.Contains(err.Error(), "disabled by modprobe.d (/etc/modprobe.d/local.conf:1") {
		t.Errorf("modprobe dccp, disabled by install /bin/false: %v", err)
	}
	if err := modprobe(ctx, []string{"-q", "no-such"}, &stdout, &stderr, env); err == nil || !IsQuiet(err) {
		t.Errorf("modprobe -q no-such: %v; want a silent failure", err)
	}
	if err := modprobe(ctx, []string{"no-such"}, &stdout, &stderr, env); err == nil || !strings.Contains(err.Error(), "module no-such not found in /lib/modules/"+modprobeRelease) {
		t.Errorf("modprobe no-such: %v", err)
	}
	fakeroot.Write(t, root, map[string]string{"sys/module/ip_tables/initstate": "live\n"})
	if err := modprobe(ctx, []string{"--first-time", "ip_tables"}, &stdout, &stderr, env); err == nil || !strings.Contains(err.Error(), "already in the kernel") {
		t.Errorf("modprobe --first-time of a loaded module: %v", err)
	}
	if err := modprobe(ctx, []string{"-r", "ip_tables"}, &stdout, &stderr, env); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("modprobe -r: %v", err)
	}

	// -n -v says what it would load, and loads nothing; -R names the modules.
	n := len(rec.Loaded())
	stdout.Reset()
	if err := modprobe(ctx, []string{"-n", "-v", "wireguard", "x=1"}, &stdout, &stderr, env); err != nil {
		t.Errorf("modprobe -n -v wireguard: %v", err)
	}
	want := "insmod " + filepath.Join(root, "lib/modules", modprobeRelease, "kernel/lib/curve25519.ko") + "\n" +
		"insmod " + filepath.Join(root, "lib/modules", modprobeRelease, "kernel/net/wireguard.ko") + " x=1\n"
	if stdout.String() != want || len(rec.Loaded()) != n {
		t.Errorf("modprobe -n -v said %q and loaded %q, want %q and nothing", stdout.String(), rec.Loaded()[n:], want)
	}
	stdout.Reset()
	if err := modprobe(ctx, []string{"-R", "fs-iso9660"}, &stdout, &stderr, env); err != nil || stdout.String() != "isofs\n" {
		t.Errorf("modprobe -R fs-iso9660: %q, %v", stdout.String(), err)
	}
}
