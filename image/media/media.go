// Package media writes Étoile's boot media — the system squashfs, FAT images,
// the hybrid ISO and the raw GPT disk — entirely in Go on top of go-diskfs.
//
// go-diskfs stamps the current time, the build user's ids and random GUIDs or
// volume ids into what it writes. Each writer here either passes options that
// fix them or rewrites the affected bytes afterwards in one named function
// (normalizeFAT, normalizeISO, …), so the same inputs always give the same
// bytes. Every writer builds dst+".tmp" next to dst and renames it only when
// complete, so dst is never left half written.
package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// File is one file placed into a FAT or ISO filesystem.
type File struct {
	// Path is absolute inside the filesystem, e.g. "/EFI/BOOT/BOOTX64.EFI".
	Path string
	// Source is a host file to copy; ignored when Data is not nil.
	Source string
	// Data is the inline content, used instead of Source when not nil.
	Data []byte
	// Mode holds the permission bits recorded where the filesystem keeps
	// them (Rock Ridge); 0 means 0644.
	Mode fs.FileMode
}

// open returns the file's content and size.
func (f File) open() (io.ReadCloser, int64, error) {
	if f.Data != nil {
		return io.NopCloser(bytes.NewReader(f.Data)), int64(len(f.Data)), nil
	}
	if f.Source == "" {
		return nil, 0, fmt.Errorf("file %q has neither Data nor Source: set one of them", f.Path)
	}
	h, err := os.Open(f.Source)
	if err != nil {
		return nil, 0, fmt.Errorf("open source %q for %q: %w", f.Source, f.Path, err)
	}
	st, err := h.Stat()
	if err != nil {
		h.Close()
		return nil, 0, fmt.Errorf("stat source %q for %q: %w", f.Source, f.Path, err)
	}
	if !st.Mode().IsRegular() {
		h.Close()
		return nil, 0, fmt.Errorf("source %q for %q is not a regular file", f.Source, f.Path)
	}
	return h, st.Size(), nil
}

// size returns the file's content size without reading it.
func (f File) size() (int64, error) {
	if f.Data != nil {
		return int64(len(f.Data)), nil
	}
	st, err := os.Stat(f.Source)
	if err != nil {
		return 0, fmt.Errorf("stat source %q for %q: %w", f.Source, f.Path, err)
	}
	return st.Size(), nil
}

func (f File) mode() fs.FileMode {
	if f.Mode&fs.ModePerm == 0 {
		return 0o644
	}
	return f.Mode & fs.ModePerm
}

// cleanFiles validates the paths and returns the files sorted by path, so the
// order the caller listed them in never changes the output.
func cleanFiles(files []File) ([]File, error) {
	out := make([]File, len(files))
	seen := map[string]bool{}
	for i, f := range files {
		if !strings.HasPrefix(f.Path, "/") {
			return nil, fmt.Errorf("file path %q must be absolute (start with /)", f.Path)
		}
		p := path.Clean(f.Path)
		if p == "/" || strings.Contains(p, "\x00") {
			return nil, fmt.Errorf("file path %q does not name a file", f.Path)
		}
		if seen[p] {
			return nil, fmt.Errorf("file path %q is listed twice", p)
		}
		seen[p] = true
		f.Path = p
		out[i] = f
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// atomicFile creates dst+".tmp" and returns it with a commit function that
// syncs, closes and renames it over dst, and a cleanup that removes the
// temporary file unless commit succeeded.
func atomicFile(dst string) (f *os.File, commit func() error, cleanup func(), err error) {
	if dst == "" {
		return nil, nil, nil, errors.New("destination path is empty: give the output file name")
	}
	tmp := dst + ".tmp"
	f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create %q: %w (check that the output folder exists and is writable)", tmp, err)
	}
	done := false
	commit = func() error {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %q: %w", tmp, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("close %q: %w", tmp, err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			return fmt.Errorf("rename %q to %q: %w", tmp, dst, err)
		}
		done = true
		return nil
	}
	cleanup = func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}
	return f, commit, cleanup, nil
}

// epochTime returns the build time, the Unix epoch for negative values.
func epochTime(epoch int64) time.Time {
	if epoch < 0 {
		epoch = 0
	}
	return time.Unix(epoch, 0).UTC()
}

// derivedGUID returns a stable RFC 4122 version-5-style GUID (SHA-256 based,
// truncated) from a seed and a name, so partition and disk GUIDs depend only
// on the inputs.
func derivedGUID(seed, name string) string {
	h := sha256.Sum256([]byte(seed + "\x00" + name))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// guidBytes encodes a GUID string in the mixed-endian on-disk form GPT uses.
func guidBytes(s string) ([16]byte, error) {
	var out [16]byte
	hexs := strings.ReplaceAll(s, "-", "")
	if len(hexs) != 32 || len(s) != 36 {
		return out, fmt.Errorf("GUID %q is not in the form XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX", s)
	}
	var raw [16]byte
	for i := 0; i < 16; i++ {
		var v byte
		if _, err := fmt.Sscanf(hexs[2*i:2*i+2], "%02x", &v); err != nil {
			return out, fmt.Errorf("GUID %q has a bad hex digit near position %d", s, 2*i)
		}
		raw[i] = v
	}
	out = raw
	out[0], out[1], out[2], out[3] = raw[3], raw[2], raw[1], raw[0]
	out[4], out[5] = raw[5], raw[4]
	out[6], out[7] = raw[7], raw[6]
	return out, nil
}

// stageFiles writes files into a host folder (the go-diskfs ISO workspace),
// stopping when ctx is done.
func stageFiles(ctx context.Context, dir string, files []File) error {
	for _, f := range files {
		if err := stopped(ctx, fmt.Sprintf("stage %q", f.Path)); err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("stage %q: %w", f.Path, err)
		}
		if err := copyInto(ctx, dst, f); err != nil {
			return err
		}
	}
	return nil
}

// copyInto copies a File into a new host file, stopping when ctx is done;
// copyCtx between two *os.File uses copy_file_range, so large files are
// copied in the kernel.
func copyInto(ctx context.Context, dst string, f File) error {
	r, _, err := f.open()
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, f.mode())
	if err != nil {
		return fmt.Errorf("stage %q: %w", f.Path, err)
	}
	if _, err := copyCtx(ctx, w, r); err != nil {
		w.Close()
		return fmt.Errorf("stage %q from %q: %w", f.Path, f.Source, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("stage %q: %w", f.Path, err)
	}
	return os.Chmod(dst, f.mode())
}

func roundUp(v, to int64) int64 { return (v + to - 1) / to * to }
