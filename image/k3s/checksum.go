package k3s

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxChecksumFile bounds the checksum file we read; K3s's is under 2 KiB.
const maxChecksumFile = 1 << 20

// parseChecksums reads a sha256sum(1) listing ("HEX  NAME" or "HEX *NAME"
// per line) into name -> lower-case hex. A name listed twice with different
// sums, a malformed hash or a path in a name is an error: the file is the
// trust anchor of a release, so nothing in it is guessed.
func parseChecksums(data []byte) (map[string]string, error) {
	if len(data) > maxChecksumFile {
		return nil, fmt.Errorf("checksum file is %d bytes, more than the %d a K3s release's has", len(data), maxChecksumFile)
	}
	sums := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxChecksumFile)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		hash, name, ok := strings.Cut(line, " ")
		if !ok || len(hash) != sha256.Size*2 {
			return nil, fmt.Errorf("line %d %q: want \"<64 hex digits>  <file name>\"", n, line)
		}
		if _, err := hex.DecodeString(hash); err != nil {
			return nil, fmt.Errorf("line %d: %q is not a hex SHA-256", n, hash)
		}
		// sha256sum writes " " then "*" (binary) or " " (text) before the name.
		if strings.HasPrefix(name, "*") || strings.HasPrefix(name, " ") {
			name = name[1:]
		}
		if name == "" || strings.ContainsAny(name, "/\\\x00") || name == "." || name == ".." {
			return nil, fmt.Errorf("line %d: file name %q is empty or holds a path", n, name)
		}
		hash = strings.ToLower(hash)
		if prev, dup := sums[name]; dup && prev != hash {
			return nil, fmt.Errorf("line %d: %s is listed twice with different sums", n, name)
		}
		sums[name] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return sums, nil
}

// hashFile returns the SHA-256 of a regular file as lower-case hex.
func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s: %w", path, errNotRegular)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkFile verifies path against the sum listed for name.
func checkFile(path, name string, sums map[string]string) (string, error) {
	want, ok := sums[name]
	if !ok {
		return "", fmt.Errorf("%s does not list %s", ChecksumName, name)
	}
	got, err := hashFile(path)
	if err != nil {
		return "", err
	}
	if got != want {
		return "", fmt.Errorf("%s has SHA-256 %s but %s lists %s", path, got, ChecksumName, want)
	}
	return got, nil
}
