package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/pki"
	"github.com/etoile-os/etoile/constellation/store"
)

// AdminConfigFile is the admin config's name in the hub's data folder.
const AdminConfigFile = "admin.yaml"

// ClientConfig is the admin's credentials for a hub, like a talosconfig:
// the hub URL, the CA to trust and the admin certificate and key.
type ClientConfig struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Hub        string `yaml:"hub"`
	CA         string `yaml:"ca"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
}

// UpdateAdminConfigURL points the admin config at path to hubURL, keeping
// its CA and credentials; it returns the URL it had (unchanged files are not
// rewritten).
func UpdateAdminConfigURL(path, hubURL string) (string, error) {
	c, err := LoadClientConfig(path)
	if err != nil {
		return "", err
	}
	old := c.Hub
	if old == hubURL {
		return old, nil
	}
	c.Hub = hubURL
	b, err := yaml.Marshal(c)
	if err != nil {
		return old, fmt.Errorf("encoding admin config: %w", err)
	}
	return old, pki.WriteFileAtomic(path, b, 0o600)
}

// LoadClientConfig reads an admin config.
func LoadClientConfig(path string) (ClientConfig, error) {
	var c ClientConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("reading admin config: %w (the hub writes it as %s in its data folder at first start)", err, AdminConfigFile)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("admin config %s: %w", path, err)
	}
	if c.Kind != "HubClientConfig" {
		return c, fmt.Errorf("admin config %s: kind %q, want HubClientConfig", path, c.Kind)
	}
	return c, nil
}

// Client is the remote Admin over the hub's admin API.
type Client struct {
	base string
	http *http.Client
}

var _ Admin = (*Client)(nil)

// NewClient returns a client for config c; hubURL overrides c.Hub when set.
func NewClient(c ClientConfig, hubURL string) (*Client, error) {
	if hubURL == "" {
		hubURL = c.Hub
	}
	u, err := url.Parse(hubURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("hub URL %q is not https://HOST:PORT", hubURL)
	}
	caCert, err := pki.ParseCertPEM([]byte(c.CA))
	if err != nil {
		return nil, fmt.Errorf("admin config ca: %w", err)
	}
	cert, err := tls.X509KeyPair([]byte(c.Cert), []byte(c.Key))
	if err != nil {
		return nil, fmt.Errorf("admin config cert/key: %w", err)
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // replaced by the pinned verification below
		VerifyConnection:   pki.PinnedVerifier(pki.Pin(caCert), u.Hostname()),
	}
	return &Client{base: u.String(), http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}}, nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		// Not HTML-escaped: a manifest's <, > and & would take six bytes
		// each, and one within the manifest limit could exceed the hub's
		// request limit (api.MaxBodyBytes).
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(in); err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		body = &b
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("hub request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("hub %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("hub %s: reading answer: %w", c.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			if e.Code == api.CodeNotFound {
				return &store.NotFoundError{Message: e.Message}
			}
			return &store.Refusal{Code: e.Code, Message: e.Message}
		}
		return fmt.Errorf("hub %s answered %s", c.base, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("hub %s: decoding answer: %w", c.base, err)
	}
	return nil
}

func (c *Client) CreateToken(ctx context.Context, req api.TokenRequest) (api.TokenResponse, error) {
	var out api.TokenResponse
	return out, c.do(ctx, http.MethodPost, api.PathAdminTokens, req, &out)
}

func (c *Client) Tokens(ctx context.Context) ([]api.Token, error) {
	var out []api.Token
	return out, c.do(ctx, http.MethodGet, api.PathAdminTokens, nil, &out)
}

func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, api.PathAdminTokens+"/"+url.PathEscape(id), nil, nil)
}

func (c *Client) Sites(ctx context.Context) ([]api.Site, error) {
	var out []api.Site
	return out, c.do(ctx, http.MethodGet, api.PathAdminSites, nil, &out)
}

func (c *Client) RevokeSite(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, api.PathAdminSites+"/"+url.PathEscape(name), nil, nil)
}

func (c *Client) Place(ctx context.Context, req api.PlacementRequest) (api.PlacementResult, error) {
	var out api.PlacementResult
	return out, c.do(ctx, http.MethodPost, api.PathAdminPlace, req, &out)
}

func (c *Client) PutTemplate(ctx context.Context, t api.Template) (api.Template, error) {
	var out api.Template
	return out, c.do(ctx, http.MethodPost, api.PathAdminTemplates, t, &out)
}

func (c *Client) RemoveTemplate(ctx context.Context, name string) (int64, error) {
	var out int64
	return out, c.do(ctx, http.MethodDelete, api.PathAdminTemplates+"/"+url.PathEscape(name), nil, &out)
}

func (c *Client) Templates(ctx context.Context) (api.TemplateList, error) {
	var out api.TemplateList
	return out, c.do(ctx, http.MethodGet, api.PathAdminTemplates, nil, &out)
}

func (c *Client) AdminCerts(ctx context.Context) (api.AdminList, error) {
	var out api.AdminList
	return out, c.do(ctx, http.MethodGet, api.PathAdminAdmins, nil, &out)
}

func (c *Client) RevokeAdmin(ctx context.Context, name string) (api.AdminRevocation, error) {
	var out api.AdminRevocation
	return out, c.do(ctx, http.MethodDelete, api.PathAdminAdmins+"/"+url.PathEscape(name), nil, &out)
}

func (c *Client) Audit(ctx context.Context, action string, limit int) ([]api.AuditEvent, error) {
	var out []api.AuditEvent
	q := url.Values{}
	if action != "" {
		q.Set("action", action)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := api.PathAdminAudit
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// IsRefusal reports whether err is a refusal with code.
func IsRefusal(err error, code string) bool {
	var r *store.Refusal
	return errors.As(err, &r) && r.Code == code
}
