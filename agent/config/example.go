package config

import (
	_ "embed"
	"slices"
)

//go:embed example.yaml
var example []byte

// Example returns a commented machine config that validates; `etoile config
// example` prints it as a starting point.
func Example() []byte { return slices.Clone(example) }
