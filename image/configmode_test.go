package image

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestConfigMediaOwnerOnly builds the default image (without K3s, with only
// the modules its outputs need) with a machine config baked in: the ISO and
// the raw disk, which hold its token, land readable by their owner only
// (0600), and were so before they were renamed into the output folder, in
// a work folder only the owner enters; the netboot files, the SBOM and
// SHA256SUMS stay 0644, and the build says why the two are private. A
// later build without a config into the same folder makes them 0644 again.
func TestConfigMediaOwnerOnly(t *testing.T) {
	cache, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	agent := buildAgent(t, "")
	tmp := t.TempDir()
	spec := specWithoutK3s(t, tmp)
	spec.Modules = []string{"squashfs", "overlay", "loop", "isofs", "sr_mod", "sd_mod", "usb-storage", "dm_verity"}
	out := filepath.Join(tmp, "out")
	const token = "K10c0ffee::server:owner-only-secret"
	cfg := []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nhostname: edge-7\nrole: agent\ncluster:\n  server: https://10.0.0.1:6443\n  token: " + token + "\n")

	// What the ISO and the raw disk were, and their folder, when they were
	// synced in the work folder just before their rename.
	var (
		mu     sync.Mutex
		before = map[string]string{}
	)
	t.Cleanup(func() { fsync = (*os.File).Sync })
	fsync = func(f *os.File) error {
		if base := filepath.Base(f.Name()); base == "etoile.iso" || base == "etoile.raw" {
			st, err1 := os.Stat(f.Name())
			dir, err2 := os.Stat(filepath.Dir(f.Name()))
			mu.Lock()
			if err1 == nil && err2 == nil {
				before[base] = st.Mode().Perm().String() + " in " + dir.Mode().Perm().String()
			}
			mu.Unlock()
		}
		return f.Sync()
	}

	build := func(t *testing.T, cfg []byte) (*Result, string) {
		t.Helper()
		var logs bytes.Buffer
		b := &Builder{Spec: spec, OutDir: out, CacheDir: cache, AgentPath: agent, Epoch: 1, MachineConfig: cfg,
			Log: slog.New(slog.NewTextHandler(&logs, nil))}
		res, err := b.Build(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return res, logs.String()
	}
	modes := func(t *testing.T) map[string]fs.FileMode {
		t.Helper()
		got := map[string]fs.FileMode{}
		for _, n := range []string{"etoile-amd64.iso", "etoile-amd64.raw", "etoile-amd64-vmlinuz", "etoile-amd64-initramfs.img",
			"etoile-amd64-system.sqfs", "etoile-amd64.spdx.json", "SHA256SUMS"} {
			st, err := os.Stat(filepath.Join(out, n))
			if err != nil {
				t.Fatal(err)
			}
			got[n] = st.Mode().Perm()
		}
		return got
	}
	private := []string{"etoile-amd64.iso", "etoile-amd64.raw"}

	res, logs := build(t, cfg)
	iso, err := os.ReadFile(filepath.Join(out, "etoile-amd64.iso"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(iso, []byte(token)) {
		t.Fatal("the ISO does not hold the machine config: this test checks what protects it")
	}
	for n, m := range modes(t) {
		want := fs.FileMode(0o644)
		if slices.Contains(private, n) {
			want = 0o600
		}
		if m != want {
			t.Errorf("with a machine config: %s is %v, want %v", n, m, want)
		}
	}
	if !slices.Equal(res.OwnerOnly, private) {
		t.Errorf("Result.OwnerOnly = %q, want %q", res.OwnerOnly, private)
	}
	if !strings.Contains(logs, "readable by their owner only") || !strings.Contains(logs, "machine config") {
		t.Errorf("the build does not say why the ISO and the raw disk are private:\n%s", logs)
	}
	mu.Lock()
	for _, n := range []string{"etoile.iso", "etoile.raw"} {
		if want := "-rw------- in -rwx------"; before[n] != want {
			t.Errorf("in the work folder before its rename, %s was %q, want %q", n, before[n], want)
		}
	}
	mu.Unlock()

	res, logs = build(t, nil)
	for n, m := range modes(t) {
		if m != 0o644 {
			t.Errorf("a later build without a machine config: %s is %v, want -rw-r--r--", n, m)
		}
	}
	if len(res.OwnerOnly) != 0 || strings.Contains(logs, "owner only") {
		t.Errorf("a build without a machine config says files are private: %q\n%s", res.OwnerOnly, logs)
	}
}

// TestBuilderRefusesConfigNoOutputCarries: a Builder given a machine config
// and only the netboot set to make refuses it before any work, rather than
// making media without it.
func TestBuilderRefusesConfigNoOutputCarries(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	b := &Builder{Spec: &ImageSpec{Arch: "amd64", Outputs: []string{OutputNetboot}}, OutDir: out, Epoch: 1,
		MachineConfig: []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\n")}
	_, err := b.Build(context.Background())
	if err == nil {
		t.Fatal("a machine config with outputs [netboot] was accepted")
	}
	for _, w := range []string{"netboot", "etoile.config=<url>", "ETOILE-CFG"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the output folder was made although the config was refused")
	}
}
