// Package agent holds what identifies the node program: its version and the
// commit it was built from. The PID 1 duties live in the subpackages (boot,
// kmod, sysimage, mount, network, console); K3s supervision, the machine
// config and the local API will sit beside them.
package agent

// Version and Commit are set at link time:
//
//	go build -ldflags "-X github.com/etoile-os/etoile/agent.Version=v0.1.0 -X github.com/etoile-os/etoile/agent.Commit=abc123"
//
// They are variables, not constants, because -X can only set variables.
var (
	Version = "dev"
	Commit  = "unknown"
)
