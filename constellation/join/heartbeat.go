package join

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/pki"
)

// StatusFunc reports the site's current health and capacity; the agent
// supplies one that reads K3s, HostStatus is the fallback.
type StatusFunc func(ctx context.Context) (api.Heartbeat, error)

// Beat sends one heartbeat with the latest status and applies the
// templates in the answer. It returns the interval the hub asks for.
func (s *Site) Beat(ctx context.Context, status StatusFunc) (time.Duration, error) {
	hb, err := status(ctx)
	if err != nil {
		return 0, fmt.Errorf("collecting site status: %w", err)
	}
	deployChanged := s.DeployState != s.State.DeployState
	if deployChanged {
		// Judged under another role or helm setting: asked for again.
		s.State.AppliedRevision, s.refusedRevision = 0, 0
	}
	hb.AppliedRevision = s.State.AppliedRevision
	if s.Undeployable == nil {
		s.refusedRevision = 0 // everything deploys now: send the set again
	}
	if s.refusedRevision != 0 && s.hubTakesRefused {
		hb.RefusedRevision, hb.TemplatesProblem = s.refusedRevision, clipProblem(s.templatesProblem)
	}
	hc, err := s.httpClient()
	if err != nil {
		return 0, err
	}
	var resp api.HeartbeatResponse
	if err := post(ctx, hc, s.stall(), s.State.Hub+api.PathHeartbeat, hb, &resp); err != nil {
		if s.State.LastError != err.Error() {
			s.State.LastError = err.Error()
			_ = s.saveState()
		}
		return 0, fmt.Errorf("heartbeat to %s: %w", s.State.Hub, err)
	}
	now := time.Now().UTC()
	// The state file lives on flash at many sites: rewrite it when something
	// changed or every few minutes, not on every beat.
	s.hubTakesRefused = resp.TakesRefused
	dirty := deployChanged || s.State.LastError != "" || s.State.Refused != "" || s.State.LastHeartbeat == nil || now.Sub(*s.State.LastHeartbeat) > 5*time.Minute ||
		now.Sub(s.lastSaved) > 5*time.Minute
	s.State.LastHeartbeat, s.State.LastError, s.State.Refused = &now, "", ""
	s.State.DeployState = s.DeployState
	if resp.SendTemplates {
		objs, problem := s.deployable(resp.Templates)
		var written, removed []string
		var err error
		if len(objs) > 0 || len(s.State.Templates) > 0 {
			written, removed, err = ApplyTemplates(filepath.Join(s.Root, ManifestDir), objs, s.State.Templates)
		}
		if err != nil && (len(written) > 0 || len(removed) > 0) && s.State.Templates != nil {
			// Part of the set was applied: what was written is the
			// templates' now, what was removed is not.
			owned := slices.DeleteFunc(slices.Clone(s.State.Templates), func(n string) bool { return slices.Contains(removed, n) })
			for _, n := range written {
				if !slices.Contains(owned, n) {
					owned = append(owned, n)
				}
			}
			slices.Sort(owned)
			s.State.Templates = owned
		}
		if err != nil {
			s.State.LastError = err.Error()
			_ = s.saveState()
			return 0, err
		}
		if len(written) > 0 || len(removed) > 0 || problem == "" {
			s.Log.Info("templates applied", "revision", resp.Revision, "written", written, "removed", removed)
		}
		if problem != "" && problem != s.templatesProblem {
			s.Log.Warn("templates not applied: the hub shows this site behind, and is told why (it sends them again when they change)", "revision", resp.Revision, "reason", problem)
		}
		s.templatesProblem = problem
		s.refusedRevision = 0
		if problem != "" {
			s.refusedRevision = resp.Revision
		}
		files := templateFiles(objs)
		if problem == "" {
			// Applied only when every template could be: a set this
			// machine cannot deploy is not reported as deployed.
			dirty = dirty || s.State.AppliedRevision != resp.Revision
			s.State.AppliedRevision = resp.Revision
		}
		dirty = dirty || !slices.Equal(s.State.Templates, files)
		s.State.Templates = files
	} else if resp.Revision != s.refusedRevision {
		s.templatesProblem, s.refusedRevision = "", 0
	}
	if dirty {
		if err := s.saveState(); err != nil {
			return 0, err
		}
	}
	return time.Duration(resp.HeartbeatSeconds) * time.Second, nil
}

// clipProblem cuts a templates problem to what a heartbeat may carry, on
// a rune boundary.
func clipProblem(p string) string {
	if len(p) <= api.MaxTemplatesProblemLen {
		return p
	}
	p = p[:api.MaxTemplatesProblemLen-len("…")]
	for !utf8.ValidString(p) {
		p = p[:len(p)-1]
	}
	return p + "…"
}

// deployable is the part of objs this machine can deploy, and why the rest
// cannot be ("" when all can).
func (s *Site) deployable(objs []api.TemplateObject) ([]api.TemplateObject, string) {
	if s.Undeployable == nil {
		return objs, ""
	}
	var ok []api.TemplateObject
	var reasons []string
	names := map[string][]string{}
	for _, o := range objs {
		why := s.Undeployable(o)
		if why == "" {
			ok = append(ok, o)
			continue
		}
		if names[why] == nil {
			reasons = append(reasons, why)
		}
		names[why] = append(names[why], o.Name)
	}
	var parts []string
	for _, why := range reasons {
		parts = append(parts, fmt.Sprintf("template %s not applied: %s", strings.Join(names[why], ", "), why))
	}
	return ok, strings.Join(parts, "; ")
}

// RefusalsToWarn is how many heartbeats in a row the hub refuses before
// Run tells Warn.
const RefusalsToWarn = 3

// Run heartbeats until ctx ends: every interval with ±10 % jitter (so that
// sites restarted together do not beat together), renewing the certificate
// when due. While the hub is unreachable it backs off and keeps going; only
// the latest status is ever sent, never a backlog. It returns ErrRevoked's
// error once the hub revoked the site, and ErrRefused's once the hub
// refuses its certificate and the renewal as well: EnsureJoined then joins
// again with the join string.
func (s *Site) Run(ctx context.Context, status StatusFunc) error {
	interval := time.Duration(s.State.Policy.HeartbeatSeconds) * time.Second
	if interval <= 0 {
		interval = 30 * time.Second
	}
	backoff := 5 * time.Second
	refusals := 0
	for {
		if s.NeedsRenewal(time.Now()) {
			if err := s.Renew(ctx); err != nil {
				if rerr := s.refusal(err); rerr != nil {
					s.warn("constellation: " + rerr.Error())
					return rerr
				}
				s.Log.Warn("certificate renewal failed; retrying at the next beat", "err", err)
			}
		}
		applied := s.State.AppliedRevision
		next, err := s.Beat(ctx, status)
		var re *RemoteError
		if errors.As(err, &re) && re.Code == api.CodeUnauthorized && ctx.Err() == nil {
			// The hub refuses the certificate. When it has expired by the
			// hub's clock, the site's may be behind and not see renewal
			// due: renew now, whatever the site's clock says. A renewal
			// refused too means the hub no longer accepts this site.
			if rerr := s.Renew(ctx); rerr == nil {
				next, err = s.Beat(ctx, status)
			} else if rerr := s.refusal(rerr); rerr != nil {
				s.warn("constellation: " + rerr.Error())
				return rerr
			} else {
				s.Log.Warn("certificate renewal after the hub refused the certificate failed", "err", rerr)
			}
		}
		wait := interval
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			if errors.As(err, &re) {
				if re.Code == api.CodeSiteRevoked {
					if err := s.MarkRevoked(); err != nil {
						s.Log.Warn("recording the revocation", "err", err)
					}
					return fmt.Errorf("%w (%w)", ErrRevoked, err)
				}
				// The hub answered, and said no: past a few in a row it
				// is not a passing hiccup, and the operator hears of it.
				if refusals++; refusals >= RefusalsToWarn {
					s.warn(fmt.Sprintf("constellation: the hub refused the last %d heartbeats: %v", refusals, err))
				}
			}
			s.Log.Warn("heartbeat failed; the site keeps running", "err", err, "retry_in", backoff)
			wait = backoff
			backoff = min(backoff*2, interval)
		default:
			refusals = 0
			if s.templatesProblem != "" {
				s.warn("constellation: " + s.templatesProblem)
			} else {
				s.warn("")
			}
			backoff = 5 * time.Second
			if next > 0 {
				interval = next
			}
			wait = interval
			if s.State.AppliedRevision != applied {
				// Report the applied revision at once rather than in 30 s.
				wait = 0
			}
		}
		if wait > 0 {
			wait = time.Duration(float64(wait) * (0.9 + 0.2*rand.Float64()))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (s *Site) warn(problem string) {
	if s.Warn != nil {
		s.Warn(problem)
	}
}

const manifestPrefix = "etoile-"

// ApplyTemplates makes dir hold exactly the desired etoile-*.yaml files:
// it writes new or changed ones atomically (K3s never sees half a file),
// leaves identical ones untouched (no needless re-apply) and removes those
// no longer selected. owned are the files the templates wrote before (nil:
// unknown, every etoile-*.yaml); a file they did not write is never removed,
// and one a template would replace stops the whole apply, before anything
// is written, naming it. Files not named etoile-* are never touched.
func ApplyTemplates(dir string, objs []api.TemplateObject, owned []string) (written, removed []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("creating manifests folder: %w", err)
	}
	want := map[string]string{}
	for _, o := range objs {
		if err := api.ValidateName("template name", o.Name); err != nil {
			return nil, nil, fmt.Errorf("hub sent %w", err)
		}
		want[manifestPrefix+o.Name+".yaml"] = o.Manifest
	}
	ours := func(n string) bool { return owned == nil || slices.Contains(owned, n) }
	names := slices.Sorted(maps.Keys(want))
	for _, n := range names {
		if old, err := os.ReadFile(filepath.Join(dir, n)); err == nil && string(old) != want[n] && !ours(n) {
			return nil, nil, fmt.Errorf("%s in %s was not written by the constellation, and template %s would replace it: rename or remove that file", n, dir, strings.TrimSuffix(strings.TrimPrefix(n, manifestPrefix), ".yaml"))
		}
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if old, err := os.ReadFile(p); err == nil && string(old) == want[n] {
			continue
		}
		if err := pki.WriteFileAtomic(p, []byte(want[n]), 0o600); err != nil {
			return written, removed, err
		}
		written = append(written, n)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return written, removed, fmt.Errorf("listing manifests folder: %w", err)
	}
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, manifestPrefix) || !strings.HasSuffix(n, ".yaml") {
			continue
		}
		if _, ok := want[n]; ok || !ours(n) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			return written, removed, fmt.Errorf("removing unselected template: %w", err)
		}
		removed = append(removed, n)
	}
	return written, removed, nil
}

// templateFiles are the manifest files objs make.
func templateFiles(objs []api.TemplateObject) []string {
	out := []string{}
	for _, o := range objs {
		out = append(out, manifestPrefix+o.Name+".yaml")
	}
	slices.Sort(out)
	return out
}
