package cmdline

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

const sum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		line     string
		want     Params
		warnings int
	}{
		{
			name: "iso boot from isolinux",
			line: "BOOT_IMAGE=/boot/vmlinuz console=tty0 console=ttyS0,115200 quiet\n",
			want: Params{},
		},
		{
			name: "disk slot b, upper case accepted",
			line: "console=ttyS0 etoile.slot=B",
			want: Params{Slot: "b"},
		},
		{
			name: "netboot with checksum",
			line: "initrd=initrd.img etoile.system=http://10.0.2.2:8080/etoile-amd64-system.sqfs etoile.system.sha256=" + strings.ToUpper(sum),
			want: Params{SystemURL: "http://10.0.2.2:8080/etoile-amd64-system.sqfs", SystemSHA256: sum},
		},
		{
			name: "flags",
			line: "etoile.debug etoile.poweroff=1",
			want: Params{Debug: true, PowerOff: true},
		},
		{
			name: "flag switched off",
			line: "etoile.debug=0",
			want: Params{},
		},
		{
			name: "quoted value keeps its spaces",
			line: `etoile.config="http://h/a b" etoile.slot=a`,
			want: Params{Config: "http://h/a b", Slot: "a"},
		},
		{
			name: "later argument wins",
			line: "etoile.slot=a etoile.slot=b",
			want: Params{Slot: "b"},
		},
		{
			name: "arguments after -- belong to init",
			line: "etoile.slot=a -- etoile.slot=b",
			want: Params{Slot: "a"},
		},
		{
			// The image's arguments must stop the boot (findImage), an unknown one is a warning.
			name: "bad values of the image's arguments are unusable, unknown ones warnings",
			line: "etoile.slot=c etoile.system=ftp://x/y etoile.system.sha256=abc etoile.bogus=1",
			want: Params{Unusable: []string{`etoile.slot="c": want a or b`, `etoile.system="ftp://x/y": want an http:// or https:// URL`,
				`etoile.system.sha256="abc": want 64 hex digits (the image's line in SHA256SUMS)`}},
			warnings: 1,
		},
		{
			// A checksum for an image whose URL was mistyped must not
			// boot another medium.
			name: "a mistyped etoile.system stops the boot",
			line: "etoile.sytem=http://h/s.sqfs etoile.system.sha256=" + sum,
			want: Params{SystemSHA256: sum, Unusable: []string{`etoile.sytem="http://h/s.sqfs" is not an argument Étoile knows (did you mean "etoile.system"?)`,
				"etoile.system.sha256 is given without etoile.system=<url>: give both (netboot), or neither"}},
		},
		{
			// The messages reach every console: a password or a signed
			// URL's signature in the argument is not shown.
			name: "an unusable URL is shown without its password or query",
			line: "etoile.system=https://bob:s3cret@h/%zz/s.sqfs etoile.sytem=ftp://bob:s3cret@h/s.sqfs?sig=s3cret",
			want: Params{Unusable: []string{`etoile.system="https://xxxxx@h/%zz/s.sqfs": want an http:// or https:// URL`,
				`etoile.sytem="ftp://xxxxx@h/s.sqfs?xxxxx" is not an argument Étoile knows (did you mean "etoile.system"?)`}},
		},
		{
			name: "upper-case scheme",
			line: "etoile.system=HTTPS://h/s.sqfs etoile.system.sha256=" + sum + " etoile.config=Https://h/c.yaml",
			want: Params{SystemURL: "https://h/s.sqfs", SystemSHA256: sum, Config: "https://h/c.yaml"},
		},
		{
			name: "slot and netboot: the URL chooses, said",
			line: "etoile.slot=a etoile.system=http://h/s.sqfs etoile.system.sha256=" + sum,
			want: Params{SystemURL: "http://h/s.sqfs", SystemSHA256: sum}, warnings: 1,
		},
		{
			name: "a flag with a value it does not take, and an empty config URL",
			line: "etoile.debug=maybe etoile.config=",
			want: Params{}, warnings: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Parse(tt.line)
			if len(got.Warnings) != tt.warnings {
				t.Errorf("warnings = %q, want %d of them", got.Warnings, tt.warnings)
			}
			got.Raw, got.Warnings = nil, nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.line, got, tt.want)
			}
		})
	}
}

func TestParseVerity(t *testing.T) {
	root, salt := strings.Repeat("ab", 32), strings.Repeat("0c", 32)
	p := Parse("etoile.slot=a etoile.verity=" + strings.ToUpper(root) + ":" + salt)
	if p.VerityRoot != root || p.VeritySalt != salt || len(p.Unusable) != 0 {
		t.Fatalf("got root %q salt %q unusable %v", p.VerityRoot, p.VeritySalt, p.Unusable)
	}
	for _, bad := range []string{"", root, root + ":", root + ":" + salt[2:], root[2:] + ":" + salt, root + ":" + salt + ":" + salt, "zz" + root[2:] + ":" + salt} {
		p := Parse("etoile.verity=" + bad)
		if p.VerityRoot != "" || len(p.Unusable) != 1 || !strings.HasPrefix(p.Unusable[0], "etoile.verity=") {
			t.Errorf("etoile.verity=%q: root %q unusable %v", bad, p.VerityRoot, p.Unusable)
		}
	}
	// A mistyped name stops the boot too (did you mean).
	p = Parse("etoile.verify=" + root + ":" + salt)
	if len(p.Unusable) != 1 || !strings.Contains(p.Unusable[0], "etoile.verity") {
		t.Errorf("etoile.verify: unusable %v", p.Unusable)
	}
}

func TestParseRaw(t *testing.T) {
	p := Parse(`root=/dev/sda1 ro console="ttyS0,115200"`)
	want := map[string]string{"root": "/dev/sda1", "ro": "", "console": "ttyS0,115200"}
	if !reflect.DeepEqual(p.Raw, want) {
		t.Errorf("Raw = %v, want %v", p.Raw, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"BOOT_IMAGE=/vmlinuz console=ttyS0 etoile.slot=a",
		`etoile.system="http://10.0.2.2/x y" etoile.system.sha256=` + sum,
		"etoile.debug etoile.poweroff=0 -- init args",
		"\"\"=\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		p := Parse(line)
		if p.Slot != "" && p.Slot != "a" && p.Slot != "b" {
			t.Fatalf("slot %q accepted", p.Slot)
		}
		if p.SystemSHA256 != "" && len(p.SystemSHA256) != 64 {
			t.Fatalf("sha256 %q accepted", p.SystemSHA256)
		}
		if p.SystemURL != "" && !strings.HasPrefix(p.SystemURL, "http") {
			t.Fatalf("url %q accepted", p.SystemURL)
		}
		for k := range p.Raw {
			// Only quotes can put whitespace inside an argument.
			if utf8.ValidString(line) && !strings.Contains(line, `"`) && strings.ContainsAny(k, " \t\n") {
				t.Fatalf("key %q holds whitespace", k)
			}
		}
		// Parsing the rebuilt line gives the same values: the parser is stable.
		var b strings.Builder
		for k, v := range p.Raw {
			if strings.ContainsAny(k+v, "\"=") || k == "--" {
				return
			}
			b.WriteString(`"` + k + `=` + v + `" `)
		}
		if again := Parse(b.String()); !reflect.DeepEqual(again.Raw, p.Raw) {
			t.Fatalf("reparse of %q gave %v, want %v", b.String(), again.Raw, p.Raw)
		}
	})
}
