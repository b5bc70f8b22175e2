package qa

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompareTrees(t *testing.T) {
	big := strings.Repeat("x", 3<<20)
	tests := []struct {
		name    string
		a, b    map[string]string
		wantErr []string // substrings; none = identical
	}{
		{"identical", map[string]string{"x.iso": big, "d/y": "1"}, map[string]string{"x.iso": big, "d/y": "1"}, nil},
		{"byte differs past first buffer", map[string]string{"x.iso": big + "a"}, map[string]string{"x.iso": big + "b"}, []string{"x.iso differs", "offset 3145728"}},
		{"shorter", map[string]string{"f": "abc"}, map[string]string{"f": "ab"}, []string{"f differs", "offset 2 "}},
		{"only in one", map[string]string{"f": "1", "g": "2"}, map[string]string{"f": "1", "h": "3"}, []string{"g exists only in the first", "h exists only in the second"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := t.TempDir(), t.TempDir()
			write := func(root string, files map[string]string) {
				for n, c := range files {
					p := filepath.Join(root, n)
					os.MkdirAll(filepath.Dir(p), 0o755)
					if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			write(a, tt.a)
			write(b, tt.b)
			err := CompareTrees(a, b)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("CompareTrees = %v, want identical", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CompareTrees found no difference")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
