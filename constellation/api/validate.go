package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Every string that reaches the hub from a site or an administrator is held
// to a narrow pattern, so that names stay safe in file names, HTML, logs and
// label selectors whatever the renderer.
var (
	hostnamePattern     = lazyRegexp(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	portPattern         = lazyRegexp(`^([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$`)
	pathPattern         = lazyRegexp(`^(/[A-Za-z0-9._-]+)*/?$`)
	namePattern         = lazyRegexp(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	countryPattern      = lazyRegexp(`^[A-Z]{2}$`)
	regionPattern       = lazyRegexp(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	jurisdictionPattern = lazyRegexp(`^[A-Z]{2,8}$`)
	tagPattern          = lazyRegexp(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)
	versionPattern      = lazyRegexp(`^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$`)
	attrKeyPattern      = lazyRegexp(`^[a-z][a-z0-9.]{0,31}$`)
	attrValuePattern    = lazyRegexp(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
)

// ValidateHost checks a DNS host name (letters, digits, inner '-', dots).
func ValidateHost(s string) error {
	if len(s) > 253 || !hostnamePattern.MatchString(s) {
		return fmt.Errorf("%q is not a host name", clip(s))
	}
	return nil
}

// ValidateName checks a site or template name: a DNS label (lowercase
// letters, digits, inner dashes, 63 characters at most).
func ValidateName(field, s string) error {
	if !namePattern.MatchString(s) {
		return fmt.Errorf("%s %q is not a DNS label (lowercase letters, digits and inner '-', 1 to 63 characters)", field, clip(s))
	}
	return nil
}

// Validate checks token attributes. Empty values are allowed: a site
// without a country simply fails every residency rule.
func (a Attributes) Validate() error {
	var errs []error
	if a.Country != "" && !countryPattern.MatchString(a.Country) {
		errs = append(errs, fmt.Errorf("country %q is not an ISO 3166-1 alpha-2 code such as FR or DE", clip(a.Country)))
	}
	if a.Region != "" && !regionPattern.MatchString(a.Region) {
		errs = append(errs, fmt.Errorf("region %q is not lowercase letters, digits and inner '-' (e.g. eu-west-3)", clip(a.Region)))
	}
	if a.Jurisdiction != "" && !jurisdictionPattern.MatchString(a.Jurisdiction) {
		errs = append(errs, fmt.Errorf("jurisdiction %q is not 2 to 8 uppercase letters such as EU or US", clip(a.Jurisdiction)))
	}
	if len(a.Tags) > 32 {
		errs = append(errs, fmt.Errorf("%d tags, at most 32", len(a.Tags)))
	}
	for _, t := range a.Tags {
		if !tagPattern.MatchString(t) {
			errs = append(errs, fmt.Errorf("tag %q is not lowercase letters, digits, '.' and '-' (e.g. gdpr, nis2)", clip(t)))
		}
	}
	return errors.Join(errs...)
}

// Validate checks a token request.
func (r TokenRequest) Validate() error {
	var errs []error
	if err := ValidateName("site", r.Site); err != nil {
		errs = append(errs, err)
	}
	if err := r.Attributes.Validate(); err != nil {
		errs = append(errs, err)
	}
	if r.TTLSeconds < 60 || r.TTLSeconds > 30*24*3600 {
		errs = append(errs, fmt.Errorf("ttl %ds is outside 1m..720h", r.TTLSeconds))
	}
	if r.Uses < 1 || r.Uses > 1000 {
		errs = append(errs, fmt.Errorf("uses %d is outside 1..1000", r.Uses))
	}
	return errors.Join(errs...)
}

func validateVersion(field, s string) error {
	if s != "" && !versionPattern.MatchString(s) {
		return fmt.Errorf("%s %q is not letters, digits and .+_- (64 characters at most)", field, clip(s))
	}
	return nil
}

// MaxGPUModelLen is the most bytes a GPU model name may hold. A model is
// free text as the hardware names it (pci.ids: "GH100 [H100 SXM5 80GB]",
// the driver: "NVIDIA H100 80GB HBM3", or "10de:2335" when unknown to
// both); sites clip longer names to this length before they send them.
const MaxGPUModelLen = 128

// GPUModelRune reports whether a GPU model name may hold r: any graphic
// character (letters, marks, digits, punctuation, symbols, spaces), never
// a control or format character (no newline, escape, bidi override or
// zero-width character that could forge or hide text in a log).
func GPUModelRune(r rune) bool { return unicode.IsGraphic(r) }

// validateGPUModel checks a GPU model name: printable UTF-8 text without
// leading or trailing spaces, MaxGPUModelLen bytes at most, or empty.
func validateGPUModel(field, s string) error {
	why := ""
	switch {
	case len(s) > MaxGPUModelLen:
		why = fmt.Sprintf("is %d bytes", len(s))
	case !utf8.ValidString(s):
		why = "is not UTF-8"
	case strings.TrimSpace(s) != s:
		why = "has leading or trailing spaces"
	default:
		if i := strings.IndexFunc(s, func(r rune) bool { return !GPUModelRune(r) }); i >= 0 {
			r, _ := utf8.DecodeRuneInString(s[i:])
			why = fmt.Sprintf("holds %U, which is not a printable character", r)
		}
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("%s %q %s: a GPU model is printable UTF-8 text (letters, digits, spaces, punctuation; no control characters) without leading or trailing spaces, %d bytes at most", field, clip(s), why, MaxGPUModelLen)
}

func validateGPUs(gpus []GPU) error {
	if len(gpus) > 16 {
		return fmt.Errorf("%d GPU kinds, at most 16", len(gpus))
	}
	for i, g := range gpus {
		if !tagPattern.MatchString(g.Vendor) {
			return fmt.Errorf("gpus[%d].vendor %q is not lowercase letters and digits (e.g. nvidia, amd, intel)", i, clip(g.Vendor))
		}
		if err := validateGPUModel(fmt.Sprintf("gpus[%d].model", i), g.Model); err != nil {
			return err
		}
		if g.Count < 0 || g.Count > 1<<16 || g.Used < 0 || g.Used > g.Count {
			return fmt.Errorf("gpus[%d] count %d / used %d out of range", i, g.Count, g.Used)
		}
	}
	return nil
}

// Validate checks a join inventory.
func (inv Inventory) Validate() error {
	if inv.Hostname != "" && !hostnamePattern.MatchString(inv.Hostname) {
		return fmt.Errorf("inventory.hostname %q is not a host name", clip(inv.Hostname))
	}
	if err := validateVersion("inventory.arch", inv.Arch); err != nil {
		return err
	}
	if err := validateVersion("inventory.etoileVersion", inv.EtoileVersion); err != nil {
		return err
	}
	if inv.Nodes < 0 || inv.Nodes > 100000 || inv.CPUMillis < 0 || inv.MemoryBytes < 0 {
		return errors.New("inventory counts must not be negative")
	}
	return validateGPUs(inv.GPUs)
}

// Validate checks a join request's shape; the token itself is checked by the hub.
func (r JoinRequest) Validate() error {
	if _, _, err := SplitToken(r.Token); err != nil {
		return err
	}
	if !strings.HasPrefix(r.CSR, "-----BEGIN CERTIFICATE REQUEST-----") {
		return errors.New("csr is not a PEM certificate request")
	}
	return r.Inventory.Validate()
}

// Validate checks a heartbeat.
func (h Heartbeat) Validate() error {
	if h.Nodes < 0 || h.Nodes > 100000 || h.NodesReady < 0 || h.NodesReady > h.Nodes {
		return fmt.Errorf("nodes %d / nodesReady %d out of range", h.Nodes, h.NodesReady)
	}
	if err := validateVersion("k3sVersion", h.K3sVersion); err != nil {
		return err
	}
	if err := validateVersion("etoileVersion", h.EtoileVersion); err != nil {
		return err
	}
	// The agent's own words, as on its ready line.
	if h.Slot != "" && h.Slot != "a" && h.Slot != "b" && h.Slot != "none" {
		return fmt.Errorf("slot %q is not a, b or none", clip(h.Slot))
	}
	c := h.Capacity
	if c.CPUMillis < 0 || c.CPUUsedMillis < 0 || c.MemoryBytes < 0 || c.MemoryUsedBytes < 0 {
		return errors.New("capacity values must not be negative")
	}
	if h.AppliedRevision < 0 || h.RefusedRevision < 0 {
		return errors.New("appliedRevision and refusedRevision must not be negative")
	}
	if err := validateProblem(h.TemplatesProblem); err != nil {
		return err
	}
	return validateGPUs(c.GPUs)
}

// MaxTemplatesProblemLen bounds a heartbeat's templatesProblem.
const MaxTemplatesProblemLen = 2048

// validateProblem checks a site's words on templates it cannot deploy:
// printable UTF-8 (shown by etoile hub sites), bounded.
func validateProblem(s string) error {
	switch {
	case len(s) > MaxTemplatesProblemLen:
		return fmt.Errorf("templatesProblem is %d bytes, at most %d", len(s), MaxTemplatesProblemLen)
	case !utf8.ValidString(s):
		return errors.New("templatesProblem is not UTF-8")
	case strings.ContainsFunc(s, func(r rune) bool { return !GPUModelRune(r) }):
		return fmt.Errorf("templatesProblem %q holds a character that is not printable", clip(s))
	}
	return nil
}

// AttrKeys are the site attributes that selectors and placement needs
// compare (see Site.Attr), in the order error messages list them.
var AttrKeys = []string{"country", "region", "jurisdiction", "tag", "gpu.vendor", "k3s.version", "etoile.version", "slot", "name", "site"}

// ValidateAttr checks one attribute term: the key must be one of AttrKeys
// and the value must be one a site can carry, checked as token attributes
// and heartbeats are (country=fr or tag=GDPR could never match a site).
func ValidateAttr(key, value string) error {
	if key == "k3s.version" || key == "etoile.version" {
		// Versions carry a + (v1.34.9+k3s1), which no other value has.
		if value == "" {
			return fmt.Errorf("%s is empty", key)
		}
		return validateVersion(key, value)
	}
	if err := validateKV(key, value); err != nil {
		return err
	}
	switch key {
	case "country":
		if !countryPattern.MatchString(value) {
			return fmt.Errorf("country %q is not an ISO 3166-1 alpha-2 code such as FR or DE (uppercase)", clip(value))
		}
	case "region":
		if !regionPattern.MatchString(value) {
			return fmt.Errorf("region %q is not lowercase letters, digits and inner '-' (e.g. eu-west-3)", clip(value))
		}
	case "jurisdiction":
		if !jurisdictionPattern.MatchString(value) {
			return fmt.Errorf("jurisdiction %q is not 2 to 8 uppercase letters such as EU or US", clip(value))
		}
	case "tag":
		if !tagPattern.MatchString(value) {
			return fmt.Errorf("tag %q is not lowercase letters, digits, '.' and '-' (e.g. gdpr, nis2)", clip(value))
		}
	case "gpu.vendor":
		if !tagPattern.MatchString(value) {
			return fmt.Errorf("gpu.vendor %q is not lowercase letters and digits (e.g. nvidia, amd, intel)", clip(value))
		}
	case "k3s.version", "etoile.version":
		return validateVersion(key, value)
	case "slot":
		if value != "a" && value != "b" && value != "none" {
			return fmt.Errorf("slot %q is not a, b or none", clip(value))
		}
	case "name", "site":
		return ValidateName(key, value)
	default:
		return fmt.Errorf("unknown key %q (valid keys: %s)", clip(key), strings.Join(AttrKeys, ", "))
	}
	return nil
}

// SelectorTags returns the tags a selector's tag term asks for: a site must
// carry every one of them. Several tags are stored as one comma-separated
// value ("gdpr,nis2"), since Selector is a map with one value per key.
func SelectorTags(v string) []string { return strings.Split(v, ",") }

// ValidateSelector checks template selector keys and values.
func ValidateSelector(sel map[string]string) error {
	if len(sel) > 16 {
		return fmt.Errorf("selector has %d terms, at most 16", len(sel))
	}
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := sel[k]
		if k != "tag" {
			if err := ValidateAttr(k, v); err != nil {
				return fmt.Errorf("selector %s=%s: %w", clip(k), clip(v), err)
			}
			continue
		}
		tags := SelectorTags(v)
		if len(tags) > 32 {
			return fmt.Errorf("selector tag has %d tags, at most 32", len(tags))
		}
		seen := map[string]bool{}
		for _, t := range tags {
			if err := ValidateAttr("tag", t); err != nil {
				return fmt.Errorf("selector tag=%s: %w", clip(v), err)
			}
			if seen[t] {
				return fmt.Errorf("selector tag=%s names tag %s twice", clip(v), t)
			}
			seen[t] = true
		}
	}
	return nil
}

// SelectorTerms lists a selector as sorted key=value terms, one per tag, as
// the CLI takes them (--selector tag=gdpr --selector tag=nis2).
func SelectorTerms(sel map[string]string) []string {
	terms := make([]string, 0, len(sel))
	for k, v := range sel {
		if k == "tag" {
			for _, t := range SelectorTags(v) {
				terms = append(terms, "tag="+t)
			}
			continue
		}
		terms = append(terms, k+"="+v)
	}
	sort.Strings(terms)
	return terms
}

// NormalizeSelector returns sel with its tag list sorted and without
// repeats, so that equal selectors are stored alike.
func NormalizeSelector(sel map[string]string) map[string]string {
	v, ok := sel["tag"]
	if !ok {
		return sel
	}
	tags := SelectorTags(v)
	sort.Strings(tags)
	out := make(map[string]string, len(sel))
	maps.Copy(out, sel)
	out["tag"] = strings.Join(slices.Compact(tags), ",")
	return out
}

// Validate checks a template.
func (t Template) Validate() error {
	if err := ValidateName("template name", t.Name); err != nil {
		return err
	}
	if strings.TrimSpace(t.Manifest) == "" {
		return fmt.Errorf("template %s manifest is empty", t.Name)
	}
	if len(t.Manifest) > MaxBodyBytes/2 {
		return fmt.Errorf("template %s manifest is %d bytes, at most %d", t.Name, len(t.Manifest), MaxBodyBytes/2)
	}
	if !utf8.ValidString(t.Manifest) {
		return fmt.Errorf("template %s manifest is not UTF-8", t.Name)
	}
	return ValidateSelector(t.Selector)
}

// ValidateAuditAction checks an audit filter: "" (every action) or one of AuditActions.
func ValidateAuditAction(action string) error {
	if action != "" && !slices.Contains(AuditActions, action) {
		return fmt.Errorf("audit action %q is unknown (valid actions: %s)", clip(action), strings.Join(AuditActions, ", "))
	}
	return nil
}

// validateKV checks the shape every key=value term shares.
func validateKV(k, v string) error {
	if !attrKeyPattern.MatchString(k) {
		return fmt.Errorf("key %q is not lowercase letters, digits and '.'", clip(k))
	}
	if !attrValuePattern.MatchString(v) {
		return fmt.Errorf("%s value %q is not letters, digits and ._-", k, clip(v))
	}
	return nil
}

// ParseKV parses "key=value" with the attribute key and value shape rules
// (placement needs also take capacity keys; see ValidateAttr for the
// attribute keys' own values).
func ParseKV(s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("%q is not key=value", clip(s))
	}
	if k == "k3s.version" || k == "etoile.version" {
		return k, v, ValidateAttr(k, v) // a + in the value
	}
	if err := validateKV(k, v); err != nil {
		return "", "", err
	}
	return k, v, nil
}

// Attr returns the values of a site attribute, as selectors and placement
// needs see them: name, country, region, jurisdiction, tag (one value per
// tag), gpu.vendor (one per GPU kind with a count), k3s.version,
// etoile.version, slot.
func (s Site) Attr(key string) []string {
	switch key {
	case "name", "site":
		return []string{s.Name}
	case "country":
		return []string{s.Country}
	case "region":
		return []string{s.Region}
	case "jurisdiction":
		return []string{s.Jurisdiction}
	case "tag":
		return s.Tags
	case "gpu.vendor":
		var v []string
		gpus := s.Heartbeat.Capacity.GPUs
		if s.LastHeartbeat == nil {
			gpus = s.Inventory.GPUs
		}
		for _, g := range gpus {
			if g.Count > 0 {
				v = append(v, g.Vendor)
			}
		}
		return v
	case "k3s.version":
		return []string{s.Heartbeat.K3sVersion}
	case "etoile.version":
		return []string{s.Heartbeat.EtoileVersion}
	case "slot":
		return []string{s.Heartbeat.Slot}
	}
	return nil
}

// Selects reports whether a template selector selects site s.
func Selects(sel map[string]string, s Site) bool {
	for k, v := range sel {
		if k == "tag" {
			// Every tag of the list: a template for gdpr,nis2 sites must
			// not reach a site with only one of them.
			for _, t := range SelectorTags(v) {
				if !s.HasTag(t) {
					return false
				}
			}
			continue
		}
		if !slices.Contains(s.Attr(k), v) {
			return false
		}
	}
	return true
}

// Decode reads one JSON value from r into v, refusing unknown fields,
// trailing data and bodies over MaxBodyBytes (the caller also wraps r in
// http.MaxBytesReader so that the connection is cut).
func Decode(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("reading request body: %w", err)
	}
	if len(data) > MaxBodyBytes {
		return fmt.Errorf("request body over %d bytes: %w", MaxBodyBytes, ErrTooLarge)
	}
	return DecodeBytes(data, v)
}

// DecodeBytes is Decode over bytes already read.
func DecodeBytes(data []byte, v any) error {
	if !utf8.Valid(data) {
		return errors.New("request body is not UTF-8 JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body is not the expected JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("request body has data after the JSON value")
	}
	return nil
}

// ErrTooLarge marks a body over MaxBodyBytes.
var ErrTooLarge = errors.New("body too large")

// clip keeps error messages about hostile input short and printable.
func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// lazyRE compiles its expression on first use: the agent links this
// package, and compiling every pattern at start cost tens of milliseconds
// of its boot under emulation.
type lazyRE struct {
	once sync.Once
	expr string
	re   *regexp.Regexp
}

func lazyRegexp(expr string) *lazyRE { return &lazyRE{expr: expr} }

// MatchString reports whether s matches the expression.
func (l *lazyRE) MatchString(s string) bool {
	l.once.Do(func() { l.re = regexp.MustCompile(l.expr) })
	return l.re.MatchString(s)
}

// FindAllStringSubmatch is regexp.Regexp's, every match.
func (l *lazyRE) FindAllStringSubmatch(s string) [][]string {
	l.once.Do(func() { l.re = regexp.MustCompile(l.expr) })
	return l.re.FindAllStringSubmatch(s, -1)
}
