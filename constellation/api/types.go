// Package api holds what the hub and its sites say to each other: the join
// string, the JSON bodies of every endpoint, the data model shared with the
// store, and the validation of every string that crosses the wire. It has no
// cgo dependency so that the static agent can import it.
package api

import (
	"slices"
	"time"
)

// Endpoint paths. Site endpoints authenticate with the join token (join) or
// the site certificate (the others); admin endpoints with the admin
// certificate written at the hub's first start.
const (
	PathJoin      = "/v1/join"
	PathRenew     = "/v1/renew"
	PathHeartbeat = "/v1/heartbeat"

	PathAdminTokens    = "/v1/admin/tokens"
	PathAdminSites     = "/v1/admin/sites"
	PathAdminPlace     = "/v1/admin/place"
	PathAdminTemplates = "/v1/admin/templates"
	PathAdminAudit     = "/v1/admin/audit"
	PathAdminAdmins    = "/v1/admin/admins"
)

// MaxBodyBytes bounds every request body the hub reads. Templates are the
// largest legitimate body.
const MaxBodyBytes = 1 << 20

// Certificate subject organizations tell a site from an administrator.
const (
	OrgSite  = "etoile-site"
	OrgAdmin = "etoile-admin"
)

// Error is the body of every refusal. Code is stable for programs; Message
// says what went wrong and what to do.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"error"`
}

// Error codes.
const (
	CodeBadRequest   = "bad_request"
	CodeTooLarge     = "too_large"
	CodeTokenInvalid = "token_invalid"
	CodeTokenExpired = "token_expired"
	CodeTokenUsed    = "token_used"
	CodeTokenRevoked = "token_revoked"
	CodeSiteRevoked  = "site_revoked"
	CodeUnauthorized = "unauthorized"
	CodeNotFound     = "not_found"
	CodeConflict     = "conflict"
	CodeInternal     = "internal"
)

// Attributes are what a token gives the site that joins with it; placement
// and template selectors read them.
type Attributes struct {
	Country      string   `json:"country,omitempty"`
	Region       string   `json:"region,omitempty"`
	Jurisdiction string   `json:"jurisdiction,omitempty"`
	Tags         []string `json:"tags,omitempty"`
}

// HasTag reports whether the attributes carry tag t.
func (a Attributes) HasTag(t string) bool { return slices.Contains(a.Tags, t) }

// GPU is one kind of accelerator at a site.
type GPU struct {
	Vendor string `json:"vendor"`
	Model  string `json:"model,omitempty"`
	Count  int    `json:"count"`
	Used   int    `json:"used,omitempty"`
}

// Inventory is the summary a site sends when it joins.
type Inventory struct {
	Hostname      string `json:"hostname,omitempty"`
	Arch          string `json:"arch,omitempty"`
	Nodes         int    `json:"nodes"`
	CPUMillis     int64  `json:"cpuMillis"`
	MemoryBytes   int64  `json:"memoryBytes"`
	GPUs          []GPU  `json:"gpus,omitempty"`
	EtoileVersion string `json:"etoileVersion,omitempty"`
}

// JoinRequest is POSTed to PathJoin over TLS pinned to the hub CA.
type JoinRequest struct {
	Token     string    `json:"token"`
	CSR       string    `json:"csr"`
	Inventory Inventory `json:"inventory"`
}

// Policy is what the hub tells a site about itself and how to behave.
type Policy struct {
	Attributes
	HeartbeatSeconds int `json:"heartbeatSeconds"`
}

// JoinResponse carries the site's identity and certificate.
type JoinResponse struct {
	SiteID      string `json:"siteID"`
	SiteName    string `json:"siteName"`
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
	Policy      Policy `json:"policy"`
}

// RenewRequest is POSTed to PathRenew with the site certificate.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// RenewResponse carries the new certificate.
type RenewResponse struct {
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
}

// Capacity is what a site has and uses.
type Capacity struct {
	CPUMillis       int64 `json:"cpuMillis"`
	CPUUsedMillis   int64 `json:"cpuUsedMillis"`
	MemoryBytes     int64 `json:"memoryBytes"`
	MemoryUsedBytes int64 `json:"memoryUsedBytes"`
	GPUs            []GPU `json:"gpus,omitempty"`
}

// GPUFree returns the number of unused GPUs, of vendor v when v is not empty.
func (c Capacity) GPUFree(v string) int {
	n := 0
	for _, g := range c.GPUs {
		if v == "" || g.Vendor == v {
			n += max(g.Count-g.Used, 0)
		}
	}
	return n
}

// Heartbeat is POSTed to PathHeartbeat with the site certificate.
type Heartbeat struct {
	Nodes           int      `json:"nodes"`
	NodesReady      int      `json:"nodesReady"`
	K3sVersion      string   `json:"k3sVersion,omitempty"`
	EtoileVersion   string   `json:"etoileVersion,omitempty"`
	Slot            string   `json:"slot,omitempty"`
	Capacity        Capacity `json:"capacity"`
	AppliedRevision int64    `json:"appliedRevision"`
	// RefusedRevision is the template revision the site was sent and
	// cannot deploy (a K3s agent; HelmCharts with the helm controller
	// disabled), TemplatesProblem why: the hub shows the site behind and
	// does not send that set again at every heartbeat.
	RefusedRevision  int64  `json:"refusedRevision,omitempty"`
	TemplatesProblem string `json:"templatesProblem,omitempty"`
}

// HeartbeatResponse tells the site the desired template revision and, when
// the site has not applied it yet, the full desired set.
type HeartbeatResponse struct {
	Revision         int64            `json:"revision"`
	Templates        []TemplateObject `json:"templates,omitempty"`
	SendTemplates    bool             `json:"sendTemplates"`
	HeartbeatSeconds int              `json:"heartbeatSeconds"`
	// TakesRefused says the hub reads a heartbeat's refusedRevision and
	// templatesProblem: a site sends them only then, since older hubs
	// refuse a heartbeat with fields they do not know.
	TakesRefused bool `json:"takesRefused,omitempty"`
}

// TemplateObject is one desired manifest file at a site.
type TemplateObject struct {
	Name     string `json:"name"`
	Manifest string `json:"manifest"`
}

// Status of a site, judged by the age of its last heartbeat.
const (
	StatusOnline  = "online"
	StatusStale   = "stale"
	StatusOffline = "offline"
	StatusRevoked = "revoked"
)

// Site is a joined site as the hub records it.
type Site struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Attributes           // country, region, jurisdiction, tags
	Inventory  Inventory `json:"inventory"`
	// KeySHA256 pins the site key: only certificates for this key are accepted.
	KeySHA256     string     `json:"keySHA256"`
	TokenID       string     `json:"tokenID"`
	JoinedAt      time.Time  `json:"joinedAt"`
	RevokedAt     *time.Time `json:"revokedAt,omitempty"`
	LastHeartbeat *time.Time `json:"lastHeartbeat,omitempty"`
	Heartbeat     Heartbeat  `json:"heartbeat"`
	// Status is computed when listed.
	Status string `json:"status"`
	// DesiredRevision is the hub's template revision when listed.
	DesiredRevision int64 `json:"desiredRevision"`
}

// Token is a join token. The secret itself is never stored.
type Token struct {
	ID         string `json:"id"`
	SecretHash []byte `json:"-"`
	Site       string `json:"site"`
	Attributes
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt time.Time  `json:"expiresAt"`
	MaxUses   int        `json:"maxUses"`
	Uses      int        `json:"uses"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
	CreatedBy string     `json:"createdBy"`
}

// TokenRequest asks the hub for a token (admin API and CLI).
type TokenRequest struct {
	Site string `json:"site"`
	Attributes
	TTLSeconds int64 `json:"ttlSeconds"`
	Uses       int   `json:"uses"`
}

// TokenResponse returns the token and its join string, shown once.
type TokenResponse struct {
	Token      Token  `json:"token"`
	JoinString string `json:"joinString"`
}

// Template is a golden-path manifest with the sites it applies to.
type Template struct {
	Name     string `json:"name"`
	Manifest string `json:"manifest"`
	// Selector is ANDed key=value pairs over site attributes (see Site.Attr);
	// an empty selector selects every site.
	Selector  map[string]string `json:"selector,omitempty"`
	Revision  int64             `json:"revision"`
	UpdatedAt time.Time         `json:"updatedAt"`
}

// TemplateList is the admin view of every template.
type TemplateList struct {
	Revision  int64      `json:"revision"`
	Templates []Template `json:"templates"`
}

// AuditEvent records who did what.
type AuditEvent struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Subject string    `json:"subject"`
	Detail  string    `json:"detail,omitempty"`
}

// Audit actions.
const (
	AuditTokenCreate    = "token.create"
	AuditTokenRevoke    = "token.revoke"
	AuditSiteJoin       = "site.join"
	AuditSiteRekey      = "site.rekey" // a joined site's name joined again with another key: the old key stops working
	AuditSiteJoinRefuse = "site.join.refused"
	AuditSiteRevoke     = "site.revoke"
	AuditTemplateAdd    = "template.add"
	AuditTemplateRemove = "template.remove"
	AuditPlacement      = "placement.query"
	AuditAdminIssue     = "admin.issue"
	AuditAdminRevoke    = "admin.revoke"
)

// AuditActions lists every audit action, for filters and their errors.
var AuditActions = []string{AuditTokenCreate, AuditTokenRevoke, AuditSiteJoin, AuditSiteRekey, AuditSiteJoinRefuse, AuditSiteRevoke,
	AuditTemplateAdd, AuditTemplateRemove, AuditPlacement, AuditAdminIssue, AuditAdminRevoke}

// AdminCert is an admin certificate the hub issued (etoile hub
// admin-config, or the hub's own admin.yaml), as recorded when issued.
type AdminCert struct {
	Serial    string     `json:"serial"` // lowercase hex
	Name      string     `json:"name"`   // the certificate's common name
	KeySHA256 string     `json:"keySHA256"`
	IssuedAt  time.Time  `json:"issuedAt"`
	NotAfter  time.Time  `json:"notAfter"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
	IssuedBy  string     `json:"issuedBy"`
}

// AdminRevocation is an admin name revoked by etoile hub admin revoke: every
// recorded certificate of the name was revoked with it, and a certificate
// of the name the hub has no record of (issued before the hub recorded
// admin certificates) is refused when it was issued before RevokedAt.
type AdminRevocation struct {
	Name      string    `json:"name"`
	RevokedAt time.Time `json:"revokedAt"`
	// Certificates counts the recorded certificates this revocation revoked
	// (in the answer to a revoke; 0 in a list).
	Certificates int `json:"certificates,omitempty"`
}

// AdminList is the admin view of admin credentials.
type AdminList struct {
	Certificates []AdminCert       `json:"certificates"`
	Revocations  []AdminRevocation `json:"revocations"`
}

// PlacementRequest asks which sites may run a workload. Needs are key=value
// constraints over site attributes (country, region, jurisdiction,
// gpu.vendor, …) or capacity (cpu in cores, memory in bytes or with a
// Ki/Mi/Gi suffix, gpu as a count); Tags must all be on the site.
type PlacementRequest struct {
	Needs []string `json:"needs,omitempty"`
	Tags  []string `json:"tags,omitempty"`
}

// Candidate is an eligible site with its rank.
type Candidate struct {
	Site   string  `json:"site"`
	Score  float64 `json:"score"`
	Status string  `json:"status"`
	Why    string  `json:"why"`
}

// Exclusion is a site that may not run the workload and the rule it failed.
type Exclusion struct {
	Site   string `json:"site"`
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
}

// PlacementResult lists eligible sites best first and every excluded site.
type PlacementResult struct {
	Request  PlacementRequest `json:"request"`
	Eligible []Candidate      `json:"eligible"`
	Excluded []Exclusion      `json:"excluded"`
}
