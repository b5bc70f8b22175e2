package kmsg

import (
	"bytes"
	"slices"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// maxRecords is how many of the newest records a read keeps.
const maxRecords = 100000

// Read returns the records the kernel's log (path, normally /dev/kmsg)
// holds now, oldest first (the newest maxRecords of them), without waiting
// for more.
func Read(path string) ([]Record, error) {
	fd, err := open(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return readAll(fd)
}

// Tail reads the records the kernel logs from the moment it was opened.
type Tail struct{ fd int }

// OpenTail opens the kernel's log (path, normally /dev/kmsg) after its
// newest record: Read then returns only what came since, whatever the
// records' timestamps say.
func OpenTail(path string) (*Tail, error) {
	fd, err := open(path)
	if err != nil {
		return nil, err
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Tail{fd: fd}, nil
}

// Read returns the records logged since OpenTail or the last Read, oldest
// first (the newest maxRecords of them), without waiting for more.
func (t *Tail) Read() ([]Record, error) { return readAll(t.fd) }

// Close closes the log.
func (t *Tail) Close() error { return unix.Close(t.fd) }

func open(path string) (int, error) {
	return unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
}

// readAll reads records from fd until none is left (one record per read).
func readAll(fd int) ([]Record, error) {
	var raw [][]byte
	newest := func() []Record { return ParseAll(raw[max(0, len(raw)-maxRecords):]) }
	buf := make([]byte, 8192)
	for reads := 0; reads < 10*maxRecords; reads++ {
		if len(raw) == 2*maxRecords {
			raw = append(raw[:0:0], raw[maxRecords:]...)
		}
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EPIPE: // overwritten while reading: go on from the next
			continue
		case err == unix.EAGAIN: // nothing more for now
			return newest(), nil
		case err != nil:
			return newest(), err
		case n <= 0:
			return newest(), nil
		}
		raw = append(raw, bytes.Clone(buf[:n]))
	}
	return newest(), nil
}

// Follower keeps the newest records of the kernel's log, read as they come
// through one descriptor kept open: each read takes only what is new.
type Follower struct {
	mu   sync.Mutex
	fd   int
	recs []Record // oldest first, max at most
	max  int
}

// OpenFollower opens the kernel's log (path, normally /dev/kmsg) from its
// oldest record, to keep the newest max of them.
func OpenFollower(path string, max int) (*Follower, error) {
	fd, err := open(path)
	if err != nil {
		return nil, err
	}
	return &Follower{fd: fd, max: max}, nil
}

// Since returns the records held whose sequence number is after-1 or more
// (after 0: every one held), oldest first, having read what is new.
func (f *Follower) Since(after uint64) ([]Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fresh, err := readAll(f.fd)
	f.recs = append(f.recs, fresh...)
	if len(f.recs) > f.max {
		f.recs = append([]Record(nil), f.recs[len(f.recs)-f.max:]...)
	}
	i := sort.Search(len(f.recs), func(i int) bool { return f.recs[i].Seq+1 > after })
	return slices.Clone(f.recs[i:]), err
}
