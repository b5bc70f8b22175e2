package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config/configcli"
)

// followEvery is how often `logs -f` asks the agent for new lines.
var followEvery = 500 * time.Millisecond

// runLogs is `etoile-agent logs [-f] [-n N] [agent|k3s|kernel|syslog]`: the
// agent's console log, K3s's output, the kernel's log or what daemons wrote to
// /dev/log, through the local API.
func runLogs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("etoile-agent logs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bad := func(format string, args ...any) error {
		err := fmt.Errorf(format, args...)
		fmt.Fprintf(stderr, "etoile-agent logs: %v\n\n", err)
		fs.Usage()
		return usageError{err}
	}
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: etoile-agent logs [-f] [-n LINES] [--socket PATH] [agent|k3s|kernel|syslog]\n\n"+
			"The running agent's log (agent, the default: what it printed on the console), K3s's output (k3s),\n"+
			"the kernel's log (kernel, as dmesg prints it: also what `quiet` kept off the console) or what\n"+
			"the image's daemons sent to syslog through /dev/log (syslog).\n\n")
		fs.PrintDefaults()
	}
	follow := fs.Bool("f", false, "keep printing lines as they come, until interrupted")
	n := fs.Int("n", 200, "how many of the last lines to print (1 to 10000)")
	socket := fs.String("socket", api.DefaultSocket, "the agent's local API socket")
	sources, err := configcli.ParseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil
	case err != nil:
		return usageError{err}
	}
	source := "agent"
	switch {
	case len(sources) > 1:
		return bad("one log at a time, got %q", sources)
	case len(sources) == 1:
		source = sources[0]
	}
	if source != "agent" && source != "k3s" && source != "kernel" && source != "syslog" {
		return bad("no log named %q: use agent, k3s, kernel or syslog", source)
	}
	if *n < 1 || *n > 10000 {
		return bad("-n %d: give a number from 1 to 10000", *n)
	}
	c := api.NewClient(filepath.Clean(*socket))
	var after uint64
	lines := *n
	for {
		page, err := c.Logs(ctx, source, lines, after)
		if err != nil {
			if ctx.Err() != nil {
				return nil // ^C while following
			}
			return err
		}
		if page.Skipped > 0 {
			fmt.Fprintf(stdout, "… %d lines not shown (more came than -n, or the agent no longer holds them)\n", page.Skipped)
		}
		if page.Dropped > 0 {
			fmt.Fprintf(stdout, "… %d older lines not shown: one answer holds at most %d MiB of lines (ask for fewer with -n)\n", page.Dropped, api.MaxLogAnswer>>20)
		}
		for _, l := range page.Lines {
			if _, err := fmt.Fprintln(stdout, l); err != nil {
				return err // a closed pipe (| head)
			}
		}
		if !*follow {
			return nil
		}
		// -n is for the lines already there; after them, every line that
		// came is wanted (as many as the agent still holds).
		after, lines = page.Next, 10000
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(followEvery):
		}
	}
}
