package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
	if err := noArgs(fs, stderr, "inventory", "a copied tree is read with --root DIR"); err != nil {
		return err
	}
	if *root != "" {
		// A copied tree must hold sysfs at least: without it every list
		// would be empty, which reads like a machine with no hardware.
		if st, err := os.Stat(filepath.Join(*root, "sys")); err != nil || !st.IsDir() {
			return fmt.Errorf("--root %s holds no sys/ folder: give a copy of a machine's /sys (and /proc), such as ../shared/fixtures/hw/h100-vm", *root)
		}
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
