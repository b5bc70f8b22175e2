// Package placement answers "which sites may run this workload" with a
// reason for every site it excludes. The rules are data (Rules lists them in
// the order they are applied) so that an auditor can read what was checked.
package placement

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
)

// Rule names, as they appear in exclusions.
const (
	RuleRevoked      = "revoked"
	RuleResidency    = "residency"
	RuleJurisdiction = "jurisdiction"
	RuleTag          = "missing-tag"
	RuleAttribute    = "attribute"
	RuleOffline      = "offline"
	RuleCapacity     = "no-capacity"
)

// RuleDoc describes one rule for people.
type RuleDoc struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// Rules are applied in this order; an excluded site reports the first it fails.
var Rules = []RuleDoc{
	{RuleRevoked, "a revoked site runs nothing"},
	{RuleResidency, "the site's country and region must be among those the workload needs (country=, region=)"},
	{RuleJurisdiction, "the site's legal jurisdiction must be among those the workload needs (jurisdiction=)"},
	{RuleTag, "the site must carry every compliance tag the workload needs (--tag gdpr, nis2, dora…)"},
	{RuleAttribute, "other attributes must match (gpu.vendor=, k3s.version=, name=…)"},
	{RuleOffline, "the site must have sent a heartbeat recently (online or stale, not offline)"},
	{RuleCapacity, "the site must have the free CPU, memory and GPUs the workload needs (cpu=, memory=, gpu=)"},
}

// Need is the parsed form of a placement request.
type Need struct {
	Attr        map[string][]string // any of the values, per key
	Tags        []string
	CPUMillis   int64
	MemoryBytes int64
	GPUs        int
}

// Parse validates a request. Repeated attribute keys mean "any of"
// (country=FR --need country=DE); repeated tags mean "all of"; capacity keys
// are cpu (cores, or millicores with m), memory (bytes, or with Ki/Mi/Gi/Ti
// or K/M/G/T) and gpu (a count), each given at most once.
func Parse(req api.PlacementRequest) (Need, error) {
	n := Need{Attr: map[string][]string{}}
	var errs []error
	if len(req.Needs) > 32 || len(req.Tags) > 32 {
		return n, errors.New("placement request has more than 32 needs or tags")
	}
	capacity := map[string]string{} // key → the need that set it
	for _, s := range req.Needs {
		k, v, err := api.ParseKV(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("need %q: %w", clip(s), err))
			continue
		}
		switch k {
		case "cpu", "memory", "gpu":
			if prev, ok := capacity[k]; ok {
				err = fmt.Errorf("%s is already needed as %s: give each capacity need once", k, prev)
				break
			}
			capacity[k] = s
			switch k {
			case "cpu":
				n.CPUMillis, err = parseCPU(v)
			case "memory":
				n.MemoryBytes, err = parseBytes(v)
			case "gpu":
				n.GPUs, err = parseCount(v)
			}
		case "tag":
			if err = api.ValidateAttr(k, v); err == nil {
				n.Tags = append(n.Tags, v)
			}
		default:
			if err = api.ValidateAttr(k, v); err != nil && !slices.Contains(api.AttrKeys, k) {
				err = fmt.Errorf("unknown key %q (valid keys: %s, cpu, memory, gpu)", k, strings.Join(api.AttrKeys, ", "))
			}
			if err == nil {
				n.Attr[k] = append(n.Attr[k], v)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("need %s: %w", s, err))
		}
	}
	for _, t := range req.Tags {
		if err := api.ValidateAttr("tag", t); err != nil {
			errs = append(errs, fmt.Errorf("--tag: %w", err))
			continue
		}
		n.Tags = append(n.Tags, t)
	}
	return n, errors.Join(errs...)
}

func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

const cpuForm = "a number of cores (4, 0.5) or of millicores (500m)"

func parseCPU(v string) (int64, error) {
	if m, ok := strings.CutSuffix(v, "m"); ok {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n < 0 || n > 1e9 {
			return 0, fmt.Errorf("cpu %q is not %s", v, cpuForm)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 1e6 {
		return 0, fmt.Errorf("cpu %q is not %s", v, cpuForm)
	}
	return int64(math.Round(f * 1000)), nil
}

func parseCount(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1<<16 {
		return 0, fmt.Errorf("gpu %q is not a count of free GPUs (0, 1, 2…)", v)
	}
	return n, nil
}

func parseBytes(v string) (int64, error) {
	orig := v
	mult := int64(1)
	for _, u := range []struct {
		s string
		m int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}} {
		if p, ok := strings.CutSuffix(v, u.s); ok {
			v, mult = p, u.m
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("memory %q is not a size such as 512Mi or 4Gi", orig)
	}
	return n * mult, nil
}

// Evaluate ranks sites for a need. Sites must carry their Status.
func Evaluate(req api.PlacementRequest, sites []api.Site, now time.Time, interval time.Duration) (api.PlacementResult, error) {
	res := api.PlacementResult{Request: req, Eligible: []api.Candidate{}, Excluded: []api.Exclusion{}}
	need, err := Parse(req)
	if err != nil {
		return res, err
	}
	for _, s := range sites {
		rule, reason := check(need, s)
		if rule != "" {
			res.Excluded = append(res.Excluded, api.Exclusion{Site: s.Name, Rule: rule, Reason: reason})
			continue
		}
		score, why := rank(need, s, now, interval)
		res.Eligible = append(res.Eligible, api.Candidate{Site: s.Name, Score: score, Status: s.Status, Why: why})
	}
	sort.SliceStable(res.Eligible, func(i, j int) bool {
		if res.Eligible[i].Score != res.Eligible[j].Score {
			return res.Eligible[i].Score > res.Eligible[j].Score
		}
		return res.Eligible[i].Site < res.Eligible[j].Site
	})
	sort.SliceStable(res.Excluded, func(i, j int) bool { return res.Excluded[i].Site < res.Excluded[j].Site })
	return res, nil
}

func oneOf(have string, want []string) bool { return slices.Contains(want, have) }

func show(s string) string {
	if s == "" {
		return "unset"
	}
	return s
}

func check(n Need, s api.Site) (rule, reason string) {
	if s.RevokedAt != nil || s.Status == api.StatusRevoked {
		return RuleRevoked, "site was revoked"
	}
	if w := n.Attr["country"]; len(w) > 0 && !oneOf(s.Country, w) {
		return RuleResidency, fmt.Sprintf("country is %s, workload needs %s", show(s.Country), strings.Join(w, " or "))
	}
	if w := n.Attr["region"]; len(w) > 0 && !oneOf(s.Region, w) {
		return RuleResidency, fmt.Sprintf("region is %s, workload needs %s", show(s.Region), strings.Join(w, " or "))
	}
	if w := n.Attr["jurisdiction"]; len(w) > 0 && !oneOf(s.Jurisdiction, w) {
		return RuleJurisdiction, fmt.Sprintf("jurisdiction is %s, workload needs %s", show(s.Jurisdiction), strings.Join(w, " or "))
	}
	var missing []string
	for _, t := range n.Tags {
		if !s.HasTag(t) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return RuleTag, fmt.Sprintf("site lacks tag %s (has %s)", strings.Join(missing, ", "), show(strings.Join(s.Tags, ", ")))
	}
	keys := make([]string, 0, len(n.Attr))
	for k := range n.Attr {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "country" || k == "region" || k == "jurisdiction" {
			continue
		}
		have := s.Attr(k)
		ok := false
		for _, h := range have {
			if oneOf(h, n.Attr[k]) {
				ok = true
			}
		}
		if !ok {
			return RuleAttribute, fmt.Sprintf("%s is %s, workload needs %s", k, show(strings.Join(have, ", ")), strings.Join(n.Attr[k], " or "))
		}
	}
	if s.Status == api.StatusOffline {
		last := "never"
		if s.LastHeartbeat != nil {
			last = s.LastHeartbeat.UTC().Format(time.RFC3339)
		}
		return RuleOffline, "no recent heartbeat (last: " + last + ")"
	}
	c := s.Heartbeat.Capacity
	if free := c.CPUMillis - c.CPUUsedMillis; n.CPUMillis > 0 && free < n.CPUMillis {
		return RuleCapacity, fmt.Sprintf("%dm CPU free, workload needs %dm", max(free, 0), n.CPUMillis)
	}
	if free := c.MemoryBytes - c.MemoryUsedBytes; n.MemoryBytes > 0 && free < n.MemoryBytes {
		return RuleCapacity, fmt.Sprintf("%d MiB memory free, workload needs %d MiB", max(free, 0)>>20, n.MemoryBytes>>20)
	}
	if n.GPUs > 0 {
		free, vendors := gpuFree(c, n.Attr["gpu.vendor"])
		if free < n.GPUs {
			return RuleCapacity, fmt.Sprintf("%d %sGPU free, workload needs %d", free, vendors, n.GPUs)
		}
	}
	return "", ""
}

// gpuFree counts the free GPUs of the vendors a need names (any vendor
// when it names none), each vendor once however often it is named, and
// returns them, in the order named, for messages: "nvidia or amd " (""
// for any vendor).
func gpuFree(c api.Capacity, vendors []string) (int, string) {
	if len(vendors) == 0 {
		return c.GPUFree(""), ""
	}
	var vs []string
	free := 0
	for _, v := range vendors {
		if !slices.Contains(vs, v) {
			vs = append(vs, v)
			free += c.GPUFree(v)
		}
	}
	return free, strings.Join(vs, " or ") + " "
}

// rank scores a site from 0 to 1: mostly free capacity, some freshness, so
// that of two equal sites the one heard from last comes first.
func rank(n Need, s api.Site, now time.Time, interval time.Duration) (float64, string) {
	c := s.Heartbeat.Capacity
	frac := func(total, used int64) float64 {
		if total <= 0 {
			return 0
		}
		return math.Max(0, float64(total-used)/float64(total))
	}
	cpu, mem := frac(c.CPUMillis, c.CPUUsedMillis), frac(c.MemoryBytes, c.MemoryUsedBytes)
	fresh := 0.0
	if s.LastHeartbeat != nil && interval > 0 {
		age := now.Sub(*s.LastHeartbeat)
		fresh = math.Max(0, 1-float64(age)/float64(10*interval))
	}
	score := 0.4*cpu + 0.4*mem + 0.2*fresh
	score = math.Round(score*1000) / 1000
	why := fmt.Sprintf("%.0f%% CPU free, %.0f%% memory free, %s", cpu*100, mem*100, s.Status)
	if n.GPUs > 0 {
		free, vendors := gpuFree(c, n.Attr["gpu.vendor"])
		why += fmt.Sprintf(", %d %sGPU free", free, vendors)
	}
	return score, why
}
