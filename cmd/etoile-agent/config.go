package main

import (
	"context"
	"errors"
	"io"

	"github.com/etoile-os/etoile/agent/config/configcli"
)

// runConfig is `etoile-agent config validate|example|k3s`, so that a
// technician at the node checks a machine config the way the agent will.
func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := configcli.Command(ctx, "etoile-agent", args, stdout, stderr)
	if errors.Is(err, configcli.ErrUsage) {
		return usageError{err} // the usage text is already printed
	}
	return err
}
