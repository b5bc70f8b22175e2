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
	"strings"
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

// Download fetches url into dst (a file on tmpfs, so the image lives in
// memory), hashing while it writes, and keeps it only if its SHA-256 is want.
// The image is written under a temporary name and renamed when verified, so
// nothing unverified is ever at dst. Transient failures (connection refused
// while the network settles, a server error) are retried until ctx ends;
// a checksum mismatch is not, because the same bytes would come again —
// unless the server gave no length: a connection closed early then reads
// as the whole image, and it is asked for again (lengthlessRetries).
func Download(ctx context.Context, client *http.Client, url, want, dst string, log *slog.Logger) (int64, error) {
	want = strings.ToLower(want)
	if want == "" {
		return 0, fmt.Errorf("etoile.system=%s given without etoile.system.sha256: an image that cannot be verified is never used", url)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, fmt.Errorf("making room for the system image: %w", err)
	}
	delay := 250 * time.Millisecond
	mismatches := 0
	for attempt := 1; ; attempt++ {
		n, err := fetch(ctx, client, url, want, dst)
		if err == nil {
			return n, nil
		}
		var ce *ChecksumError
		var pe *permanentError
		if errors.As(err, &ce) && ce.LengthUnknown && mismatches < lengthlessRetries && ctx.Err() == nil {
			mismatches++
			log.Warn("system image checksum does not match, and the server gave no length: the download may have been cut; downloading again",
				"url", url, "attempt", attempt, "bytes", ce.Bytes, "expected", ce.Want, "actual", ce.Got)
			continue
		}
		if errors.As(err, &ce) || errors.As(err, &pe) || ctx.Err() != nil {
			return 0, err
		}
		log.Warn("system image download failed, retrying", "url", url, "attempt", attempt, "reason", err.Error())
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 4*time.Second)
	}
}

func fetch(ctx context.Context, client *http.Client, url, want, dst string) (int64, error) {
	// The initramfs has no CA bundle of its own; also for a redirect to https.
	client = tlsroots.ForURL(client, url)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("system image URL %q: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		err = fmt.Errorf("downloading the system image: %w", err)
		if msg := certProblem(err); msg != "" {
			// The same certificate would come again: asking for five
			// minutes fills the console and then blames the server.
			return 0, &permanentError{fmt.Errorf("%w: %s", err, msg)}
		}
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("downloading the system image from %s: HTTP %s", url, resp.Status)
		// A missing file or a refusal will not change by asking again; a
		// server error or rate limit may.
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
			return 0, &permanentError{err}
		}
		return 0, err
	}
	tmp := dst + ".partial"
	os.Remove(tmp) // an earlier attempt's bytes take room too
	noRoom := func(need, free int64) error {
		return &permanentError{fmt.Errorf("the system image from %s (%d MiB) does not fit in memory: %d MiB free in %s; give the machine more RAM, or make the system image smaller",
			url, need>>20, free>>20, filepath.Dir(dst))}
	}
	if free := freeBytes(filepath.Dir(dst)); resp.ContentLength > 0 && free >= 0 && resp.ContentLength > free {
		return 0, noRoom(resp.ContentLength, free)
	}
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, fmt.Errorf("writing the system image: %w", err)
	}
	var h hash.Hash = sha256.New()
	body := io.Reader(resp.Body)
	if resp.ContentLength >= 0 {
		body = io.LimitReader(resp.Body, resp.ContentLength+1) // a server sending more is wrong: stop there
	}
	n, err := io.Copy(io.MultiWriter(f, h), body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
	}
	if err != nil {
		os.Remove(tmp)
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EFBIG) {
			// Asking again would fill the memory again.
			return 0, noRoom(max(n, resp.ContentLength), freeBytes(filepath.Dir(dst)))
		}
		return 0, fmt.Errorf("downloading the system image from %s: %w", url, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		os.Remove(tmp)
		return 0, &ChecksumError{URL: url, Want: want, Got: got, LengthUnknown: closeDelimited(resp), Bytes: n}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("keeping the system image: %w", err)
	}
	return n, nil
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
