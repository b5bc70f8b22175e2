package hub

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/store"
	"github.com/etoile-os/etoile/constellation/store/sqlite"
)

// serviceWithStore is a Service over a real store, with a movable clock.
func serviceWithStore(t *testing.T) (*Service, *time.Time) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return &Service{Store: st, Now: func() time.Time { return now }}, &now
}

var tokenN int

// joinSite joins site name with key, with a new token carrying tags.
func joinSite(t *testing.T, s *Service, name, key string, tags ...string) string {
	t.Helper()
	ctx := context.Background()
	tokenN++
	id := fmt.Sprintf("%016x", tokenN)
	now := s.now()
	tok := api.Token{ID: id, SecretHash: store.HashSecret("s"), Site: name, Attributes: api.Attributes{Country: "FR", Tags: tags},
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: 1, CreatedBy: "t"}
	if err := s.Store.CreateToken(ctx, tok, api.AuditEvent{At: now, Action: api.AuditTokenCreate}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Store.Join(ctx, store.JoinParams{TokenID: id, Secret: "s", KeySHA256: key, Now: now, NewSiteID: "site-" + name}, api.AuditEvent{At: now, Action: api.AuditSiteJoin})
	if err != nil {
		t.Fatal(err)
	}
	return res.Site.ID
}

func manifest(name string) string {
	return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + name + "\n"
}

func beat(k3s string, applied int64) api.Heartbeat {
	return api.Heartbeat{Nodes: 1, NodesReady: 1, K3sVersion: k3s, EtoileVersion: "0.1.0", Slot: "a", AppliedRevision: applied}
}

func names(objs []api.TemplateObject) string {
	var n []string
	for _, o := range objs {
		n = append(n, o.Name)
	}
	return strings.Join(n, " ")
}

// TestTemplatesFollowReportedAttributes: a template selecting on what a
// site reports (its K3s version) reaches the site when the value changes,
// though no template changed; a site whose selection is unchanged is not
// sent its set again; the admin view's applied and desired agree exactly
// when the site is up to date.
func TestTemplatesFollowReportedAttributes(t *testing.T) {
	ctx := context.Background()
	s, _ := serviceWithStore(t)
	admin := s.As("local:test")
	const key = "aaaaaaaaaaaaaaaaaaaa"
	id := joinSite(t, s, "k3s-1", key)
	if _, err := admin.PutTemplate(ctx, api.Template{Name: "base", Manifest: manifest("base")}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutTemplate(ctx, api.Template{Name: "new-k3s", Manifest: manifest("new"), Selector: map[string]string{"k3s.version": "v1.31.4+k3s1"}}); err != nil {
		t.Fatal(err)
	}
	var applied int64
	step := func(what, k3s, wantSent string) {
		t.Helper()
		resp, err := s.Heartbeat(ctx, id, key, beat(k3s, applied))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		sent := "-"
		if resp.SendTemplates {
			sent = names(resp.Templates)
			applied = resp.Revision
		}
		if sent != wantSent {
			t.Fatalf("%s: sent %q, want %q", what, sent, wantSent)
		}
		if resp.Revision != applied {
			t.Fatalf("%s: hub says revision %d, the site has applied %d", what, resp.Revision, applied)
		}
	}
	step("first beat on K3s 1.30", "v1.30.0+k3s1", "base")
	step("same again", "v1.30.0+k3s1", "-")
	step("K3s upgraded", "v1.31.4+k3s1", "base new-k3s")
	for range 3 {
		step("unchanged", "v1.31.4+k3s1", "-")
	}
	sites, err := s.Sites(ctx)
	if err != nil || len(sites) != 1 {
		t.Fatal(sites, err)
	}
	if got := sites[0]; got.DesiredRevision != applied || got.Heartbeat.AppliedRevision != applied {
		t.Fatalf("site listed with applied %d, desired %d; it has applied %d", got.Heartbeat.AppliedRevision, got.DesiredRevision, applied)
	}
	// A template change shows as pending before the site's next beat.
	if _, err := admin.PutTemplate(ctx, api.Template{Name: "base", Manifest: manifest("base2")}); err != nil {
		t.Fatal(err)
	}
	if sites, _ := s.Sites(ctx); sites[0].DesiredRevision == sites[0].Heartbeat.AppliedRevision {
		t.Fatalf("a changed template is not shown as pending: applied %d, desired %d", sites[0].Heartbeat.AppliedRevision, sites[0].DesiredRevision)
	}
	step("template changed", "v1.31.4+k3s1", "base new-k3s")
	step("back to K3s 1.30", "v1.30.0+k3s1", "base")
	if _, err := admin.RemoveTemplate(ctx, "base"); err != nil {
		t.Fatal(err)
	}
	// Nothing selected any more: an empty set, so that the site removes
	// what it wrote; then nothing.
	step("nothing selected", "v1.30.0+k3s1", "")
	step("still nothing", "v1.30.0+k3s1", "-")
	// A site whose hub used the global revision (older hub) reports that
	// number: it is sent its set once.
	applied = 7
	step("site of an older hub", "v1.31.4+k3s1", "new-k3s")
}

// TestRejoinWithNewTagsGetsTheirTemplates: a site joining again (same key)
// with a token carrying other tags is sent the templates of its new tags,
// and loses those of the old.
func TestRejoinWithNewTagsGetsTheirTemplates(t *testing.T) {
	ctx := context.Background()
	s, _ := serviceWithStore(t)
	admin := s.As("local:test")
	const key = "aaaaaaaaaaaaaaaaaaaa"
	id := joinSite(t, s, "tags-1", key, "dora")
	for name, tag := range map[string]string{"gdpr-tools": "gdpr", "dora-tools": "dora"} {
		if _, err := admin.PutTemplate(ctx, api.Template{Name: name, Manifest: manifest(name), Selector: map[string]string{"tag": tag}}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := s.Heartbeat(ctx, id, key, beat("", 0))
	if err != nil || !resp.SendTemplates || names(resp.Templates) != "dora-tools" {
		t.Fatalf("first beat: %+v %v", resp, err)
	}
	applied := resp.Revision
	if id2 := joinSite(t, s, "tags-1", key, "gdpr"); id2 != id {
		t.Fatalf("rejoin made site %s, was %s", id2, id)
	}
	resp, err = s.Heartbeat(ctx, id, key, beat("", applied))
	if err != nil || !resp.SendTemplates || names(resp.Templates) != "gdpr-tools" {
		t.Fatalf("beat after rejoining with tag gdpr: %+v %v", resp, err)
	}
}

// bigManifest is a ConfigMap of about n bytes; fill is repeated in its
// values (a character JSON escapes counts six times as sent).
func bigManifest(name string, n int, fill string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n", name)
	for j := 0; b.Len() < n-2100; j++ {
		fmt.Fprintf(&b, "  k%06d: %q\n", j, strings.Repeat(fill, 2000))
	}
	return b.String()
}

// TestTemplateSetBudget: the hub refuses a template that would let a
// site's templates exceed what a site reads in one answer, counting them
// as they travel, and only templates that can reach one site together.
func TestTemplateSetBudget(t *testing.T) {
	ctx := context.Background()
	const size = 400 << 10
	t.Run("all sites", func(t *testing.T) {
		s, _ := serviceWithStore(t)
		admin := s.As("local:test")
		fits := api.MaxTemplateSetBytes / api.TemplateWireBytes("cm-00", bigManifest("c", size, "x"))
		for i := range fits + 1 {
			name := fmt.Sprintf("cm-%02d", i)
			_, err := admin.PutTemplate(ctx, api.Template{Name: name, Manifest: bigManifest(name, size, "x")})
			if i < fits {
				if err != nil {
					t.Fatalf("template %d of %d that fit: %v", i+1, fits, err)
				}
				continue
			}
			var r *store.Refusal
			if !errors.As(err, &r) || r.Code != api.CodeTooLarge {
				t.Fatalf("template %d, over the budget: %v", i+1, err)
			}
			for _, want := range []string{"template " + name, fmt.Sprint(api.MaxTemplateSetBytes), fmt.Sprint(api.MaxAnswerBytes), "cm-00", "etoile hub template list"} {
				if !strings.Contains(r.Message, want) {
					t.Errorf("refusal %q does not say %q", r.Message, want)
				}
			}
		}
		// Replacing a template is not adding one.
		if _, err := admin.PutTemplate(ctx, api.Template{Name: "cm-00", Manifest: bigManifest("cm-00", size, "y")}); err != nil {
			t.Fatalf("replacing a template: %v", err)
		}
		if tl, _ := s.Store.Templates(ctx); len(tl.Templates) != fits {
			t.Fatalf("%d templates stored, want %d", len(tl.Templates), fits)
		}
	})
	t.Run("escaping counts", func(t *testing.T) {
		s, _ := serviceWithStore(t)
		admin := s.As("local:test")
		// '<' travels as \u003c: about 2 MB as sent for 400 KB of manifest.
		m := bigManifest("lt-0", size, "<")
		fits := api.MaxTemplateSetBytes / api.TemplateWireBytes("lt-0", m)
		if raw := (fits + 1) * len(m); raw > api.MaxTemplateSetBytes/2 {
			t.Fatalf("%d manifests of %d bytes are %d bytes: not a test of escaping", fits+1, len(m), raw)
		}
		for i := range fits + 1 {
			name := fmt.Sprintf("lt-%d", i)
			_, err := admin.PutTemplate(ctx, api.Template{Name: name, Manifest: bigManifest(name, size, "<")})
			if i < fits && err != nil {
				t.Fatal(err)
			}
			if i == fits && !IsRefusal(err, api.CodeTooLarge) {
				t.Fatalf("template %d of escaped characters: %v", i+1, err)
			}
		}
	})
	t.Run("exclusive selectors", func(t *testing.T) {
		s, _ := serviceWithStore(t)
		admin := s.As("local:test")
		put := func(name string, sel map[string]string) error {
			_, err := admin.PutTemplate(ctx, api.Template{Name: name, Manifest: bigManifest(name, size, "x"), Selector: sel})
			return err
		}
		// Variants for 20 K3s versions, 8 MB in all: a site runs one.
		for i := range 20 {
			if err := put(fmt.Sprintf("crd-%02d", i), map[string]string{"k3s.version": fmt.Sprintf("v1.%d.0+k3s1", 20+i)}); err != nil {
				t.Fatalf("variant %d: %v", i, err)
			}
		}
		// Tags add up: a site may carry them all.
		for i := range 12 {
			err := put(fmt.Sprintf("tag-%02d", i), map[string]string{"tag": fmt.Sprintf("t%d", i)})
			// One variant and up to 13 more fit; the 14th with a variant is over.
			if fits := i < api.MaxTemplateSetBytes/api.TemplateWireBytes("crd-00", bigManifest("crd-00", size, "x"))-1; fits != (err == nil) {
				t.Fatalf("tag template %d: %v", i, err)
			}
		}
	})
}

// TestLargestTogetherIsExact compares the budget's search with every
// assignment of values a site could have.
func TestLargestTogetherIsExact(t *testing.T) {
	keys := []string{"country", "slot", "k3s.version"}
	vals := []string{"a", "b", "c"}
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		items := make([]budgetItem, 1+r.IntN(9))
		for i := range items {
			items[i] = budgetItem{name: fmt.Sprint(i), terms: map[string]string{}, bytes: 1 + r.IntN(100)}
			for _, k := range keys {
				if r.IntN(2) == 0 {
					items[i].terms[k] = vals[r.IntN(len(vals))]
				}
			}
		}
		want := 0
		// Every site: each key one of the values or none of them.
		for code := range 4 * 4 * 4 {
			site := map[string]string{}
			for i, c := 0, code; i < len(keys); i, c = i+1, c/4 {
				if c%4 < 3 {
					site[keys[i]] = vals[c%4]
				}
			}
			n := 0
			for _, it := range items {
				sel := true
				for k, v := range it.terms {
					if site[k] != v {
						sel = false
					}
				}
				if sel {
					n += it.bytes
				}
			}
			want = max(want, n)
		}
		steps := 0
		got, gotNames := largestTogether(items, &steps)
		sum := 0
		for _, n := range gotNames {
			var i int
			fmt.Sscan(n, &i)
			sum += items[i].bytes
		}
		if got != want || sum != got {
			t.Fatalf("round %d: %+v: largest %d (names add to %d), want %d", round, items, got, sum, want)
		}
	}
}
