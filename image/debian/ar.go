package debian

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A .deb is a Unix ar archive ("!<arch>\n" then 60-byte member headers). The
// format is small enough that a reader here costs less than a dependency, and
// it only ever sees three members: debian-binary, control.tar.*, data.tar.*.

const (
	arMagic      = "!<arch>\n"
	arHeaderSize = 60
	// maxMemberName bounds the GNU long-name table we are willing to hold.
	maxMemberName = 4096
)

// errNotAr reports input that does not start with the ar magic.
var errNotAr = errors.New("not an ar archive (a .deb starts with \"!<arch>\")")

type arReader struct {
	r       *bufio.Reader
	pending int64 // bytes of the current member not yet consumed, plus padding
	cur     *io.LimitedReader
}

type arMember struct {
	Name string
	Size int64
}

func newArReader(r io.Reader) (*arReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic := make([]byte, len(arMagic))
	if _, err := io.ReadFull(br, magic); err != nil {
		return nil, fmt.Errorf("reading ar magic: %w", errNotAr)
	}
	if string(magic) != arMagic {
		return nil, errNotAr
	}
	return &arReader{r: br}, nil
}

// Next skips what is left of the current member and returns the next header;
// io.EOF at the end of the archive. Read the member's data from ar.Data().
func (a *arReader) Next() (*arMember, error) {
	if a.cur != nil {
		if _, err := io.CopyN(io.Discard, a.cur.R, a.cur.N); err != nil {
			return nil, fmt.Errorf("skipping ar member: %w", io.ErrUnexpectedEOF)
		}
		a.cur = nil
	}
	if a.pending > 0 {
		// a missing final pad byte is tolerated, as GNU ar does
		_, _ = a.r.Discard(int(a.pending))
		a.pending = 0
	}
	var hdr [arHeaderSize]byte
	n, err := io.ReadFull(a.r, hdr[:])
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("reading ar member header (got %d of %d bytes): %w", n, arHeaderSize, err)
	}
	if hdr[58] != '`' || hdr[59] != '\n' {
		return nil, fmt.Errorf("ar member header has a bad terminator %q: the archive is corrupt", hdr[58:60])
	}
	name := strings.TrimRight(string(hdr[0:16]), " ")
	// GNU ar ends short names with '/'; BSD-style "#1/len" long names are not used by dpkg.
	name = strings.TrimSuffix(name, "/")
	sizeField := strings.TrimSpace(string(hdr[48:58]))
	size, err := strconv.ParseInt(sizeField, 10, 64)
	if err != nil || size < 0 {
		return nil, fmt.Errorf("ar member %q has a bad size field %q: the archive is corrupt", name, sizeField)
	}
	if strings.IndexByte(name, 0) >= 0 || len(name) > maxMemberName {
		return nil, fmt.Errorf("ar member name %q is not valid", name)
	}
	a.cur = &io.LimitedReader{R: a.r, N: size}
	a.pending = size % 2 // members are padded to an even offset
	return &arMember{Name: name, Size: size}, nil
}

// Data reads the current member; it reports io.ErrUnexpectedEOF when the
// archive is shorter than the header promised.
func (a *arReader) Data() io.Reader { return &exactReader{lr: a.cur} }

type exactReader struct{ lr *io.LimitedReader }

func (e *exactReader) Read(p []byte) (int, error) {
	if e.lr == nil || e.lr.N <= 0 {
		return 0, io.EOF
	}
	n, err := e.lr.Read(p)
	if err == io.EOF && e.lr.N > 0 {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}
