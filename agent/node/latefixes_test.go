package node

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/agent/fakeroot"
	"github.com/etoile-os/etoile/internal/syncbuf"
)

// cdiWarning is the status's warning about the CDI specification, "" for none.
func cdiWarning(st api.Status) string {
	for _, w := range st.Warnings {
		if strings.Contains(w, "CDI") {
			return w
		}
	}
	return ""
}

// ctkRoot is gpuRoot with the image's nvidia-ctk (a stand-in script, not
// NVIDIA's) and CDI runtime, and NVIDIA's driver not loaded (yet).
func ctkRoot(t *testing.T) string {
	t.Helper()
	root := gpuRoot(t)
	fakeroot.WriteExec(t, root, map[string]string{
		"usr/bin/nvidia-ctk":                   "#!/bin/sh\n[ \"$1 $2\" = \"cdi generate\" ] || exit 2\nprintf 'cdiVersion: 0.5.0\\nkind: nvidia.com/gpu\\n' > \"${3#--output=}\"\n",
		"usr/bin/nvidia-container-runtime.cdi": "#!/bin/sh\n",
	})
	if err := os.Remove(filepath.Join(root, "proc/driver/nvidia/version")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return root
}

// TestCDISpecAfterLateDriver: NVIDIA's driver finishes loading after K3s
// started (the boot stopped waiting for it: DriversLoaded closed,
// DriversSettled later): the CDI specification is generated then, without
// K3s starting again; meanwhile the status says it waits for the driver,
// not to add the nvidia-ctk the image has.
func TestCDISpecAfterLateDriver(t *testing.T) {
	root := ctkRoot(t)
	var logs syncbuf.Buffer
	loaded, settled := make(chan struct{}), make(chan struct{})
	close(loaded)
	_, st := startGPUNode(t, root, func(e *Env) {
		e.DriversLoaded, e.DriversSettled = loaded, settled
		e.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	w := cdiWarning(st)
	if !strings.Contains(w, "driver is still loading") || strings.Contains(w, "add nvidia-ctk") {
		t.Errorf("status warning while the driver loads: %q, want that the specification waits for the driver", w)
	}
	if _, err := os.Stat(filepath.Join(root, CDISpecPath)); err == nil {
		t.Fatal("a CDI specification without NVIDIA's driver")
	}
	fakeroot.Write(t, root, map[string]string{"proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\n"})
	close(settled)
	waitUntil(t, "the CDI specification", 60*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(root, CDISpecPath))
		return err == nil
	})
	waitUntil(t, "its log line", 10*time.Second, func() bool { return strings.Contains(logs.String(), "NVIDIA CDI specification generated") })
	st, err := api.NewClient(filepath.Join(root, "agent.sock")).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if w := cdiWarning(st); w != "" {
		t.Errorf("status still warns with the specification there: %q", w)
	}
	if got := strings.Count(logs.String(), "msg=\"k3s started\""); got != 1 {
		t.Errorf("K3s started %d times, want once: the specification needs no restart\n%s", got, logs.String())
	}
}

// TestCDISpecWithoutDriver: a driver that never loads: the agent says the
// specification is not generated because of it, and the status names the
// driver, not nvidia-ctk, which the image has.
func TestCDISpecWithoutDriver(t *testing.T) {
	root := ctkRoot(t)
	var logs syncbuf.Buffer
	settled := make(chan struct{})
	close(settled) // the drivers have settled, without NVIDIA's
	_, st := startGPUNode(t, root, func(e *Env) {
		e.DriversLoaded, e.DriversSettled = settled, settled
		e.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if !strings.Contains(logs.String(), "NVIDIA CDI specification not generated: NVIDIA's driver is not loaded") {
		t.Errorf("the skipped specification is not logged:\n%s", logs.String())
	}
	w := cdiWarning(st)
	if !strings.Contains(w, "NVIDIA's driver is not loaded") || strings.Contains(w, "add nvidia-ctk") {
		t.Errorf("status warning %q: want that the driver is not loaded", w)
	}
}

// TestSysctlSpellingsOfOneParameter: the config's value for a default
// kernel parameter, spelt another way (with slashes, a leading one), is the
// one written: the default is not written after it, nor listed as set.
func TestSysctlSpellingsOfOneParameter(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{
		"proc/sys/fs/inotify/max_user_instances": "128\n",
		"proc/sys/fs/inotify/max_user_watches":   "65536\n",
		"proc/sys/kernel/pid_max":                "32768\n",
	})
	cfg, err := config.Parse([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\n" +
		"sysctls: {/fs/inotify/max_user_instances: '1024', fs/inotify/max_user_watches: '100000'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	n := &Node{env: Env{Root: root, Log: slog.New(slog.NewTextHandler(&logs, nil))}}
	if w := n.applySysctls(cfg); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
	for path, want := range map[string]string{
		"proc/sys/fs/inotify/max_user_instances": "1024",
		"proc/sys/fs/inotify/max_user_watches":   "100000",
	} {
		if b, _ := os.ReadFile(filepath.Join(root, path)); strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q, want the config's %s", path, b, want)
		}
	}
	if strings.Contains(logs.String(), "fs.inotify") {
		t.Errorf("the defaults are written too:\n%s", logs.String())
	}
}

// TestRegisteredNodeWarningsCriticalK3sValues: a server's config applied
// with another value for one of K3s's "Critical Configuration Values"
// (docs.k3s.io/cli/server) is warned about, naming the option; the same
// value written another way (True for true) is not; the agent token is
// never shown.
func TestRegisteredNodeWarningsCriticalK3sValues(t *testing.T) {
	parse := func(k3s string) *config.MachineConfig {
		t.Helper()
		c, err := config.Parse([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true, token: t0ken}\nk3s: {" + k3s + "}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := parse("https-listen-port: 6443")
	for _, tc := range []struct{ k3s, want string }{
		{"agent-token: s3cret-agent", "k3s.agent-token: changes"},
		{"cluster-domain: example.internal", "k3s.cluster-domain: changes from K3s's default to example.internal"},
		{"secrets-encryption: true", "k3s.secrets-encryption: changes from false to true"},
		{"secrets-encryption-provider: secretbox", "k3s.secrets-encryption-provider: changes"},
		{"egress-selector-mode: pod", "k3s.egress-selector-mode: changes from K3s's default to pod"},
		{"disable-network-policy: true", "k3s.disable-network-policy: changes"},
		{"flannel-ipv6-masq: true", "k3s.flannel-ipv6-masq: changes"},
		{"flannel-external-ip: true", "k3s.flannel-external-ip: changes"},
		{"embedded-registry: true", "k3s.embedded-registry: changes"},
		{"disable-helm-controller: true", "k3s.disable-helm-controller: changes"},
		{"disable-cloud-controller: true", "k3s.disable-cloud-controller: changes"},
		{"disable: [traefik, servicelb]", "k3s.disable: now disables servicelb"},
	} {
		w := strings.Join(registeredNodeWarnings(base, parse(tc.k3s), "edge-1", "edge-1"), "\n")
		if !strings.Contains(w, tc.want) || !strings.Contains(w, "every server") {
			t.Errorf("%s: warnings %q, want %q and that every server needs the same", tc.k3s, w, tc.want)
		}
		if strings.Contains(w, "s3cret-agent") {
			t.Errorf("a warning shows the agent token: %q", w)
		}
	}
	if w := registeredNodeWarnings(base, parse("https-listen-port: 6444, disable: [traefik], secrets-encryption: false"), "edge-1", "edge-1"); len(w) != 0 {
		t.Errorf("no critical value changes: %q, want no warning", w)
	}
	enc := parse("secrets-encryption: true")
	if w := registeredNodeWarnings(enc, parse("secrets-encryption: True"), "edge-1", "edge-1"); len(w) != 0 {
		t.Errorf("true to True: %q, want no warning", w)
	}
	if w := registeredNodeWarnings(parse("disable: servicelb"), parse("disable: [servicelb, traefik]"), "edge-1", "edge-1"); len(w) != 0 {
		t.Errorf("servicelb still disabled: %q, want no warning", w)
	}
}
