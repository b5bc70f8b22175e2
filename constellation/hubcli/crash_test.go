package hubcli_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hub"
	"github.com/etoile-os/etoile/constellation/hubcli"
	"github.com/etoile-os/etoile/constellation/join"
	"github.com/etoile-os/etoile/constellation/store/sqlite"
)

// The crash test re-executes this test binary as a hub process so that it
// can be killed with SIGKILL in the middle of a join transaction.
const (
	childDataEnv = "ETOILE_TEST_HUB_CHILD_DATA"
	childHangEnv = "ETOILE_TEST_HUB_CHILD_HANG"
	inTxMarker   = "JOIN-IN-TRANSACTION"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDataEnv); dir != "" {
		os.Exit(childHub(dir, os.Getenv(childHangEnv) == "1"))
	}
	os.Exit(m.Run())
}

func childHub(dir string, hang bool) int {
	if os.Getenv("ETOILE_TEST_HUB_MEMSTATS") == "1" {
		go func() {
			for range time.Tick(2 * time.Second) {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				fmt.Fprintf(os.Stderr, "hub mem: heap-inuse %d MB, stack-inuse %d MB, sys %d MB, goroutines %d, gc %d\n",
					m.HeapInuse>>20, m.StackInuse>>20, m.Sys>>20, runtime.NumGoroutine(), m.NumGC)
				if p := os.Getenv("ETOILE_TEST_HUB_HEAPPROFILE"); p != "" {
					// Written aside and renamed: the hub may be killed mid-write.
					if f, err := os.Create(p + ".tmp"); err == nil {
						err = pprof.WriteHeapProfile(f)
						if f.Close() == nil && err == nil {
							_ = os.Rename(p+".tmp", p)
						}
					}
				}
			}
		}()
	}
	o := hubcli.ServeOptions{Data: dir, Listen: "127.0.0.1:0", StatusListen: "127.0.0.1:0", Ready: func(u, st string) { fmt.Printf("READY %s %s\n", u, st) }}
	if p := os.Getenv("ETOILE_TEST_HUB_CPUPROFILE"); p != "" {
		// SIGUSR1 starts a CPU profile, SIGUSR2 writes it.
		sig := make(chan os.Signal, 2)
		signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
		go func() {
			var f *os.File
			for s := range sig {
				if s == syscall.SIGUSR1 && f == nil {
					f, _ = os.Create(p)
					_ = pprof.StartCPUProfile(f)
				} else if s == syscall.SIGUSR2 && f != nil {
					pprof.StopCPUProfile()
					f.Close()
					f = nil
				}
			}
		}()
	}
	if d, err := time.ParseDuration(os.Getenv("ETOILE_BENCH_IDLE_TIMEOUT")); err == nil {
		o.IdleTimeout = d
	}
	if hang {
		o.StoreOptions = sqlite.Options{BeforeJoinCommit: func() {
			fmt.Println(inTxMarker)
			time.Sleep(time.Minute)
		}}
	}
	if err := hubcli.Serve(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type child struct {
	cmd    *exec.Cmd
	url    string
	status string
	lines  chan string
}

func startChild(t testing.TB, dir string, hang bool) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childDataEnv+"="+dir, fmt.Sprintf("%s=%v", childHangEnv, map[bool]int{true: 1}[hang]))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, lines: make(chan string, 16)}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	line := c.wait(t, "READY ")
	c.url, c.status, _ = strings.Cut(strings.TrimPrefix(line, "READY "), " ")
	return c
}

func (c *child) wait(t testing.TB, prefix string) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("hub process exited before printing %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("hub process did not print %q within 30 s", prefix)
		}
	}
}

func TestKill9DuringJoinLeavesNoHalfSite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := startChild(t, dir, true)
	cfg, err := hub.LoadClientConfig(filepath.Join(dir, hub.AdminConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := hub.NewClient(cfg, c.url)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := admin.CreateToken(ctx, api.TokenRequest{Site: "crash-1", TTLSeconds: 3600, Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	js, err := api.ParseJoinString(resp.JoinString)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	joinErr := make(chan error, 1)
	go func() {
		_, err := join.Join(ctx, js, join.Options{Root: root, Timeout: 60 * time.Second})
		joinErr <- err
	}()
	c.wait(t, inTxMarker)
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
	if err := <-joinErr; err == nil {
		t.Fatal("join succeeded although the hub was killed mid-transaction")
	}

	// The restarted hub has no trace of the join: no site, no token use, no
	// audit record of it.
	c2 := startChild(t, dir, false)
	admin2, err := hub.NewClient(cfg, c2.url)
	if err != nil {
		t.Fatal(err)
	}
	if sites, err := admin2.Sites(ctx); err != nil || len(sites) != 0 {
		t.Fatalf("after kill -9: %d sites (%v), want none", len(sites), err)
	}
	toks, err := admin2.Tokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].Uses != 0 {
		t.Fatalf("after kill -9: tokens %+v (%v), want one unused", toks, err)
	}
	if evs, _ := admin2.Audit(ctx, api.AuditSiteJoin, 10); len(evs) != 0 {
		t.Fatalf("audit records a join that did not happen: %+v", evs)
	}
	// The same site retries against the restarted hub and joins once.
	js.Hub = c2.url
	site, err := join.Join(ctx, js, join.Options{Root: root})
	if err != nil {
		t.Fatalf("join after restart: %v", err)
	}
	if sites, _ := admin2.Sites(ctx); len(sites) != 1 || sites[0].ID != site.State.SiteID {
		t.Fatalf("after the retried join: %+v", sites)
	}
}
