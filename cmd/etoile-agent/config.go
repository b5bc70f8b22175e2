package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/etoile-os/etoile/agent/api"
	"github.com/etoile-os/etoile/agent/config/configcli"
)

// applyCmd is `etoile-agent config apply`: the one config command that
// talks to the running agent rather than checking a file on its own.
func applyCmd() configcli.Sub {
	return configcli.Sub{
		Name:     "apply",
		Synopsis: "apply [--socket PATH] FILE send a machine config to the running agent, which applies it (K3s restarts with it)",
		Run:      runApply,
	}
}

// showCmd is `etoile-agent config show`: the config the agent runs.
func showCmd() configcli.Sub {
	return configcli.Sub{
		Name:     "show",
		Synopsis: "show [--socket PATH]       print the machine config the running agent uses (secrets REDACTED)",
		Run:      runShow,
	}
}

// runConfig is `etoile-agent config validate|example|k3s|apply|show`, so
// that a technician at the node checks a machine config the way the agent
// will, hands it to the agent and sees what it runs.
func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := configcli.Command(ctx, "etoile-agent", args, stdout, stderr, applyCmd(), showCmd())
	if errors.Is(err, configcli.ErrUsage) {
		return usageError{err} // the usage text is already printed
	}
	return err
}

// socketArgs parses the --socket flag of the config commands that talk to
// the agent, wherever it stands among the positional arguments. done is
// true when the command has nothing more to do (-h, or a usage error
// printed, returned as err).
func socketArgs(cmd string, args []string, stdout, stderr io.Writer) (socket string, rest []string, done bool, err error) {
	fs := flag.NewFlagSet("etoile-agent config "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	sock := fs.String("socket", api.DefaultSocket, "the agent's local API socket")
	rest, err = configcli.ParseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, configcli.Usage("etoile-agent", applyCmd(), showCmd()))
		return "", nil, true, nil
	case err != nil:
		return "", nil, true, configUsage(stderr, cmd, "%v", err)
	}
	return filepath.Clean(*sock), rest, false, nil
}

func runApply(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	socket, files, done, err := socketArgs("apply", args, stdout, stderr)
	if done {
		return err
	}
	switch {
	case len(files) == 0:
		return configUsage(stderr, "apply", "no FILE given (- reads standard input)")
	case len(files) > 1:
		return configUsage(stderr, "apply", "one FILE at a time, got %d: %q", len(files), files)
	}
	data, err := configcli.Read(files[0])
	if err != nil {
		return err
	}
	name := files[0]
	if name == "-" {
		name = "standard input"
	}
	res, err := api.NewClient(socket).ApplyConfig(ctx, data)
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if !res.Applied {
		for _, e := range res.Errors {
			fmt.Fprintf(stderr, "error: %s\n", e)
		}
		if !res.Valid {
			return fmt.Errorf("%s: %w: the agent keeps the config it runs", name, configcli.ErrInvalid)
		}
		return fmt.Errorf("%s: valid, but the agent could not apply it (the errors above say why)", name)
	}
	if res.K3sStarted != nil && !*res.K3sStarted {
		for _, e := range res.Errors {
			fmt.Fprintf(stderr, "error: %s\n", e)
		}
		if res.K3sRetrying {
			return fmt.Errorf("%s: applied (the node runs it now), but K3s could not be executed yet: its supervisor keeps trying (etoile-agent status follows it); do not apply the config again, which would only stop it", name)
		}
		return fmt.Errorf("%s: applied (the node runs it now), but K3s did not start again with it: correct what the errors above name (etoile-agent status and etoile-agent logs k3s say more) and apply it again", name)
	}
	fmt.Fprintf(stdout, "%s: applied; K3s restarts with it (etoile-agent status shows its state)\n", name)
	return nil
}

func configUsage(stderr io.Writer, cmd, format string, args ...any) error {
	fmt.Fprintf(stderr, "etoile-agent config %s: %s\n\n%s", cmd, fmt.Sprintf(format, args...), configcli.Usage("etoile-agent", applyCmd(), showCmd()))
	return usageError{configcli.ErrUsage}
}

func runShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	socket, rest, done, err := socketArgs("show", args, stdout, stderr)
	switch {
	case done:
		return err
	case len(rest) > 0:
		return configUsage(stderr, "show", "takes no FILE, got %q: it shows what the running agent uses", rest)
	}
	rc, err := api.NewClient(socket).Config(ctx)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "# from: %s\n%s", rc.From, rc.YAML)
	return err
}
