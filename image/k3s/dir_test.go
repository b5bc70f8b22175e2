package k3s

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFetchDirStandin(t *testing.T) {
	folder := standinRelease(t)
	log, _ := testLog(t)
	for _, version := range []string{"", DefaultVersion} {
		a, err := Fetch(context.Background(), Source{Kind: KindDir, Dir: folder, Version: version}, "", log)
		if err != nil {
			t.Fatalf("version %q: %v", version, err)
		}
		if a.Version != DefaultVersion {
			t.Errorf("version %q: got K3s %q, want %q (the stand-in's)", version, a.Version, DefaultVersion)
		}
		if a.Binary != filepath.Join(folder, BinaryName) || a.BinarySHA256 != sha256File(t, a.Binary) {
			t.Errorf("binary %s %s, want the folder's", a.Binary, a.BinarySHA256)
		}
		// No path: the same files from another folder make the same SBOM.
		if a.Source != "a local release folder" || a.DownloadLocation != "NOASSERTION" {
			t.Errorf("Source %q DownloadLocation %q", a.Source, a.DownloadLocation)
		}
		// The stand-in is told from K3s, and not given K3s's package URL.
		if !a.Standin || a.PURL != "" {
			t.Errorf("Standin %v PURL %q: want the stand-in recognised, without K3s's purl", a.Standin, a.PURL)
		}
	}
}

func TestFetchDirRejectsStandin(t *testing.T) {
	tests := []struct {
		name    string
		version string
		mutate  func(t *testing.T, dir string)
		wantErr string
	}{
		{"other version", "v1.33.1+k3s1", nil, `the k3s binary is K3s ["v1.34.9+k3s1"], but the spec asks for v1.33.1+k3s1`},
		{"tampered binary", "", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, BinaryName), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("x")
			f.Close()
		}, "does not verify against its sha256sum-amd64.txt"},
		{"no airgap tarball", "", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, AirgapName))
		}, "is not a K3s release folder"},
		{"no checksum file", "", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, ChecksumName))
		}, "is not a K3s release folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyRelease(t)
			if tt.mutate != nil {
				tt.mutate(t, dir)
			}
			log, _ := testLog(t)
			_, err := Fetch(context.Background(), Source{Kind: KindDir, Dir: dir, Version: tt.version}, "", log)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestBinaryVersions(t *testing.T) {
	dir := t.TempDir()
	// A version string across the 1 MiB read boundary is still found.
	data := make([]byte, 1<<20+100)
	copy(data[1<<20-5:], "v1.34.9+k3s1")
	copy(data[10:], "v1.35.0-rc1+k3s2 and v1.34.9+k3s1")
	p := filepath.Join(dir, "bin")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := binaryVersions(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"v1.34.9+k3s1", "v1.35.0-rc1+k3s2"}; !slices.Equal(got, want) {
		t.Errorf("binaryVersions = %q, want %q", got, want)
	}
}

func TestImageFiles(t *testing.T) {
	a := &Artifacts{Binary: "/c/k3s", AirgapImages: []string{"/c/k3s-airgap-images-amd64.tar.zst", "/site/app.tar"}}
	var got []string
	for _, f := range a.ImageFiles() {
		got = append(got, f.Path+"|"+f.Source+"|"+f.Link+"|"+f.Mode.String())
	}
	want := []string{
		"/usr/local/bin/k3s|/c/k3s||-rwxr-xr-x",
		"/usr/local/bin/kubectl||k3s|----------",
		"/usr/local/bin/crictl||k3s|----------",
		"/usr/local/bin/ctr||k3s|----------",
		"/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst|/c/k3s-airgap-images-amd64.tar.zst||-rw-r--r--",
		"/var/lib/rancher/k3s/agent/images/app.tar|/site/app.tar||-rw-r--r--",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ImageFiles:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestFetchDirGenuineBinary: a binary without the stand-in's marker (the
// stand-in with its marker blanked out, as K3s has none) is K3s to the
// build: K3s's package URL, no stand-in flag; and the marker is found
// wherever it sits in the file.
func TestFetchDirGenuineBinary(t *testing.T) {
	folder := copyRelease(t)
	bin := filepath.Join(folder, BinaryName)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(StandinMarker)) {
		t.Fatalf("the stand-in binary does not carry StandinMarker %q: qa/k3sstandin's marker must be the same text", StandinMarker)
	}
	data = bytes.ReplaceAll(data, []byte(StandinMarker), bytes.Repeat([]byte("x"), len(StandinMarker)))
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sums := fmt.Sprintf("%s  %s\n%s  %s\n", sha256File(t, bin), BinaryName, sha256File(t, filepath.Join(folder, AirgapName)), AirgapName)
	if err := os.WriteFile(filepath.Join(folder, ChecksumName), []byte(sums), 0o644); err != nil {
		t.Fatal(err)
	}
	log, _ := testLog(t)
	a, err := Fetch(context.Background(), Source{Kind: KindDir, Dir: folder}, "", log)
	if err != nil {
		t.Fatal(err)
	}
	if a.Standin || a.PURL != "pkg:github/k3s-io/k3s@v1.34.9%2Bk3s1" {
		t.Errorf("Standin %v PURL %q, want K3s's purl", a.Standin, a.PURL)
	}

	// The marker across the 1 MiB read boundary is still found.
	edge := filepath.Join(t.TempDir(), "edge")
	blob := append(bytes.Repeat([]byte{0}, 1<<20-10), StandinMarker...)
	if err := os.WriteFile(edge, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	if found, err := containsMarker(edge); err != nil || !found {
		t.Errorf("marker across the read boundary: found %v, %v", found, err)
	}
}
