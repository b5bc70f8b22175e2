package schema

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ReadFile reads a document file of at most limit bytes. A folder, a
// socket or a block device is refused before it is read; a named pipe or a
// character device (`--config <(sops -d node.yaml)`, /dev/stdin) is read up
// to the limit, so /dev/zero fails at once.
func ReadFile(path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	m := st.Mode()
	if !m.IsRegular() && m&(fs.ModeNamedPipe|fs.ModeCharDevice) == 0 {
		return nil, fmt.Errorf("%s is %s, not a file: give the path of a YAML file", path, DescribeMode(m))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadLimited(f, path, limit)
}

// ReadLimited reads r (the document at path) to its end, refusing one over
// limit bytes: pointing at a disk image by mistake fails fast instead of
// filling memory.
func ReadLimited(r io.Reader, path string, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: these documents are a few KB of YAML — is it the right file?", path, limit)
	}
	return data, nil
}

// ReadFileContext is ReadFile that gives up when ctx ends (^C): opening a
// named pipe nobody writes to would otherwise wait for ever.
func ReadFileContext(ctx context.Context, path string, limit int64) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := ReadFile(path, limit)
		done <- result{data, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("reading %s: %w", path, ctx.Err())
	}
}

// DescribeMode names a file type for people ("a named pipe").
func DescribeMode(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a file"
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "not a regular file"
}
