package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFromURL(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	mux := http.NewServeMux()
	mux.HandleFunc("/good.yaml", func(w http.ResponseWriter, r *http.Request) { w.Write(Example()) })
	mux.HandleFunc("/empty.yaml", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/huge-declared", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(MaxSize+1))
		w.Write(bytes.Repeat([]byte("#"), MaxSize+1))
	})
	mux.HandleFunc("/huge-chunked", func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: only the read limit can stop it.
		chunk := bytes.Repeat([]byte("#"), 64<<10)
		for i := 0; i < 2*MaxSize/len(chunk); i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	fast := &http.Client{Timeout: 300 * time.Millisecond}

	t.Run("good", func(t *testing.T) {
		data, err := FromURL(context.Background(), srv.URL+"/good.yaml", nil)
		if err != nil || !bytes.Equal(data, Example()) {
			t.Fatalf("got %d bytes, %v", len(data), err)
		}
	})
	for _, tc := range []struct {
		name, url string
		client    *http.Client
		want      []string
	}{
		{"404", srv.URL + "/missing.yaml", nil, []string{"404 Not Found", "/missing.yaml", KernelArg}},
		{"empty body", srv.URL + "/empty.yaml", nil, []string{"empty body"}},
		{"too large, declared", srv.URL + "/huge-declared", nil, []string{"more than the 1048576 allowed"}},
		{"too large, chunked", srv.URL + "/huge-chunked", nil, []string{"larger than the 1048576 bytes"}},
		{"slow", srv.URL + "/slow", fast, []string{"no complete answer within 300ms"}},
		{"file scheme", "file:///etc/passwd", nil, []string{"only http:// and https://", `"file:"`}},
		{"tftp scheme", "tftp://10.0.0.1/config.yaml", nil, []string{"only http:// and https://"}},
		{"no host", "http:///config.yaml", nil, []string{"no host"}},
		{"credentials hidden", "ftp://user:pw@host/x?token=abc", nil, []string{"only http"}},
		{"refused, query hidden", "http://user:pw@127.0.0.1:1/x?token=abc", nil, []string{"connection refused", "127.0.0.1:1/x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromURL(context.Background(), tc.url, tc.client)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, secret := range []string{"pw@", "token=abc"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows %q: %v", secret, err)
				}
			}
		})
	}
	t.Run("context deadline without client timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := FromURL(ctx, srv.URL+"/slow", nil)
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want a deadline error", err)
		}
	})
}

type fakeSource struct {
	name string
	data []byte
	err  error
	read *int
}

func (f fakeSource) Name() string { return f.name }
func (f fakeSource) Read(ctx context.Context) ([]byte, error) {
	if f.read != nil {
		*f.read++
	}
	return f.data, f.err
}

func TestFirstFound(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	vol := filepath.Join(dir, "cfgvol")
	boot := filepath.Join(dir, "boot")
	state := filepath.Join(dir, "state")
	for _, d := range []string{vol, filepath.Join(boot, "etoile"), filepath.Join(state, "etoile")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(boot, BootMediumFile), "boot")
	write(filepath.Join(state, StateFile), "state")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/c.yaml" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("url"))
	}))
	t.Cleanup(srv.Close)

	sources := func(url string) []Source {
		return []Source{URLSource{URL: url}, VolumeSource(vol), BootMediumSource(boot), StateSource(state)}
	}

	// No kernel argument, no volume: the boot medium's config wins over the state's.
	data, from, err := FirstFound(ctx, sources("")...)
	if err != nil || string(data) != "boot" || !strings.Contains(from, "boot medium") {
		t.Errorf("got %q from %q, %v", data, from, err)
	}
	// The volume comes before the boot medium.
	write(filepath.Join(vol, VolumeFile), "volume")
	data, from, _ = FirstFound(ctx, sources("")...)
	if string(data) != "volume" || !strings.Contains(from, VolumeLabel) {
		t.Errorf("got %q from %q", data, from)
	}
	// The kernel argument comes first of all.
	data, from, _ = FirstFound(ctx, sources(srv.URL+"/c.yaml")...)
	if string(data) != "url" || !strings.Contains(from, "etoile.config="+srv.URL) {
		t.Errorf("got %q from %q", data, from)
	}
	// A source that has a config but fails stops the search: no fallback
	// to an older config.
	_, from, err = FirstFound(ctx, sources(srv.URL+"/gone.yaml")...)
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(from, "etoile.config=") {
		t.Errorf("a failing URL gave from %q, %v", from, err)
	}
	// A source after a found one is not read.
	reads := 0
	if _, _, err := FirstFound(ctx, fakeSource{name: "a", data: []byte("a")}, fakeSource{name: "b", data: []byte("b"), read: &reads}); err != nil || reads != 0 {
		t.Errorf("later source read %d times, %v", reads, err)
	}
	// fs.ErrNotExist from another package's Source counts as not found.
	data, _, err = FirstFound(ctx, fakeSource{name: "x", err: fmt.Errorf("open: %w", fs.ErrNotExist)}, fakeSource{name: "y", data: []byte("y")})
	if err != nil || string(data) != "y" {
		t.Errorf("got %q, %v", data, err)
	}
	// Nothing anywhere: the error lists where it looked.
	empty := t.TempDir()
	_, _, err = FirstFound(ctx, URLSource{}, VolumeSource(filepath.Join(empty, "none")), BootMediumSource(empty), StateSource(empty), nil)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	for _, w := range []string{"etoile.config=", "volume ETOILE-CFG", "boot medium", "state partition"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not list %q", err, w)
		}
	}
	// A folder where the file should be is an error, not "not found".
	if err := os.MkdirAll(filepath.Join(empty, "etoile", "config.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := FirstFound(ctx, BootMediumSource(empty)); err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "is a folder") {
		t.Errorf("folder gave %v", err)
	}
	// A cancelled context stops before reading.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := FirstFound(cctx, fakeSource{name: "a", data: []byte("a")}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context gave %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	got := URLSource{URL: "https://user:pw@cfg.example/x.yaml?sig=abc"}.Name()
	if strings.Contains(got, "pw") || strings.Contains(got, "abc") || !strings.Contains(got, "cfg.example/x.yaml") {
		t.Errorf("Name() = %q", got)
	}
	for in, want := range map[string]string{
		"https://user:pw@cfg.example.com/node.yaml?token=abc#frag": "https://xxxxx@cfg.example.com/node.yaml?xxxxx#xxxxx",
		"http:user:pw@cfg.example.com/node.yaml":                   "http:xxxxx", // opaque: no host
		"http://10.0.2.2:8080/config.yaml":                         "http://10.0.2.2:8080/config.yaml",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestUnparsableURLHidesItsPassword: a URL url.Parse refuses (a bad
// escape, a bad port) is named without its password, and url.Parse's
// error, which repeats the whole URL, is not passed on: the message
// reaches every console.
func TestUnparsableURLHidesItsPassword(t *testing.T) {
	for in, want := range map[string]string{
		"https://bob:s3cret@cfg.example/%zz/node.yaml": `machine config URL "https://xxxxx@cfg.example/%zz/node.yaml" is not a URL: invalid URL escape "%zz"`,
		"https://bob:s3cret@cfg.example:99x/node.yaml": `machine config URL "https://xxxxx@cfg.example:99x/node.yaml" is not a URL: invalid port ":99x" after host`,
		"https://cfg.example/%zz?token=s3cret":         `machine config URL "https://cfg.example/%zz" is not a URL`,
	} {
		_, _, err := FirstFound(context.Background(), URLSource{URL: in})
		if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q and no password", in, err, want)
		}
	}
}

// TestFileSourceNotRegular: a named pipe would block the read until a writer
// came (config validate hung, deaf to ^C) and a device would be read to its
// end; both are refused, naming the path and what it is, before opening.
func TestFileSourceNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "config.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	for _, tc := range []struct{ path, want string }{
		{fifo, "a named pipe"},
		{os.DevNull, "a character device"},
		{dir, "a folder"},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := FileSource{Path: tc.path}.Read(context.Background())
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || errors.Is(err, ErrNotFound) || !errors.Is(err, ErrNotRegularFile) ||
				!strings.Contains(err.Error(), tc.path+" is "+tc.want) {
				t.Errorf("%s gave %v, want an error saying it is %s", tc.path, err, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("reading %s hangs", tc.path)
		}
	}
	// Through a symbolic link too.
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	if _, err := (FileSource{Path: link}).Read(context.Background()); !errors.Is(err, ErrNotRegularFile) {
		t.Errorf("a link to a named pipe gave %v", err)
	}
}

// TestVolumeSourceStaysOnItsVolume: config.yaml on a medium that is a
// symbolic link out of it (to /proc/kmsg, whose read never ends, or to a
// file of the agent's) is refused, naming the link; a link that stays on
// the volume is followed; a named pipe there is refused before opening.
func TestVolumeSourceStaysOnItsVolume(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret.yaml")
	if err := os.WriteFile(outside, []byte("role: server\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]func(string) FileSource{"volume": VolumeSource, "boot medium": BootMediumSource, "state": StateSource} {
		vol := t.TempDir()
		s := src(vol)
		if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, s.Path); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Read(context.Background()); !errors.Is(err, ErrNotRegularFile) || !strings.Contains(err.Error(), "leads out of") {
			t.Errorf("%s: config.yaml linked out of the volume gave %v", name, err)
		}
		os.Remove(s.Path)
		inside := filepath.Join(vol, "real.yaml")
		if err := os.WriteFile(inside, []byte("role: agent\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(filepath.Dir(s.Path), inside)
		if err := os.Symlink(rel, s.Path); err != nil {
			t.Fatal(err)
		}
		if data, err := s.Read(context.Background()); err != nil || string(data) != "role: agent\n" {
			t.Errorf("%s: a link on the volume gave %q, %v", name, data, err)
		}
		os.Remove(s.Path)
		if err := syscall.Mkfifo(s.Path, 0o600); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := s.Read(context.Background()); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegularFile) || !strings.Contains(err.Error(), "a named pipe") {
				t.Errorf("%s: a named pipe gave %v", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: reading a named pipe hangs", name)
		}
		os.Remove(s.Path)
		if _, err := s.Read(context.Background()); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: no config.yaml gave %v, want not found", name, err)
		}
	}
}
