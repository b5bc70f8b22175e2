package hubcli_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"github.com/etoile-os/etoile/qa"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hubcli"
	"github.com/etoile-os/etoile/constellation/pki"
	"github.com/etoile-os/etoile/constellation/store"
	"github.com/etoile-os/etoile/constellation/store/sqlite"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkHub10kSites runs one fixed scenario whatever b.N is (run it with
// -benchtime=1x): SITES simulated sites (default 10,000), each with its own
// site certificate and its own TLS connection, heartbeat against one hub
// process (a re-executed test binary, so its memory is measured alone) on
// loopback. Phases, each bounded in time:
//
//  1. connect: every site sends one heartbeat (TLS handshake included);
//  2. throughput: closed loop, CONCURRENCY in flight, for SECONDS;
//  3. latency: open loop at RATE heartbeats/s (default 2,000) for SECONDS,
//     latency measured from the scheduled send time, so a hub that falls
//     behind shows it in p99 instead of hiding it.
//
// ETOILE_BENCH_IDLE_TIMEOUT (e.g. 1s) makes the hub close idle
// connections, so that heartbeats resume TLS instead of keeping 10,000
// connections open: less memory, more CPU.
//
// It prints heartbeats/s, p50/p99 latency and the hub's RSS; it asserts only
// that every heartbeat was accepted.
func BenchmarkHub10kSites(b *testing.B) {
	nSites := envInt("ETOILE_BENCH_SITES", 10000)
	secs := envInt("ETOILE_BENCH_SECONDS", 5)
	conc := envInt("ETOILE_BENCH_CONCURRENCY", 32)
	rate := envInt("ETOILE_BENCH_RATE", 2000)
	ctx := context.Background()
	dir := b.TempDir()

	// Seed the sites straight into the store; joining 10,000 sites over the
	// API is not what is measured here.
	t0 := time.Now()
	ca, _, err := pki.LoadOrCreateCA(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, hubcli.DBFile), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	keySHA, _ := pki.KeySHA256(&key.PublicKey)
	countries := []string{"FR", "DE", "NL", "IT", "ES"}
	certs := make([]tls.Certificate, nSites)
	now := time.Now()
	for i := range nSites {
		id := fmt.Sprintf("%016x", i+1)
		tok := api.Token{ID: id, SecretHash: store.HashSecret("bench"), Site: fmt.Sprintf("site-%05d", i), Attributes: api.Attributes{Country: countries[i%len(countries)], Jurisdiction: "EU", Tags: []string{"gdpr"}},
			CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: 1, CreatedBy: "bench"}
		if err := st.CreateToken(ctx, tok, api.AuditEvent{At: now, Actor: "bench", Action: api.AuditTokenCreate, Subject: id}); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Join(ctx, store.JoinParams{TokenID: id, Secret: "bench", KeySHA256: keySHA, Now: now, NewSiteID: id}, api.AuditEvent{At: now, Actor: "bench", Action: api.AuditSiteJoin}); err != nil {
			b.Fatal(err)
		}
		_, cert, err := ca.ClientCertificate(&key.PublicKey, id, api.OrgSite, 24*time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		certs[i] = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	}
	st.Close()
	fmt.Printf("seeded %d sites in %s\n", nSites, time.Since(t0).Round(time.Millisecond))

	c := startChild(b, dir, false)
	pid := c.cmd.Process.Pid
	rssIdle := rss(pid, "VmRSS") // serving, no site connected yet
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	clients := make([]*http.Client, nSites)
	for i := range clients {
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{certs[i]}, MinVersion: tls.VersionTLS13,
				ClientSessionCache: tls.NewLRUClientSessionCache(1)},
			MaxIdleConnsPerHost: 1, IdleConnTimeout: 5 * time.Minute, DisableCompression: true,
		}
		clients[i] = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	defer func() {
		for _, cl := range clients {
			cl.CloseIdleConnections()
		}
	}()
	body, _ := json.Marshal(api.Heartbeat{Nodes: 3, NodesReady: 3, K3sVersion: "v1.31.4+k3s1", EtoileVersion: "0.1.0", Slot: "a",
		Capacity: api.Capacity{CPUMillis: 16000, CPUUsedMillis: 4000, MemoryBytes: 64 << 30, MemoryUsedBytes: 20 << 30}})
	var failures atomic.Int64
	var firstErr atomic.Value
	beat := func(i int) {
		resp, err := clients[i].Post(c.url+api.PathHeartbeat, "application/json", bytes.NewReader(body))
		if err != nil {
			failures.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failures.Add(1)
			firstErr.CompareAndSwap(nil, resp.Status)
		}
	}

	// Phase 1: every site connects and beats once.
	t1 := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= nSites {
					return
				}
				beat(i)
			}
		})
	}
	wg.Wait()
	connect := time.Since(t1)
	rssConnected := rss(pid, "VmRSS")
	fmt.Printf("phase 1: %d sites connected and beat once in %s (%.0f/s incl. TLS handshake); hub RSS %d MB\n",
		nSites, connect.Round(time.Millisecond), float64(nSites)/connect.Seconds(), rssConnected>>20)

	// Phase 2: closed-loop throughput over the open connections.
	var done atomic.Int64
	cpu0 := cpuTime(pid)
	if os.Getenv("ETOILE_TEST_HUB_CPUPROFILE") != "" {
		_ = c.cmd.Process.Signal(syscall.SIGUSR1)
		defer c.cmd.Process.Signal(syscall.SIGUSR2)
	}
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	lat2 := make([][]time.Duration, conc)
	t2 := time.Now()
	for w := range conc {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				i := int(next.Add(1)) % nSites
				s := time.Now()
				beat(i)
				lat2[w] = append(lat2[w], time.Since(s))
				done.Add(1)
			}
		})
	}
	wg.Wait()
	thr := float64(done.Load()) / time.Since(t2).Seconds()
	hubCPU := (cpuTime(pid) - cpu0) / time.Duration(max(done.Load(), 1))
	if os.Getenv("ETOILE_TEST_HUB_CPUPROFILE") != "" {
		_ = c.cmd.Process.Signal(syscall.SIGUSR2)
		time.Sleep(500 * time.Millisecond)
	}
	p50c, p99c := percentiles(lat2)
	fmt.Printf("phase 2: closed loop, %d in flight: %.0f heartbeats/s, p50 %s, p99 %s; hub CPU %s per heartbeat (%.0f/s per dedicated core)\n",
		conc, thr, p50c, p99c, hubCPU.Round(time.Microsecond), float64(time.Second)/float64(max(hubCPU, 1)))

	// Phase 3: open loop at a fixed rate.
	total := rate * secs
	jobs := make(chan time.Time, total)
	lat3 := make([][]time.Duration, 256)
	for w := range lat3 {
		wg.Go(func() {
			for sched := range jobs {
				i := int(next.Add(1)) % nSites
				beat(i)
				lat3[w] = append(lat3[w], time.Since(sched))
			}
		})
	}
	t3 := time.Now()
	for k := range total {
		sched := t3.Add(time.Duration(k) * time.Second / time.Duration(rate))
		if d := time.Until(sched); d > 0 {
			time.Sleep(d)
		}
		jobs <- sched
	}
	close(jobs)
	wg.Wait()
	achieved := float64(total) / time.Since(t3).Seconds()
	p50, p99 := percentiles(lat3)
	hwm, cur := rss(pid, "VmHWM"), rss(pid, "VmRSS")
	fmt.Printf("phase 3: open loop at %d/s: achieved %.0f heartbeats/s, p50 %s, p99 %s\n", rate, achieved, p50, p99)
	idleTimeout := os.Getenv("ETOILE_BENCH_IDLE_TIMEOUT")
	open := fmt.Sprintf("%d connections open", nSites)
	if idleTimeout != "" {
		open = fmt.Sprintf("%d sites, connections closed after %s idle", nSites, idleTimeout)
	}
	perConn := (hwm - rssIdle) / int64(nSites)
	fmt.Printf("hub RSS: %d MB now, %d MB peak, %d MB before any site connected, with %s: %.1f KB per site\n",
		cur>>20, hwm>>20, rssIdle>>20, open, float64(perConn)/1024)
	if sp50, sp99, err := serverPercentiles(c.status); err == nil {
		fmt.Printf("hub-side heartbeat latency over the whole run (from its histogram): p50 <= %s, p99 <= %s\n", sp50, sp99)
	}
	fmt.Printf("targets: >= 2000 heartbeats/s, p99 <= 50ms, RSS <= 300 MB\n")
	mark := func(ok bool) string {
		if ok {
			return "✓"
		}
		return "✗"
	}
	gc := "Go's default settings"
	var env []string
	for _, k := range []string{"GOGC", "GOMEMLIMIT"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if len(env) > 0 {
		gc = strings.Join(env, ", ") + " (from the environment)"
	}
	within := "within"
	if hwm>>20 > 300 {
		within = "over"
	}
	costs := fmt.Sprintf(`Each open site connection costs the hub about %.0f KB of resident memory (peak RSS %d MB, %d MB of
it before any site connected): with every site connected at once the hub is %s its memory target. The hub
terminates TLS itself and parks a site's connection between heartbeats outside net/http (no goroutine, no
HTTP buffers: what stays is its TLS state); its garbage collector runs at %s.
`+"`etoile hub serve --idle-timeout`"+` below the heartbeat interval closes idle connections instead (less memory
still; each heartbeat then resumes TLS).
`, float64(perConn)/1024, hwm>>20, rssIdle>>20, within, gc)
	if idleTimeout != "" {
		costs = fmt.Sprintf(`The hub closed connections idle for %s (ETOILE_BENCH_IDLE_TIMEOUT): heartbeats resumed TLS, and the
memory figure is not that of %d open connections. Peak RSS %d MB, %d MB before any site connected; GC at %s.
`, idleTimeout, nSites, hwm>>20, rssIdle>>20, gc)
	}
	doc := fmt.Sprintf(`## Constellation hub

Measured %s: %d simulated sites, each with its own site certificate and mTLS connection, against one hub
process on loopback (this machine's cores shared between the hub and the simulator).

| figure | measured | target |
| --- | ---: | --- |
| sustained heartbeats/s (closed loop) | %.0f %s | ≥ 2,000/s |
| p99 latency at a steady %d heartbeats/s | %s %s | ≤ 50 ms |
| hub resident memory (peak), %s | %d MB %s | ≤ 300 MB |

%s`, time.Now().UTC().Format("2006-01-02 15:04 MST"), nSites, thr, mark(thr >= 2000), rate, p99.Round(100*time.Microsecond),
		mark(p99 <= 50*time.Millisecond), open, hwm>>20, mark(hwm>>20 <= 300), costs)
	if root, err := repoRoot(); err == nil {
		if err := qa.WriteDocSection(filepath.Join(root, "docs", "benchmarks.md"), "hub", doc); err != nil {
			b.Logf("writing docs/benchmarks.md: %v", err)
		}
	}
	b.ReportMetric(thr, "heartbeats/s")
	b.ReportMetric(float64(hubCPU.Microseconds()), "hub-CPU-us/heartbeat")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms@rate")
	b.ReportMetric(float64(hwm>>20), "hub-peak-RSS-MB")
	if n := failures.Load(); n > 0 {
		b.Fatalf("%d heartbeats failed; first: %v", n, firstErr.Load())
	}
}

func percentiles(per [][]time.Duration) (p50, p99 time.Duration) {
	var all []time.Duration
	for _, l := range per {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return 0, 0
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all[len(all)/2].Round(10 * time.Microsecond), all[len(all)*99/100].Round(10 * time.Microsecond)
}

// rss reads a memory figure of process pid in bytes.
func rss(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuTime is the user+system CPU time process pid has used.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// serverPercentiles reads the hub's heartbeat latency histogram from
// /metrics and returns the bucket bounds holding p50 and p99: the hub's own
// view, without the client's scheduling and GC in it.
func serverPercentiles(statusAddr string) (p50, p99 time.Duration, err error) {
	resp, err := http.Get("http://" + statusAddr + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	type bucket struct {
		le    float64
		count float64
	}
	var buckets []bucket
	prefix := `etoile_hub_request_duration_seconds_bucket{route="POST /v1/heartbeat",le="`
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		le, val, _ := strings.Cut(rest, `"} `)
		l, err1 := strconv.ParseFloat(le, 64)
		v, err2 := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err1 != nil || err2 != nil {
			continue // +Inf
		}
		buckets = append(buckets, bucket{l, v})
	}
	if len(buckets) == 0 {
		return 0, 0, fmt.Errorf("no heartbeat histogram")
	}
	total := buckets[len(buckets)-1].count
	find := func(q float64) time.Duration {
		for _, b := range buckets {
			if b.count >= q*total {
				return time.Duration(b.le * float64(time.Second))
			}
		}
		return -1
	}
	return find(0.5), find(0.99), nil
}

// repoRoot is the module root (where go.mod is), for docs/benchmarks.md.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working folder")
		}
		dir = parent
	}
}
