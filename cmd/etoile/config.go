package main

import (
	"context"
	"errors"
	"io"

	"github.com/etoile-os/etoile/agent/config/configcli"
)

func init() { extraCommands["config"] = runConfig }

// runConfig is `etoile config validate|example|k3s`: the operator checks a
// machine config before baking it into media (etoile build --config) or
// serving it (etoile.config=URL).
func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := configcli.Command(ctx, "etoile", args, stdout, stderr)
	if errors.Is(err, configcli.ErrUsage) {
		return errUsage // the usage text is already printed
	}
	return err
}
