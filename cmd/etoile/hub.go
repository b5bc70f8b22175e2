package main

import (
	"context"
	"io"

	"github.com/etoile-os/etoile/constellation/hubcli"
)

func init() { extraCommands["hub"] = runHub }

// runHub is `etoile hub …`; the constellation lives in constellation/.
func runHub(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return hubcli.Command(ctx, args, stdout, stderr)
}
