package node

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config"
	capi "github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hubcli"
	"github.com/etoile-os/etoile/constellation/join"
)

// TestStandinRefusedSiteSaysSoAndJoinsAgain: a node whose site the hub no
// longer accepts (here another machine took its name over) says so in its
// status, with what to do, instead of retrying in silence; given a new
// join string in its machine config it joins again, and the warning goes.
func TestStandinRefusedSiteSaysSoAndJoinsAgain(t *testing.T) {
	hubDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serveTestHub(t, ctx, hubDir)
	token := func() string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := hubcli.Command(ctx, []string{"token", "create", "--data", hubDir, "--site", "edge-metz", "--qr", "never"}, &out, &errb); err != nil {
			t.Fatalf("token create: %v\n%s", err, errb.String())
		}
		return strings.TrimSpace(out.String())
	}
	site := func() capi.Site {
		t.Helper()
		var out, errb bytes.Buffer
		if err := hubcli.Command(ctx, []string{"sites", "--json", "--data", hubDir}, &out, &errb); err != nil {
			t.Fatalf("sites: %v\n%s", err, errb.String())
		}
		var sites []capi.Site
		if err := json.Unmarshal(out.Bytes(), &sites); err != nil || len(sites) != 1 {
			t.Fatalf("sites: %v\n%s", err, out.String())
		}
		return sites[0]
	}

	root := t.TempDir()
	buildStandin(t, root)
	const base = "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\nk3s:\n  https-listen-port: 0\n"
	vol := configVolume(t, root, base+"constellation:\n  join: \""+token()+"\"\n")
	var con consoleLines
	nctx, ncancel := context.WithCancel(ctx)
	n := Start(nctx, Env{Root: root, ConfigVolume: func() config.Source { return config.VolumeSource(vol) },
		Broadcast: con.add, NodeName: "edge-3", Slot: "a", Socket: filepath.Join(root, "agent.sock"),
		K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root}})
	defer func() { ncancel(); n.Wait() }()
	waitUntil(t, "the unattended join", 60*time.Second, func() bool { return con.has("etoile: constellation joined") })
	waitUntil(t, "a heartbeat", 30*time.Second, func() bool { return site().LastHeartbeat != nil })

	// Another machine joins under the same name with a token of its own:
	// the hub refuses this node's certificate from now on.
	js, err := capi.ParseJoinString(token())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := join.Join(ctx, js, join.Options{Root: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	client := api.NewClient(filepath.Join(root, "agent.sock"))
	warning := func(sub string) bool {
		st, err := client.Status(ctx)
		return err == nil && slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.Contains(w, sub) })
	}
	waitUntil(t, "the refusal in the status", 30*time.Second, func() bool {
		return warning("no longer accepts this site") && warning("new join string")
	})

	// A new join string: the node joins again, the warning goes, and the
	// hub takes its heartbeats.
	if _, err := client.ApplyConfig(ctx, []byte(base+"constellation:\n  join: \""+token()+"\"\n")); err != nil {
		t.Fatalf("apply: %v", err)
	}
	applied := time.Now()
	waitUntil(t, "heartbeats after joining again", 60*time.Second, func() bool {
		s := site()
		return s.LastHeartbeat != nil && s.LastHeartbeat.After(applied)
	})
	if warning("constellation") {
		st, _ := client.Status(ctx)
		t.Errorf("a constellation warning is left after joining again: %q", st.Warnings)
	}
	b, err := os.ReadFile(filepath.Join(root, join.StateDir, "site.json"))
	if err != nil || strings.Contains(string(b), `"refused"`) {
		t.Errorf("site state after joining again: %v\n%s", err, b)
	}
}

// TestStandinPersistentRefusalsInStatus: heartbeats the hub keeps refusing
// (here for a slot it does not know: the node's status is all it sends) are
// in the node's status, with the hub's words.
func TestStandinPersistentRefusalsInStatus(t *testing.T) {
	hubDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serveTestHub(t, ctx, hubDir)
	var out, errb bytes.Buffer
	if err := hubcli.Command(ctx, []string{"token", "create", "--data", hubDir, "--site", "edge-odd", "--qr", "never"}, &out, &errb); err != nil {
		t.Fatalf("token create: %v\n%s", err, errb.String())
	}
	root := t.TempDir()
	buildStandin(t, root)
	vol := configVolume(t, root, "apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\nk3s:\n  https-listen-port: 0\n"+
		"constellation:\n  join: \""+strings.TrimSpace(out.String())+"\"\n")
	var con consoleLines
	nctx, ncancel := context.WithCancel(ctx)
	n := Start(nctx, Env{Root: root, ConfigVolume: func() config.Source { return config.VolumeSource(vol) },
		Broadcast: con.add, NodeName: "edge-4", Slot: "c", Socket: filepath.Join(root, "agent.sock"),
		K3sEnv: []string{"ETOILE_K3S_STANDIN_ROOT=" + root}})
	defer func() { ncancel(); n.Wait() }()
	client := api.NewClient(filepath.Join(root, "agent.sock"))
	waitUntil(t, "the refused heartbeats in the status", 60*time.Second, func() bool {
		st, err := client.Status(ctx)
		return err == nil && slices.ContainsFunc(st.Warnings, func(w string) bool {
			return strings.Contains(w, "constellation") && strings.Contains(w, "refused") && strings.Contains(w, `slot "c"`)
		})
	})
}

// TestUndeployableTemplates: on a K3s agent no template is deployed; on a
// server with the helm controller disabled, HelmChart resources are not;
// on a server, everything is.
func TestUndeployableTemplates(t *testing.T) {
	cm := capi.TemplateObject{Name: "cm", Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"}
	chart := capi.TemplateObject{Name: "chart", Manifest: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n---\napiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: grafana\n  namespace: kube-system\nspec:\n  chart: grafana\n"}
	agent, err := config.Parse([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: agent\ncluster: {server: 'https://a:6443', token: t}\n"))
	if err != nil {
		t.Fatal(err)
	}
	noHelm, err := config.Parse([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\nk3s: {disable-helm-controller: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	server, err := config.Parse([]byte("apiVersion: etoile.io/v1alpha1\nkind: MachineConfig\nrole: server\ncluster: {init: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f := undeployable(agent); f == nil || !strings.Contains(f(cm), "K3s agent") || !strings.Contains(f(cm), "server") {
		t.Error("a template on a K3s agent is taken as deployable")
	}
	f := undeployable(noHelm)
	if f == nil || f(cm) != "" || !strings.Contains(f(chart), "HelmChart") || !strings.Contains(f(chart), "disable-helm-controller") {
		t.Error("with the helm controller disabled, a HelmChart is taken as deployable, or a ConfigMap is not")
	}
	// A HelmChart among a List's items (the hub takes Lists) too.
	listed := capi.TemplateObject{Name: "listed", Manifest: "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: x}}\n- {apiVersion: helm.cattle.io/v1, kind: HelmChart, metadata: {name: grafana}}\n"}
	if f != nil && !strings.Contains(f(listed), "HelmChart") {
		t.Errorf("a HelmChart in a List is taken as deployable with the helm controller disabled: %q", f(listed))
	}
	if undeployable(server) != nil {
		t.Error("a server refuses templates")
	}
}
