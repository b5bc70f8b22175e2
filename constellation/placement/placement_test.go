package placement

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
)

func site(name, country, jur string, tags []string, status string, cpuFree int64, gpus []api.GPU, age time.Duration, now time.Time) api.Site {
	last := now.Add(-age)
	return api.Site{
		Name: name, Attributes: api.Attributes{Country: country, Jurisdiction: jur, Tags: tags}, Status: status, LastHeartbeat: &last,
		Heartbeat: api.Heartbeat{Nodes: 1, NodesReady: 1, Capacity: api.Capacity{CPUMillis: 8000, CPUUsedMillis: 8000 - cpuFree, MemoryBytes: 32 << 30, MemoryUsedBytes: 8 << 30, GPUs: gpus}},
	}
}

func TestEvaluate(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	revokedAt := now.Add(-time.Hour)
	nv := []api.GPU{{Vendor: "nvidia", Count: 2, Used: 1}}
	sites := []api.Site{
		site("paris-1", "FR", "EU", []string{"gdpr", "nis2"}, api.StatusOnline, 6000, nv, 10*time.Second, now),
		site("paris-2", "FR", "EU", []string{"gdpr"}, api.StatusOnline, 1000, nil, 5*time.Second, now),
		site("lyon-1", "FR", "EU", []string{"gdpr"}, api.StatusOffline, 8000, nv, time.Hour, now),
		site("berlin-1", "DE", "EU", []string{"gdpr"}, api.StatusOnline, 8000, nv, time.Second, now),
		site("nyc-1", "US", "US", nil, api.StatusOnline, 8000, nv, time.Second, now),
		site("lille-1", "FR", "EU", []string{"gdpr"}, api.StatusOnline, 8000, []api.GPU{{Vendor: "nvidia", Count: 1, Used: 1}}, time.Second, now),
		site("nantes-1", "FR", "EU", []string{"gdpr"}, api.StatusRevoked, 8000, nv, time.Second, now),
	}
	sites[6].RevokedAt = &revokedAt
	tests := []struct {
		name     string
		req      api.PlacementRequest
		eligible []string
		excluded map[string]string // site -> rule
	}{
		{
			name:     "FR gdpr nvidia gpu",
			req:      api.PlacementRequest{Needs: []string{"country=FR", "gpu.vendor=nvidia", "gpu=1"}, Tags: []string{"gdpr"}},
			eligible: []string{"paris-1"},
			excluded: map[string]string{"paris-2": RuleAttribute, "lyon-1": RuleOffline, "berlin-1": RuleResidency, "nyc-1": RuleResidency, "lille-1": RuleCapacity, "nantes-1": RuleRevoked},
		},
		{
			name:     "EU jurisdiction, nis2",
			req:      api.PlacementRequest{Needs: []string{"jurisdiction=EU"}, Tags: []string{"nis2"}},
			eligible: []string{"paris-1"},
			excluded: map[string]string{"paris-2": RuleTag, "lyon-1": RuleTag, "berlin-1": RuleTag, "nyc-1": RuleJurisdiction, "lille-1": RuleTag, "nantes-1": RuleRevoked},
		},
		{
			name: "FR or DE with 4 free cores, ranked by free capacity",
			req:  api.PlacementRequest{Needs: []string{"country=FR", "country=DE", "cpu=4"}},
			// berlin-1 and lille-1 have all 8 cores free; berlin-1 was heard from at the same age: name breaks the tie.
			eligible: []string{"berlin-1", "lille-1", "paris-1"},
			excluded: map[string]string{"paris-2": RuleCapacity, "lyon-1": RuleOffline, "nyc-1": RuleResidency, "nantes-1": RuleRevoked},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Evaluate(tt.req, sites, now, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range res.Eligible {
				got = append(got, c.Site)
			}
			if len(got) != len(tt.eligible) {
				t.Fatalf("eligible %v, want %v", got, tt.eligible)
			}
			for i := range got {
				if got[i] != tt.eligible[i] {
					t.Fatalf("eligible %v, want %v", got, tt.eligible)
				}
			}
			if len(res.Excluded) != len(tt.excluded) {
				t.Fatalf("excluded %+v, want %v", res.Excluded, tt.excluded)
			}
			for _, e := range res.Excluded {
				if tt.excluded[e.Site] != e.Rule {
					t.Errorf("%s excluded by %s (%s), want %s", e.Site, e.Rule, e.Reason, tt.excluded[e.Site])
				}
				if e.Reason == "" {
					t.Errorf("%s excluded without a reason", e.Site)
				}
			}
		})
	}
}

func TestParseRefusesBadNeeds(t *testing.T) {
	for _, n := range []string{"country", "color=blue", "cpu=lots", "memory=4Gb", "gpu=-1", "country=FR' OR '1'='1"} {
		if _, err := Parse(api.PlacementRequest{Needs: []string{n}}); err == nil {
			t.Errorf("need %q accepted", n)
		}
	}
	n, err := Parse(api.PlacementRequest{Needs: []string{"cpu=1.5", "memory=4Gi", "gpu=2"}})
	if err != nil || n.CPUMillis != 1500 || n.MemoryBytes != 4<<30 || n.GPUs != 2 {
		t.Fatalf("Parse = %+v, %v", n, err)
	}
}

func TestParseNeedErrorsSayWhatIsExpected(t *testing.T) {
	for _, tt := range []struct {
		needs []string
		want  string
	}{
		{[]string{"cpu=abc"}, "need cpu=abc: cpu \"abc\" is not a number of cores"},
		{[]string{"cpu=abcm"}, "need cpu=abcm: cpu \"abcm\" is not a number of cores"},
		{[]string{"cpu=-5m"}, "cpu=-5m"},
		{[]string{"cpu=NaN"}, "need cpu=NaN"},
		{[]string{"gpu=x"}, "need gpu=x: gpu \"x\" is not a count of free GPUs"},
		{[]string{"cpu=8", "cpu=1"}, "cpu is already needed as cpu=8"},
		{[]string{"gpu=1", "gpu=1"}, "gpu is already needed as gpu=1"},
		{[]string{"tag=GDPR"}, "tag \"GDPR\""},
		{[]string{"country=fr"}, "ISO 3166-1"},
		{[]string{"countyr=FR"}, "valid keys: country"},
	} {
		_, err := Parse(api.PlacementRequest{Needs: tt.needs})
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "strconv") {
			t.Errorf("needs %v: %v, want %q", tt.needs, err, tt.want)
		}
	}
	if _, err := Parse(api.PlacementRequest{Tags: []string{"GDPR"}}); err == nil || !strings.Contains(err.Error(), "--tag") {
		t.Errorf("--tag GDPR: %v", err)
	}
	// Repeated attribute needs stay "any of".
	n, err := Parse(api.PlacementRequest{Needs: []string{"country=FR", "country=DE", "tag=gdpr", "cpu=500m"}})
	if err != nil || len(n.Attr["country"]) != 2 || len(n.Tags) != 1 || n.CPUMillis != 500 {
		t.Fatalf("Parse = %+v, %v", n, err)
	}
}

// TestGPUCapacityCountsOnlyTheNamedVendors: with several gpu.vendor needs
// ("any of"), only the free GPUs of those vendors count, never the site's
// other GPUs.
func TestGPUCapacityCountsOnlyTheNamedVendors(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	mixed := site("mixed-1", "FR", "EU", nil, api.StatusOnline, 8000,
		[]api.GPU{{Vendor: "nvidia", Count: 1, Used: 1}, {Vendor: "intel", Count: 4}}, time.Second, now)
	amd := site("amd-1", "FR", "EU", nil, api.StatusOnline, 8000,
		[]api.GPU{{Vendor: "nvidia", Count: 1}, {Vendor: "amd", Count: 1}, {Vendor: "intel", Count: 4}}, time.Second, now)
	for _, tt := range []struct {
		name     string
		needs    []string
		eligible []string
		reason   string // of mixed-1's exclusion
	}{
		{"two vendors", []string{"gpu.vendor=nvidia", "gpu.vendor=amd", "gpu=2"}, []string{"amd-1"}, "0 nvidia or amd GPU free, workload needs 2"},
		{"a vendor named twice counts once", []string{"gpu.vendor=nvidia", "gpu.vendor=amd", "gpu.vendor=amd", "gpu=3"}, nil, "0 nvidia or amd GPU free, workload needs 3"},
		{"one vendor", []string{"gpu.vendor=nvidia", "gpu=1"}, []string{"amd-1"}, "0 nvidia GPU free, workload needs 1"},
		{"any vendor", []string{"gpu=5"}, []string{"amd-1"}, "4 GPU free, workload needs 5"},
		{"the other vendor", []string{"gpu.vendor=intel", "gpu.vendor=amd", "gpu=4"}, []string{"amd-1", "mixed-1"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Evaluate(api.PlacementRequest{Needs: tt.needs}, []api.Site{mixed, amd}, now, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range res.Eligible {
				got = append(got, c.Site)
			}
			if !slices.Equal(got, tt.eligible) {
				t.Fatalf("eligible %v, want %v (excluded %+v)", got, tt.eligible, res.Excluded)
			}
			for _, e := range res.Excluded {
				if e.Site == "mixed-1" && (e.Rule != RuleCapacity || e.Reason != tt.reason) {
					t.Errorf("mixed-1 excluded by %s (%s), want %s (%s)", e.Rule, e.Reason, RuleCapacity, tt.reason)
				}
			}
		})
	}
}
