package config

import (
	"strings"
	"testing"
)

func TestHostsRejections(t *testing.T) {
	for _, tc := range []struct {
		name, body, path string
		want             []string
	}{
		{"no ip", "hosts: [{names: [registry.local]}]\n", "hosts[0].ip", []string{"missing"}},
		{"bad ip", "hosts: [{ip: 10.0.0, names: [registry.local]}]\n", "hosts[0].ip", []string{`"10.0.0" is not an IP address`}},
		{"zone", "hosts: [{ip: 'fe80::1%eth0', names: [router]}]\n", "hosts[0].ip", []string{"has a zone"}},
		{"unspecified", "hosts: [{ip: 0.0.0.0, names: [blocked.example.com]}]\n", "hosts[0].ip", []string{"not one host's address"}},
		{"no names", "hosts: [{ip: 10.0.0.5}]\n", "hosts[0].names", []string{"empty", "10.0.0.5"}},
		{"bad name", "hosts: [{ip: 10.0.0.5, names: [registry, 'reg_istry.local']}]\n", "hosts[0].names[1]", []string{`"reg_istry.local" is not a host name`}},
		{"wildcard", "hosts: [{ip: 10.0.0.5, names: ['*.example.com']}]\n", "hosts[0].names[0]", []string{"is not a host name"}},
		{"too many", "hosts: [" + strings.Repeat("{ip: 10.0.0.5, names: [a]},", maxHosts+1) + "]\n", "hosts", []string{"257 entries"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantRefused(t, header+server+tc.body, tc.path, tc.want)
		})
	}
}

func TestHostsAccepted(t *testing.T) {
	// An IPv4 and an IPv6 address for one name, and two IPv4 ones (two
	// replicas): Go's resolver answers with all of them.
	doc := header + server + "hosts:\n  - {ip: 10.0.0.5, names: [registry.example.com, registry]}\n  - {ip: '2001:db8::5', names: [registry.example.com]}\n  - {ip: 10.0.0.6, names: [registry.example.com]}\n"
	c, w, err := Check([]byte(doc))
	if err != nil || len(w) != 0 {
		t.Fatalf("warnings %q, err %v", w, err)
	}
	if len(c.Hosts) != 3 || c.Hosts[0].Names[1] != "registry" {
		t.Errorf("hosts: %+v", c.Hosts)
	}
	wantOneWarning(t, header+server+"hosts: [{ip: 10.0.0.5, names: [a.local]}, {ip: 10.0.0.5, names: [A.local]}]\n", []string{"hosts[1].names[0]", "also hosts[0].names[0]", "give it once"})
}

// TestExampleHosts: the example's commented-out hosts validate once
// uncommented.
func TestExampleHosts(t *testing.T) {
	doc := exampleWith("", "hosts:")
	c, w, err := Check([]byte(doc))
	if err != nil || len(w) != 0 {
		t.Fatalf("the example with its hosts: warnings %q, err %v", w, err)
	}
	if len(c.Hosts) != 1 || c.Hosts[0].IP != "10.0.0.5" {
		t.Errorf("the example's hosts were not found to uncomment: %+v", c.Hosts)
	}
}
