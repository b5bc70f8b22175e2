package main

import (
	"context"
	"io"

	"github.com/etoile-os/etoile/constellation/join"
)

// runJoin is `etoile-agent join …`; the client lives in constellation/join.
func runJoin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return join.Command(ctx, args, stdout, stderr)
}
