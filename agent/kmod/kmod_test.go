package kmod

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		// Real modules.alias patterns against modaliases QEMU devices show.
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", true},
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", false},
		{"virtio:d00000001v*", "virtio:d00000001v00001AF4", true},
		{"virtio:d00000002v*", "virtio:d00000001v00001AF4", false},
		{"pci:v*d*sv*sd*bc0Csc03i30*", "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30", true},
		{"usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*", "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", true},
		{"scsi:t-0x05*", "scsi:t-0x05", true},
		{"scsi:t-0x04*", "scsi:t-0x05", false},
		// Classes, as in the usb-storage unusual-devices table.
		{"usb:v13FDp3940d0[0-2]*dc*", "usb:v13FDp3940d0150dc00", true},
		{"usb:v13FDp3940d0[0-2]*dc*", "usb:v13FDp3940d0350dc00", false},
		{"usb:v1645p0007d013[0-3]dc*", "usb:v1645p0007d0133dc00", true},
		{"a[!0-2]b", "a3b", true},
		{"a[!0-2]b", "a1b", false},
		{"a[^x]b", "ayb", true},
		{"a[]]b", "a]b", true},
		{"a[a-]b", "a-b", true},
		{"a[", "a[", true}, // unterminated class matches itself
		{`a\*b`, "a*b", true},
		{`a\*b`, "axb", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"of:N*T*Cvirtio,mmio", "of:N/virtio@0T<NULL>Cvirtio,mmio", true}, // '*' crosses '/'
		{"*a*a*a*a*b", strings.Repeat("a", 60), false},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

// FuzzMatch checks Match against path.Match where their semantics agree
// (no '/', no escapes, no '!' classes, a pattern path.Match accepts).
func FuzzMatch(f *testing.F) {
	f.Add("pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00")
	f.Add("usb:v13FDp3940d0[0-2]*dc*", "usb:v13FDp3940d0150dc00")
	f.Add("a[^x-z]?*", "ab")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		got := Match(pattern, s) // must not panic or hang
		if strings.ContainsAny(pattern+s, `/\`) || strings.Contains(pattern, "[!") || strings.Contains(pattern, "[]") || strings.Contains(pattern, "[^]") {
			return
		}
		for _, b := range []byte(pattern + s) {
			if b >= 0x80 {
				return // path.Match works on runes, Match on bytes
			}
		}
		want, err := path.Match(pattern, s)
		if err != nil {
			return
		}
		if got != want {
			t.Fatalf("Match(%q, %q) = %v, path.Match says %v", pattern, s, got, want)
		}
	})
}

func readAliases(t testing.TB) *Aliases {
	f, err := os.Open("testdata/modules.alias")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := ParseAliases(f)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func readDeps(t testing.TB) *Deps {
	f, err := os.Open("testdata/modules.dep")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := ParseDeps(f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestLookup(t *testing.T) {
	a := readAliases(t)
	tests := []struct {
		modalias string
		want     []string
	}{
		{"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", []string{"virtio_pci"}},
		{"virtio:d00000001v00001AF4", []string{"virtio_net"}},
		{"virtio:d00000002v00001AF4", []string{"virtio_blk"}},
		{"pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", []string{"ata_piix", "ata_generic"}},
		{"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", []string{"e1000"}},
		{"pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30", []string{"xhci_pci"}},
		{"usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", []string{"uas", "usb_storage"}},
		{"scsi:t-0x05", []string{"sr_mod"}},
		{"scsi:t-0x00", []string{"sd_mod"}},
		{"platform:no-such-driver", nil},
	}
	for _, tt := range tests {
		got := a.Lookup(tt.modalias)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Lookup(%q) = %q, want %q", tt.modalias, got, tt.want)
		}
	}
}

// TestParseAliasesRejectsGarbage: a file none of whose lines is an alias
// (or a modules.dep line) is an error naming its first line; one good
// line is enough for the others to be skipped (TestIndexSkipsBadLines).
func TestParseAliasesRejectsGarbage(t *testing.T) {
	_, err := ParseAliases(strings.NewReader("# comment\nnot an alias line at all\nnor this\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "not an alias line") {
		t.Fatalf("err = %v, want one naming line 2", err)
	}
	_, err = ParseDeps(strings.NewReader("\x00\x00\x00\n"))
	if err == nil || !strings.Contains(err.Error(), "modules.dep line 1") {
		t.Fatalf("ParseDeps of garbage: err = %v, want one naming line 1", err)
	}
	a, err := ParseAliases(strings.NewReader("alias a b\nnot an alias line at all\n"))
	if err != nil || !slices.Equal(a.Lookup("a"), []string{"b"}) {
		t.Fatalf("ParseAliases with one bad line: %v, %v; want the good line read", a, err)
	}
}

func TestOrder(t *testing.T) {
	d := readDeps(t)
	tests := []struct {
		module string
		want   []string
	}{
		{"virtio_blk", []string{"virtio", "virtio_ring", "virtio_blk"}},
		{"squashfs", []string{"squashfs"}},
		{"isofs", []string{"cdrom", "isofs"}},
		{"usb-storage", []string{"usb_common", "usbcore", "scsi_common", "scsi_mod", "usb_storage"}},
	}
	for _, tt := range tests {
		got, err := d.Order(tt.module)
		if err != nil {
			t.Fatalf("Order(%s): %v", tt.module, err)
		}
		if !sameSet(got, tt.want) {
			t.Errorf("Order(%s) = %q, want %q in a valid order", tt.module, got, tt.want)
		}
		assertValidOrder(t, d, got)
	}
	// Every module's order loads each dependency before whatever needs it.
	for name := range d.path {
		got, err := d.Order(name)
		if err != nil {
			t.Fatalf("Order(%s): %v", name, err)
		}
		if got[len(got)-1] != name {
			t.Errorf("Order(%s) ends with %s", name, got[len(got)-1])
		}
		assertValidOrder(t, d, got)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func assertValidOrder(t *testing.T, d *Deps, order []string) {
	t.Helper()
	pos := map[string]int{}
	for i, m := range order {
		pos[m] = i
	}
	for i, m := range order {
		for _, dep := range d.deps[m] {
			if j, ok := pos[dep]; !ok || j > i {
				t.Errorf("in %q, %s is loaded before its dependency %s", order, m, dep)
			}
		}
	}
}

func TestOrderMissingAndBuiltin(t *testing.T) {
	d, err := ParseDeps(strings.NewReader("kernel/a.ko: kernel/b.ko kernel/c.ko\nkernel/b.ko:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Order("a"); err == nil || !strings.Contains(err.Error(), "c (needed by a)") {
		t.Errorf("Order(a) error = %v, want c named as missing", err)
	}
	if err := d.AddBuiltin(strings.NewReader("kernel/c.ko\n")); err != nil {
		t.Fatal(err)
	}
	got, err := d.Order("a")
	if err != nil || !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("Order(a) with c built in = %q, %v; want [b a]", got, err)
	}
	// Cycles (hand-made files) end.
	d, _ = ParseDeps(strings.NewReader("x.ko: y.ko\ny.ko: x.ko\n"))
	if got, _ := d.Order("x"); len(got) != 2 {
		t.Errorf("Order on a cycle = %q", got)
	}
}

// fakeSys writes a sysfs tree with the given device modaliases.
func fakeSys(t *testing.T, sys string, devs map[string]string) {
	t.Helper()
	for dev, alias := range devs {
		dir := filepath.Join(sys, "bus", strings.Split(dev, "/")[0], "devices", strings.Split(dev, "/")[1])
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "modalias"), []byte(alias+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// appearLoader makes new devices appear when a bus driver loads, as the
// kernel does when virtio_pci binds the virtio PCI functions.
type appearLoader struct {
	Recorder
	sys    string
	t      *testing.T
	appear map[string]map[string]string
}

func (l *appearLoader) Load(name, p string) error {
	if devs, ok := l.appear[name]; ok {
		fakeSys(l.t, l.sys, devs)
	}
	return l.Recorder.Load(name, p)
}

func TestColdplug(t *testing.T) {
	root := t.TempDir()
	sys := filepath.Join(root, "sys")
	mods := filepath.Join(root, "lib/modules/6.1.0-50-amd64")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"modules.alias", "modules.dep"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mods, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Module files exist except e1000's, which the image left out.
	deps := readDeps(t)
	for name, p := range deps.path {
		if name == "e1000" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(mods, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mods, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fakeSys(t, sys, map[string]string{
		"pci/0000:00:02.0": "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
		"pci/0000:00:03.0": "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
		"pci/0000:00:04.0": "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00", // host bridge: no driver
	})
	loader := &appearLoader{sys: sys, t: t, appear: map[string]map[string]string{
		"virtio_pci": {"virtio/virtio0": "virtio:d00000002v00001AF4"},
	}}
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := NewColdplug(sys, mods, loader, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Settle(context.Background(), 20e6, 2e9); err != nil {
		t.Fatal(err)
	}
	c.LoadFixed(context.Background(), []string{"squashfs", "loop", "no-such-module"})
	got := loader.Loaded()
	want := []string{"virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk", "squashfs", "loop"}
	if !sameSet(got, want) {
		t.Errorf("loaded %q, want %q", got, want)
	}
	if i, j := slices.Index(got, "virtio_pci"), slices.Index(got, "virtio_blk"); i < 0 || j < i {
		t.Errorf("virtio_blk (found after virtio_pci loaded) not loaded after it: %q", got)
	}
	if !strings.Contains(logs.String(), "module=no_such_module") || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("missing fixed module not warned about:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "module=e1000") {
		t.Errorf("e1000 (matched, file absent) not mentioned:\n%s", logs.String())
	}
}

func BenchmarkLookup(b *testing.B) {
	f, err := os.Open("/tmp/c-kernel/root/lib/modules/6.1.0-50-amd64/modules.alias")
	var r io.Reader
	if err != nil {
		g, err := os.Open("testdata/modules.alias")
		if err != nil {
			b.Fatal(err)
		}
		defer g.Close()
		r = g
	} else {
		defer f.Close()
		r = f
	}
	a, err := ParseAliases(r)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(a.Len()), "aliases")
	for b.Loop() {
		a.Lookup("pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80")
	}
}

// TestSoftdepAndModprobe uses the real chain that broke a QEMU boot:
// nf_tables needs libcrc32c, which needs the crc32c cipher that only
// modules.softdep names, through an alias.
func TestSoftdepAndModprobe(t *testing.T) {
	mods := t.TempDir()
	files := map[string]string{
		"modules.dep": "kernel/net/netfilter/nf_tables.ko: kernel/lib/libcrc32c.ko kernel/net/netfilter/nfnetlink.ko\n" +
			"kernel/lib/libcrc32c.ko:\nkernel/net/netfilter/nfnetlink.ko:\n" +
			"kernel/crypto/crc32c_generic.ko:\nkernel/arch/x86/crypto/crc32c-intel.ko:\nkernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko\nkernel/drivers/cdrom/cdrom.ko:\n",
		"modules.alias":   "alias crypto-crc32c crc32c_intel\nalias crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\nalias fs-iso9660 isofs\n",
		"modules.softdep": "# comment\nsoftdep libcrc32c pre: crc32c\nsoftdep cifs gcm\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(mods, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deps, err := ParseDeps(strings.NewReader(files["modules.dep"]))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range deps.path {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(mods, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mods, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rec := &Recorder{}
	c, err := NewColdplug(t.TempDir(), mods, rec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.LoadFixed(context.Background(), []string{"nf_tables"})
	got := rec.Loaded()
	pos := func(m string) int { return slices.Index(got, m) }
	if pos("crc32c_intel") < 0 || pos("crc32c_generic") < 0 || pos("crc32c_intel") > pos("libcrc32c") || pos("libcrc32c") > pos("nf_tables") || pos("nfnetlink") > pos("nf_tables") {
		t.Errorf("load order %q: want crc32c ciphers, then libcrc32c, then nf_tables", got)
	}
	if err := c.Modprobe(context.Background(), "fs-iso9660"); err != nil {
		t.Fatal(err)
	}
	if got := rec.Loaded(); !slices.Equal(got[len(got)-2:], []string{"cdrom", "isofs"}) {
		t.Errorf("modprobe fs-iso9660 loaded %q, want cdrom then isofs at the end", got)
	}
	if err := c.Modprobe(context.Background(), "fs-nosuch"); err == nil {
		t.Error("modprobe of an unknown alias succeeded")
	}
	// Loading again loads nothing: each module once.
	n := len(rec.Loaded())
	c.LoadFixed(context.Background(), []string{"nf_tables", "isofs"})
	if len(rec.Loaded()) != n {
		t.Errorf("second load added %q", rec.Loaded()[n:])
	}
}
