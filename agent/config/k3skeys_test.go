package config

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestK3sKeysConsistent: each K3s option is in one role list once, and
// every option the value checks, the reserved keys and the deprecated
// names' replacements speak of is one of them, so that a key dropped from
// the lists (as K3s drops it) does not linger elsewhere. The lists
// themselves are compared with the K3s stand-in's flag table by
// qa/k3sstandin TestStandinFlagsMatchAgentKeys, through K3sKeys.
func TestK3sKeysConsistent(t *testing.T) {
	seen := map[string]string{}
	for name, list := range map[string][]string{"k3sAgentKeys": k3sAgentKeys, "k3sAgentOnlyKeys": k3sAgentOnlyKeys, "k3sServerOnlyKeys": k3sServerOnlyKeys} {
		for _, k := range list {
			if other, dup := seen[k]; dup {
				t.Errorf("%s: in %s and %s", k, other, name)
			}
			seen[k] = name
		}
	}
	known := toSet(k3sAllKeys)
	kinds := map[string]map[string]bool{"bool": k3sBoolKeys, "int": k3sIntKeys, "duration": k3sDurationKeys, "list": k3sListKeys,
		"choice": toSet(slices.Collect(maps.Keys(k3sChoiceKeys))), "address": toSet(slices.Collect(maps.Keys(k3sAddressKeys)))}
	for kind, set := range kinds {
		for k := range set {
			if !known[k] {
				t.Errorf("%s: a %s option in k3skeys.go, but in no role list", k, kind)
			}
		}
	}
	for _, a := range []string{"bool", "int", "duration", "list"} {
		for _, b := range []string{"bool", "int", "duration", "list", "choice"} {
			for k := range kinds[a] {
				if a != b && kinds[b][k] {
					t.Errorf("%s: both a %s and a %s option", k, a, b)
				}
			}
		}
	}
	for k := range k3sSingleAddressKeys {
		if _, ok := k3sAddressKeys[k]; !ok || k3sListKeys[k] {
			t.Errorf("%s: a single address option, but not an address option or a list", k)
		}
	}
	for k := range k3sAddressKeys {
		if !k3sSingleAddressKeys[k] && !k3sListKeys[k] {
			t.Errorf("%s: takes a list of addresses, but is not a list option", k)
		}
	}
	for k, repl := range k3sDeprecatedKeys {
		if known[k] || !known[repl] {
			t.Errorf("deprecated %s → %s: the old name must be in no role list, its replacement in one", k, repl)
		}
	}
	for _, k := range K3sUnknownKeys() {
		if known[k] {
			t.Errorf("%s: refused as gone from K3s, but in a role list", k)
		}
	}
	for k := range k3sOneShotKeys {
		if _, reserved := k3sReservedKeys[k]; !known[k] || reserved {
			t.Errorf("%s: a one-time operation in k3skeys.go, but in no role list, or reserved too", k)
		}
	}
	keys := K3sKeys()
	if !slices.IsSortedFunc(keys, func(a, b K3sKey) int { return strings.Compare(a.Name, b.Name) }) || len(keys) != len(k3sAllKeys)+len(k3sDeprecatedKeys) {
		t.Errorf("K3sKeys: %d options, unsorted or not the lists' %d and %d deprecated names", len(keys), len(k3sAllKeys), len(k3sDeprecatedKeys))
	}
	want := map[string]K3sKey{
		"kube-controller-arg":        {Name: "kube-controller-arg", Role: RoleServer, Kind: K3sKindList, Use: K3sKeyDeprecated},
		"token":                      {Name: "token", Kind: K3sKindString, Use: K3sKeyReserved},
		"disable-apiserver-lb":       {Name: "disable-apiserver-lb", Role: RoleAgent, Kind: K3sKindBool, Use: K3sKeyAccepted},
		"etcd-s3-timeout":            {Name: "etcd-s3-timeout", Role: RoleServer, Kind: K3sKindDuration, Use: K3sKeyAccepted},
		"node-ip":                    {Name: "node-ip", Kind: K3sKindList, Use: K3sKeyAccepted},
		"https-listen-port":          {Name: "https-listen-port", Role: RoleServer, Kind: K3sKindInt, Use: K3sKeyAccepted},
		"cluster-reset":              {Name: "cluster-reset", Role: RoleServer, Kind: K3sKindBool, Use: K3sKeyOneShot},
		"cluster-reset-restore-path": {Name: "cluster-reset-restore-path", Role: RoleServer, Kind: K3sKindString, Use: K3sKeyOneShot},
	}
	for _, k := range keys {
		if w, ok := want[k.Name]; ok && k != w {
			t.Errorf("K3sKeys: %+v, want %+v", k, w)
		}
	}
}

// TestK3sOneTimeOperationsRefused: cluster-reset and
// cluster-reset-restore-path ask K3s for a one-time operation after which
// it exits; the agent would start it with them again after each exit and on
// every boot (a server that never runs, a snapshot restored again each
// time). They are refused, whatever their value and the role, with why and
// what to do (K3sKeys says so: TestK3sKeysConsistent).
func TestK3sOneTimeOperationsRefused(t *testing.T) {
	for _, tc := range []struct{ body, path string }{
		{server + "k3s: {cluster-reset: true}\n", "k3s.cluster-reset"},
		{server + "k3s: {cluster-reset: true, cluster-reset-restore-path: /var/lib/rancher/k3s/server/db/snapshots/s1}\n", "k3s.cluster-reset-restore-path"},
		{server + "k3s: {cluster-reset-restore-path: s1}\n", "k3s.cluster-reset-restore-path"},
		{"role: agent\ncluster: {server: 'https://10.0.0.1:6443', token: x}\nk3s: {cluster-reset: false}\n", "k3s.cluster-reset"},
	} {
		_, err := Parse([]byte(header + tc.body))
		fe := findField(err, tc.path)
		if fe == nil {
			t.Errorf("%q: no error at %s (got %v)", tc.body, tc.path, err)
			continue
		}
		for _, want := range []string{"a one-time K3s operation, not a setting", "after each exit and on every boot", "never run again", "Remove it"} {
			if !strings.Contains(fe.Msg, want) {
				t.Errorf("%s: %q lacks %q", tc.path, fe.Msg, want)
			}
		}
	}
}

// TestK3sShortNamesRefused: K3s's config file takes a flag's one-letter
// alias (i: for node-ip), which would skip the checks of the long name
// (node-ip's addresses) with only the "not a K3s option" warning; each is
// refused naming its long name, or, for an option Étoile sets itself, what
// to set instead.
func TestK3sShortNamesRefused(t *testing.T) {
	known := toSet(k3sAllKeys)
	for short, long := range k3sShortNames {
		if len(short) != 1 || !known[long] || known[short] {
			t.Errorf("%s → %s: a short name must be one letter, not an option, and stand for one", short, long)
		}
		if msg, reserved := k3sReservedKeys[short]; reserved != (k3sReservedKeys[long] != "") || msg != "" && msg != k3sReservedKeys[long] {
			t.Errorf("%s: reserved %q, but %s reserved %q", short, msg, long, k3sReservedKeys[long])
		}
	}
	for k := range k3sReservedKeys {
		if _, short := k3sShortNames[k]; len(k) == 1 && !short {
			t.Errorf("%s: a reserved one-letter key that is no short name", k)
		}
	}
	for body, want := range map[string]string{
		"k3s: {i: 10.0.0.5}\n":       "k3s.i: write node-ip instead of i (K3s's short name for it), so that its value is checked as node-ip's",
		"k3s: {i: not-an-ip}\n":      "k3s.i: write node-ip instead of i",
		"k3s: {i+: [10.0.0.5]}\n":    "k3s.i+: write node-ip instead of i",
		"k3s: {l: /var/log/k3s}\n":   "k3s.l: write log instead of l",
		"k3s: {t: abc}\n":            "k3s.t: Étoile sets this itself: set cluster.token instead",
		"k3s: {o: /root/k3s.yaml}\n": "k3s.o: Étoile sets this itself",
	} {
		_, _, err := Check([]byte(header + server + body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", strings.TrimSpace(body), err, want)
		}
	}
	if _, _, err := Check([]byte(header + server + "k3s: {v: 2}\n")); err != nil {
		t.Errorf("v is K3s's verbosity, not an alias: %v", err)
	}
}
