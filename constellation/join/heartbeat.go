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
	hb.AppliedRevision = s.State.AppliedRevision
	hc, err := s.httpClient()
	if err != nil {
		return 0, err
	}
	var resp api.HeartbeatResponse
	if err := post(ctx, hc, s.State.Hub+api.PathHeartbeat, hb, &resp); err != nil {
		if s.State.LastError != err.Error() {
			s.State.LastError = err.Error()
			_ = s.saveState()
		}
		return 0, fmt.Errorf("heartbeat to %s: %w", s.State.Hub, err)
	}
	now := time.Now().UTC()
	// The state file lives on flash at many sites: rewrite it when something
	// changed or every few minutes, not on every beat.
	dirty := s.State.LastError != "" || s.State.LastHeartbeat == nil || now.Sub(*s.State.LastHeartbeat) > 5*time.Minute ||
		now.Sub(s.lastSaved) > 5*time.Minute
	s.State.LastHeartbeat, s.State.LastError = &now, ""
	if resp.SendTemplates {
		written, removed, err := ApplyTemplates(filepath.Join(s.Root, ManifestDir), resp.Templates, s.State.Templates)
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
		s.Log.Info("templates applied", "revision", resp.Revision, "written", written, "removed", removed)
		s.State.AppliedRevision = resp.Revision
		s.State.Templates = templateFiles(resp.Templates)
		dirty = true
	}
	if dirty {
		if err := s.saveState(); err != nil {
			return 0, err
		}
	}
	return time.Duration(resp.HeartbeatSeconds) * time.Second, nil
}

// Run heartbeats until ctx ends: every interval with ±10 % jitter (so that
// sites restarted together do not beat together), renewing the certificate
// when due. While the hub is unreachable it backs off and keeps going; only
// the latest status is ever sent, never a backlog.
func (s *Site) Run(ctx context.Context, status StatusFunc) error {
	interval := time.Duration(s.State.Policy.HeartbeatSeconds) * time.Second
	if interval <= 0 {
		interval = 30 * time.Second
	}
	backoff := 5 * time.Second
	for {
		if s.NeedsRenewal(time.Now()) {
			if err := s.Renew(ctx); err != nil {
				s.Log.Warn("certificate renewal failed; retrying at the next beat", "err", err)
			}
		}
		applied := s.State.AppliedRevision
		next, err := s.Beat(ctx, status)
		wait := interval
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			var re *RemoteError
			if errors.As(err, &re) && re.Code == api.CodeSiteRevoked {
				if err := s.MarkRevoked(); err != nil {
					s.Log.Warn("recording the revocation", "err", err)
				}
				return fmt.Errorf("%w (%w)", ErrRevoked, err)
			}
			s.Log.Warn("heartbeat failed; the site keeps running", "err", err, "retry_in", backoff)
			wait = backoff
			backoff = min(backoff*2, interval)
		default:
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
