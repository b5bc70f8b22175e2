package config

import (
	"strings"
	"testing"
)

// TestConstellationOnAgentWarns: a role: agent node given a constellation
// section is told that the hub's templates are not deployed there (K3s
// deploys them only on a server); a server is not.
func TestConstellationOnAgentWarns(t *testing.T) {
	section := "constellation: {join: 'etoile://hub.example.com:8443?token=" + joinToken + "&ca=sha256:" + joinPin + "'}\n"
	agent := "role: agent\ncluster: {server: 'https://a:6443', token: t}\n"
	_, warnings, err := Check([]byte(header + agent + section))
	if err != nil {
		t.Fatalf("a constellation section on an agent was rejected: %v", err)
	}
	found := false
	for _, w := range warnings {
		found = found || strings.Contains(w, "constellation.join") && strings.Contains(w, "role: agent") && strings.Contains(w, "templates") && strings.Contains(w, "server")
	}
	if !found {
		t.Errorf("no warning that templates are deployed only by a server; got %q", warnings)
	}
	if _, w, err := Check([]byte(header + server + section)); err != nil || len(w) != 0 {
		t.Errorf("constellation on a server: warnings %q, err %v", w, err)
	}
	if _, w, err := Check([]byte(header + agent)); err != nil || len(w) != 0 {
		t.Errorf("agent without constellation: warnings %q, err %v", w, err)
	}
}
