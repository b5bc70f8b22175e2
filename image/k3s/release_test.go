package k3s

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseChecksums(t *testing.T) {
	h1 := strings.Repeat("ab", 32)
	h2 := strings.Repeat("CD", 32)
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{"text and binary mode", h1 + "  k3s\n" + h2 + " *k3s-airgap-images-amd64.tar.zst\n",
			map[string]string{"k3s": h1, "k3s-airgap-images-amd64.tar.zst": strings.ToLower(h2)}, ""},
		{"blank lines and CRLF", "\n" + h1 + "  k3s\r\n\n", map[string]string{"k3s": h1}, ""},
		{"same sum twice", h1 + "  k3s\n" + h1 + "  k3s\n", map[string]string{"k3s": h1}, ""},
		{"short hash", "abcd  k3s\n", nil, "64 hex digits"},
		{"not hex", strings.Repeat("zz", 32) + "  k3s\n", nil, "not a hex SHA-256"},
		{"path in name", h1 + "  ../k3s\n", nil, "holds a path"},
		{"no name", h1 + "  \n", nil, "empty"},
		{"conflicting sums", h1 + "  k3s\n" + strings.Repeat("01", 32) + "  k3s\n", nil, "listed twice"},
		{"no separator", h1 + "\n", nil, "64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseChecksums([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// FuzzParseChecksums: the checksum file comes from the network; whatever it
// holds, parsing must not panic and every accepted entry must be a plain
// file name with a 64-digit lower-case hex sum.
func FuzzParseChecksums(f *testing.F) {
	f.Add([]byte(strings.Repeat("ab", 32) + "  k3s\n"))
	f.Add([]byte(strings.Repeat("ab", 32) + " *k3s-airgap-images-amd64.tar.zst\r\n\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sums, err := parseChecksums(data)
		if err != nil {
			return
		}
		for name, sum := range sums {
			if name == "" || strings.ContainsAny(name, "/\\\x00") {
				t.Fatalf("accepted file name %q", name)
			}
			if _, err := hex.DecodeString(sum); err != nil || len(sum) != 64 || sum != strings.ToLower(sum) {
				t.Fatalf("accepted sum %q", sum)
			}
		}
	})
}

func TestReleaseURL(t *testing.T) {
	tests := []struct{ base, version, file, want string }{
		{"", "v1.34.9+k3s1", "k3s", "https://github.com/k3s-io/k3s/releases/download/v1.34.9%2Bk3s1/k3s"},
		{"http://127.0.0.1:1/dl/", "v1.35.0-rc1+k3s2", "sha256sum-amd64.txt", "http://127.0.0.1:1/dl/v1.35.0-rc1%2Bk3s2/sha256sum-amd64.txt"},
	}
	for _, tt := range tests {
		if got := releaseURL(tt.base, tt.version, tt.file); got != tt.want {
			t.Errorf("releaseURL(%q, %q, %q) = %q, want %q", tt.base, tt.version, tt.file, got, tt.want)
		}
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestFetchReleaseStandin serves a folder laid out like a K3s release (the
// stand-in's) over HTTP and checks the release source end to end.
func TestFetchReleaseStandin(t *testing.T) {
	ctx := context.Background()
	folder := standinRelease(t)
	srv := serveRelease(t, DefaultVersion, folder)
	cache := t.TempDir()
	log, _ := testLog(t)
	src := Source{Kind: KindRelease, BaseURL: srv.URL}

	a, err := Fetch(ctx, src, cache, log)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	wantDir := filepath.Join(cache, "k3s", DefaultVersion)
	if a.Version != DefaultVersion || a.Binary != filepath.Join(wantDir, BinaryName) {
		t.Errorf("got version %q binary %q, want %q in %s", a.Version, a.Binary, DefaultVersion, wantDir)
	}
	if got, want := a.BinarySHA256, sha256File(t, filepath.Join(folder, BinaryName)); got != want {
		t.Errorf("BinarySHA256 = %s, want the release's %s", got, want)
	}
	if len(a.AirgapImages) != 1 || a.AirgapSHA256[a.AirgapImages[0]] != sha256File(t, filepath.Join(folder, AirgapName)) {
		t.Errorf("airgap = %v %v, want the release's tarball", a.AirgapImages, a.AirgapSHA256)
	}
	if want := srv.URL + "/v1.34.9%2Bk3s1/k3s"; a.DownloadLocation != want || a.Source != "release "+want {
		t.Errorf("DownloadLocation %q Source %q, want %q", a.DownloadLocation, a.Source, want)
	}
	// The release served here is the stand-in's: recognised, and not
	// given K3s's package URL (TestFetchDirGenuineBinary has K3s's).
	if !a.Standin || a.PURL != "" {
		t.Errorf("Standin %v PURL %q", a.Standin, a.PURL)
	}
	if st, err := os.Stat(a.Binary); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("cached binary mode: %v %v, want 0755", st.Mode(), err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(wantDir, ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left in the cache: %v", leftovers)
	}

	// A second fetch is served from the cache, without the network.
	before := srv.requests.Load()
	srv.Close()
	if _, err := Fetch(ctx, src, cache, log); err != nil {
		t.Fatalf("Fetch from cache with the server gone: %v", err)
	}
	if srv.requests.Load() != before {
		t.Errorf("cache hit still made %d requests", srv.requests.Load()-before)
	}
}

func TestFetchReleaseCorruptedCacheStandin(t *testing.T) {
	ctx := context.Background()
	srv := serveRelease(t, DefaultVersion, standinRelease(t))
	cache := t.TempDir()
	log, logs := testLog(t)
	src := Source{BaseURL: srv.URL}
	a, err := Fetch(ctx, src, cache, log)
	if err != nil {
		t.Fatal(err)
	}
	good := a.BinarySHA256
	if err := os.WriteFile(a.Binary, []byte("bit rot"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := srv.requests.Load()
	a, err = Fetch(ctx, src, cache, log)
	if err != nil {
		t.Fatalf("Fetch after corrupting the cache: %v", err)
	}
	if a.BinarySHA256 != good || sha256File(t, a.Binary) != good {
		t.Errorf("binary after refetch has %s, want %s", sha256File(t, a.Binary), good)
	}
	if srv.requests.Load() == before {
		t.Error("a corrupted cache entry was used without fetching it again")
	}
	if !strings.Contains(logs.String(), "does not verify") {
		t.Errorf("no warning about the corrupted cache in the log:\n%s", logs)
	}
}

func TestFetchReleaseFailuresStandin(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		mutate  func(t *testing.T, dir string)
		wantErr []string
	}{
		{"bad checksum", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, AirgapName), []byte("tampered"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{AirgapName, "SHA-256", "nothing was kept"}},
		{"missing airgap tarball", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, AirgapName))
		}, []string{"/v1.34.9%2Bk3s1/" + AirgapName, "404"}},
		{"missing checksum file", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, ChecksumName))
		}, []string{"/v1.34.9%2Bk3s1/" + ChecksumName, "404", "--k3s-dir"}},
		{"checksum file without the binary", func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, ChecksumName))
			var keep []string
			for _, l := range strings.Split(string(data), "\n") {
				if !strings.HasSuffix(l, "  "+BinaryName) {
					keep = append(keep, l)
				}
			}
			os.WriteFile(filepath.Join(dir, ChecksumName), []byte(strings.Join(keep, "\n")), 0o644)
		}, []string{"does not list k3s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyRelease(t)
			tt.mutate(t, dir)
			srv := serveRelease(t, DefaultVersion, dir)
			cache := t.TempDir()
			log, _ := testLog(t)
			_, err := Fetch(ctx, Source{BaseURL: srv.URL}, cache, log)
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			// Nothing unverified is kept where a later build would find it.
			if _, err := verifiedFolder(filepath.Join(cache, "k3s", DefaultVersion), DefaultVersion); err == nil {
				t.Error("the cache holds a complete release after a failed fetch")
			}
			for _, n := range []string{BinaryName, AirgapName} {
				p := filepath.Join(cache, "k3s", DefaultVersion, n)
				if _, err := os.Stat(p); err == nil && sha256File(t, p) != sha256File(t, filepath.Join(standinRelease(t), n)) {
					t.Errorf("unverified %s kept in the cache", p)
				}
			}
		})
	}
}

func TestFetchReleaseUnreachable(t *testing.T) {
	srv := serveRelease(t, DefaultVersion, t.TempDir())
	base := srv.URL
	srv.Close()
	log, _ := testLog(t)
	_, err := Fetch(context.Background(), Source{BaseURL: base}, t.TempDir(), log)
	if err == nil {
		t.Fatal("Fetch succeeded with the server gone")
	}
	for _, w := range []string{base + "/v1.34.9%2Bk3s1/" + ChecksumName, "--k3s-dir DIR", EnvDir + "=DIR"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestFetchRejectsBadInput(t *testing.T) {
	log, _ := testLog(t)
	tests := []struct {
		name    string
		src     Source
		cache   string
		wantErr string
	}{
		{"bad version", Source{Version: "1.34"}, "x", "not a K3s release version"},
		{"unknown kind", Source{Kind: "ftp"}, "x", `k3s.source "ftp"`},
		{"no cache", Source{}, "", "no cache folder"},
		{"dir without folder", Source{Kind: KindDir}, "x", "--k3s-dir DIR"},
		{"dir that is not a folder", Source{Kind: KindDir, Dir: "/nonexistent/k3s"}, "x", "is not a folder"},
		{"empty dir", Source{Kind: KindDir, Dir: t.TempDir()}, "x", "is not a K3s release folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Fetch(context.Background(), tt.src, tt.cache, log)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestDownloadRefusesHTTPSToHTTP: an https release URL redirected to plain
// HTTP is refused before anything is fetched there: the checksum file, the
// only thing the files are verified against, must not come in clear.
func TestDownloadRefusesHTTPSToHTTP(t *testing.T) {
	var plainHits atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainHits.Add(1)
		w.Write([]byte("not reached"))
	}))
	defer plain.Close()
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusFound)
	}))
	defer secure.Close()
	old := httpClient.Transport
	tr := old.(*http.Transport).Clone()
	tr.TLSClientConfig = secure.Client().Transport.(*http.Transport).TLSClientConfig
	httpClient.Transport = tr
	defer func() { httpClient.Transport = old }()
	_, err := Fetch(context.Background(), Source{Kind: KindRelease, BaseURL: secure.URL}, t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "a plain-HTTP download of an https URL is refused") {
		t.Fatalf("Fetch over an https→http redirect = %v, want it refused", err)
	}
	if n := plainHits.Load(); n != 0 {
		t.Errorf("the plain-HTTP server got %d requests, want none", n)
	}
}

// TestDownloadStalls: a server that sends a few bytes and then nothing
// ends the download after stallTimeout, with a message saying so, rather
// than hold the build until Ctrl-C.
func TestDownloadStalls(t *testing.T) {
	defer func(d time.Duration) { stallTimeout = d }(stallTimeout)
	stallTimeout = 300 * time.Millisecond
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte("01234567"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	done := make(chan error, 1)
	go func() {
		_, err := download(context.Background(), srv.URL+"/k3s", io.Discard, 1<<20, slog.New(slog.DiscardHandler))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "nothing came for 300ms after 8 bytes") {
			t.Fatalf("download of a stalled body = %v, want it ended as stalled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the download of a stalled body did not end")
	}
}
