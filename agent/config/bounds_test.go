package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/schema"
)

// TestAliasedConfigIsCheap: a 31 KB config whose interface of 300
// addresses is aliased 3000 times stood for 900,000 values, took seconds
// and hundreds of megabytes to check and printed 900,000 error lines; the
// agent (PID 1, on a small memory budget, reading an invalid config again
// every few seconds) must refuse it at once, with one error that names the
// alias.
func TestAliasedConfigIsCheap(t *testing.T) {
	var b strings.Builder
	b.WriteString(minimal + "network:\n  interfaces:\n    - &i {name: eth0, addresses: [")
	for k := range 300 {
		fmt.Fprintf(&b, "10.0.%d.%d/8, ", k/250, k%250+1)
	}
	b.WriteString("]}\n")
	for range 3000 {
		b.WriteString("    - *i\n")
	}
	start := time.Now()
	_, _, err := Check([]byte(b.String()))
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("checking took %v", took)
	}
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	if n := strings.Count(msg, "\n") + 1; n != 1 {
		t.Errorf("%d lines of errors, want 1:\n%.2000s", n, msg)
	}
	for _, want := range []string{"document (line 10): aliases expand this document by ", "more than the 10000 allowed", "*i (anchored on line 9)", "is used 3000 times", "write the values out"} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%.2000s", want, msg)
		}
	}
}

// TestListBounds: the lists and maps a machine needs a few entries of are
// bounded, each with one error naming the field, the count and the bound
// (and not one error per entry on top).
func TestListBounds(t *testing.T) {
	repeat := func(n int, f func(i int) string) string {
		items := make([]string, n)
		for i := range items {
			items[i] = f(i)
		}
		return strings.Join(items, ", ")
	}
	for _, tc := range []struct {
		name, body, path, want string
	}{
		{"interfaces", "network: {interfaces: [" + repeat(257, func(i int) string { return fmt.Sprintf("{name: 'bad/%d', dhcp: true}", i) }) + "]}\n",
			"network.interfaces", "257 interfaces, more than the 256 allowed"},
		{"addresses", "network: {interfaces: [{name: eth0, gateway: 10.0.0.1, addresses: [" + repeat(65, func(i int) string { return fmt.Sprintf("10.0.%d.1", i) }) + "]}]}\n",
			"network.interfaces[0].addresses", "65 addresses, more than the 64 allowed"},
		{"labels", "labels: {" + repeat(129, func(i int) string { return fmt.Sprintf("'bad key %d': x", i) }) + "}\n",
			"labels", "129 labels, more than the 128 allowed"},
		{"taints", "taints: [" + repeat(65, func(i int) string { return fmt.Sprintf("bad%d", i) }) + "]\n",
			"taints", "65 taints, more than the 64 allowed"},
		{"mirrors", "registries: {mirrors: {" + repeat(129, func(i int) string { return fmt.Sprintf("'bad/%d': {}", i) }) + "}}\n",
			"registries.mirrors", "129 mirrors, more than the 128 allowed"},
		{"configs", "registries: {configs: {" + repeat(129, func(i int) string { return fmt.Sprintf("'bad/%d': {}", i) }) + "}}\n",
			"registries.configs", "129 configs, more than the 128 allowed"},
		{"endpoints", "registries: {mirrors: {docker.io: {endpoint: [" + repeat(17, func(i int) string { return fmt.Sprintf("'ftp://m%d'", i) }) + "]}}}\n",
			"registries.mirrors.docker.io.endpoint", "17 endpoints, more than the 16 allowed"},
		{"name servers", "network: {interfaces: [{name: eth0, dhcp: true, dns: [" + repeat(17, func(i int) string { return fmt.Sprintf("'bad%d'", i) }) + "]}]}\n",
			"network.interfaces[0].dns", "17 name servers, more than the 16 allowed"},
		{"time servers", "time: {servers: [" + repeat(33, func(i int) string { return fmt.Sprintf("'bad %d'", i) }) + "]}\n",
			"time.servers", "33 servers, more than the 32 allowed"},
		{"sysctls", "sysctls: {" + repeat(1025, func(i int) string { return fmt.Sprintf("'bad %d': x", i) }) + "}\n",
			"sysctls", "1025 kernel parameters, more than the 1024 allowed"},
		{"k3s options", "k3s: {" + repeat(513, func(i int) string { return fmt.Sprintf("'no-such-%d': x", i) }) + "}\n",
			"k3s", "513 options, more than the 512 allowed"},
		{"k3s values", "k3s: {kubelet-arg: [" + repeat(257, func(i int) string { return fmt.Sprintf("'hostname-override=n%d'", i) }) + "]}\n",
			"k3s.kubelet-arg", "257 values, more than the 256 allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Check([]byte(minimal + tc.body))
			if err == nil {
				t.Fatal("accepted")
			}
			if e := findField(err, tc.path); e == nil || !strings.Contains(e.Msg, tc.want) {
				t.Fatalf("no error at %s with %q:\n%.3000v", tc.path, tc.want, err)
			}
			if es := err.(schema.Errors); len(es) != 1 {
				t.Errorf("%d errors, want the bound's alone:\n%.3000v", len(es), err)
			}
		})
	}
	// At the bound, the entries are checked as usual.
	_, _, err := Check([]byte(minimal + "taints: [" + repeat(64, func(i int) string { return fmt.Sprintf("k%d:NoSchedule", i) }) + "]\n"))
	if err != nil {
		t.Errorf("64 taints: %v", err)
	}
}

// TestManyProblemsShowFifty: a config with many mistakes reports the first
// schema.MaxShown and counts the others, whichever caller prints it; its
// warnings are bounded the same way.
func TestManyProblemsShowFifty(t *testing.T) {
	var b strings.Builder
	b.WriteString(minimal + "sysctls:\n")
	for i := range 80 {
		fmt.Fprintf(&b, "  bad%d: x\n", i)
	}
	_, _, err := Check([]byte(b.String()))
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != schema.MaxShown+1 || lines[schema.MaxShown] != "... and 30 more errors, not shown: correct these and check again" {
		t.Errorf("%d lines, the last %q", len(lines), lines[len(lines)-1])
	}

	b.Reset()
	b.WriteString(minimal + "k3s:\n")
	for i := range 80 {
		fmt.Fprintf(&b, "  frobnicate-%d: x\n", i)
	}
	_, warns, err := Check([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != schema.MaxShown+1 || warns[schema.MaxShown] != "... and 30 more warnings, not shown" {
		t.Errorf("%d warnings, the last %q", len(warns), warns[len(warns)-1])
	}
}
