package sysimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etoile-os/etoile/agent/fakeroot"
	"golang.org/x/sys/unix"
)

func TestVolumeID(t *testing.T) {
	iso := fakeroot.ISO(t, "ETOILE", map[string]string{"etoile/system.sqfs": "squash"})
	tests := []struct {
		name    string
		data    []byte
		want    string
		wantErr error
	}{
		{"xorriso ISO", iso, "ETOILE", nil},
		{"other label", fakeroot.ISO(t, "DEBIAN_12", map[string]string{"a": "b"}), "DEBIAN_12", nil},
		{"zeros", make([]byte, 64*1024), "", ErrNotISO9660},
		{"too short", []byte("hello"), "", ErrNotISO9660},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := VolumeID(bytes.NewReader(tt.data))
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("VolumeID = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func FuzzVolumeID(f *testing.F) {
	pvd := make([]byte, 32768+2048)
	copy(pvd[32768:], "\x01CD001")
	copy(pvd[32768+40:], "ETOILE")
	f.Add(pvd[32000:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, tail []byte) {
		data := append(make([]byte, 32768-len(tail)%100), tail...)
		id, err := VolumeID(bytes.NewReader(data))
		if err == nil && len(id) > 32 {
			t.Fatalf("volume id %q longer than 32 bytes", id)
		}
	})
}

func TestFindISO(t *testing.T) {
	iso := fakeroot.ISO(t, "ETOILE", map[string]string{"etoile/system.sqfs": "squash"})
	root := t.TempDir()
	// The ISO written raw to a USB stick: the disk and the isohybrid
	// partition both start with it; an empty CD drive cannot be read; a
	// virtio disk holds something else.
	fakeroot.Block(t, root, "sda", false, "", iso)
	fakeroot.Block(t, root, "sda1", true, "", iso)
	fakeroot.Block(t, root, "vda", false, "", make([]byte, 40000))
	fakeroot.Block(t, root, "loop0", false, "", iso) // never the boot medium
	fakeroot.Write(t, root, map[string]string{"sys/class/block/sr0/uevent": "DEVNAME=sr0\nDEVTYPE=disk\n"})
	// An empty drive reports size 0 and is not opened, even if its node reads.
	fakeroot.Block(t, root, "sr1", false, "", iso)
	fakeroot.Write(t, root, map[string]string{"sys/class/block/sr1/size": "0\n", "sys/class/block/sda/size": "116736\n"})
	devs, err := ListBlock(filepath.Join(root, "sys"), filepath.Join(root, "dev"))
	if err != nil {
		t.Fatal(err)
	}
	d, ok := FindISO(devs, ISOLabel)
	if !ok || d.Name != "sda" || d.Path != filepath.Join(root, "dev", "sda") || d.Size != 116736*512 {
		t.Errorf("FindISO = %+v, %v; want the whole disk sda", d, ok)
	}
	for _, d := range devs {
		if d.Name == "sr1" {
			if _, ok := FindISO([]BlockDev{d}, ISOLabel); ok || d.Size != 0 {
				t.Errorf("empty drive sr1 (size %d) was opened", d.Size)
			}
		}
	}
	if _, ok := FindISO(devs, "OTHER"); ok {
		t.Error("found a volume that is not there")
	}
	// The stick is one medium, not two (its disk and partition); a CD
	// holding Étoile too is another.
	if got := FindISOs(devs, ISOLabel); len(got) != 1 || got[0].Name != "sda" {
		t.Errorf("FindISOs = %+v, want the stick's disk only", got)
	}
	fakeroot.Block(t, root, "sr2", false, "", iso)
	devs, err = ListBlock(filepath.Join(root, "sys"), filepath.Join(root, "dev"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range FindISOs(devs, ISOLabel) {
		names = append(names, d.Name)
	}
	if strings.Join(names, ",") != "sda,sr2" {
		t.Errorf("FindISOs = %v, want sda,sr2", names)
	}
}

func TestFindPartition(t *testing.T) {
	root := t.TempDir()
	fakeroot.Block(t, root, "nvme0n1", false, "", nil)
	fakeroot.Block(t, root, "nvme0n1p1", true, "ETOILE-ESP", nil)
	fakeroot.Block(t, root, "nvme0n1p2", true, "ETOILE-A", nil)
	fakeroot.Block(t, root, "nvme0n1p3", true, "ETOILE-B", nil)
	fakeroot.Block(t, root, "sda", false, "ETOILE-A", nil) // a whole disk is never a slot
	devs, err := ListBlock(filepath.Join(root, "sys"), filepath.Join(root, "dev"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ slot, want string }{{"a", "nvme0n1p2"}, {"b", "nvme0n1p3"}}
	for _, tt := range tests {
		got := FindPartitions(devs, PartLabel(tt.slot))
		if len(got) != 1 || got[0].Name != tt.want || got[0].Disk != "nvme0n1" {
			t.Errorf("slot %s: got %+v; want %s on nvme0n1", tt.slot, got, tt.want)
		}
	}
	if got := FindPartitions(devs, "ETOILE-C"); len(got) != 0 {
		t.Errorf("found a partition that is not there: %+v", got)
	}
}

func TestDownload(t *testing.T) {
	image := bytes.Repeat([]byte("squashfs image "), 100000)
	sum := sha256.Sum256(image)
	good := hex.EncodeToString(sum[:])
	var fails atomic.Int32
	fails.Store(2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky.sqfs":
			// The first tries fail, as while a netboot server comes up.
			if fails.Add(-1) >= 0 {
				http.Error(w, "not yet", http.StatusServiceUnavailable)
				return
			}
			w.Write(image)
		case "/system.sqfs":
			w.Write(image)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	bad := strings.Repeat("ab", 32)

	t.Run("good checksum", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "run/etoile/system.sqfs")
		n, err := Download(context.Background(), srv.Client(), srv.URL+"/flaky.sqfs", strings.ToUpper(good), dst, log)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(dst)
		if err != nil || n != int64(len(image)) || !bytes.Equal(got, image) {
			t.Errorf("downloaded %d bytes, file err %v, equal %v", n, err, bytes.Equal(got, image))
		}
	})
	t.Run("bad checksum refused", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "system.sqfs")
		_, err := Download(context.Background(), srv.Client(), srv.URL+"/system.sqfs", bad, dst, log)
		var ce *ChecksumError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v, want a ChecksumError", err)
		}
		for _, want := range []string{"expected " + bad, "actual " + good} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not show %q", err, want)
			}
		}
		entries, _ := os.ReadDir(filepath.Dir(dst))
		if len(entries) != 0 {
			t.Errorf("refused image left files behind: %v", entries)
		}
	})
	t.Run("no checksum refused", func(t *testing.T) {
		_, err := Download(context.Background(), srv.Client(), srv.URL+"/system.sqfs", "", filepath.Join(t.TempDir(), "x"), log)
		if err == nil || !strings.Contains(err.Error(), "etoile.system.sha256") {
			t.Errorf("err = %v, want one naming etoile.system.sha256", err)
		}
	})
	t.Run("too big for memory fails at once", func(t *testing.T) {
		// A 1 MiB tmpfs stands for /run on a machine with too little RAM.
		if os.Geteuid() != 0 {
			t.Fatal("mounting a tmpfs needs root: run the tests as root (make test does, as CI)")
		}
		dir := t.TempDir()
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		var requests atomic.Int32
		big := bytes.Repeat([]byte("x"), 3<<20)
		bigSum := sha256.Sum256(big)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			if r.URL.Path == "/chunked.sqfs" {
				// No Content-Length: only the write finds out.
				w.Header().Set("Transfer-Encoding", "chunked")
				for i := 0; i < len(big); i += 64 << 10 {
					w.Write(big[i : i+64<<10])
					w.(http.Flusher).Flush()
				}
				return
			}
			w.Write(big)
		}))
		defer srv.Close()
		for _, path := range []string{"/sized.sqfs", "/chunked.sqfs"} {
			requests.Store(0)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_, err := Download(ctx, srv.Client(), srv.URL+path, hex.EncodeToString(bigSum[:]), filepath.Join(dir, "system.sqfs"), log)
			cancel()
			if err == nil || !strings.Contains(err.Error(), "does not fit in memory") || !strings.Contains(err.Error(), "more RAM") {
				t.Errorf("%s: err = %v, want one saying the image does not fit in memory", path, err)
			}
			if n := requests.Load(); n != 1 {
				t.Errorf("%s: %d requests, want 1: asking again fills the memory again", path, n)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("%s: left %v in the tmpfs", path, entries)
			}
		}
	})
	t.Run("an untrusted certificate fails at once, saying what to do", func(t *testing.T) {
		// A real TLS server whose certificate no trusted authority signed
		// (the plain client trusts only the system's and Mozilla's roots).
		tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(image) }))
		defer tlsSrv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := Download(ctx, &http.Client{}, tlsSrv.URL+"/system.sqfs", good, filepath.Join(t.TempDir(), "x"), log)
		if err == nil || !strings.Contains(err.Error(), "not signed by an authority Étoile trusts") || !strings.Contains(err.Error(), "http://") {
			t.Errorf("err = %v, want one saying the certificate is not trusted and what to do", err)
		}
		if ctx.Err() != nil {
			t.Error("the download was retried until its deadline")
		}
	})
	t.Run("not found fails at once", func(t *testing.T) {
		_, err := Download(context.Background(), srv.Client(), srv.URL+"/missing.sqfs", good, filepath.Join(t.TempDir(), "x"), log)
		if err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("err = %v, want one showing HTTP 404", err)
		}
	})
}

func TestKernelRelease(t *testing.T) {
	root := t.TempDir()
	fakeroot.Write(t, root, map[string]string{"6.1.0-50-amd64/modules.dep": ""})
	if got, err := KernelRelease(root, "5.10.0-host"); err != nil || got != "6.1.0-50-amd64" {
		t.Errorf("only one release: got %q, %v", got, err)
	}
	fakeroot.Write(t, root, map[string]string{"5.10.0-host/modules.dep": ""})
	if got, err := KernelRelease(root, "5.10.0-host"); err != nil || got != "5.10.0-host" {
		t.Errorf("running release present: got %q, %v", got, err)
	}
	if _, err := KernelRelease(root, "6.12-other"); err == nil || !strings.Contains(err.Error(), "different builds") {
		t.Errorf("two releases, neither running: err = %v", err)
	}
}

// TestFindISOSkipsADeviceThatHangs: a device whose read blocks (a FIFO
// stands in for a failing disk) is skipped after the device wait, named
// once, and the search goes on to the others.
func TestFindISOSkipsADeviceThatHangs(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "sda")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}()
	iso := filepath.Join(dir, "sr0")
	if err := os.WriteFile(iso, fakeroot.ISO(t, ISOLabel, map[string]string{"etoile/system.sqfs": "x"}), 0o600); err != nil {
		t.Fatal(err)
	}
	var warned []string
	DeviceReads.Set(20*time.Millisecond, func(dev, what string, _ time.Duration) { warned = append(warned, dev+": "+what) })
	defer DeviceReads.Set(0, nil)
	devs := []BlockDev{{Name: "sda", Path: fifo, Size: 1 << 20}, {Name: "sr0", Path: iso, Size: 1 << 20}}
	done := make(chan []BlockDev, 1)
	go func() {
		FindISOs(devs, ISOLabel)
		done <- FindISOs(devs, ISOLabel) // again: skipped at once, not named again
	}()
	select {
	case got := <-done:
		if len(got) != 1 || got[0].Name != "sr0" {
			t.Errorf("FindISOs = %v, want sr0", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("FindISOs was held by the blocked device")
	}
	if _, err := PartUUIDs(fifo); err == nil {
		t.Error("PartUUIDs of the blocked device: no error")
	}
	if len(warned) != 1 || warned[0] != fifo+": its ISO9660 volume id" {
		t.Errorf("warned %q, want the device once", warned)
	}
}

// TestDownloadRetriesACutLengthlessResponse: a response with no
// Content-Length whose connection closes half way reads as a whole image;
// its mismatch is downloaded again (and the next, whole, is kept), while a
// server that always sends other bytes is still refused with both hashes.
func TestDownloadRetriesACutLengthlessResponse(t *testing.T) {
	img := bytes.Repeat([]byte("system image "), 80000)
	sum := sha256.Sum256(img)
	want := hex.EncodeToString(sum[:])
	// A close-delimited response (no Content-Length, no chunking), as an
	// HTTP/1.0-style server sends it: net/http's server would chunk.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := conns.Add(1)
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				c.Read(buf)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
				if n == 1 {
					c.Write(img[:len(img)/2]) // the connection drops half way
				} else {
					c.Write(img)
				}
			}()
		}
	}()
	srv := struct{ URL string }{"http://" + ln.Addr().String()}
	client := &http.Client{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dst := filepath.Join(t.TempDir(), "system.sqfs")
	var log bytes.Buffer
	n, err := Download(ctx, client, srv.URL+"/x", want, dst, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil || n != int64(len(img)) || conns.Load() != 2 {
		t.Fatalf("Download = %d, %v after %d requests; want the whole image on the second", n, err, conns.Load())
	}
	if !strings.Contains(log.String(), "may have been cut") {
		t.Errorf("log %q: want the retry explained", log.String())
	}

	// Always the wrong bytes: refused after the retries, with both hashes.
	conns.Store(100)
	other := strings.Repeat("0", 64)
	_, err = Download(ctx, client, srv.URL+"/x", other, dst, slog.New(slog.DiscardHandler))
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.Want != other || ce.Got != want || !ce.LengthUnknown || conns.Load() != 103 {
		t.Errorf("err %v after %d requests; want a ChecksumError with both hashes after 3", err, conns.Load()-100)
	}
}

// TestDownloadResumesAStalledTransfer: a transfer that stops half way and
// says nothing more is dropped after the stall limit and asked again with a
// Range from where it stopped (If-Range naming the version the server gave);
// the image is whole and verified. A server that serves no ranges, or a
// file that changed, gives the whole file again.
func TestDownloadResumesAStalledTransfer(t *testing.T) {
	img := bytes.Repeat([]byte("system image "), 100000)
	sum := sha256.Sum256(img)
	want := hex.EncodeToString(sum[:])
	modified := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name       string
		etag       string
		wantRanges []string // the Range header of each request
	}{
		{"with ranges", `"v1"`, []string{"", fmt.Sprintf("bytes=%d-", len(img)/2)}},
		{"the file changed", `"v2"`, []string{"", fmt.Sprintf("bytes=%d-", len(img)/2)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var ranges []string
			stop := make(chan struct{})
			defer close(stop)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				ranges = append(ranges, r.Header.Get("Range"))
				first := len(ranges) == 1
				mu.Unlock()
				if first {
					w.Header().Set("ETag", `"v1"`)
					w.Header().Set("Accept-Ranges", "bytes")
					w.Header().Set("Content-Length", strconv.Itoa(len(img)))
					w.Write(img[:len(img)/2])
					w.(http.Flusher).Flush()
					select { // then nothing: the stall limit ends it
					case <-r.Context().Done():
					case <-stop:
					}
					return
				}
				w.Header().Set("ETag", c.etag) // If-Range answers the whole file when it differs
				http.ServeContent(w, r, "system.sqfs", modified, bytes.NewReader(img))
			}))
			defer srv.Close()
			dst := filepath.Join(t.TempDir(), "system.sqfs")
			log := downloadResuming(t, srv.URL, want, dst, img)
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(ranges, c.wantRanges) {
				t.Errorf("requests' ranges %q, want %q", ranges, c.wantRanges)
			}
			if !strings.Contains(log.String(), "nothing arrived for 200ms") || !strings.Contains(log.String(), fmt.Sprintf("resume_at=%d", len(img)/2)) {
				t.Errorf("log does not say the transfer stalled and where it goes on from:\n%s", log.String())
			}
			if entries, _ := os.ReadDir(filepath.Dir(dst)); len(entries) != 1 {
				t.Errorf("left beside the image: %v", entries)
			}
		})
	}
}

// TestDownloadBoundedByProgress: an image that takes longer than the
// patience to arrive, arriving all the while, is kept; a server that
// answers only errors is given up on after the patience, saying so, and no
// partial file is left.
func TestDownloadBoundedByProgress(t *testing.T) {
	img := bytes.Repeat([]byte("slow image "), 20000)
	sum := sha256.Sum256(img)
	want := hex.EncodeToString(sum[:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(img)))
		for i := 0; i < len(img); i += len(img) / 10 {
			w.Write(img[i:min(len(img), i+len(img)/10)])
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond) // 1 s in all
		}
	}))
	defer srv.Close()
	lim := Limits{Patience: 300 * time.Millisecond, Stall: 250 * time.Millisecond}
	dst := filepath.Join(t.TempDir(), "system.sqfs")
	if n, err := DownloadWithin(context.Background(), srv.Client(), srv.URL+"/slow", want, dst, slog.New(slog.DiscardHandler), lim); err != nil || n != int64(len(img)) {
		t.Fatalf("a slow image that keeps arriving: %d, %v", n, err)
	}
	start := time.Now()
	dst = filepath.Join(t.TempDir(), "system.sqfs")
	_, err := DownloadWithin(context.Background(), srv.Client(), srv.URL+"/down", want, dst, slog.New(slog.DiscardHandler), lim)
	if _, ok := errors.AsType[*NoProgressError](err); !ok || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "nothing of the image arrived for 300ms") {
		t.Fatalf("a server answering 503: err = %v, want a NoProgressError showing the 503", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %s", d)
	}
	if entries, _ := os.ReadDir(filepath.Dir(dst)); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

// TestDownloadResumeEdgeCases: a resumed transfer cut before its first byte
// keeps what came before (the next request asks from the same place); an
// image put together from two versions of the file (If-Range did not tell
// them apart) is asked for whole once, and kept when that matches.
func TestDownloadResumeEdgeCases(t *testing.T) {
	img := bytes.Repeat([]byte("system image "), 100000)
	other := bytes.Repeat([]byte("SYSTEM IMAGE "), 100000) // the file, replaced meanwhile
	sum := sha256.Sum256(img)
	want := hex.EncodeToString(sum[:])
	half := len(img) / 2
	for _, c := range []struct {
		name       string
		second     func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) // the first resumed request
		wantRanges []string
	}{
		{"cut before the first byte", func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", half, len(img)-1, len(img)))
			w.Header().Set("Content-Length", strconv.Itoa(len(img)-half))
			w.WriteHeader(http.StatusPartialContent)
			w.(http.Flusher).Flush()
			select { // headers, then nothing
			case <-r.Context().Done():
			case <-stop:
			}
		}, []string{"", fmt.Sprintf("bytes=%d-", half), fmt.Sprintf("bytes=%d-", half)}},
		{"spliced from two versions", func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", half, len(other)-1, len(other)))
			w.Header().Set("Content-Length", strconv.Itoa(len(other)-half))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(other[half:])
		}, []string{"", fmt.Sprintf("bytes=%d-", half), ""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var ranges []string
			stop := make(chan struct{})
			defer close(stop)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				ranges = append(ranges, r.Header.Get("Range"))
				nth := len(ranges)
				mu.Unlock()
				switch {
				case nth == 1:
					w.Header().Set("Last-Modified", "Thu, 26 Nov 2026 12:00:00 GMT")
					w.Header().Set("Accept-Ranges", "bytes")
					w.Header().Set("Content-Length", strconv.Itoa(len(img)))
					w.Write(img[:half])
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
					case <-stop:
					}
				case nth == 2:
					c.second(w, r, stop)
				default:
					http.ServeContent(w, r, "system.sqfs", time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), bytes.NewReader(img))
				}
			}))
			defer srv.Close()
			log := downloadResuming(t, srv.URL, want, filepath.Join(t.TempDir(), "system.sqfs"), img)
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(ranges, c.wantRanges) {
				t.Errorf("requests' ranges %q, want %q\n%s", ranges, c.wantRanges, log.String())
			}
		})
	}
}

// downloadResuming downloads srvURL's /system.sqfs into dst with a 200 ms
// stall limit and wants img there; it returns the download's log.
func downloadResuming(t *testing.T, srvURL, want, dst string, img []byte) *bytes.Buffer {
	t.Helper()
	var log bytes.Buffer
	n, err := DownloadWithin(context.Background(), http.DefaultClient, srvURL+"/system.sqfs", want, dst,
		slog.New(slog.NewTextHandler(&log, nil)), Limits{Patience: 5 * time.Second, Stall: 200 * time.Millisecond})
	if err != nil || n != int64(len(img)) {
		t.Fatalf("Download = %d, %v\n%s", n, err, log.String())
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, img) {
		t.Errorf("the kept image is not the image (%v)", err)
	}
	return &log
}
