package sysimage

import (
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"strings"

	"github.com/etoile-os/etoile/internal/devread"
)

// fsEntry is what the unmounted readers (ReadFATFile, ReadISOFile) know of
// a folder entry.
type fsEntry interface {
	isDir() bool
	length() int64
}

// readDevice opens dev, a block device or image file, for read.
func readDevice(dev, what string, read func(io.ReaderAt) ([]byte, error)) ([]byte, error) {
	var data []byte
	err := DeviceReads.Do(dev, what, func() error {
		f, err := os.Open(dev)
		if err != nil {
			return err
		}
		defer f.Close()
		data, err = read(f)
		return err
	})
	if err != nil {
		// Not data: after a time-out (devread.HungError) the read that is
		// still blocked may yet write it.
		return nil, err
	}
	return data, nil
}

// DeviceReads bounds every read of a device in this package (the medium's
// and the config's search, the ESP's and config volume's files): a
// failing disk can hold a read for minutes. The boot sets its wait and
// the console warning of a device skipped.
var DeviceReads devread.Reads

// walkFile finds the file at name from root, folder by folder with lookup,
// and reads it with read once it is known to be a file within limit bytes.
// A missing folder or file is an error wrapping fs.ErrNotExist.
func walkFile[E fsEntry](dev, name string, limit int64, root E, lookup func(dir E, part string) (E, bool, error), read func(E) ([]byte, error)) ([]byte, error) {
	cur := root
	walked := ""
	for _, part := range strings.Split(strings.Trim(name, "/"), "/") {
		walked += "/" + part
		if !cur.isDir() {
			return nil, fmt.Errorf("%w: %s on %s (a file on the way)", iofs.ErrNotExist, walked, dev)
		}
		e, ok, err := lookup(cur, part)
		if err != nil {
			return nil, fmt.Errorf("%s: reading %s: %w", dev, walked, err)
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s on %s", iofs.ErrNotExist, walked, dev)
		}
		cur = e
	}
	if cur.isDir() {
		return nil, fmt.Errorf("%s on %s is a folder", walked, dev)
	}
	if cur.length() > limit {
		return nil, fmt.Errorf("%s on %s is larger than %d bytes", walked, dev, limit)
	}
	data, err := read(cur)
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", dev, walked, err)
	}
	return data, nil
}
