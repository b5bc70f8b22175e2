package main

import (
	"context"
	"flag"
	"io"

	"github.com/etoile-os/etoile/agent/inventory"
)

// runInventory prints the machine's hardware: `etoile-agent inventory [--json] [--root DIR] [--boot-device DEV]`.
func runInventory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("etoile-agent inventory", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON (stable snake_case field names)")
	root := fs.String("root", "", "read sys/ and proc/ from this copied tree instead of this machine")
	bootDev := fs.String("boot-device", "", "the device the machine booted from (default: detected from labels)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	inv, err := inventory.Collect(ctx, inventory.Options{Root: *root, BootDevice: *bootDev})
	if err != nil {
		return err
	}
	if *asJSON {
		return inventory.WriteJSON(stdout, inv)
	}
	return inventory.WriteTable(stdout, inv)
}
