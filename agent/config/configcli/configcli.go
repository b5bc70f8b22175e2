// Package configcli is the `config` command shared by etoile (the
// operator's tool) and etoile-agent (on the node), so that both check a
// machine config the same way.
package configcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/etoile-os/etoile/agent/config"
)

// ErrUsage is returned after the usage text was printed.
var ErrUsage = errors.New("usage")

// ErrInvalid is wrapped by the error of a config that does not validate.
var ErrInvalid = errors.New("machine config is not valid")

// Sub is a config subcommand one program adds to the shared ones
// (etoile-agent's apply, which talks to the running agent).
type Sub struct {
	Name string
	// Synopsis follows "PROG config " in the usage: the arguments, then
	// what it does, aligned with the others.
	Synopsis string
	// Run gets the arguments after the name. It returns ErrUsage after
	// printing its own usage error (Usage gives the text).
	Run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

type cli struct {
	prog  string
	extra []Sub
}

func (cl cli) usage() string {
	s := fmt.Sprintf(`usage: %[1]s config <command>

  %[1]s config validate [--strict] FILE   check a machine config (FILE - reads standard input); warnings and notes on stderr
  %[1]s config example                    print a commented example machine config
  %[1]s config k3s FILE                   print the K3s config.yaml and registries.yaml it gives
`, cl.prog)
	for _, x := range cl.extra {
		s += fmt.Sprintf("  %s config %s\n", cl.prog, x.Synopsis)
	}
	return s
}

// usageError prints what was wrong, on one line, then the usage.
func (cl cli) usageError(stderr io.Writer, cmd, format string, args ...any) error {
	fmt.Fprintf(stderr, "%s config%s: %s\n\n%s", cl.prog, cmd, fmt.Sprintf(format, args...), cl.usage())
	return ErrUsage
}

// Usage returns the usage text of `PROG config` with extra's commands, for
// a Sub's own usage errors.
func Usage(prog string, extra ...Sub) string { return cli{prog, extra}.usage() }

// Command runs `PROG config ARGS…`. prog is the program's name, for
// messages; extra adds that program's own subcommands.
func Command(ctx context.Context, prog string, args []string, stdout, stderr io.Writer, extra ...Sub) error {
	cl := cli{prog, extra}
	if len(args) == 0 {
		return cl.usageError(stderr, "", "no command given")
	}
	switch args[0] {
	case "validate":
		return cl.validate(args[1:], stdout, stderr)
	case "example":
		if len(args) > 1 {
			return cl.usageError(stderr, " example", "takes no arguments, got %q", args[1:])
		}
		_, err := stdout.Write(config.Example())
		return err
	case "k3s":
		return cl.renderK3s(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, cl.usage())
		return nil
	}
	for _, x := range extra {
		if x.Name == args[0] {
			return x.Run(ctx, args[1:], stdout, stderr)
		}
	}
	return cl.usageError(stderr, "", "unknown command %q", args[0])
}

// ParseInterspersed parses fs's flags wherever they stand among the
// positional arguments (validate FILE --strict as well as validate --strict
// FILE), which package flag alone stops at the first positional one. After
// "--" everything is positional. It returns the positional arguments.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func (cl cli) validate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(cl.prog+" config validate", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the error is printed below, with the usage
	strict := fs.Bool("strict", false, "treat warnings as errors")
	files, err := ParseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, cl.usage())
		return nil
	case err != nil:
		return cl.usageError(stderr, " validate", "%v", err)
	case len(files) == 0:
		return cl.usageError(stderr, " validate", "no FILE given (- reads standard input)")
	case len(files) > 1:
		return cl.usageError(stderr, " validate", "one FILE at a time, got %d: %q", len(files), files)
	}
	file := files[0]
	c, warnings, err := check(file)
	if file == "-" {
		file = "standard input"
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if err != nil {
		return err
	}
	if *strict && len(warnings) > 0 {
		return fmt.Errorf("%s: %w: %d warning(s) and --strict", file, ErrInvalid, len(warnings))
	}
	for _, n := range c.Notes() {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}
	desc := []string{"role " + c.Role}
	if c.Hostname != "" {
		desc = append(desc, "hostname "+c.Hostname)
	}
	if c.Site != "" {
		desc = append(desc, "site "+c.Site)
	}
	fmt.Fprintf(stdout, "%s: valid machine config (%s)", file, strings.Join(desc, ", "))
	if len(warnings) > 0 {
		fmt.Fprintf(stdout, ", %d warning(s)", len(warnings))
	}
	fmt.Fprintln(stdout)
	return nil
}

// stdin is what FILE "-" reads (tests replace it).
var stdin io.Reader = os.Stdin

// Read reads a machine config file as the config commands do: FILE "-" is
// standard input; at most config.MaxSize bytes; a pipe or device given by
// name is refused with the way to read it.
func Read(file string) ([]byte, error) {
	var (
		data []byte
		err  error
	)
	if file == "-" {
		file = "standard input"
		data, err = io.ReadAll(io.LimitReader(stdin, config.MaxSize+1))
		if err == nil && len(data) > config.MaxSize {
			err = fmt.Errorf("%s: larger than %d bytes: a machine config is a small YAML document", file, config.MaxSize)
		}
	} else {
		data, err = config.FileSource{Path: file}.Read(context.Background())
		if errors.Is(err, config.ErrNotRegularFile) {
			err = fmt.Errorf("%w (to check what a pipe or device gives, use - and redirect it to standard input)", err)
		}
	}
	if errors.Is(err, config.ErrNotFound) {
		return nil, fmt.Errorf("%s: no such file", file)
	}
	return data, err
}

func check(file string) (*config.MachineConfig, []string, error) {
	data, err := Read(file)
	if err != nil {
		return nil, nil, err
	}
	if file == "-" {
		file = "standard input"
	}
	c, warnings, err := config.Check(data)
	if err != nil {
		return nil, warnings, fmt.Errorf("%s: %w:\n%w", file, ErrInvalid, err)
	}
	return c, warnings, nil
}

func (cl cli) renderK3s(args []string, stdout, stderr io.Writer) error {
	for _, a := range args {
		switch {
		case a == "-h" || a == "-help" || a == "--help":
			fmt.Fprint(stdout, cl.usage())
			return nil
		case strings.HasPrefix(a, "-") && a != "-":
			return cl.usageError(stderr, " k3s", "unknown option %s: k3s takes only FILE", a)
		}
	}
	switch {
	case len(args) == 0:
		return cl.usageError(stderr, " k3s", "no FILE given (- reads standard input)")
	case len(args) > 1:
		return cl.usageError(stderr, " k3s", "one FILE at a time, got %d: %q", len(args), args)
	}
	c, warnings, err := check(args[0])
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if err != nil {
		return err
	}
	k3s, err := c.K3sConfig(nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# /etc/rancher/k3s/config.yaml (without the labels the agent detects, such as GPU labels)\n%s", k3s)
	reg, err := c.RegistriesYAML()
	if err != nil {
		return err
	}
	if reg != nil {
		fmt.Fprintf(stdout, "---\n# /etc/rancher/k3s/registries.yaml\n%s", reg)
		// The PEM given inline is not printed (a client key among it).
		for _, p := range slices.Sorted(maps.Keys(c.RegistryTLSFiles())) {
			fmt.Fprintf(stdout, "# also written: /%s (from the PEM in registries.configs)\n", p)
		}
	}
	// The manifests as written, each a YAML stream of its own: one
	// document of this output is not one of them.
	for _, p := range slices.Sorted(maps.Keys(c.ManifestFiles())) {
		fmt.Fprintf(stdout, "# also written: /%s (manifests[].contents, deployed by K3s)\n", p)
	}
	return nil
}
