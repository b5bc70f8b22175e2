package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/boot"
)

// runPower is `etoile-agent reboot|poweroff`: the running agent stops K3s
// cleanly, then everything else, and reboots or powers the machine off, as
// for Ctrl-Alt-Del or the power button.
func runPower(ctx context.Context, action string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("etoile-agent "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", api.DefaultSocket, "the agent's local API socket")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if err := noArgs(fs, stderr, action, ""); err != nil {
		return err
	}
	if err := api.NewClient(filepath.Clean(*socket)).Power(ctx, action); err != nil {
		return err
	}
	what := "rebooting"
	if action == "poweroff" {
		what = "powering off"
	}
	_, err := fmt.Fprintf(stdout, "%s: K3s is stopped first (30 s at most), then every other process (%s at most)\n", what, boot.ProcessGrace)
	return err
}
