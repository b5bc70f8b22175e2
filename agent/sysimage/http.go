package sysimage

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/etoile-os/etoile/agent/tlsroots"
)

// ChecksumError refuses a downloaded image whose SHA-256 is not the one the
// kernel command line asked for.
type ChecksumError struct {
	URL, Want, Got string
	// LengthUnknown: the server sent no Content-Length, so a connection
	// closed early reads as a whole image: Bytes came, maybe not all.
	LengthUnknown bool
	Bytes         int64
	// Resumed: the image was put together from a cut transfer and its
	// continuation (a file changed between them that If-Range did not
	// catch, say a Last-Modified kept by a reproducible build).
	Resumed bool
}

func (e *ChecksumError) Error() string {
	msg := fmt.Sprintf("system image from %s refused: sha256 mismatch: expected %s, actual %s", e.URL, e.Want, e.Got)
	if e.LengthUnknown {
		msg += fmt.Sprintf(" (%d bytes came and the server gave no length: the download may have been cut short)", e.Bytes)
	}
	return msg
}

// lengthlessRetries is how many times a mismatch is downloaded again when
// the server gave no length (the connection may have closed early).
const lengthlessRetries = 2

// Limits bound a download by its progress, not its length: a 4 GiB image
// over a slow link may take many minutes, and arrives.
type Limits struct {
	// Patience is how long the download goes on while nothing arrives
	// (a server down, refusing, answering errors) before it gives up.
	Patience time.Duration
	// Stall is how long one transfer may receive nothing before it is
	// dropped and asked for again, from where it stopped where the server
	// allows (a Range request with If-Range).
	Stall time.Duration
}

// DefaultLimits are the boot's: five minutes without a byte, a transfer
// silent for 30 s asked again.
var DefaultLimits = Limits{Patience: 5 * time.Minute, Stall: 30 * time.Second}

// NoProgressError is a download given up after Limits.Patience with nothing
// arriving; Err is the last attempt's failure.
type NoProgressError struct {
	For time.Duration
	Err error
}

func (e *NoProgressError) Error() string {
	return fmt.Sprintf("%v (gave up: nothing of the image arrived for %s)", e.Err, e.For)
}

func (e *NoProgressError) Unwrap() error { return e.Err }

// Download is DownloadWithin with DefaultLimits.
func Download(ctx context.Context, client *http.Client, url, want, dst string, log *slog.Logger) (int64, error) {
	return DownloadWithin(ctx, client, url, want, dst, log, DefaultLimits)
}

// DownloadWithin fetches url into dst (a file on tmpfs, so the image lives
// in memory), hashing while it writes, and keeps it only if its SHA-256 is
// want. The image is written under a temporary name and renamed when
// verified, so nothing unverified is ever at dst. Transient failures
// (connection refused while the network settles, a server error, a
// transfer cut or silent for lim.Stall) are retried until nothing has
// arrived for lim.Patience or ctx ends; a cut transfer goes on from where
// it stopped when the server names the file's version (ETag or
// Last-Modified) and serves ranges. A checksum mismatch is not retried,
// because the same bytes would come again — unless the server gave no
// length: a connection closed early then reads as the whole image, and it
// is asked for again (lengthlessRetries).
func DownloadWithin(ctx context.Context, client *http.Client, url, want, dst string, log *slog.Logger, lim Limits) (int64, error) {
	want = strings.ToLower(want)
	if want == "" {
		return 0, fmt.Errorf("etoile.system=%s given without etoile.system.sha256: an image that cannot be verified is never used", url)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, fmt.Errorf("making room for the system image: %w", err)
	}
	if lim.Patience <= 0 {
		lim.Patience = DefaultLimits.Patience
	}
	if lim.Stall <= 0 {
		lim.Stall = DefaultLimits.Stall
	}
	prog := &progress{}
	prog.mark()
	st := &resume{}
	defer func() {
		if st.n > 0 {
			os.Remove(dst + ".partial") // given up: its bytes take memory
		}
	}()
	delay := 250 * time.Millisecond
	mismatches := 0
	wholeAgain := false // a resumed image that did not match, asked for whole once
	for attempt := 1; ; attempt++ {
		n, err := fetch(ctx, client, url, want, dst, lim.Stall, prog, st)
		if err == nil {
			return n, nil
		}
		var ce *ChecksumError
		var pe *permanentError
		if errors.As(err, &ce) && ce.Resumed && !wholeAgain && ctx.Err() == nil {
			wholeAgain = true
			log.Warn("system image checksum does not match after a resumed download: downloading it whole again",
				"url", url, "attempt", attempt, "expected", ce.Want, "actual", ce.Got)
			continue
		}
		if errors.As(err, &ce) && ce.LengthUnknown && mismatches < lengthlessRetries && ctx.Err() == nil {
			mismatches++
			log.Warn("system image checksum does not match, and the server gave no length: the download may have been cut; downloading again",
				"url", url, "attempt", attempt, "bytes", ce.Bytes, "expected", ce.Want, "actual", ce.Got)
			continue
		}
		if errors.As(err, &ce) || errors.As(err, &pe) || ctx.Err() != nil {
			return 0, err
		}
		if prog.since() > lim.Patience {
			return 0, &NoProgressError{For: lim.Patience, Err: err}
		}
		attrs := []any{"url", url, "attempt", attempt, "reason", err.Error()}
		if st.n > 0 {
			attrs = append(attrs, "resume_at", st.n)
		}
		log.Warn("system image download failed, retrying", attrs...)
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(delay):
		}
		if st.n > 0 {
			delay = 250 * time.Millisecond // it was moving: ask again soon
		} else {
			delay = min(delay*2, 4*time.Second)
		}
	}
}

// progress is when a download last received something.
type progress struct{ last atomic.Int64 } // UnixNano

func (p *progress) mark()                { p.last.Store(time.Now().UnixNano()) }
func (p *progress) since() time.Duration { return time.Since(time.Unix(0, p.last.Load())) }

// progressReader marks p on every read that returns bytes.
type progressReader struct {
	r io.Reader
	p *progress
}

func (r progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 {
		r.p.mark()
	}
	return n, err
}

// resume is what a cut transfer left: n bytes in dst.partial, of the
// file's version validator (a strong ETag, or Last-Modified); n is 0 when
// there is nothing to go on from.
type resume struct {
	n         int64
	validator string
}

// errStalled ends a transfer that received nothing for its stall limit.
var errStalled = errors.New("stalled")

func fetch(ctx context.Context, client *http.Client, url, want, dst string, stall time.Duration, prog *progress, st *resume) (int64, error) {
	// The initramfs has no CA bundle of its own; also for a redirect to https.
	client = tlsroots.ForURL(client, url)
	tmp := dst + ".partial"
	if st.n == 0 {
		os.Remove(tmp) // an earlier attempt's bytes take room too
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// A transfer silent for stall is dropped (the bytes it brought kept).
	// The watch starts with the request: a server that takes the
	// connection and says nothing is silent too.
	asked := time.Now()
	go func() {
		tick := time.NewTicker(max(stall/4, 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if min(prog.since(), time.Since(asked)) > stall {
					cancel(errStalled)
					return
				}
			}
		}
	}()
	stalled := func(err error) error {
		if errors.Is(context.Cause(ctx), errStalled) {
			return fmt.Errorf("nothing arrived for %s: %w", stall, err)
		}
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("system image URL %q: %w", url, err)
	}
	if st.n > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", st.n))
		req.Header.Set("If-Range", st.validator)
	}
	resp, err := client.Do(req)
	if err != nil {
		err = fmt.Errorf("downloading the system image: %w", stalled(err))
		if msg := certProblem(err); msg != "" {
			// The same certificate would come again: asking for five
			// minutes fills the console and then blames the server.
			return 0, &permanentError{fmt.Errorf("%w: %s", err, msg)}
		}
		return 0, err
	}
	defer resp.Body.Close()
	from := int64(0) // where this response's body starts in the image
	switch {
	case resp.StatusCode == http.StatusPartialContent && st.n > 0:
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != st.n {
			// Not the range asked for: start again from the beginning.
			err := fmt.Errorf("downloading the system image from %s: the server answered a request for bytes from %d with %q", url, st.n, resp.Header.Get("Content-Range"))
			st.n = 0
			os.Remove(tmp)
			return 0, err
		}
		from = start
	case resp.StatusCode == http.StatusOK:
		st.n = 0 // the whole file (a new version, or no ranges)
	default:
		err := fmt.Errorf("downloading the system image from %s: HTTP %s", url, resp.Status)
		// A missing file or a refusal will not change by asking again; a
		// server error or rate limit may.
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
			return 0, &permanentError{err}
		}
		return 0, err
	}
	noRoom := func(need, free int64) error {
		os.Remove(tmp)
		st.n = 0
		return &permanentError{fmt.Errorf("the system image from %s (%d MiB) does not fit in memory: %d MiB free in %s; give the machine more RAM, or make the system image smaller",
			url, need>>20, free>>20, filepath.Dir(dst))}
	}
	if free := freeBytes(filepath.Dir(dst)); resp.ContentLength > 0 && free >= 0 && resp.ContentLength > free {
		return 0, noRoom(from+resp.ContentLength, free+from)
	}
	var h hash.Hash = sha256.New()
	var f *os.File
	if from > 0 {
		// The bytes already here are hashed again (tmpfs: memory speed).
		if f, err = os.OpenFile(tmp, os.O_RDWR, 0); err == nil {
			var n int64
			// Reading back counts as progress: the stall watch must not
			// end a transfer that has not been asked for yet.
			if n, err = io.Copy(h, progressReader{f, prog}); err == nil && n != from {
				err = fmt.Errorf("%s holds %d bytes, not %d", tmp, n, from)
			}
			if err != nil {
				f.Close()
			}
		}
		if err != nil {
			st.n = 0
			os.Remove(tmp)
			return 0, fmt.Errorf("going on with the system image: %w", err)
		}
	} else if f, err = os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600); err != nil {
		return 0, fmt.Errorf("writing the system image: %w", err)
	}
	body := io.Reader(progressReader{resp.Body, prog})
	if resp.ContentLength >= 0 {
		body = io.LimitReader(body, resp.ContentLength+1) // a server sending more is wrong: stop there
	}
	n, err := io.Copy(io.MultiWriter(f, h), body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
	}
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EFBIG) {
			// Asking again would fill the memory again.
			return 0, noRoom(from+max(n, resp.ContentLength), freeBytes(filepath.Dir(dst))+from+n)
		}
		// What came is kept to go on from, where the server can say
		// whether the file is still the same (If-Range) and the length
		// was known (a cut is then told from the end).
		v := validator(resp)
		if v == "" && from > 0 {
			v = st.validator // a 206 that names no version answered the one asked for
		}
		if v != "" && resp.ContentLength >= 0 && from+n > 0 &&
			(resp.StatusCode == http.StatusPartialContent || resp.Header.Get("Accept-Ranges") == "bytes") {
			st.n, st.validator = from+n, v
		} else {
			st.n = 0
			os.Remove(tmp)
		}
		return 0, fmt.Errorf("downloading the system image from %s: %w", url, stalled(err))
	}
	st.n = 0
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		os.Remove(tmp)
		return 0, &ChecksumError{URL: url, Want: want, Got: got, LengthUnknown: closeDelimited(resp), Bytes: from + n, Resumed: from > 0}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("keeping the system image: %w", err)
	}
	return from + n, nil
}

// validator is what an If-Range may name of resp's file: a strong ETag,
// else Last-Modified; "" for none.
func validator(resp *http.Response) string {
	if e := resp.Header.Get("ETag"); e != "" && !strings.HasPrefix(e, "W/") {
		return e
	}
	return resp.Header.Get("Last-Modified")
}

// contentRangeStart reads the first byte position of a Content-Range
// header ("bytes 100-199/200").
func contentRangeStart(h string) (int64, bool) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil && n >= 0
}

// closeDelimited reports whether resp's body ends only when the connection
// closes (no Content-Length, not chunked): a connection cut early then
// reads as the whole body. A chunked body's end is explicit.
func closeDelimited(resp *http.Response) bool {
	return resp.ContentLength < 0 && !slices.Contains(resp.TransferEncoding, "chunked")
}

// certProblem says what to do when err is the server's certificate not
// being trusted, "" otherwise.
func certProblem(err error) string {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "the certificate is not valid at this machine's time (" + time.Now().UTC().Format(time.RFC3339) +
			"): set the firmware's clock, or serve the image over http:// (etoile.system.sha256 verifies it either way)"
	case errors.As(err, &unknown):
		return "the server's certificate is not signed by an authority Étoile trusts (Mozilla's roots): serve the image over http:// " +
			"(etoile.system.sha256 verifies it either way), or use a certificate from a public authority"
	case errors.As(err, &invalid), errors.As(err, &host):
		return "the server's certificate is not valid for it: fix the certificate, or serve the image over http:// (etoile.system.sha256 verifies it either way)"
	}
	return ""
}

// permanentError is a failure that retrying cannot cure.
type permanentError struct{ error }

func (e *permanentError) Unwrap() error { return e.error }
