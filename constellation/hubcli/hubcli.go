// Package hubcli is the `etoile hub …` command line: `serve` runs the hub;
// the admin commands (token, sites, place, template, audit) work against a
// local data folder (--data) or a remote hub (--hub URL with the admin
// config the hub wrote at first start).
package hubcli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
	"github.com/etoile-os/etoile/constellation/hub"
	"github.com/etoile-os/etoile/constellation/pki"
	"github.com/etoile-os/etoile/constellation/placement"
	"github.com/etoile-os/etoile/constellation/store/sqlite"
)

// DefaultDataDir is where the hub keeps its CA, database and admin config.
const DefaultDataDir = "/var/lib/etoile-hub"

// DBFile is the SQLite database's name in the data folder.
const DBFile = "hub.db"

const usage = `usage: etoile hub COMMAND [flags]

  serve      --data DIR --listen ADDR [--status-listen ADDR] [--san NAME]… [--url URL]
  token      create --site NAME [--country FR] [--region R] [--jurisdiction EU] [--tag T]… [--ttl 24h] [--uses 1]
             list | revoke ID
  sites      [--json] | revoke NAME
  place      [--need KEY=VALUE]… [--tag T]… [--json]   exit status 5 when no site is eligible
  template   add NAME --file FILE [--selector KEY=VALUE]… | list | remove NAME
  audit      [--action ACTION] [--limit N] [--json]
  admin-config --name NAME --out FILE [--ttl 8760h]   another admin's credentials (on the hub machine)
  admin      list | revoke NAME   admin credentials issued; revoke refuses every certificate of NAME
  rules      list the placement rules

Admin commands act on the hub's data folder (--data DIR, default ` + DefaultDataDir + `)
or on a remote hub (--hub URL, --admin-config FILE, default DIR/admin.yaml).
The subcommand comes right after the command (etoile hub token list --data DIR).
Template selectors are ANDed: --selector tag=gdpr --selector tag=nis2 needs both tags.
`

// Command runs `etoile hub ARGS…`.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return errors.New("hub: missing command")
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stdout, stderr)
	case "token":
		return token(ctx, rest, stdout, stderr)
	case "sites", "site":
		return sites(ctx, rest, stdout, stderr)
	case "place":
		return place(ctx, rest, stdout, stderr)
	case "template", "templates":
		return templates(ctx, rest, stdout, stderr)
	case "audit":
		return audit(ctx, rest, stdout, stderr)
	case "rules":
		if len(args) > 1 && !isHelp(args[1]) {
			return fmt.Errorf("hub rules: unexpected argument %q (etoile hub rules takes none)", args[1])
		}
		return rules(stdout)
	case "admin-config":
		return adminConfig(ctx, rest, stdout, stderr)
	case "admin", "admins":
		return admins(ctx, rest, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("hub: unknown command %q", cmd)
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// adminFlags are shared by every admin command.
type adminFlags struct {
	data, hubURL, config string
	json                 bool
}

func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *adminFlags) {
	fs := flag.NewFlagSet("etoile hub "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	a := &adminFlags{}
	fs.StringVar(&a.data, "data", DefaultDataDir, "hub data folder (local administration)")
	fs.StringVar(&a.hubURL, "hub", "", "remote hub URL (https://HOST:PORT); uses --admin-config")
	fs.StringVar(&a.config, "admin-config", "", "admin config for a remote hub (default DATA/admin.yaml)")
	fs.BoolVar(&a.json, "json", false, "print JSON")
	return fs, a
}

// parse parses flags placed before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" || a == "help" }

// subcommand splits off the subcommand of `etoile hub CMD SUB [flags]`. The
// subcommand comes first (its flags depend on it): flags before it are
// refused with the form to use, so that nothing is done with half the
// command line.
func subcommand(cmd string, args []string, subs []string) (string, []string, error) {
	form := fmt.Sprintf("etoile hub %s %s [flags]", cmd, strings.Join(subs, "|"))
	if len(args) == 0 {
		return "", nil, fmt.Errorf("hub %s: give %s (%s)", cmd, orList(subs), form)
	}
	sub := args[0]
	if strings.HasPrefix(sub, "-") && !isHelp(sub) {
		return "", nil, fmt.Errorf("hub %s: the subcommand comes before the flags: %s (got %q first)", cmd, form, sub)
	}
	if isHelp(sub) {
		return "help", nil, nil
	}
	if !slices.Contains(subs, sub) {
		return "", nil, fmt.Errorf("hub %s: unknown subcommand %q (%s)", cmd, sub, form)
	}
	return sub, args[1:], nil
}

func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// noArgs refuses positional arguments a command does not take.
func noArgs(cmd string, pos []string, hint string) error {
	if len(pos) == 0 {
		return nil
	}
	if hint != "" {
		hint = " (" + hint + ")"
	}
	return fmt.Errorf("hub %s: unexpected argument %q%s", cmd, pos[0], hint)
}

// open returns the Admin to use and a function to release it.
func (a *adminFlags) open(ctx context.Context) (hub.Admin, func(), error) {
	if a.hubURL != "" || a.config != "" {
		path := a.config
		if path == "" {
			path = filepath.Join(a.data, hub.AdminConfigFile)
		}
		cfg, err := hub.LoadClientConfig(path)
		if err != nil {
			return nil, nil, err
		}
		c, err := hub.NewClient(cfg, a.hubURL)
		if err != nil {
			return nil, nil, err
		}
		return c, func() {}, nil
	}
	ca, err := pki.LoadCA(a.data)
	if err != nil {
		return nil, nil, err
	}
	st, err := sqlite.Open(ctx, filepath.Join(a.data, DBFile), sqlite.Options{})
	if err != nil {
		return nil, nil, err
	}
	svc := &hub.Service{Store: st, CA: ca}
	if v, err := st.Meta(ctx, metaInterval); err == nil {
		if d, err := time.ParseDuration(v); err == nil {
			svc.HeartbeatInterval = d
		}
	}
	return svc.As(localActor()), func() { st.Close() }, nil
}

// metaInterval records the serving hub's heartbeat interval so that local
// commands judge online/stale/offline the same way.
const metaInterval = "heartbeat_interval"

func localActor() string {
	u := os.Getenv("SUDO_USER")
	if u == "" {
		u = os.Getenv("USER")
	}
	if u == "" {
		u = fmt.Sprintf("uid%d", os.Getuid())
	}
	return "local:" + u
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func token(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := subcommand("token", args, []string{"create", "list", "revoke"})
	if err != nil {
		return err
	}
	if sub == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	fs, a := newFlags("token "+sub, stderr)
	var req api.TokenRequest
	var tags multi
	var ttl time.Duration
	qrMode := "auto"
	if sub == "create" {
		fs.StringVar(&req.Site, "site", "", "site name (a DNS label), required")
		fs.StringVar(&req.Country, "country", "", "ISO 3166 country code (FR, DE, …)")
		fs.StringVar(&req.Region, "region", "", "region (e.g. eu-west-3)")
		fs.StringVar(&req.Jurisdiction, "jurisdiction", "", "legal jurisdiction (EU, US, CH, …)")
		fs.Var(&tags, "tag", "compliance tag, repeatable (gdpr, nis2, dora, …)")
		fs.DurationVar(&ttl, "ttl", 24*time.Hour, "validity of the token")
		fs.IntVar(&req.Uses, "uses", 1, "how many joins the token allows")
		fs.StringVar(&qrMode, "qr", "auto", "print a QR code: auto (on a terminal), always, never")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	switch sub {
	case "create":
		err = noArgs("token create", pos, "the site name is --site NAME")
	case "list":
		err = noArgs("token list", pos, "")
	case "revoke":
		if len(pos) != 1 {
			err = errors.New("hub token revoke: give one token ID (see etoile hub token list)")
		}
	}
	if err != nil {
		return err
	}
	admin, done, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	switch sub {
	case "create":
		req.Tags = tags
		req.TTLSeconds = int64(ttl / time.Second)
		resp, err := admin.CreateToken(ctx, req)
		if err != nil {
			return fmt.Errorf("hub token create: %w", err)
		}
		if a.json {
			return printJSON(stdout, resp)
		}
		fmt.Fprintln(stdout, resp.JoinString)
		if qrMode == "always" || (qrMode == "auto" && isTerminal(stdout)) {
			if err := WriteQR(stdout, resp.JoinString); err != nil {
				return err
			}
		}
		fmt.Fprintf(stderr, "token %s for site %s, %d use(s), expires %s. On the site: etoile-agent join '<join string>'\n",
			resp.Token.ID, resp.Token.Site, resp.Token.MaxUses, resp.Token.ExpiresAt.Format(time.RFC3339))
		return nil
	case "list":
		toks, err := admin.Tokens(ctx)
		if err != nil {
			return fmt.Errorf("hub token list: %w", err)
		}
		if a.json {
			return printJSON(stdout, nonNil(toks))
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSITE\tCOUNTRY\tJURISDICTION\tTAGS\tUSES\tEXPIRES\tSTATE")
		now := time.Now()
		for _, t := range toks {
			state := "valid"
			switch {
			case t.RevokedAt != nil:
				state = "revoked"
			case !now.Before(t.ExpiresAt):
				state = "expired"
			case t.Uses >= t.MaxUses:
				state = "used"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", t.ID, t.Site, dash(t.Country), dash(t.Jurisdiction), dash(strings.Join(t.Tags, ",")), t.Uses, t.MaxUses, t.ExpiresAt.Format(time.RFC3339), state)
		}
		return tw.Flush()
	case "revoke":
		if err := admin.RevokeToken(ctx, pos[0]); err != nil {
			return fmt.Errorf("hub token revoke: %w", err)
		}
		fmt.Fprintf(stdout, "token %s revoked\n", pos[0])
		return nil
	}
	return fmt.Errorf("hub token: unknown subcommand %q (create, list, revoke)", sub)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func flagErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func sites(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Sites has one set of flags, so they may come before the subcommand
	// too: etoile hub sites --data D revoke NAME.
	fs, a := newFlags("sites", stderr)
	pos, err := parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	sub := "list"
	if len(pos) > 0 {
		switch pos[0] {
		case "list", "revoke":
			sub, pos = pos[0], pos[1:]
		default:
			return fmt.Errorf("hub sites: unknown subcommand %q (etoile hub sites [list] [flags] or etoile hub sites revoke NAME [flags])", pos[0])
		}
	}
	switch {
	case sub == "revoke" && len(pos) != 1:
		return errors.New("hub sites revoke: give one site name (see etoile hub sites)")
	case sub == "list":
		if err := noArgs("sites", pos, ""); err != nil {
			return err
		}
	}
	admin, done, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	if sub == "revoke" {
		if err := admin.RevokeSite(ctx, pos[0]); err != nil {
			return fmt.Errorf("hub sites revoke: %w", err)
		}
		fmt.Fprintf(stdout, "site %s revoked: its certificates are refused from now on\n", pos[0])
		return nil
	}
	list, err := admin.Sites(ctx)
	if err != nil {
		return fmt.Errorf("hub sites: %w", err)
	}
	if a.json {
		return printJSON(stdout, nonNil(list))
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCOUNTRY\tJURISDICTION\tTAGS\tSTATUS\tNODES\tCPU\tMEMORY\tGPU\tLAST HEARTBEAT\tTEMPLATES")
	for _, s := range list {
		c := s.Heartbeat.Capacity
		last := "never"
		if s.LastHeartbeat != nil {
			last = s.LastHeartbeat.Format(time.RFC3339)
		}
		var gpus []string
		for _, g := range c.GPUs {
			gpus = append(gpus, fmt.Sprintf("%d/%d %s", g.Used, g.Count, g.Vendor))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%.1f/%.1f\t%.1f/%.1fGi\t%s\t%s\t%d/%d\n", s.Name, dash(s.Country), dash(s.Jurisdiction), dash(strings.Join(s.Tags, ",")),
			s.Status, s.Heartbeat.NodesReady, s.Heartbeat.Nodes, float64(c.CPUUsedMillis)/1000, float64(c.CPUMillis)/1000,
			float64(c.MemoryUsedBytes)/(1<<30), float64(c.MemoryBytes)/(1<<30), dash(strings.Join(gpus, ",")), last, s.Heartbeat.AppliedRevision, s.DesiredRevision)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Why a site stays behind when it said so (a K3s agent, HelmCharts
	// with the helm controller disabled).
	for _, s := range list {
		if p := s.Heartbeat.TemplatesProblem; p != "" && s.Heartbeat.RefusedRevision == s.DesiredRevision {
			fmt.Fprintf(stdout, "%s: templates not deployed: %s\n", s.Name, p)
		}
	}
	return nil
}

func place(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, a := newFlags("place", stderr)
	var needs, tags multi
	fs.Var(&needs, "need", "KEY=VALUE the site must satisfy, repeatable (country=FR, gpu.vendor=nvidia, cpu=4, memory=8Gi, gpu=1)")
	fs.Var(&tags, "tag", "compliance tag the site must carry, repeatable")
	pos, err := parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 {
		return fmt.Errorf("hub place: unexpected argument %q (use --need KEY=VALUE)", pos[0])
	}
	admin, done, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := admin.Place(ctx, api.PlacementRequest{Needs: needs, Tags: tags})
	if err != nil {
		return fmt.Errorf("hub place: %w", err)
	}
	if a.json {
		err = printJSON(stdout, res)
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "ELIGIBLE (%d)\tSCORE\tWHY\n", len(res.Eligible))
		for _, c := range res.Eligible {
			fmt.Fprintf(tw, "%s\t%.3f\t%s\n", c.Site, c.Score, c.Why)
		}
		fmt.Fprintf(tw, "\nEXCLUDED (%d)\tRULE\tREASON\n", len(res.Excluded))
		for _, e := range res.Excluded {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Site, e.Rule, e.Reason)
		}
		err = tw.Flush()
	}
	if err != nil || len(res.Eligible) > 0 {
		return err
	}
	// The answer is printed; the exit status tells a script that there is
	// nowhere to run this.
	why := "every site is excluded, each with the rule it failed"
	if len(res.Excluded) == 0 {
		why = "the hub has no site: join one (etoile hub token create)"
	}
	return &ExitError{Code: ExitNoEligible, Err: fmt.Errorf("hub place: no site is eligible: %s", why)}
}

// ExitNoEligible is the exit status of etoile hub place when the hub
// answered and no site is eligible (its answer is printed as usual): a
// script tells "nowhere to run" from a placement (0) and from a failure
// (1). It follows the statuses etoile-agent's commands use (1 failed, 2
// usage, 3 unreachable, 4 refused).
const ExitNoEligible = 5

// ExitError is a command's error with the exit status etoile ends with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the exit status for the error.
func (e *ExitError) ExitCode() int { return e.Code }

func rules(stdout io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDER\tRULE\tMEANING")
	for i, r := range placement.Rules {
		fmt.Fprintf(tw, "%d\t%s\t%s\n", i+1, r.Name, r.Text)
	}
	return tw.Flush()
}

func templates(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := subcommand("template", args, []string{"add", "list", "remove", "rm"})
	if err != nil {
		return err
	}
	if sub == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	fs, a := newFlags("template "+sub, stderr)
	var sel multi
	var file string
	if sub == "add" {
		fs.StringVar(&file, "file", "", "manifest file (YAML, one or more Kubernetes objects or HelmChart resources; - for stdin)")
		fs.Var(&sel, "selector", "KEY=VALUE over site attributes, repeatable, ANDed (country=FR, tag=gdpr, gpu.vendor=nvidia)")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	var t api.Template
	switch sub {
	case "list":
		if err := noArgs("template list", pos, ""); err != nil {
			return err
		}
	case "remove", "rm":
		if len(pos) != 1 {
			return errors.New("hub template remove: give one template name (see etoile hub template list)")
		}
	case "add":
		if len(pos) != 1 || file == "" {
			return errors.New("hub template add: give NAME and --file FILE")
		}
		selector, err := parseSelectors(sel)
		if err != nil {
			return fmt.Errorf("hub template add: %w", err)
		}
		var b []byte
		if file == "-" {
			b, err = io.ReadAll(io.LimitReader(os.Stdin, api.MaxBodyBytes))
		} else {
			b, err = os.ReadFile(file)
		}
		if err != nil {
			return fmt.Errorf("hub template add: reading manifest: %w", err)
		}
		t = api.Template{Name: pos[0], Manifest: string(b), Selector: selector}
	}
	admin, done, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	switch sub {
	case "add":
		out, err := admin.PutTemplate(ctx, t)
		if err != nil {
			return fmt.Errorf("hub template add: %w", err)
		}
		if a.json {
			return printJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "template %s stored; templates revision %d\n", out.Name, out.Revision)
		return nil
	case "list":
		tl, err := admin.Templates(ctx)
		if err != nil {
			return fmt.Errorf("hub template list: %w", err)
		}
		if a.json {
			tl.Templates = nonNil(tl.Templates)
			return printJSON(stdout, tl)
		}
		fmt.Fprintf(stdout, "templates revision %d\n", tl.Revision)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSELECTOR\tBYTES\tREVISION\tUPDATED")
		for _, t := range tl.Templates {
			kv := api.SelectorTerms(t.Selector)
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", t.Name, dash(strings.Join(kv, ",")), len(t.Manifest), t.Revision, t.UpdatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	case "remove", "rm":
		rev, err := admin.RemoveTemplate(ctx, pos[0])
		if err != nil {
			return fmt.Errorf("hub template remove: %w", err)
		}
		fmt.Fprintf(stdout, "template %s removed; templates revision %d\n", pos[0], rev)
		return nil
	}
	return fmt.Errorf("hub template: unknown subcommand %q (add, list, remove)", sub)
}

// parseSelectors turns --selector KEY=VALUE flags into a template selector.
// The terms are ANDed: several tags are all required (stored as one
// comma-separated tag value); any other key given twice with two values
// could never match (a site has one country, one region…) and is refused.
func parseSelectors(terms []string) (map[string]string, error) {
	sel := map[string]string{}
	var tags []string
	for _, kv := range terms {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--selector %q is not KEY=VALUE (e.g. tag=gdpr, country=FR)", kv)
		}
		if k == "tag" {
			for _, t := range strings.Split(v, ",") {
				if err := api.ValidateAttr("tag", t); err != nil {
					return nil, fmt.Errorf("--selector %s: %w", kv, err)
				}
				if !slices.Contains(tags, t) {
					tags = append(tags, t)
				}
			}
			continue
		}
		if err := api.ValidateAttr(k, v); err != nil {
			return nil, fmt.Errorf("--selector %s: %w", kv, err)
		}
		if prev, ok := sel[k]; ok && prev != v {
			return nil, fmt.Errorf("--selector %s=%s and --selector %s=%s: selectors are ANDed and a site has one %s, so no site would match; give one %s (for either, add the template under two names)", k, prev, k, v, k, k)
		}
		sel[k] = v
	}
	if len(tags) > 0 {
		sort.Strings(tags)
		sel["tag"] = strings.Join(tags, ",")
	}
	if err := api.ValidateSelector(sel); err != nil {
		return nil, fmt.Errorf("--selector: %w", err)
	}
	return sel, nil
}

func audit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, a := newFlags("audit", stderr)
	action := fs.String("action", "", "only this action ("+strings.Join(api.AuditActions, ", ")+")")
	limit := fs.Int("limit", 100, "newest N events")
	pos, err := parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 && slices.Contains(api.AuditActions, pos[0]) {
		return fmt.Errorf("hub audit: unexpected argument %q (use --action %s)", pos[0], pos[0])
	}
	if err := noArgs("audit", pos, "filters are --action ACTION and --limit N"); err != nil {
		return err
	}
	if err := api.ValidateAuditAction(*action); err != nil {
		return fmt.Errorf("hub audit: --action: %w", err)
	}
	if *limit < 1 {
		return fmt.Errorf("hub audit: --limit %d: give a number of events, 1 or more", *limit)
	}
	admin, done, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	evs, err := admin.Audit(ctx, *action, *limit)
	if err != nil {
		return fmt.Errorf("hub audit: %w", err)
	}
	if a.json {
		return printJSON(stdout, nonNil(evs))
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tSUBJECT\tDETAIL")
	for _, e := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), e.Actor, e.Action, e.Subject, e.Detail)
	}
	return tw.Flush()
}

// shortDuration writes -1h for -1h0m0s and 87600h for 87600h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// maxAdminTTL bounds an admin certificate's lifetime: a year, as the hub's
// own admin.yaml (which the hub issues again at a start within 30 days of
// its expiry). A leaked credential is stopped with etoile hub admin revoke.
const maxAdminTTL = 365 * 24 * time.Hour

// adminConfig issues a named admin certificate, so that the audit trail
// tells administrators apart. It needs the CA key, hence the data folder.
func adminConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, a := newFlags("admin-config", stderr)
	name := fs.String("name", "", "administrator name (a DNS label), shown in the audit trail")
	out := fs.String("out", "", "file to write (0600)")
	ttl := fs.Duration("ttl", 365*24*time.Hour, "certificate lifetime (1m to "+shortDuration(maxAdminTTL)+")")
	pos, err := parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if err := noArgs("admin-config", pos, "give --name NAME --out FILE"); err != nil {
		return err
	}
	if *name == "" || *out == "" {
		return errors.New("hub admin-config: give --name and --out")
	}
	if err := api.ValidateName("--name", *name); err != nil {
		return fmt.Errorf("hub admin-config: %w", err)
	}
	if *ttl < time.Minute || *ttl > maxAdminTTL {
		return fmt.Errorf("hub admin-config: --ttl %s is outside 1m..%s (the admin certificate's lifetime, e.g. --ttl 720h)", shortDuration(*ttl), shortDuration(maxAdminTTL))
	}
	ca, err := pki.LoadCA(a.data)
	if err != nil {
		return err
	}
	st, err := sqlite.Open(ctx, filepath.Join(a.data, DBFile), sqlite.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	hubURL, err := st.Meta(ctx, hub.MetaURL)
	if err != nil {
		return fmt.Errorf("hub URL unknown (start the hub once): %w", err)
	}
	// The certificate is recorded, with its admin.issue event, before the
	// file is written: a credential that is not in the audit trail and
	// cannot be revoked must not exist.
	svc := &hub.Service{Store: st, CA: ca}
	c, err := svc.IssueAdminConfig(ctx, hub.AdminConfigRequest{Path: *out, HubURL: hubURL, Name: *name, Lifetime: *ttl, IssuedBy: localActor()})
	if err != nil {
		return fmt.Errorf("hub admin-config: %w", err)
	}
	fmt.Fprintf(stdout, "admin config for %s written to %s, expires %s (use: etoile hub sites --admin-config %s)\n", *name, *out, c.NotAfter.Format(time.RFC3339), *out)
	return nil
}

// admins lists the admin certificates the hub issued and revokes them by
// name.
func admins(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := subcommand("admin", args, []string{"list", "revoke"})
	if err != nil {
		return err
	}
	if sub == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	fs, a := newFlags("admin "+sub, stderr)
	pos, err := parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	switch sub {
	case "list":
		err = noArgs("admin list", pos, "")
	case "revoke":
		if len(pos) != 1 {
			err = errors.New("hub admin revoke: give one admin name (see etoile hub admin list)")
		}
	}
	if err != nil {
		return err
	}
	admin, done, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	if sub == "revoke" {
		name := pos[0]
		rev, err := admin.RevokeAdmin(ctx, name)
		if err != nil {
			return fmt.Errorf("hub admin revoke: %w", err)
		}
		if a.json {
			return printJSON(stdout, rev)
		}
		fmt.Fprintf(stdout, "admin credential %s revoked at %s: its certificates (%d recorded) are refused from now on; a new one: etoile hub admin-config --name %s --out FILE on the hub machine\n",
			name, rev.RevokedAt.Format(time.RFC3339), rev.Certificates, name)
		if name == "admin" {
			fmt.Fprintf(stdout, "the hub's own %s is issued again at the hub's next start\n", hub.AdminConfigFile)
		}
		return nil
	}
	list, err := admin.AdminCerts(ctx)
	if err != nil {
		return fmt.Errorf("hub admin list: %w", err)
	}
	if a.json {
		list.Certificates, list.Revocations = nonNil(list.Certificates), nonNil(list.Revocations)
		return printJSON(stdout, list)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKEY\tSERIAL\tISSUED\tEXPIRES\tREVOKED\tSTATE\tISSUED BY")
	now := time.Now()
	for _, c := range list.Certificates {
		state, revoked := "valid", "-"
		switch {
		case c.RevokedAt != nil:
			state, revoked = "revoked", c.RevokedAt.Format(time.RFC3339)
		case !now.Before(c.NotAfter):
			state = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.KeySHA256[:min(12, len(c.KeySHA256))], c.Serial,
			c.IssuedAt.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), revoked, state, c.IssuedBy)
	}
	if len(list.Revocations) > 0 {
		fmt.Fprintln(tw, "\nREVOKED NAME\tAT")
		for _, r := range list.Revocations {
			fmt.Fprintf(tw, "%s\t%s\n", r.Name, r.RevokedAt.Format(time.RFC3339))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(list.Revocations) > 0 {
		fmt.Fprintln(stdout, "A revoked name also refuses those of its certificates issued before then that the hub has no record of (issued before it recorded them).")
	}
	return nil
}
