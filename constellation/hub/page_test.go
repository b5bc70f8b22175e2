package hub

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/store"
)

// hostileStore returns sites whose strings bypassed validation, as if the
// database had been edited by hand: the page must still escape them.
type hostileStore struct{ store.Store }

func (hostileStore) Sites(context.Context) ([]api.Site, error) {
	now := time.Now()
	return []api.Site{{
		Name:       `<script>alert("name")</script>`,
		Attributes: api.Attributes{Country: `"><img src=x onerror=alert(1)>`, Tags: []string{"</td><script>x</script>"}},
		Heartbeat:  api.Heartbeat{K3sVersion: "<b>v1</b>", Capacity: api.Capacity{GPUs: []api.GPU{{Vendor: "<i>nv</i>", Count: 1}}}}, LastHeartbeat: &now,
	}}, nil
}

func (hostileStore) Templates(context.Context) (api.TemplateList, error) {
	return api.TemplateList{}, nil
}

func TestPageEscapesEverything(t *testing.T) {
	srv := &Server{Service: &Service{Store: hostileStore{}}}
	rec := httptest.NewRecorder()
	srv.StatusHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	body, _ := io.ReadAll(rec.Body)
	page := string(body)
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	for _, raw := range []string{"<script>", "<img", "<b>v1", "<i>nv"} {
		if strings.Contains(page, raw) {
			t.Errorf("page contains unescaped %q", raw)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;") {
		t.Error("escaped site name missing")
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
}

func TestValidateManifest(t *testing.T) {
	tests := []struct{ name, manifest, want string }{
		{"namespace", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n", ""},
		{"two docs and an empty one", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\napiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: b\n", ""},
		{"not yaml", "a: [", "not YAML"},
		{"no kind", "apiVersion: v1\nmetadata:\n  name: a\n", "no kind"},
		{"no name", "apiVersion: v1\nkind: Namespace\n", "metadata.name"},
		{"only comments", "# nothing\n", "no Kubernetes object"},
	}
	for _, tt := range tests {
		err := ValidateManifest(tt.manifest)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

type auditStore struct {
	store.Store
	mu     sync.Mutex // the end-of-minute count is recorded from a timer
	events []api.AuditEvent
}

func (a *auditStore) Audit(_ context.Context, ev api.AuditEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
	return nil
}

func (a *auditStore) recorded() []api.AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.events)
}

// TestRefusedJoinAuditIsBounded: of a flood of refused joins the audit
// keeps the first few of each minute and one event counting the rest.
func TestRefusedJoinAuditIsBounded(t *testing.T) {
	st := &auditStore{}
	s := &Service{Store: st}
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	// 1000 refusals over the first 30 s of a minute, then one two minutes on.
	for i := range 1000 {
		s.auditRefusal(context.Background(), api.AuditEvent{At: t0.Add(time.Duration(i) * 30 * time.Millisecond), Action: api.AuditSiteJoinRefuse, Subject: api.CodeTokenInvalid})
	}
	s.auditRefusal(context.Background(), api.AuditEvent{At: t0.Add(2 * time.Minute), Action: api.AuditSiteJoinRefuse, Subject: api.CodeTokenInvalid})
	evs := st.recorded()
	if n := len(evs); n != refusalsPerMinute+2 {
		t.Fatalf("%d audit events for 1001 refused joins, want %d: the first %d of the minute, one counting the rest, and the later one", n, refusalsPerMinute+2, refusalsPerMinute)
	}
	sum := evs[len(evs)-2]
	if sum.Subject != "suppressed" || sum.Action != api.AuditSiteJoinRefuse || !strings.Contains(sum.Detail, "and 990 more") || !strings.Contains(sum.Detail, "2026-11-25T12:00:00Z") {
		t.Fatalf("count of the unrecorded refusals: %+v", sum)
	}
}

// TestRefusedJoinCountRecordedWhenFloodStops: the count of a minute's
// unrecorded refusals is recorded when the minute ends, without another
// refusal to carry it, and at once when the hub stops.
func TestRefusedJoinCountRecordedWhenFloodStops(t *testing.T) {
	st := &auditStore{}
	s := &Service{Store: st}
	// Half a second before a minute ends: the count is due a second later.
	end := time.Now().UTC().Truncate(time.Minute).Add(time.Minute - time.Second/2)
	for range refusalsPerMinute + 3 {
		s.auditRefusal(context.Background(), api.AuditEvent{At: end, Action: api.AuditSiteJoinRefuse, Subject: api.CodeTokenInvalid})
	}
	counted := func() bool {
		evs := st.recorded()
		return len(evs) == refusalsPerMinute+1 && strings.Contains(evs[refusalsPerMinute].Detail, "and 3 more")
	}
	for range 300 {
		if counted() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !counted() {
		t.Fatalf("after the minute ended, with no refusal since: %+v", st.recorded())
	}
	// The hub stopping records the count of the minute in progress.
	st2 := &auditStore{}
	s2 := &Service{Store: st2}
	mid := time.Date(2026, 11, 25, 12, 0, 30, 0, time.UTC)
	for range refusalsPerMinute + 2 {
		s2.auditRefusal(context.Background(), api.AuditEvent{At: mid, Action: api.AuditSiteJoinRefuse, Subject: api.CodeTokenInvalid})
	}
	s2.FlushRefusals(context.Background())
	if evs := st2.recorded(); len(evs) != refusalsPerMinute+1 || !strings.Contains(evs[refusalsPerMinute].Detail, "and 2 more") {
		t.Fatalf("after FlushRefusals: %+v", evs)
	}
}

// templatesOnlyStore has templates but no site yet.
type templatesOnlyStore struct{ store.Store }

func (templatesOnlyStore) Sites(context.Context) ([]api.Site, error) { return nil, nil }
func (templatesOnlyStore) Templates(context.Context) (api.TemplateList, error) {
	return api.TemplateList{Revision: 3, Templates: []api.Template{{Name: "base", Revision: 3}}}, nil
}

func TestPageShowsTemplateRevisionBeforeAnySite(t *testing.T) {
	srv := &Server{Service: &Service{Store: templatesOnlyStore{}}}
	rec := httptest.NewRecorder()
	srv.StatusHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if page := rec.Body.String(); !strings.Contains(page, "template revision 3") {
		t.Fatalf("page without sites does not show the hub's revision 3:\n%s", page)
	}
}

func (a *auditStore) AuditEvents(context.Context, string, int) ([]api.AuditEvent, error) {
	return a.events, nil
}

func TestAuditRefusesUnknownAction(t *testing.T) {
	a := (&Service{Store: &auditStore{}}).As("local:test")
	_, err := a.Audit(context.Background(), "nosuch", 10)
	if !IsRefusal(err, api.CodeBadRequest) || !strings.Contains(err.Error(), "nosuch") || !strings.Contains(err.Error(), api.AuditSiteJoin) {
		t.Fatalf("audit --action nosuch: %v", err)
	}
}

func TestNotFoundSaidOnce(t *testing.T) {
	err := store.NotFound("token", "nosuch")
	if err.Error() != "no token nosuch: see etoile hub token list" || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("%v (is ErrNotFound: %v)", err, errors.Is(err, store.ErrNotFound))
	}
}
