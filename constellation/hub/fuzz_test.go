package hub

import (
	"bytes"
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/pki"
	"github.com/etoile-os/etoile/constellation/store/sqlite"
)

// FuzzJoinHandler sends arbitrary bodies to the join endpoint of a hub with
// a real store: whatever arrives, the answer is a refusal (4xx) with a JSON
// error, never a 500 or a panic.
func FuzzJoinHandler(f *testing.F) {
	dir := f.TempDir()
	ca, _, err := pki.LoadOrCreateCA(dir, nil)
	if err != nil {
		f.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "hub.db"), sqlite.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	key, _ := pki.NewKey()
	csr, _ := pki.CSR(key, "x")
	srv := &Server{Service: &Service{Store: st, CA: ca}}
	h := srv.APIHandler()
	f.Add([]byte(`{"token":"0123456789abcdef.0s6BAprqLazyJiwASvIXFRvjDbw_-7p_Q8oWIdqneyg","csr":` + quote(string(csr)) + `,"inventory":{"nodes":1,"cpuMillis":1,"memoryBytes":1}}`))
	f.Add([]byte(`{"token":"' OR 1=1 --","csr":"","inventory":{}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", api.PathJoin, bytes.NewReader(body)))
		if rec.Code < 400 || rec.Code >= 500 {
			t.Fatalf("join with %q answered %d: %s", body, rec.Code, rec.Body.String())
		}
		var e api.Error
		if api.DecodeBytes(rec.Body.Bytes(), &e) != nil || e.Code == "" || e.Message == "" {
			t.Fatalf("refusal body %q", rec.Body.String())
		}
	})
}

func quote(s string) string {
	b := []byte{'"'}
	for _, c := range []byte(s) {
		if c == '\n' {
			b = append(b, '\\', 'n')
			continue
		}
		b = append(b, c)
	}
	return string(append(b, '"'))
}
