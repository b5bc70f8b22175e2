package netkind

import "testing"

func TestRepresentor(t *testing.T) {
	for name, want := range map[string]bool{"pf0vf3\n": true, "pf0sf1": true, "c1pf0vf2": true, "p0": false, "pf0": false, "": false, "vf0": false} {
		if got := Representor([]byte(name)); got != want {
			t.Errorf("Representor(%q) = %v, want %v", name, got, want)
		}
	}
}
