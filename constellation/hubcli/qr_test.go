package hubcli

import (
	"strings"
	"testing"
)

func TestWriteQR(t *testing.T) {
	var b strings.Builder
	js := "etoile://hub.example.eu:8443?token=0123456789abcdef.0s6BAprqLazyJiwASvIXFRvjDbw_-7p_Q8oWIdqneyg&ca=sha256:14bb57aa51ae64d9b3d4fb2f8614cf3ab685f1dd5a9bc46c7911f4ab45a7d1c1"
	if err := WriteQR(&b, js); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	// A version-8 code is 49 modules; with the quiet zone it is 53 wide and
	// (53+1)/2 = 27 lines of half blocks.
	cells := strings.Count(lines[0], "▀")
	if cells < 25 || len(lines) != (cells+1)/2 {
		t.Fatalf("%d lines of %d cells", len(lines), cells)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, "\x1b[0m") {
			t.Fatalf("line does not reset colors: %q", l[len(l)-10:])
		}
	}
}
