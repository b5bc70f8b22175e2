// Package main: temporary imports that pin the chosen dependencies in go.mod
// while the packages that use them are written. Removed once each is used.
package main

import (
	_ "github.com/diskfs/go-diskfs"
	_ "github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/mattn/go-sqlite3"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/ulikunitz/xz"
	_ "github.com/vishvananda/netlink"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/sys/unix"
	_ "gopkg.in/yaml.v3"
	_ "rsc.io/qr"
)

func main() {}
