package main

import (
	"maps"
	"slices"
	"testing"

	"github.com/etoile-os/etoile/agent/config"
)

// standinKind is the agent's name for each of the stand-in's flag kinds.
var standinKind = map[flagKind]config.K3sKeyKind{
	kindBool:     config.K3sKindBool,
	kindString:   config.K3sKindString,
	kindSlice:    config.K3sKindList,
	kindInt:      config.K3sKindInt,
	kindDuration: config.K3sKindDuration,
}

// standinOnlyKeys are the flags the stand-in accepts that the agent's list
// (agent/config.K3sKeys) deliberately does not know, each with the reason.
// Empty: every K3s option the stand-in takes, the agent knows.
var standinOnlyKeys = map[string]string{}

// TestStandinFlagsMatchAgentKeys ties the agent's list of K3s options
// (agent/config/k3skeys.go, which validation and rendering of the k3s:
// section use) to the stand-in's flag table, so that neither accepts what
// the other refuses: each option the agent knows for a server is one
// `k3s server` takes, each it knows for an agent one `k3s agent` takes, with
// the same kind (bool, single value, repeatable list); an option the agent
// keeps off one role is one that role's subcommand refuses; the options the
// agent refuses because K3s lacks them the stand-in refuses too; and every
// flag the stand-in takes the agent knows.
func TestStandinFlagsMatchAgentKeys(t *testing.T) {
	subs := []struct {
		role string
		fs   flagSet
	}{
		{config.RoleServer, newFlagSet("server")},
		{config.RoleAgent, newFlagSet("agent")},
	}
	keys := config.K3sKeys()
	if len(keys) < 100 {
		t.Fatalf("config.K3sKeys lists %d options; K3s has well over 100", len(keys))
	}
	known := map[string]bool{}
	for _, k := range keys {
		known[k.Name] = true
		for _, sub := range subs {
			def, ok := sub.fs.byName[k.Name]
			has := k.Role == "" || k.Role == sub.role
			switch {
			case has && !ok:
				t.Errorf("%s (%s): agent/config knows it for k3s %s, the stand-in's %s refuses it", k.Name, k.Use, sub.role, sub.role)
			case !has && ok:
				t.Errorf("%s (%s): agent/config keeps it for k3s %s only, the stand-in's %s accepts it", k.Name, k.Use, k.Role, sub.role)
			case ok && standinKind[def.kind] != k.Kind:
				t.Errorf("%s: agent/config takes it as %s, the stand-in's %s as %s", k.Name, k.Kind, sub.role, standinKind[def.kind])
			}
		}
	}
	for _, name := range config.K3sUnknownKeys() {
		for _, sub := range subs {
			if _, ok := sub.fs.byName[name]; ok {
				t.Errorf("%s: agent/config refuses it as an option K3s no longer has, the stand-in's %s accepts it", name, sub.role)
			}
		}
	}
	for _, sub := range subs {
		for _, name := range slices.Sorted(maps.Keys(sub.fs.byName)) {
			// Short aliases (-t, -s, …) are command-line forms: the stand-in
			// refuses them as config keys, and the agent's list has long names.
			if len(name) == 1 || known[name] {
				continue
			}
			if reason := standinOnlyKeys[name]; reason == "" {
				t.Errorf("%s: the stand-in's %s accepts it, agent/config does not know it (add it to agent/config/k3skeys.go, or to standinOnlyKeys with the reason)", name, sub.role)
			}
		}
	}
	for name := range standinOnlyKeys {
		if known[name] {
			t.Errorf("%s: listed in standinOnlyKeys, but agent/config knows it now: remove it there", name)
		}
	}
}
