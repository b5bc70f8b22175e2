package kmod

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// Loader puts one module file into the kernel. It is the seam between the
// matching logic and the init_module syscalls, so that `etoile-agent agent
// --root DIR` and tests record loads instead of making them.
type Loader interface {
	// Load loads the module file at path (absolute). A module that is
	// already loaded is not an error.
	Load(name, path string) error
}

// ParamLoader is a Loader that can pass module parameters ("async_probe").
type ParamLoader interface {
	LoadParams(name, path, params string) error
}

// Preparer is a Loader that reads (and decompresses) a module apart from
// putting it into the kernel, so that Coldplug can run the two at different
// CPU priorities: the first is Go code, which runs at the usual priority (a
// low-priority thread holding the Go scheduler would stall the whole agent);
// the second, the kernel's share of a load (signature check, relocation, the
// module's init), at the load's own priority.
type Preparer interface {
	Prepare(name, path string) (Prepared, error)
}

// Prepared puts a module read by Prepare into the kernel with parameters.
type Prepared func(params string) error

// SyscallLoader loads modules into the running kernel.
type SyscallLoader struct{}

// Load uses finit_module for a plain .ko so the kernel reads (and, if it
// enforces signatures, checks) the file itself; compressed modules are
// decompressed here and passed with init_module, because not every kernel
// is built with in-kernel module decompression.
func (l SyscallLoader) Load(name, path string) error { return l.LoadParams(name, path, "") }

// LoadParams loads with module parameters, as modprobe passes them
// ("async_probe" is understood by every module of a 4.2+ kernel).
func (l SyscallLoader) LoadParams(name, path, params string) error {
	load, err := l.Prepare(name, path)
	if err != nil {
		return err
	}
	return load(params)
}

// Prepare reads and decompresses a compressed module; a plain .ko is read
// by the kernel itself when the returned function runs.
func (SyscallLoader) Prepare(name, path string) (Prepared, error) {
	done := func(err error) error {
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		if err != nil {
			return &LoadError{Module: name, Path: path, Err: err}
		}
		return nil
	}
	if strings.HasSuffix(path, ".ko") {
		return func(params string) error {
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("opening module %s: %w", name, err)
			}
			defer f.Close()
			return done(unix.FinitModule(int(f.Fd()), params, 0))
		}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening module %s: %w", name, err)
	}
	defer f.Close()
	image, err := decompress(path, f)
	if err != nil {
		return nil, fmt.Errorf("decompressing module %s (%s): %w", name, path, err)
	}
	return func(params string) error { return done(unix.InitModule(image, params)) }, nil
}

// zstdDecoder is shared by every module load; DecodeAll runs up to four at once.
var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(4), zstd.WithDecoderMaxMemory(256<<20))
})

func decompress(path string, r io.Reader) ([]byte, error) {
	var zr io.Reader
	switch {
	case strings.HasSuffix(path, ".xz"):
		x, err := xz.NewReader(r)
		if err != nil {
			return nil, err
		}
		zr = x
	case strings.HasSuffix(path, ".zst"):
		// The initramfs's modules are .ko.zst: one shared decoder, and
		// the whole (small) file decoded at once into a buffer of the
		// size its frame records.
		d, err := zstdDecoder()
		if err != nil {
			return nil, err
		}
		src, err := io.ReadAll(io.LimitReader(r, 256<<20))
		if err != nil {
			return nil, err
		}
		return d.DecodeAll(src, nil)
	case strings.HasSuffix(path, ".gz"):
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		zr = g
	default:
		return nil, fmt.Errorf("unknown module compression (want .ko, .ko.xz, .ko.zst or .ko.gz)")
	}
	var buf bytes.Buffer
	// Kernel modules are at most a few tens of MiB; bound it so a corrupt
	// file cannot eat the initramfs's memory.
	if _, err := io.Copy(&buf, io.LimitReader(zr, 256<<20)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Recorder is a Loader that only remembers what it was asked to load, in order.
type Recorder struct {
	mu     sync.Mutex
	Loads  []string // module names
	Params map[string]string
	Fail   map[string]error
}

// Load records name; it returns Fail[name] when set, to test error paths.
func (r *Recorder) Load(name, path string) error { return r.LoadParams(name, path, "") }

// LoadParams records name, and name with its parameters in Params.
func (r *Recorder) LoadParams(name, path, params string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.Fail[name]; err != nil {
		return err
	}
	r.Loads = append(r.Loads, name)
	if params != "" {
		if r.Params == nil {
			r.Params = map[string]string{}
		}
		r.Params[name] = params
	}
	return nil
}

// Loaded returns a copy of the names loaded so far.
func (r *Recorder) Loaded() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.Loads...)
}
