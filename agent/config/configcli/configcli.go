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
	"os"
	"strings"

	"github.com/etoile-os/etoile/agent/config"
)

// ErrUsage is returned after the usage text was printed.
var ErrUsage = errors.New("usage")

// ErrInvalid is wrapped by the error of a config that does not validate.
var ErrInvalid = errors.New("machine config is not valid")

func usage(prog string) string {
	return fmt.Sprintf(`usage: %[1]s config <command>

  %[1]s config validate [--strict] FILE   check a machine config (FILE - reads standard input); warnings on stderr
  %[1]s config example                    print a commented example machine config
  %[1]s config k3s FILE                   print the K3s config.yaml and registries.yaml it gives
`, prog)
}

// Command runs `PROG config ARGS…`. prog is the program's name, for messages.
func Command(ctx context.Context, prog string, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage(prog))
		return ErrUsage
	}
	switch args[0] {
	case "validate":
		return validate(prog, args[1:], stdout, stderr)
	case "example":
		if len(args) > 1 {
			fmt.Fprint(stderr, usage(prog))
			return ErrUsage
		}
		_, err := stdout.Write(config.Example())
		return err
	case "k3s":
		return renderK3s(prog, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage(prog))
		return nil
	default:
		fmt.Fprintf(stderr, "%s config: unknown command %q\n\n%s", prog, args[0], usage(prog))
		return ErrUsage
	}
}

func validate(prog string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(prog+" config validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	strict := fs.Bool("strict", false, "treat warnings as errors")
	if err := fs.Parse(args); err != nil {
		return ErrUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, usage(prog))
		return ErrUsage
	}
	file := fs.Arg(0)
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

func check(file string) (*config.MachineConfig, []string, error) {
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
	}
	if errors.Is(err, config.ErrNotFound) {
		return nil, nil, fmt.Errorf("%s: no such file", file)
	}
	if err != nil {
		return nil, nil, err
	}
	c, warnings, err := config.Check(data)
	if err != nil {
		return nil, warnings, fmt.Errorf("%s: %w:\n%w", file, ErrInvalid, err)
	}
	return c, warnings, nil
}

func renderK3s(prog string, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 || (strings.HasPrefix(args[0], "-") && args[0] != "-") {
		fmt.Fprint(stderr, usage(prog))
		return ErrUsage
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
	}
	return nil
}
