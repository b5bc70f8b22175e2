// Package api is the agent's local API: HTTP over the unix socket
// /run/etoile/agent.sock (mode 0600, root only). The console and the
// agent's own subcommands (status, config apply…) use it; nothing listens
// on the network.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/etoile-os/etoile/agent/timesync"
)

// DefaultSocket is where the agent listens on a node.
const DefaultSocket = "/run/etoile/agent.sock"

// maxBody bounds request bodies (machine configs are small).
const maxBody = 1 << 20

// Status is what `etoile-agent status` shows.
type Status struct {
	Version  string      `json:"version"`         // the image's (its spec's version:)
	Agent    string      `json:"agent,omitempty"` // the agent's own build
	Hostname string      `json:"hostname"`
	Boot     string      `json:"boot"`   // bios | uefi
	Source   string      `json:"source"` // iso | disk | http
	Slot     string      `json:"slot"`   // a | b | none
	Uptime   string      `json:"uptime"`
	Network  []Interface `json:"network"`
	K3s      K3sStatus   `json:"k3s"`
	// Daemons are the other processes the agent runs and watches (NVIDIA's
	// persistence daemon), when it runs any.
	Daemons []DaemonStatus `json:"daemons,omitempty"`
	Config  string         `json:"config"` // where the machine config came from, or "none"
	// Time is the clock's synchronisation, when the agent keeps it.
	Time *timesync.Status `json:"time,omitempty"`
	// Inventory is the hardware summary (agent/inventory's JSON), when collected.
	Inventory json.RawMessage `json:"inventory,omitempty"`
	Warnings  []string        `json:"warnings"`
}

// Interface is one network link.
type Interface struct {
	Name      string   `json:"name"`
	MAC       string   `json:"mac"`
	Carrier   bool     `json:"carrier"`
	Addresses []string `json:"addresses"`
}

// K3sStatus mirrors the supervisor's status.
type K3sStatus struct {
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"`
	Restarts int    `json:"restarts"`
}

// DaemonStatus is one watched daemon's state: starting (its first start is
// not over), running, or restarting (it stopped or could not start: Reason
// says why, and it is started again after a back-off).
type DaemonStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	PID      int    `json:"pid,omitempty"`
	Restarts int    `json:"restarts"`
	Reason   string `json:"reason,omitempty"`
}

// ConfigResult answers a validate or apply request.
type ConfigResult struct {
	Valid    bool     `json:"valid"`
	Warnings []string `json:"warnings"`
	Errors   []string `json:"errors"`
	Applied  bool     `json:"applied"`
}

// LogPage answers GET /v1/logs: lines oldest first; Next is the newest
// line's number, to pass as after= to get only the lines that come after
// it (following a log); Skipped counts lines after after= that are no
// longer held (or were over lines=).
type LogPage struct {
	Lines   []string `json:"lines"`
	Next    uint64   `json:"next"`
	Skipped uint64   `json:"skipped,omitempty"`
}

// ErrNoConfig is wrapped by Backend.Config's error when the node runs no
// machine config (404; other errors are the agent's own, 500).
var ErrNoConfig = errors.New("the node runs no machine config")

// RunningConfig answers GET /v1/config: the machine config the node runs,
// as YAML with its secrets replaced by REDACTED, and where it came from.
type RunningConfig struct {
	From string `json:"from"`
	YAML string `json:"yaml"`
}

// PowerRequest is POST /v1/power's body, and its answer.
type PowerRequest struct {
	Action string `json:"action"` // reboot | poweroff
}

// Backend is the running agent, seen from the API.
type Backend interface {
	Status(ctx context.Context) Status
	// Logs returns the last n lines of source ("agent", "k3s", "kernel" or
	// "syslog") after line
	// number after (0: the last n lines held).
	Logs(source string, n int, after uint64) (LogPage, error)
	ValidateConfig(data []byte) (warnings []string, err error)
	// Config returns the machine config the node runs, its secrets
	// redacted; an error when it runs none.
	Config() (RunningConfig, error)
	// Power reboots ("reboot") or powers off ("poweroff") the machine, as
	// PID 1 does for its signals: K3s is stopped cleanly first. It returns
	// once the shutdown is under way.
	Power(action string) error
	// ApplyConfig validates, stores and applies a machine config.
	ApplyConfig(ctx context.Context, data []byte) (warnings []string, err error)
}

// Handler serves the API's routes for b.
func Handler(b Backend, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Status(r.Context()).forJSON())
	})
	mux.HandleFunc("GET /v1/logs", func(w http.ResponseWriter, r *http.Request) {
		source := r.URL.Query().Get("source")
		if source == "" {
			source = "agent"
		}
		n := 200
		if v := r.URL.Query().Get("lines"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 10000 {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("lines=%q: give a number from 1 to 10000", v))
				return
			}
		}
		var after uint64
		if v := r.URL.Query().Get("after"); v != "" {
			var err error
			if after, err = strconv.ParseUint(v, 10, 64); err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("after=%q: give the next= number of an earlier answer", v))
				return
			}
		}
		page, err := b.Logs(source, n, after)
		if err != nil {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		page.Lines = nonNil(page.Lines)
		writeJSON(w, http.StatusOK, page)
	})
	config := func(apply bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			if err != nil {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("config body over %d bytes", maxBody))
				return
			}
			res := ConfigResult{Errors: []string{}}
			warns, err := b.ValidateConfig(data)
			res.Warnings = nonNil(warns)
			if err != nil {
				res.Errors = splitLines(err.Error())
				writeJSON(w, http.StatusUnprocessableEntity, res)
				return
			}
			res.Valid = true
			if apply {
				// A valid config that cannot be applied (the node's state
				// cannot be written) is Valid but not Applied.
				warns, err = b.ApplyConfig(r.Context(), data)
				res.Warnings = nonNil(warns)
				if err != nil {
					res.Errors = splitLines(err.Error())
					writeJSON(w, http.StatusInternalServerError, res)
					return
				}
			}
			res.Applied = apply
			if log != nil && apply {
				log.Info("machine config applied through the local API")
			}
			writeJSON(w, http.StatusOK, res)
		}
	}
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) {
		rc, err := b.Config()
		switch {
		case errors.Is(err, ErrNoConfig):
			writeError(w, http.StatusNotFound, err.Error())
			return
		case err != nil:
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, rc)
	})
	mux.HandleFunc("POST /v1/power", func(w http.ResponseWriter, r *http.Request) {
		var req PowerRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf(`the body is not {"action": "reboot"|"poweroff"}: %v`, err))
			return
		}
		if req.Action != "reboot" && req.Action != "poweroff" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("action %q: use reboot or poweroff", req.Action))
			return
		}
		if err := b.Power(req.Action); err != nil {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		if log != nil {
			log.Info("shutdown asked through the local API", "action", req.Action)
		}
		writeJSON(w, http.StatusAccepted, req)
	})
	mux.HandleFunc("POST /v1/config/validate", config(false))
	mux.HandleFunc("POST /v1/config/apply", config(true))
	return mux
}

// forJSON gives the status's lists as [] when empty (a machine without a
// lease has "network": [], not null), as scripts reading it expect.
func (st Status) forJSON() Status {
	if st.Network == nil {
		st.Network = []Interface{}
	}
	for i := range st.Network {
		st.Network[i].Addresses = nonNil(st.Network[i].Addresses)
	}
	st.Warnings = nonNil(st.Warnings)
	return st
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func splitLines(s string) []string {
	var out []string
	for _, l := range bytes.Split([]byte(s), []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, string(l))
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// Serve listens on the unix socket at path until ctx ends. A stale socket
// from an earlier run is replaced; the socket is made 0600 before the first
// request can reach it.
func Serve(ctx context.Context, path string, b Backend, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("local API: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("local API: removing stale socket %s: %w", path, err)
	}
	// The folder is 0700, so nobody else can reach the socket even in the
	// instant before its own mode is set to 0600.
	l, err := listenPrivate(path)
	if err != nil {
		return fmt.Errorf("local API: listening on %s: %w", path, err)
	}
	srv := &http.Server{Handler: Handler(b, log), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("local API: %w", err)
	}
	return nil
}

func listenPrivate(path string) (net.Listener, error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Client talks to a running agent.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the socket at path ("" for the default).
func NewClient(path string) *Client {
	if path == "" {
		path = DefaultSocket
	}
	return &Client{Socket: path, hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	return c.doWith(c.hc, ctx, method, path, body, out)
}

func (c *Client) doWith(hc *http.Client, ctx context.Context, method, path string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach the agent at %s: %w (%s)", c.Socket, err, unreachableHint(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 400 && resp.StatusCode != http.StatusUnprocessableEntity && !(resp.StatusCode == http.StatusInternalServerError && strings.HasPrefix(path, "/v1/config/")) {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		return resp.StatusCode, fmt.Errorf("agent: %s", e.Error)
	}
	return resp.StatusCode, json.Unmarshal(data, out)
}

// Status fetches the agent's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	_, err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Logs fetches the last n lines of source after line number after (0: the
// last n lines); follow a log by passing the answer's Next as after.
func (c *Client) Logs(ctx context.Context, source string, n int, after uint64) (LogPage, error) {
	var page LogPage
	q := url.Values{"source": {source}, "lines": {strconv.Itoa(n)}}
	if after > 0 {
		q.Set("after", strconv.FormatUint(after, 10))
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/logs?"+q.Encode(), nil, &page)
	return page, err
}

// Config fetches the machine config the node runs (secrets redacted).
func (c *Client) Config(ctx context.Context) (RunningConfig, error) {
	var rc RunningConfig
	_, err := c.do(ctx, http.MethodGet, "/v1/config", nil, &rc)
	return rc, err
}

// Power asks the agent to reboot or power off the machine.
func (c *Client) Power(ctx context.Context, action string) error {
	body, err := json.Marshal(PowerRequest{Action: action})
	if err != nil {
		return err
	}
	var res PowerRequest
	_, err = c.do(ctx, http.MethodPost, "/v1/power", body, &res)
	return err
}

// ValidateConfig asks the agent to check a machine config.
func (c *Client) ValidateConfig(ctx context.Context, data []byte) (ConfigResult, error) {
	var res ConfigResult
	_, err := c.do(ctx, http.MethodPost, "/v1/config/validate", data, &res)
	return res, err
}

// ApplyConfig sends a machine config to apply. It has no time limit but
// ctx's: an apply waits for the old K3s to stop (up to 30 s) and the new
// one to start, and the agent finishes it even if the caller goes away.
func (c *Client) ApplyConfig(ctx context.Context, data []byte) (ConfigResult, error) {
	var res ConfigResult
	hc := *c.hc
	hc.Timeout = 0
	_, err := c.doWith(&hc, ctx, http.MethodPost, "/v1/config/apply", data, &res)
	return res, err
}

// WriteStatus prints st for people.
func WriteStatus(w io.Writer, st Status) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Étoile %s on %s (up %s)\n", st.Version, st.Hostname, st.Uptime)
	if st.Agent != "" && st.Agent != st.Version {
		fmt.Fprintf(&b, "  agent    %s\n", st.Agent)
	}
	fmt.Fprintf(&b, "  boot:    %s, system image from %s, slot %s\n", st.Boot, st.Source, st.Slot)
	fmt.Fprintf(&b, "  config:  %s\n", st.Config)
	k := st.K3s.State
	if st.K3s.Reason != "" {
		k += " (" + st.K3s.Reason + ")"
	}
	fmt.Fprintf(&b, "  k3s:     %s, %d restarts\n", k, st.K3s.Restarts)
	for _, d := range st.Daemons {
		s := d.State
		if d.PID > 0 {
			s += fmt.Sprintf(" (pid %d)", d.PID)
		}
		if d.Reason != "" {
			s += " (" + d.Reason + ")"
		}
		fmt.Fprintf(&b, "  daemon:  %s %s, %d restarts\n", d.Name, s, d.Restarts)
	}
	if t := st.Time; t != nil {
		switch {
		case t.Synced && t.Failing:
			fmt.Fprintf(&b, "  time:    last synchronised with %s at %s; no server answers now (%s)\n", t.Server, t.Last.Format(time.RFC3339), t.Error)
		case t.Synced:
			fmt.Fprintf(&b, "  time:    synchronised with %s (last correction %s at %s)\n", t.Server, t.Offset, t.Last.Format(time.RFC3339))
		default:
			fmt.Fprintf(&b, "  time:    not synchronised (servers %s)\n", strings.Join(t.Servers, ", "))
		}
	}
	for _, n := range st.Network {
		carrier := "no carrier"
		if n.Carrier {
			carrier = "carrier"
		}
		addrs := "no address"
		if len(n.Addresses) > 0 {
			addrs = fmt.Sprint(n.Addresses)
		}
		fmt.Fprintf(&b, "  net:     %-10s %s %s %s\n", n.Name, n.MAC, carrier, addrs)
	}
	for _, wmsg := range st.Warnings {
		fmt.Fprintf(&b, "  warning: %s\n", wmsg)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// unreachableHint says what to do when the agent's socket cannot be
// dialled: run as root when permission was denied, else check that the
// agent runs there (it does on an Étoile node; elsewhere --socket names
// another agent's).
func unreachableHint(err error) string {
	switch {
	case errors.Is(err, fs.ErrPermission) && os.Geteuid() != 0:
		return "the socket is root-only: use sudo"
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return "no agent serves this socket: run this on an Étoile node, or give another agent's with --socket PATH"
	}
	if os.Geteuid() != 0 {
		return "is it running? the socket is root-only: use sudo"
	}
	return "is it running?"
}
