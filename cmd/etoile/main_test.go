package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/image"
	"github.com/etoile-os/etoile/internal/syncbuf"
)

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestBuildRejectsBadInputBeforeWork(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(spec, []byte("apiVersion: etoile.io/v1alpha1\nkind: ImageSpec\nmodules: [squashfs]\nkernel: {pakage: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badCfg := filepath.Join(dir, "machine.yaml")
	if err := os.WriteFile(badCfg, []byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: boss\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(filepath.Join(dir, "site"), 0o755); err != nil {
		t.Fatal(err)
	}
	overlaySpec := filepath.Join(dir, "overlay.yaml")
	spec2 := strings.Replace(string(image.DefaultSpecYAML()), "overlays: []", "overlays: [site]", 1)
	if err := os.WriteFile(overlaySpec, []byte(spec2), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"spec field", []string{"build", "-f", spec, "-o", out}, []string{spec, "kernel.pakage", `did you mean "package"`}},
		{"missing spec", []string{"build", "-f", filepath.Join(dir, "nope.yaml"), "-o", out}, []string{"nope.yaml"}},
		{"missing agent", []string{"build", "-o", out, "--agent", filepath.Join(dir, "no-agent")}, []string{"no-agent", "make build"}},
		{"bad k3s dir", []string{"build", "-o", out, "--k3s-dir", filepath.Join(dir, "nok3s")}, []string{"nok3s", "sha256sum-amd64.txt"}},
		{"bad machine config", []string{"build", "-o", out, "--config", badCfg}, []string{"machine.yaml", "role", `"boss"`}},
		{"stray argument", []string{"build", "spec.yaml"}, []string{"-f"}},
		{"empty -o", []string{"build", "-o", ""}, []string{"-o is empty"}},
		{"-o a file", []string{"build", "-o", badCfg}, []string{"-o " + badCfg + " is a file"}},
		{"-o inside an overlay", []string{"build", "-f", overlaySpec, "-o", filepath.Join(dir, "site", "out")}, []string{"is inside overlays[0]", "outside it"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, tc.args...)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if _, statErr := os.Stat(out); statErr == nil {
				t.Errorf("the output folder was created although the input was refused")
			}
		})
	}
}

func TestPrintDefaultSpecAndVersion(t *testing.T) {
	out, _, err := runCLI(t, "build", "--print-default-spec")
	if err != nil || !strings.Contains(out, "kind: ImageSpec") || !strings.Contains(out, "- virtio_blk") {
		t.Fatalf("default spec: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "version")
	if err != nil || !strings.HasPrefix(out, "etoile ") {
		t.Fatalf("version: %v %q", err, out)
	}
	if _, errOut, err := runCLI(t, "frobnicate"); err == nil || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %v %q", err, errOut)
	}
}

// TestHelpListsEveryCommand: `etoile help` names each command run accepts.
func TestHelpListsEveryCommand(t *testing.T) {
	out, _, err := runCLI(t, "help")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"build", "version"}
	for name := range extraCommands {
		names = append(names, name)
	}
	for _, name := range names {
		if !strings.Contains(out, "etoile "+name) {
			t.Errorf("etoile help does not list %q:\n%s", name, out)
		}
	}
}

// TestBuildConfigFromStdin: --config - reads the machine config from
// standard input (checked before any work, as a file is).
func TestBuildConfigFromStdin(t *testing.T) {
	defer func(r io.Reader) { stdin = r }(stdin)
	stdin = strings.NewReader("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: boss\n")
	_, _, err := runCLI(t, "build", "-o", filepath.Join(t.TempDir(), "out"), "--config", "-")
	if err == nil || !strings.Contains(err.Error(), `"boss"`) {
		t.Errorf("--config - with an invalid config: %v", err)
	}
}

func TestSourceDateEpoch(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for v, want := range map[string]string{"abc": "expected seconds since 1970", "-5": "expected seconds since 1970", "1e9": "expected seconds since 1970",
		"4294967296": "after February 2106"} {
		t.Setenv("SOURCE_DATE_EPOCH", v)
		if _, err := sourceDateEpoch(log); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), v) {
			t.Errorf("SOURCE_DATE_EPOCH=%s: %v, want an error saying %q", v, err, want)
		}
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if n, err := sourceDateEpoch(log); err != nil || n != 1700000000 {
		t.Errorf("SOURCE_DATE_EPOCH=1700000000: %d, %v", n, err)
	}
}

// TestSourceDateEpochDefault: without SOURCE_DATE_EPOCH the epoch is the
// commit time `make build` bakes in (-X main.commitTime=$(git log -1
// --format=%ct)); with neither it is 0 (1970-01-01) with a warning, never the
// clock, so two such builds still match; a malformed baked-in time is an
// error naming it, not a silent 1970.
func TestSourceDateEpochDefault(t *testing.T) {
	defer func(v string) { commitTime = v }(commitTime)
	epoch := func(t *testing.T, env *string, baked string) (int64, string, error) {
		t.Helper()
		t.Setenv("SOURCE_DATE_EPOCH", "")
		if env == nil {
			os.Unsetenv("SOURCE_DATE_EPOCH") // t.Setenv restores it
		} else {
			t.Setenv("SOURCE_DATE_EPOCH", *env)
		}
		commitTime = baked // as -X main.commitTime=… sets it
		var logs bytes.Buffer
		n, err := sourceDateEpoch(slog.New(slog.NewTextHandler(&logs, nil)))
		return n, logs.String(), err
	}
	empty, set := "", "1700000000"

	for _, env := range []*string{nil, &empty} {
		n, logs, err := epoch(t, env, "1600000000")
		if err != nil || n != 1600000000 || logs != "" {
			t.Errorf("SOURCE_DATE_EPOCH unset/empty, commit time 1600000000 baked in: %d, %v (logs %q), want the commit time, silently", n, err, logs)
		}
		n, logs, err = epoch(t, env, "")
		if err != nil || n != 0 || !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "1970-01-01") {
			t.Errorf("neither SOURCE_DATE_EPOCH nor a commit time: %d, %v (logs %q), want 0 with a warning naming 1970-01-01", n, err, logs)
		}
	}

	// SOURCE_DATE_EPOCH wins over the baked-in time.
	if n, _, err := epoch(t, &set, "1600000000"); err != nil || n != 1700000000 {
		t.Errorf("SOURCE_DATE_EPOCH=1700000000 and commit time 1600000000: %d, %v, want 1700000000", n, err)
	}
	// The Makefile's fallback without git (`echo 0`) is a valid time.
	if n, _, err := epoch(t, nil, "0"); err != nil || n != 0 {
		t.Errorf("commit time 0: %d, %v", n, err)
	}
	for _, baked := range []string{"abc", "-5", "1e9", " 1600000000", "4294967296"} {
		n, _, err := epoch(t, nil, baked)
		if err == nil || !strings.Contains(err.Error(), "main.commitTime") || !strings.Contains(err.Error(), baked) || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
			t.Errorf("commit time %q baked in: %d, %v, want an error naming it and SOURCE_DATE_EPOCH", baked, n, err)
		}
		// SOURCE_DATE_EPOCH still overrides a broken binary.
		if n, _, err := epoch(t, &set, baked); err != nil || n != 1700000000 {
			t.Errorf("SOURCE_DATE_EPOCH=1700000000 with commit time %q: %d, %v", baked, n, err)
		}
	}
}

// TestOutputInsideOverlayThroughSymlink: -o reached through a symlink to an
// overlay (or an overlay given as a symlink to the folder holding -o) is
// inside that overlay all the same, and refused before anything is made.
func TestOutputInsideOverlayThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	site := filepath.Join(dir, "site")
	if err := os.MkdirAll(filepath.Join(site, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("site", filepath.Join(dir, "sitelink")); err != nil {
		t.Fatal(err)
	}
	writeSpec := func(name, overlay string) string {
		p := filepath.Join(dir, name)
		data := strings.Replace(string(image.DefaultSpecYAML()), "overlays: []", "overlays: ["+overlay+"]", 1)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	viaSite, viaLink := writeSpec("site.yaml", "site"), writeSpec("link.yaml", "sitelink")
	extSpec := filepath.Join(dir, "ext.yaml")
	extData := strings.Replace(string(image.DefaultSpecYAML()), "extensions: []", "extensions: [{name: site, dir: sitelink}]", 1)
	if err := os.WriteFile(extSpec, []byte(extData), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, spec, out, field string
	}{
		{"-o through a link to the overlay", viaSite, filepath.Join(dir, "sitelink", "out"), "overlays[0]"},
		{"-o deeper, not yet there", viaSite, filepath.Join(dir, "sitelink", "a", "b", "out"), "overlays[0]"},
		{"overlay given as a link", viaLink, filepath.Join(dir, "site", "out"), "overlays[0]"},
		{"extension dir given as a link", extSpec, filepath.Join(dir, "site", "out"), "extensions[0].dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, "build", "-f", tc.spec, "-o", tc.out, "--agent", filepath.Join(dir, "no-agent"))
			if err == nil || !strings.Contains(err.Error(), "is inside "+tc.field) || !strings.Contains(err.Error(), site) {
				t.Fatalf("-o %s: %v, want it refused as inside %s (%s)", tc.out, err, tc.field, site)
			}
			if ents, _ := os.ReadDir(site); len(ents) != 1 {
				t.Errorf("the refused build made something in the overlay: %v", ents)
			}
		})
	}
	// A folder beside the overlay, through the same link's parent, is fine
	// as far as this check goes.
	spec, err := image.LoadSpec(viaSite)
	if err != nil {
		t.Fatal(err)
	}
	if err := outsideOverlays(filepath.Join(dir, "out"), spec); err != nil {
		t.Errorf("-o beside the overlay: %v", err)
	}
}

// TestK3sDirFromEnvCompletesTheSpec: the errors tell users to set
// ETOILE_K3S_DIR (or pass --k3s-dir); a spec whose k3s.source is dir
// without k3s.dir, or none with airgap images, is then accepted: the build
// goes on to its next check (here a missing agent) instead of stopping at
// the spec.
func TestK3sDirFromEnvCompletesTheSpec(t *testing.T) {
	dir := t.TempDir()
	k3sDir := filepath.Join(dir, "k3s-release")
	if err := os.Mkdir(k3sDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	tarball.Write(make([]byte, 257))
	tarball.WriteString("ustar\x0000")
	tarball.Write(make([]byte, 1024-tarball.Len()))
	if err := os.WriteFile(filepath.Join(dir, "app.tar"), tarball.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, k3s := range []string{"source: dir", "source: none\n  airgapImages: [app.tar]"} {
		spec := filepath.Join(dir, "spec.yaml")
		data := strings.Replace(string(image.DefaultSpecYAML()), "  source: release\n", "  "+k3s+"\n", 1)
		if !strings.Contains(data, k3s) {
			t.Fatal("the default spec's k3s.source line moved")
		}
		if err := os.WriteFile(spec, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"build", "-f", spec, "-o", filepath.Join(dir, "out"), "--agent", filepath.Join(dir, "no-agent")}
		t.Run(k3s+" env", func(t *testing.T) {
			t.Setenv("ETOILE_K3S_DIR", k3sDir)
			_, _, err := runCLI(t, args...)
			if err == nil || !strings.Contains(err.Error(), "no-agent") {
				t.Errorf("with ETOILE_K3S_DIR set: %v, want the spec accepted (and the missing agent reported)", err)
			}
		})
		t.Run(k3s+" flag", func(t *testing.T) {
			t.Setenv("ETOILE_K3S_DIR", "")
			_, _, err := runCLI(t, append(args, "--k3s-dir", k3sDir)...)
			if err == nil || !strings.Contains(err.Error(), "no-agent") {
				t.Errorf("with --k3s-dir: %v, want the spec accepted (and the missing agent reported)", err)
			}
			_, _, err = runCLI(t, args...)
			if err == nil || !strings.Contains(err.Error(), "k3s.") {
				t.Errorf("without a K3s folder: %v, want the spec refused naming its k3s field", err)
			}
		})
	}
}

// TestFirstSignalCancelsSecondKills: the first Ctrl-C cancels the build's
// context and says so, and hands the signals back to their default (stop
// is called), so that a second Ctrl-C ends etoile at once instead of being
// swallowed.
func TestFirstSignalCancelsSecondKills(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	stopped := make(chan struct{})
	var errb syncbuf.Buffer
	ctx, cancel := interruptible(context.Background(), sigs, func() { close(stopped) }, &errb, "stopping after this step, leaving the output folder as it was")
	defer cancel()
	if ctx.Err() != nil {
		t.Fatal("cancelled before any signal")
	}
	sigs <- os.Interrupt
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first signal did not cancel the build")
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the signals were not handed back: a second Ctrl-C would be swallowed")
	}
	if !strings.Contains(errb.String(), "Ctrl-C again") {
		t.Errorf("no word of what a second Ctrl-C does: %q", errb.String())
	}
}
