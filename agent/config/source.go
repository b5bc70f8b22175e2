package config

import (
	"context"
	"errors"
	"fmt"
	"github.com/etoile-os/etoile/schema"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etoile-os/etoile/agent/tlsroots"
)

// MaxSize bounds a machine config document from any source: real ones are a
// few kilobytes, and a bound keeps a wrong URL or file from filling memory.
const MaxSize = 1 << 20

// DefaultURLTimeout bounds one download when the caller's client has no
// timeout of its own.
const DefaultURLTimeout = 30 * time.Second

// Where the sources live, in the order FirstFound tries them.
const (
	// KernelArg is the kernel argument holding an http(s) URL.
	KernelArg = "etoile.config"
	// VolumeLabel is the filesystem label of a config volume (FAT or
	// ISO9660), like cloud-init's NoCloud "cidata".
	VolumeLabel = "ETOILE-CFG"
	// VolumeFile is the file at the root of that volume.
	VolumeFile = "config.yaml"
	// BootMediumFile is the path on the boot medium (ISO, raw disk ESP or
	// netboot root) where `etoile build --config FILE` puts a config.
	BootMediumFile = "etoile/config.yaml"
	// StateFile is the path on the mounted STATE partition of an installed
	// machine.
	StateFile = "etoile/config.yaml"
	// StateLabel is the GPT partition label of the STATE partition.
	StateLabel = "ETOILE-STATE"
)

// ErrNotFound says a source has no config; FirstFound then tries the next
// one. A Source may also return an error wrapping fs.ErrNotExist.
var ErrNotFound = errors.New("no machine config here")

// Source is one place a machine config may come from.
type Source interface {
	// Name says where, for logs and the agent's status ("kernel argument
	// etoile.config=https://…", "volume ETOILE-CFG").
	Name() string
	// Read returns the document, or an error wrapping ErrNotFound (or
	// fs.ErrNotExist) when this source holds none.
	Read(ctx context.Context) ([]byte, error)
}

// FirstFound reads the sources in order and returns the first document
// found and the Name of its source. A source that has a config but fails to
// deliver it ends the search with that error: falling through to an older
// config would boot the machine as something it was not told to be. When no
// source has one, the error wraps ErrNotFound and lists the places tried.
func FirstFound(ctx context.Context, sources ...Source) (data []byte, from string, err error) {
	var tried []string
	for _, s := range sources {
		if s == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, "", fmt.Errorf("looking for the machine config: %w", err)
		}
		data, err := s.Read(ctx)
		if err == nil {
			return data, s.Name(), nil
		}
		if errors.Is(err, ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			tried = append(tried, s.Name())
			continue
		}
		return nil, s.Name(), fmt.Errorf("reading the machine config from %s: %w", s.Name(), err)
	}
	if len(tried) == 0 {
		return nil, "", fmt.Errorf("%w: no source to look in", ErrNotFound)
	}
	return nil, "", fmt.Errorf("%w: looked in %s", ErrNotFound, strings.Join(tried, "; "))
}

// URLSource is the etoile.config= kernel argument. An empty URL means the
// argument was not given: Read reports ErrNotFound.
type URLSource struct {
	URL string
	// Client is the HTTP client to use; nil uses one with DefaultURLTimeout.
	Client *http.Client
}

// Name implements Source; the URL is shown without credentials or query.
func (s URLSource) Name() string {
	return "kernel argument " + KernelArg + "=" + redactURL(s.URL)
}

// Read implements Source.
func (s URLSource) Read(ctx context.Context) ([]byte, error) {
	if s.URL == "" {
		return nil, fmt.Errorf("%w: kernel argument %s= not given", ErrNotFound, KernelArg)
	}
	return FromURL(ctx, s.URL, s.Client)
}

// FromURL downloads a machine config over http or https: at most MaxSize
// bytes, within client.Timeout or, when the client has none, within
// DefaultURLTimeout. Any answer other than 200 OK is an error naming the
// status. Redirects are followed (a release asset's 302 to another host),
// except one from https to http; an error after a redirect names where it
// led, its query (a signature) hidden as the URL's is.
//
// Plain http is accepted because provisioning networks often have no PKI,
// but a config holds the cluster token: prefer https.
func FromURL(ctx context.Context, rawURL string, client *http.Client) ([]byte, error) {
	shown := redactURL(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		// Not err itself: a *url.Error repeats the whole URL, its
		// password and query included, on every console.
		return nil, fmt.Errorf("machine config URL %q is not a URL: %w", shown, withoutURL(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("machine config URL %q: only http:// and https:// are supported, not %q", shown, u.Scheme+":")
	}
	if u.Host == "" {
		return nil, fmt.Errorf("machine config URL %q has no host", shown)
	}
	// The node has no CA bundle of its own; also for a redirect to https.
	client = tlsroots.ForURL(client, u.String()) // a copy: its CheckRedirect is ours to wrap
	// Where redirects led (a release asset's 302 to a signed URL on another
	// host), so that an error names the server that failed — and a refused
	// one, with its query (the signature) hidden.
	var redirected *url.URL
	check := client.CheckRedirect
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > 0 && via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
			// tlsroots refuses it too; this says why for a config.
			return fmt.Errorf("refused the redirect to %s: it leaves https, and a machine config holds the cluster token", redactURL(req.URL.String()))
		}
		if err := check(req, via); err != nil {
			return err
		}
		redirected = req.URL
		return nil
	}
	where := func() string {
		if redirected == nil {
			return shown
		}
		return shown + " (redirected to " + redactURL(redirected.String()) + ")"
	}
	timeout := client.Timeout
	if timeout == 0 {
		timeout = DefaultURLTimeout
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("machine config URL %q: %w", shown, withoutURL(err))
	}
	req.Header.Set("Accept", "application/yaml, text/yaml, text/plain, */*")
	resp, err := client.Do(req)
	if err != nil {
		// url.Error repeats the full URL, query (a signed URL's token)
		// included; the URL is already shown redacted.
		return nil, fmt.Errorf("downloading the machine config from %s: %w", where(), describeNetErr(withoutURL(err), timeout))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("downloading the machine config from %s: the server answered %s: check the URL in %s=", where(), resp.Status, KernelArg)
	}
	if resp.ContentLength > MaxSize {
		return nil, fmt.Errorf("downloading the machine config from %s: it is %d bytes, more than the %d allowed: is this the right URL?", where(), resp.ContentLength, MaxSize)
	}
	data, err := readLimited(resp.Body, where())
	if err != nil {
		return nil, fmt.Errorf("downloading the machine config: %w", describeNetErr(err, timeout))
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("downloading the machine config from %s: the server sent an empty body", where())
	}
	return data, nil
}

func describeNetErr(err error, timeout time.Duration) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("no complete answer within %s (check the network and the server): %w", timeout, err)
	}
	return err
}

// readLimited reads everything up to MaxSize and fails beyond it.
func readLimited(r io.Reader, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%s is larger than the %d bytes allowed for a machine config: is it the right file?", what, MaxSize)
	}
	return data, nil
}

// withoutURL is what a *url.Error says went wrong, without the URL it
// repeats (with its password and query, which messages never show: they
// name the URL through redactURL); other errors are returned as they are.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// redactURL drops credentials and the query (which may carry a token) from
// a URL shown in logs and errors.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Shown as far as url.Parse would split it, so that the user
		// sees which URL is meant and where it is wrong.
		scheme, user, host, path, ok := urlParts(raw)
		if !ok {
			return "(unparsable URL)"
		}
		if user {
			host = "xxxxx@" + host
		}
		return scheme + "://" + host + path
	}
	if u.Opaque != "" { // http:user:password@host: no host to show
		return u.Scheme + ":xxxxx"
	}
	if u.User != nil {
		u.User = url.User("xxxxx")
	}
	if u.RawQuery != "" {
		u.RawQuery = "xxxxx"
	}
	if u.Fragment != "" {
		u.Fragment = "xxxxx"
	}
	return u.String()
}

// FileSource reads one regular file; a missing file (or folder) is
// ErrNotFound. Anything else at the path (a folder, a named pipe, a device)
// is an error wrapping ErrNotRegularFile, found before the file is opened.
// The agent mounts the volume or partition and points a FileSource at it;
// finding and mounting block devices is the agent's job, not this package's.
type FileSource struct {
	Path string
	// Desc names the source for people ("volume ETOILE-CFG"); the path is
	// appended.
	Desc string
	// Root, when set, is the mounted volume Path is on: the file is read
	// only from inside it — a symbolic link on the medium that leads out
	// of it (to /proc/kmsg, which never ends, or a file of the agent's
	// own) is refused.
	Root string
}

// VolumeSource is config.yaml at the root of the ETOILE-CFG volume mounted
// at dir.
func VolumeSource(dir string) FileSource {
	return FileSource{Path: filepath.Join(dir, VolumeFile), Desc: "volume " + VolumeLabel, Root: dir}
}

// BootMediumSource is /etoile/config.yaml on the boot medium mounted at dir.
func BootMediumSource(dir string) FileSource {
	return FileSource{Path: filepath.Join(dir, BootMediumFile), Desc: "boot medium", Root: dir}
}

// StateSource is the config saved on the STATE partition mounted at dir.
func StateSource(dir string) FileSource {
	return FileSource{Path: filepath.Join(dir, StateFile), Desc: "state partition", Root: dir}
}

// Name implements Source.
func (s FileSource) Name() string {
	if s.Desc == "" {
		return s.Path
	}
	return s.Desc + " (" + s.Path + ")"
}

// Read implements Source.
func (s FileSource) Read(ctx context.Context) ([]byte, error) {
	if s.Path == "" {
		return nil, fmt.Errorf("%w: %s not mounted", ErrNotFound, s.Desc)
	}
	stat := func() (fs.FileInfo, error) { return os.Stat(s.Path) }
	open := func() (*os.File, error) { return os.Open(s.Path) }
	if s.Root != "" {
		// From inside the volume: links are followed only where they
		// stay on it.
		rel, err := filepath.Rel(s.Root, s.Path)
		if err != nil {
			return nil, err
		}
		root, err := os.OpenRoot(s.Root)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, s.Path)
		}
		if err != nil {
			return nil, err
		}
		defer root.Close()
		stat = func() (fs.FileInfo, error) { return root.Stat(rel) }
		open = func() (*os.File, error) { return root.Open(rel) }
	}
	st, err := stat()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s", ErrNotFound, s.Path)
	case err != nil && s.Root != "" && strings.Contains(err.Error(), "escapes"):
		return nil, fmt.Errorf("%s is a link that leads out of the %s: the machine config must be a file on it: %w", s.Path, s.Desc, ErrNotRegularFile)
	case err != nil:
		return nil, err
	case st.IsDir():
		return nil, fmt.Errorf("%s is a folder, not a machine config file: %w", s.Path, ErrNotRegularFile)
	case !st.Mode().IsRegular():
		// Reading a named pipe would wait for a writer, a device read
		// until its end: refuse them before opening.
		return nil, fmt.Errorf("%s is %s, not a machine config file: %w", s.Path, schema.DescribeMode(st.Mode()), ErrNotRegularFile)
	}
	f, err := open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return schema.ReadLimited(f, s.Path, MaxSize)
}

// ErrNotRegularFile is wrapped by FileSource's error for a path that is a
// folder, a named pipe, a device or a socket.
var ErrNotRegularFile = errors.New("give the path of a regular file")
