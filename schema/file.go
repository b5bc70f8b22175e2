package schema

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ReadFile reads a document file of at most limit bytes. Anything but a
// regular file (a named pipe, a device such as /dev/zero, a folder) is
// refused before it is read: reading one could block or never end.
func ReadFile(path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not a file: give the path of a YAML file", path, DescribeMode(st.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: these documents are a few KB of YAML — is it the right file?", path, limit)
	}
	return data, nil
}

// DescribeMode names a file type for people ("a named pipe").
func DescribeMode(m fs.FileMode) string {
	switch {
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
