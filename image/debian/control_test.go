package debian

import (
	"slices"
	"strings"
	"testing"
)

func TestParseControl(t *testing.T) {
	c, err := ParseControl([]byte(testControl + "\nPackage: second-paragraph\n"))
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{
		"Package":     "linux-image-test",
		"version":     "1:6.1.2-3",
		"DESCRIPTION": "a test\nwith a second line",
	} {
		if got := c.Get(field); got != want {
			t.Errorf("Get(%q) = %q, want %q", field, got, want)
		}
	}
	for _, bad := range []string{"", "no colon here\n", " leading continuation\n", "A: 1\nA: 2\n", "Bad Name: x\n"} {
		if _, err := ParseControl([]byte(bad)); err == nil {
			t.Errorf("ParseControl(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseRelations(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // clauses joined by ", ", alternatives by " | "
	}{
		{"linux-image-6.1.0-56-amd64 (= 6.1.192-2)", "linux-image-6.1.0-56-amd64 (= 6.1.192-2)"},
		{"aa, bb (>= 1.0) | cc:any, dd (<< 2~)", "aa, bb (>= 1.0) | cc, dd (<< 2~)"},
		{"foo [amd64] <!nocheck>, bar (<= 3) [i386]", "foo, bar (<= 3)"},
		{"old (> 1), older (< 2)", "old (>= 1), older (<= 2)"},
		{"  ,  ", ""},
	} {
		rels, err := ParseRelations(tc.in)
		if err != nil {
			t.Errorf("ParseRelations(%q): %v", tc.in, err)
			continue
		}
		var clauses []string
		for _, alts := range rels {
			var s []string
			for _, r := range alts {
				s = append(s, r.String())
			}
			clauses = append(clauses, strings.Join(s, " | "))
		}
		if got := strings.Join(clauses, ", "); got != tc.want {
			t.Errorf("ParseRelations(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"UPPER", "aa (>= 1", "aa (1.0)", "aa (>= )", "x", "aa bb"} {
		if _, err := ParseRelations(bad); err == nil {
			t.Errorf("ParseRelations(%q) succeeded, want an error", bad)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	// cases from dpkg's own test suite and Debian policy 5.6.12
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"1.0", "1.1", -1},
		{"1.0~rc1", "1.0", -1},
		{"1.0", "1.0+b1", -1},
		{"1:0.1", "2.0", 1},
		{"6.1.192-2", "6.1.176-1", 1},
		{"6.1.9-1", "6.1.10-1", -1},
		{"1.0-1", "1.0-1~bpo1", 1},
		{"a", "A", 1},
		{"1.0a", "1.0-", 1},
		{"0001", "1", 0},
		{"~~", "~~a", -1},
		{"~", "", -1},
	} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestSplitPoolFilename(t *testing.T) {
	n, v, a, ok := splitPoolFilename("systemd-boot-efi_1%3a252.39-1~deb12u1_amd64.deb")
	if !ok || n != "systemd-boot-efi" || v != "1:252.39-1~deb12u1" || a != "amd64" {
		t.Errorf("got %q %q %q %v", n, v, a, ok)
	}
	for _, bad := range []string{"x.deb", "a_b.deb", "a_b_c_d.deb", "a_b_c.tar"} {
		if _, _, _, ok := splitPoolFilename(bad); ok {
			t.Errorf("splitPoolFilename(%q) ok, want not ok", bad)
		}
	}
}

func FuzzParseControl(f *testing.F) {
	f.Add([]byte(testControl))
	f.Add([]byte("Package: a\n Depends: b\n\n\nX: y"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseControl(data)
		if err != nil {
			return
		}
		if len(c) == 0 {
			t.Fatalf("no error and no fields")
		}
		for k := range c {
			if k != strings.ToLower(k) || strings.ContainsAny(k, " \t\n:") {
				t.Fatalf("bad key %q", k)
			}
		}
	})
}

func FuzzParseRelations(f *testing.F) {
	f.Add("a, b (>= 1.0) | c:any, d (<< 2~) [amd64]")
	f.Fuzz(func(t *testing.T, s string) {
		rels, err := ParseRelations(s)
		if err != nil {
			return
		}
		for _, alts := range rels {
			for _, r := range alts {
				if !validPackageName(r.Name) {
					t.Fatalf("accepted bad name %q", r.Name)
				}
				if r.Op != "" && !slices.Contains([]string{"<<", "<=", "=", ">=", ">>"}, r.Op) {
					t.Fatalf("bad op %q", r.Op)
				}
			}
		}
	})
}

func FuzzCompareVersions(f *testing.F) {
	f.Add("1:6.1.192-2", "6.1.176-1~bpo")
	f.Fuzz(func(t *testing.T, a, b string) {
		if x, y := CompareVersions(a, b), CompareVersions(b, a); x != -y {
			t.Fatalf("not antisymmetric: %d, %d", x, y)
		}
		if CompareVersions(a, a) != 0 {
			t.Fatalf("%q != itself", a)
		}
	})
}
