package image

import (
	"bytes"
	"fmt"
	"github.com/etoile-os/etoile/internal/golden"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/etoile-os/etoile/schema"
)

// encodeSpec writes a spec the way the MachineConfig is written: YAML,
// two-space indent, the fields under their names in the spec's format.
func encodeSpec(t *testing.T, s *ImageSpec) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fullSpec sets every field of an ImageSpec (not a valid spec: its paths
// need not exist), so that the golden file names each one.
func fullSpec() *ImageSpec {
	return &ImageSpec{
		APIVersion: schema.APIVersion, Kind: KindImageSpec, Version: "1.2.3", Arch: "amd64",
		Kernel:    KernelSpec{Package: "linux-image-cloud-amd64", Dir: "kernel", Cmdline: []string{"quiet", "etoile.debug"}},
		Modules:   []string{"virtio_blk", "usb-storage"},
		Initramfs: InitramfsSpec{Compression: "xz"},
		Overlays:  []string{"site", "/srv/overlay"},
		K3s: K3sSpec{Version: "v1.34.9+k3s1", Source: K3sOCI, Dir: "k3s-release", Image: "registry.example/k3s:v1.34.9-k3s1",
			AirgapTarball: "airgap.tar.zst", Registries: "registries.yaml", AirgapImages: []string{"app.tar"}},
		Extensions: []Extension{{Name: "nvidia", Squashfs: "nvidia.sqfs"}, {Name: "site", Dir: "ext"}},
		Outputs:    []string{OutputISO, OutputNetboot},
	}
}

// TestSpecEncodingStable keeps the encoding of kind ImageSpec stable, as
// agent/config's TestMarshalStability does for MachineConfig: the default
// spec decoded then encoded, and a spec with every field set, each match
// their golden file; each decodes back (strictly: an unknown field is an
// error) to the same spec and encodes the same again.
func TestSpecEncodingStable(t *testing.T) {
	// The kernel package named, so that the decoded spec does not depend
	// on the build machine's distribution (hostIsUbuntu).
	def := strings.Replace(string(DefaultSpecYAML()), "  # package: linux-image-amd64\n", "  package: linux-image-amd64\n", 1)
	if def == string(DefaultSpecYAML()) {
		t.Fatal("the default spec's commented kernel.package line moved")
	}
	s, err := ParseSpec([]byte(def), ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		spec   *ImageSpec
		golden string
	}{
		{"default", s, "imagespec-default.golden"},
		{"full", fullSpec(), "imagespec-full.golden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "full" {
				assertAllSet(t, reflect.ValueOf(*tc.spec), "ImageSpec")
			}
			out := encodeSpec(t, tc.spec)
			golden.Compare(t, tc.golden, out)
			var again ImageSpec
			if err := schema.Decode(out, KindImageSpec, &again); err != nil {
				t.Fatalf("the encoded spec does not decode: %v\n%s", err, out)
			}
			again.dir, again.k3sDir = tc.spec.dir, tc.spec.k3sDir
			// %+v: a list left out (nil) and an empty one read the same.
			if got, want := fmt.Sprintf("%+v", again), fmt.Sprintf("%+v", *tc.spec); got != want {
				t.Errorf("decoded back, the spec differs:\n%s\nwant\n%s", got, want)
			}
			if out2 := encodeSpec(t, &again); !bytes.Equal(out, out2) {
				t.Errorf("encoding is not stable:\n%s\n---\n%s", out, out2)
			}
		})
	}
}

// assertAllSet fails for each exported field left at its zero value, so
// that a field added to ImageSpec is added to fullSpec (and its golden).
func assertAllSet(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if f := v.Type().Field(i); f.IsExported() {
				assertAllSet(t, v.Field(i), path+"."+f.Name)
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			t.Errorf("fullSpec leaves %s empty: set it, and run go test -update", path)
		}
		if v.Type().Elem().Kind() != reflect.Struct {
			break
		}
		// A list of structs: each field set in one element at least (an
		// extension has a dir or a squashfs, never both).
		for j := 0; j < v.Type().Elem().NumField(); j++ {
			f := v.Type().Elem().Field(j)
			set := false
			for i := 0; i < v.Len(); i++ {
				set = set || !v.Index(i).Field(j).IsZero()
			}
			if f.IsExported() && !set {
				t.Errorf("fullSpec leaves %s[].%s unset: set it, and run go test -update", path, f.Name)
			}
		}
	default:
		if v.IsZero() {
			t.Errorf("fullSpec leaves %s unset: set it, and run go test -update", path)
		}
	}
}
