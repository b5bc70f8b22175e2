// Package api is the agent's local API: HTTP over the unix socket
// /run/etoile/agent.sock (mode 0600, root only). The console and the
// agent's own subcommands (status, config apply…) use it; nothing listens
// on the network.
package api

import (
	"bytes"
	"cmp"
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
	"unicode/utf8"

	"golang.org/x/net/netutil"

	"github.com/etoile-os/etoile/agent/mount"
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
	// Bond is set when the link is a bond.
	Bond *Bond `json:"bond,omitempty"`
	// Master is the bond (or bridge) the link is a member of.
	Master string `json:"master,omitempty"`
}

// Bond is a bond as the kernel has it now.
type Bond struct {
	Mode    string   `json:"mode"`             // active-backup, 802.3ad…
	Members []string `json:"members"`          // the links enslaved to it
	Active  string   `json:"active,omitempty"` // active-backup: the member in use
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
	// K3sStarted, in an apply's answer only, says whether K3s started
	// again with the config applied; when not, Errors says why (the
	// config is applied all the same).
	K3sStarted *bool `json:"k3s_started,omitempty"`
	// K3sRetrying, with K3sStarted false, says that K3s could not be
	// executed yet and its supervisor keeps trying (ErrK3sRetrying):
	// nothing to correct, and applying the config again would only stop
	// it.
	K3sRetrying bool `json:"k3s_retrying,omitempty"`
}

// ErrK3sNotStarted is wrapped by Backend.ApplyConfig's error when the
// config was applied (the node runs it now) but K3s did not start again
// with it: the answer is 200 with applied true and k3s_started false.
var ErrK3sNotStarted = errors.New("the config is applied, but K3s did not start with it")

// ErrK3sRetrying is wrapped, with ErrK3sNotStarted, by Backend.ApplyConfig's
// error when K3s could not be executed (yet) and its supervisor keeps
// trying: the answer has k3s_retrying true.
var ErrK3sRetrying = errors.New("K3s's supervisor keeps trying")

// ErrShuttingDown is wrapped by Backend.ApplyConfig's error when the machine
// is shutting down (409): nothing is applied.
var ErrShuttingDown = errors.New("the machine is shutting down")

// LogPage answers GET /v1/logs: lines oldest first; Next is the newest
// line's number, to pass as after= to get only the lines that come after
// it (following a log); Skipped counts lines after after= that are no
// longer held (or were over lines=); Dropped counts the oldest lines left
// out because the answer would have been over MaxLogAnswer bytes.
type LogPage struct {
	Lines   []string `json:"lines"`
	Next    uint64   `json:"next"`
	Skipped uint64   `json:"skipped,omitempty"`
	Dropped uint64   `json:"dropped,omitempty"`
}

// MaxLogAnswer bounds the lines of one /v1/logs answer, in bytes as
// encoded: 10000 lines of 16 KiB would otherwise make PID 1 build an
// answer of hundreds of MB.
const MaxLogAnswer = 4 << 20

// maxAnswer bounds what the client reads of one answer.
const maxAnswer = 16 << 20

// capLines keeps the newest lines whose JSON encoding fits in max bytes
// and returns how many of the oldest it left out.
func capLines(lines []string, max int) ([]string, uint64) {
	total := 0
	for i := len(lines) - 1; i >= 0; i-- {
		total += jsonLen(lines[i]) + 8 // quotes, comma, newline and indent
		if total > max {
			return lines[i+1:], uint64(i + 1)
		}
	}
	return lines, 0
}

// jsonLen is the length of s encoded as a JSON string without HTML
// escaping (writeJSON's), quotes left out.
func jsonLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20:
				n += 6 // \u00XX
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 6 // \ufffd
		case r == '\u2028' || r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
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
	// ApplyConfig validates and applies a machine config (held in memory:
	// until the next boot); see ErrK3sNotStarted and ErrShuttingDown.
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
		page.Lines, page.Dropped = capLines(nonNil(page.Lines), MaxLogAnswer)
		writeJSON(w, http.StatusOK, page)
	})
	config := func(apply bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			var tooLarge *http.MaxBytesError
			switch {
			case errors.As(err, &tooLarge):
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("config body over %d bytes: a machine config is a few KB of YAML — is it the right file?", maxBody))
				return
			case err != nil:
				writeError(w, http.StatusBadRequest, fmt.Sprintf("reading the config body: %v: send it again", err))
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
				// A valid config that cannot be applied (its network could
				// not be set, the machine shuts down) is Valid but not
				// Applied; one applied whose K3s did not start again is
				// Applied with k3s_started false.
				warns, err = b.ApplyConfig(r.Context(), data)
				res.Warnings = nonNil(warns)
				started := err == nil
				switch {
				case errors.Is(err, ErrShuttingDown):
					res.Errors = splitLines(err.Error())
					writeJSON(w, http.StatusConflict, res)
					return
				case err != nil && !errors.Is(err, ErrK3sNotStarted):
					res.Errors = splitLines(err.Error())
					writeJSON(w, http.StatusInternalServerError, res)
					return
				case err != nil:
					res.Errors = splitLines(err.Error())
					res.K3sRetrying = errors.Is(err, ErrK3sRetrying)
				}
				res.K3sStarted = &started
			}
			res.Applied = apply
			if log != nil && apply {
				if res.K3sStarted != nil && !*res.K3sStarted {
					log.Warn("machine config applied through the local API; K3s did not start with it", "reason", strings.Join(res.Errors, "; "))
				} else {
					log.Info("machine config applied through the local API")
				}
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
			code := http.StatusInternalServerError // it could not be done
			if errors.Is(err, ErrShuttingDown) {
				code = http.StatusConflict // refused: one is under way
			}
			writeError(w, code, err.Error())
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
	// The answer is written within writeTimeout of its start: a client that
	// stops reading (a stopped script) would otherwise hold the answer — up
	// to 4 MiB of log lines — and its goroutine in PID 1 for as long as it
	// keeps the connection. (Set here, not on the server: an apply's answer
	// comes only once K3s has been restarted.)
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeTimeout))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // a log line's <, > and & as they are, not six bytes each
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// Serve listens on the unix socket at path until ctx ends. The socket's
// folder is the API's own: it is made 0700 (created so, or its mode set),
// so that nobody else can reach the socket even in the instant before the
// socket's own mode is set to 0600. A stale socket from an earlier run is
// replaced; anything else at path (a file, a folder), or a socket another
// agent still serves, is refused rather than removed.
func Serve(ctx context.Context, path string, b Backend, log *slog.Logger) error {
	// The folder is made 0700 (or given that mode: the boot makes
	// /run/etoile so too); a symbolic link or a file there is refused, not
	// followed.
	if err := mount.MakePrivate(filepath.Dir(path)); err != nil {
		return fmt.Errorf("local API: %w: remove it, or give the socket another folder", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return fmt.Errorf("local API: %w", err)
	}
	l, err := listenPrivate(path)
	if err != nil {
		return fmt.Errorf("local API: listening on %s: %w", path, err)
	}
	// At most maxConns connections at once; others wait to be accepted. A
	// node's clients are a technician's commands and the console: a pile of
	// stalled ones must not multiply the answers PID 1 holds.
	l = netutil.LimitListener(l, maxConns)
	srv := &http.Server{
		Handler:           Handler(b, log),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
	}
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

// The server's timeouts: a whole request (a 1 MiB config at most) within
// readTimeout, an answer written within writeTimeout of its first byte
// (writeJSON), and an idle keep-alive connection closed after idleTimeout,
// so that clients that stall cannot hold PID 1's connections or memory. No
// server-wide write timeout: an apply's answer comes once the old K3s
// stopped (30 s at most) and the new one started, and logs -f asks again
// rather than stream.
var (
	readTimeout  = 30 * time.Second
	writeTimeout = 30 * time.Second
	idleTimeout  = 60 * time.Second
)

// maxConns bounds the connections the local API serves at once.
const maxConns = 16

// removeStaleSocket removes the socket an earlier run left at path; nothing
// there is fine. Anything but a socket, or a socket that answers (another
// agent's), is an error saying so.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case st.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("%s is %s, not a socket: it is left alone; remove it, or give the API another socket path", path, describe(st.Mode()))
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("another agent serves %s: stop it first, or give this one another socket path", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the stale socket %s: %w", path, err)
	}
	return nil
}

// describe names a file type for people.
func describe(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsRegular():
		return "a file"
	}
	return "not a socket"
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
		if ctx.Err() != nil {
			return 0, err
		}
		return 0, &UnreachableError{Socket: c.Socket, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("reading the agent's answer: %w", err)
	}
	if len(data) > maxAnswer {
		return resp.StatusCode, fmt.Errorf("the agent's answer to %s is larger than %d MiB, more than this client reads: ask for less (etoile-agent logs -n with fewer lines)", strings.SplitN(path, "?", 2)[0], maxAnswer>>20)
	}
	configResult := strings.HasPrefix(path, "/v1/config/") &&
		(resp.StatusCode == http.StatusInternalServerError || resp.StatusCode == http.StatusConflict)
	if resp.StatusCode >= 400 && resp.StatusCode != http.StatusUnprocessableEntity && !configResult {
		return resp.StatusCode, &StatusError{Code: resp.StatusCode, Msg: errorText(resp, data)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.StatusCode, fmt.Errorf("the agent's answer to %s is not what this client reads (%v): is the agent at %s the same version as this command?", strings.SplitN(path, "?", 2)[0], err, c.Socket)
	}
	return resp.StatusCode, nil
}

// errorText is what an error answer says: its JSON {"error": …}, else its
// text (ServeMux's "404 page not found"), else its status line.
func errorText(resp *http.Response, data []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return e.Error
	}
	text := strings.TrimSpace(string(data))
	if len(text) > 512 {
		text = text[:512] + "…"
	}
	if text == "" {
		return resp.Status
	}
	return resp.Status + ": " + text
}

// StatusError is an answer of the agent's that refuses a request (4xx) or
// failed (5xx); Msg is what it says.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string { return "agent: " + e.Msg }

// UnreachableError says the agent's socket could not be reached (no agent
// there, no permission), with what to do.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the agent at %s: %v (%s)", e.Socket, e.Err, unreachableHint(e.Err))
}

func (e *UnreachableError) Unwrap() error { return e.Err }

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
//
// A config refused because the machine is shutting down is a *StatusError
// (409) naming why; a config applied whose K3s did not start again has
// Applied true and K3sStarted false, Errors saying why.
func (c *Client) ApplyConfig(ctx context.Context, data []byte) (ConfigResult, error) {
	var res ConfigResult
	hc := *c.hc
	hc.Timeout = 0
	code, err := c.doWith(&hc, ctx, http.MethodPost, "/v1/config/apply", data, &res)
	if err == nil && code == http.StatusConflict {
		return res, &StatusError{Code: code, Msg: strings.Join(res.Errors, "; ")}
	}
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
			fmt.Fprintf(&b, "  time:    last synchronised with %s at %s; not corrected since (%s)\n", t.Server, t.Last.Format(time.RFC3339), t.Error)
		case t.Synced:
			agreed := ""
			if t.Answered > 1 {
				agreed = fmt.Sprintf("; %d of %d servers agreed", t.Agreed, t.Answered)
			}
			var outvoted []string
			for _, f := range t.Falsetickers {
				outvoted = append(outvoted, fmt.Sprintf("%s (%s)", f.Server, f.Offset))
			}
			if len(outvoted) > 0 {
				agreed += "; outvoted: " + strings.Join(outvoted, ", ")
			}
			fmt.Fprintf(&b, "  time:    synchronised with %s (last correction %s at %s%s)\n", t.Server, t.Offset, t.Last.Format(time.RFC3339), agreed)
		case t.Error != "":
			fmt.Fprintf(&b, "  time:    not synchronised (servers %s): %s\n", strings.Join(t.Servers, ", "), t.Error)
		default:
			fmt.Fprintf(&b, "  time:    not synchronised (servers %s)\n", strings.Join(t.Servers, ", "))
		}
	}
	if hw := hardwareLine(st.Inventory); hw != "" {
		fmt.Fprintf(&b, "  hardware: %s\n", hw)
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
		var role string
		switch {
		case n.Bond != nil:
			role = fmt.Sprintf(" bond %s members %s", n.Bond.Mode, strings.Join(n.Bond.Members, ","))
			if len(n.Bond.Members) == 0 {
				role = fmt.Sprintf(" bond %s with no member", n.Bond.Mode)
			}
			if n.Bond.Active != "" {
				role += " active " + n.Bond.Active
			}
		case n.Master != "":
			role = " in " + n.Master
		}
		fmt.Fprintf(&b, "  net:     %-10s %s %s %s%s\n", n.Name, n.MAC, carrier, addrs, role)
	}
	for _, wmsg := range st.Warnings {
		fmt.Fprintf(&b, "  warning: %s\n", wmsg)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// hardwareLine sums up the status's inventory (agent/inventory's JSON) in
// one line: the machine, its CPUs, memory, disks, NICs and GPUs by model;
// "" when there is none yet. `etoile-agent inventory` has the rest.
func hardwareLine(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var inv struct {
		DMI struct {
			Vendor  string `json:"vendor"`
			Product string `json:"product"`
		} `json:"dmi"`
		CPU struct {
			Model string `json:"model"`
			Count int    `json:"count"`
		} `json:"cpu"`
		Memory struct {
			TotalBytes uint64 `json:"total_bytes"`
		} `json:"memory"`
		Disks []json.RawMessage `json:"disks"`
		NICs  []json.RawMessage `json:"nics"`
		GPUs  []struct {
			Model string `json:"model"`
		} `json:"gpus"`
	}
	if err := json.Unmarshal(raw, &inv); err != nil {
		return ""
	}
	var parts []string
	if m := strings.TrimSpace(inv.DMI.Vendor + " " + inv.DMI.Product); m != "" {
		parts = append(parts, m)
	}
	plural := func(n int, what string) string {
		if n == 1 {
			return "1 " + what
		}
		return fmt.Sprintf("%d %ss", n, what)
	}
	cpu := plural(inv.CPU.Count, "CPU")
	if inv.CPU.Model != "" {
		cpu += " (" + inv.CPU.Model + ")"
	}
	parts = append(parts, cpu, fmt.Sprintf("%.1f GiB", float64(inv.Memory.TotalBytes)/(1<<30)),
		plural(len(inv.Disks), "disk"), plural(len(inv.NICs), "NIC"))
	var models []string
	count := map[string]int{}
	for _, g := range inv.GPUs {
		m := cmp.Or(g.Model, "unknown model")
		if count[m] == 0 {
			models = append(models, m)
		}
		count[m]++
	}
	for _, m := range models {
		parts = append(parts, fmt.Sprintf("%d× %s", count[m], m))
	}
	if len(inv.GPUs) == 0 {
		parts = append(parts, "no GPU")
	}
	return strings.Join(parts, ", ")
}

// unreachableHint says what to do when the agent's socket cannot be
// dialled: run as root when permission was denied, else check that the
// agent runs there (it does on an Étoile node; elsewhere --socket names
// another agent's).
func unreachableHint(err error) string {
	switch {
	case errors.Is(err, fs.ErrPermission) && os.Geteuid() != 0:
		return "the socket is root-only: run this as root"
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return "no agent serves this socket: run this on an Étoile node, or give another agent's with --socket PATH"
	}
	if os.Geteuid() != 0 {
		return "is it running? the socket is root-only: run this as root"
	}
	return "is it running?"
}
