package main

import (
	"bytes"
	"context"
	"github.com/etoile-os/etoile/image"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
