// Command etoile is the operator's tool: it builds Étoile images and, later,
// serves netboot and the constellation hub.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/etoile-os/etoile/constellation/hubcli"
)

// Set at link time by the Makefile (-X main.version=… -X main.commit=…
// -X main.commitTime=<unix seconds>).
var (
	version    = "dev"
	commit     = "unknown"
	commitTime = ""
)

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	// What the first signal does: a build stops after the step it is in;
	// the other commands (a hub serving) stop as they do on a cancel.
	what := "stopping"
	if len(os.Args) > 1 && os.Args[1] == "build" {
		what = "stopping after this step, leaving the output folder as it was"
	}
	ctx, cancel := interruptible(context.Background(), sigs, func() { signal.Stop(sigs) }, os.Stderr, what)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "etoile:", err)
		}
		os.Exit(exitStatus(err))
	}
}

// exitStatus is the exit status for err: the command's own where it has
// one (`etoile hub place`: 5 when no site is eligible), else 1 — not a
// child process's (an apt that failed), whose *exec.ExitError has an
// ExitCode too.
func exitStatus(err error) int {
	var ec *hubcli.ExitError
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

// interruptible returns a context that the first signal on sigs cancels:
// a build stops at the next point it checks, leaving its output folder as
// it was. That signal also calls stop (which makes the process's handling
// of the signals the default again), so a second Ctrl-C ends etoile at
// once.
func interruptible(parent context.Context, sigs <-chan os.Signal, stop func(), stderr io.Writer, what string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case sig := <-sigs:
			stop()
			fmt.Fprintf(stderr, "\netoile: %v: %s; press Ctrl-C again to stop now\n", sig, what)
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

var errUsage = errors.New("usage")

const usage = `etoile — build and run Étoile sites

Commands:
  etoile build [-f spec.yaml] [-o out/]   build the boot media an image spec describes
  etoile config example|validate|k3s …   write, check and render machine configs
  etoile hub …                           run and administer the constellation hub
  etoile version                          print the version

Run 'etoile COMMAND -h' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "build":
		return runBuild(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "etoile %s (commit %s)\n", version, commit)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		if cmd, ok := extraCommands[args[0]]; ok {
			return cmd(ctx, args[1:], stdout, stderr)
		}
		fmt.Fprintf(stderr, "etoile: unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
}

// extraCommands are the commands of capabilities that live in their own
// files (hub.go, …), so each can be added without touching this one.
var extraCommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
