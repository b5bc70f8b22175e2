package boot

import "github.com/etoile-os/etoile/agent/cmdline"

func parse(s string) cmdline.Params { return cmdline.Parse(s) }
