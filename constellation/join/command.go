package join

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
)

// Version is reported to the hub; the build sets it.
var Version = "dev"

const usage = `usage: etoile-agent join [--root DIR] [--follow] [--timeout 30s] JOIN-STRING
       etoile-agent join --from-file FILE [--root DIR] [--follow]
       etoile-agent join --follow [--root DIR]     (already joined: heartbeat only)

Joins this site to a constellation hub. JOIN-STRING comes from
'etoile hub token create' on the hub (etoile://HOST:PORT?token=…&ca=sha256:…).
The site key stays in ROOT/var/lib/etoile/constellation (0600). Running the
command again with the same join string after a lost answer is safe: the hub
returns the same site. --follow keeps heartbeating in the foreground.
`

// Command is `etoile-agent join`.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("join", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	root := fs.String("root", "/", "root folder holding var/lib/etoile/constellation (on a node booted from its media, / is in memory until installed)")
	follow := fs.Bool("follow", false, "keep heartbeating after the join until interrupted")
	timeout := fs.Duration("timeout", 30*time.Second, "time allowed for the join request")
	fromFile := fs.String("from-file", "", "read the join string from FILE (keeps the secret out of the process list)")
	verbose := fs.Bool("v", false, "log at debug level")
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return fmt.Errorf("join: %w", err)
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if *follow && *fromFile == "" && len(positional) == 0 {
		// Already joined: just report in.
		site, err := Load(*root, log)
		if err != nil {
			return fmt.Errorf("join --follow: %w", err)
		}
		fmt.Fprintf(stdout, "site %s (id %s) reporting to %s\n", site.State.SiteName, site.State.SiteID, site.State.Hub)
		return site.Run(ctx, HostStatus(Version, ""))
	}
	var raw string
	switch {
	case *fromFile != "" && len(positional) == 0:
		b, err := os.ReadFile(*fromFile)
		if err != nil {
			return fmt.Errorf("join: reading join string: %w", err)
		}
		raw = strings.TrimSpace(string(b))
	case *fromFile == "" && len(positional) == 1:
		raw = positional[0]
	default:
		fs.Usage()
		return errors.New("join: give exactly one JOIN-STRING (or --from-file)")
	}
	js, err := api.ParseJoinString(raw)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	site, err := Join(ctx, js, Options{Root: *root, Inventory: HostInventory(Version), Log: log, Timeout: *timeout})
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	p := site.State.Policy
	fmt.Fprintf(stdout, "joined %s as site %s (id %s)\n", js.Hub, site.State.SiteName, site.State.SiteID)
	fmt.Fprintf(stdout, "  country=%s region=%s jurisdiction=%s tags=%s\n", p.Country, p.Region, p.Jurisdiction, strings.Join(p.Tags, ","))
	fmt.Fprintf(stdout, "  certificate valid until %s; heartbeat every %ds\n", site.Certificate().NotAfter.UTC().Format(time.RFC3339), p.HeartbeatSeconds)
	if !*follow {
		return nil
	}
	return site.Run(ctx, HostStatus(Version, ""))
}
