package kmod

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// The tests of per-thread nice values (gettid is Linux's).

// niceLoader sees the nice value each load's thread has when its load starts
// and when it ends, as set through Coldplug's seam; a module in gate blocks
// until its channel is closed, and entered tells when its load started.
type niceLoader struct {
	mu      sync.Mutex
	nice    map[int]int      // tid → nice
	at      map[string][]int // module → nice at start, at end
	gate    map[string]chan struct{}
	entered map[string]chan struct{}
	tids    map[string]int
}

func (l *niceLoader) setNice(tid, n int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nice[tid] = n
	return nil
}

func (l *niceLoader) niceOf(module string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nice[l.tids[module]]
}

func (l *niceLoader) Load(name, p string) error {
	tid := gettid()
	l.mu.Lock()
	l.tids[name] = tid
	start, entered, gate := l.nice[tid], l.entered[name], l.gate[name]
	l.mu.Unlock()
	if entered != nil {
		close(entered)
	}
	if gate != nil {
		<-gate
	}
	l.mu.Lock()
	l.at[name] = []int{start, l.nice[tid]}
	l.mu.Unlock()
	return nil
}

// TestBackgroundPriorities: with Background, what nothing waits for loads at
// nice 19 (the mount's modules while the medium is looked for, a driver for
// a device nothing waits for), what something waits for at 0 (the medium's
// controller, a NIC, modprobe, the fixed list), and a change of urgency
// reaches a load already in the kernel: the medium found, or an urgent load
// waiting for the module.
func TestBackgroundPriorities(t *testing.T) {
	sys, mods := testDirs(t)
	files := map[string]string{
		"modules.dep": "kernel/ata/ahci.ko:\nkernel/net/e1000e.ko:\nkernel/fs/squashfs.ko:\nkernel/fs/jbd2.ko:\n" +
			"kernel/fs/ext4.ko: kernel/fs/jbd2.ko\nkernel/fs/vfat.ko:\nkernel/sound/snd_hda.ko: kernel/fs/jbd2.ko\n",
		"modules.alias": "alias pci:v*d*sv*sd*bc01sc06i01* ahci\nalias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n" +
			"alias pci:v00008086d00002668sv*sd*bc04sc03i* snd_hda\n",
		"kernel/sound/snd_hda.ko": "",
		"kernel/ata/ahci.ko":      "", "kernel/net/e1000e.ko": "", "kernel/fs/squashfs.ko": "", "kernel/fs/jbd2.ko": "",
		"kernel/fs/ext4.ko": "", "kernel/fs/vfat.ko": "",
	}
	writeTree(t, mods, files)
	fakeSys(t, sys, map[string]string{
		"pci/0000:00:02.0": "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00", // e1000e
		"pci/0000:00:1f.2": "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", // AHCI
	})
	l := &niceLoader{nice: map[int]int{}, at: map[string][]int{}, tids: map[string]int{},
		gate: map[string]chan struct{}{}, entered: map[string]chan struct{}{}}
	for _, m := range []string{"e1000e", "squashfs", "jbd2"} {
		l.gate[m], l.entered[m] = make(chan struct{}), make(chan struct{})
	}
	c, err := NewColdplug(sys, mods, l, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.Background, c.setNice = true, l.setNice
	ctx := context.Background()
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not happen", what)
		}
	}
	waitNice := func(module string, want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); l.niceOf(module) != want; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s's thread has nice %d, want %d", module, l.niceOf(module), want)
			}
		}
	}
	// The medium is looked for: ahci and the NIC are urgent, squashfs is not.
	if _, err := c.StartScan(ctx); err != nil {
		t.Fatal(err)
	}
	bootDone := make(chan struct{})
	go func() { defer close(bootDone); c.LoadBoot(ctx, []string{"squashfs"}) }()
	wait("e1000e's load", l.entered["e1000e"])
	wait("squashfs's load", l.entered["squashfs"])
	// Found: squashfs becomes what the boot waits for, while in the kernel.
	c.MediumFound()
	waitNice("squashfs", 0)
	waitNice("e1000e", 0)
	close(l.gate["squashfs"])
	close(l.gate["e1000e"])
	wait("LoadBoot", bootDone)
	// A sound card's driver loads in the background, until modprobe needs
	// a module of its chain (jbd2 stands for one here).
	fakeSys(t, sys, map[string]string{"pci/0000:00:1b.0": "pci:v00008086d00002668sv00001AF4sd00001100bc04sc03i00"})
	scanDone := make(chan struct{})
	go func() { defer close(scanDone); _, _ = c.Scan(ctx) }()
	wait("jbd2's load", l.entered["jbd2"])
	waitNice("jbd2", BackgroundNice)
	probeDone := make(chan error)
	go func() { probeDone <- c.Modprobe(ctx, "ext4") }()
	waitNice("jbd2", 0)
	close(l.gate["jbd2"])
	if err := <-probeDone; err != nil {
		t.Fatal(err)
	}
	wait("the sound card's driver", scanDone)
	// The fixed list loads after the ready line, at the usual priority.
	c.LoadFixed(ctx, []string{"vfat"})
	if err := c.Settle(ctx, 0, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	for m, want := range map[string][]int{
		"ahci":     {0, 0},
		"e1000e":   {0, 0},
		"squashfs": {BackgroundNice, 0},
		"jbd2":     {BackgroundNice, 0},
		"ext4":     {0, 0},
		"snd_hda":  {0, 0}, // the rest of the chain keeps the priority lent to it
		"vfat":     {0, 0},
	} {
		if got := l.at[m]; !slices.Equal(got, want) {
			t.Errorf("%s: nice at start and end of its load %v, want %v", m, got, want)
		}
	}
	// Every thread goes back to the Go scheduler at nice 0.
	for tid, n := range l.nice {
		if n != 0 {
			t.Errorf("thread %d left at nice %d", tid, n)
		}
	}
}

// TestBootControllerLate: told the boot controller while another
// controller's driver is in the kernel, that load goes on at nice 19.
func TestBootControllerLate(t *testing.T) {
	sys, mods := testDirs(t)
	writeTree(t, mods, map[string]string{
		"modules.dep": "kernel/ata/ahci.ko:\n", "modules.alias": "alias pci:v*d*sv*sd*bc01sc06i01* ahci\n", "kernel/ata/ahci.ko": "",
	})
	fakeSys(t, sys, map[string]string{"pci/0000:00:1f.2": "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"})
	l := &niceLoader{nice: map[int]int{}, at: map[string][]int{}, tids: map[string]int{},
		gate: map[string]chan struct{}{"ahci": make(chan struct{})}, entered: map[string]chan struct{}{"ahci": make(chan struct{})}}
	c, err := NewColdplug(sys, mods, l, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.Background, c.setNice = true, l.setNice
	if _, err := c.StartScan(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-l.entered["ahci"]
	if n := l.niceOf("ahci"); n != 0 {
		t.Fatalf("ahci loads at nice %d before the boot controller is known, want 0", n)
	}
	c.SetBootController("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00")
	if n := l.niceOf("ahci"); n != BackgroundNice {
		t.Errorf("ahci loads at nice %d once the firmware booted from another controller, want %d", n, BackgroundNice)
	}
	close(l.gate["ahci"])
	if err := c.Settle(context.Background(), 0, 2*time.Second); err != nil {
		t.Fatal(err)
	}
}
