// Command mkrelease writes out/k3s-standin/: a folder laid out exactly like
// a K3s release for amd64 (k3s, k3s-airgap-images-amd64.tar.zst,
// sha256sum-amd64.txt) holding the K3s STAND-IN, a test double of the K3s
// command line, and a tiny real image archive. `make k3s-standin` runs it;
// `ETOILE_K3S_DIR=out/k3s-standin ./build.sh` then builds an image the way
// a real release folder would. The result is test data, never shipped.
//
//	go run ./qa/k3sstandin/mkrelease [-out out/k3s-standin] [-version v1.34.9+k3s1]
//
// SOURCE_DATE_EPOCH fixes the timestamps, so the output is reproducible.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/etoile-os/etoile/image/k3s"
	"github.com/etoile-os/etoile/qa/k3sstandin/release"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "mkrelease:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("mkrelease", flag.ContinueOnError)
	out := fs.String("out", "out/k3s-standin", "folder to write the stand-in release into")
	version := fs.String("version", k3s.DefaultVersion, "K3s version the stand-in claims to be")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if !k3s.ValidVersion(*version) {
		return fmt.Errorf("-version %q is not a K3s version like %s", *version, k3s.DefaultVersion)
	}
	epoch := time.Unix(0, 0).UTC()
	if s := getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds", s)
		}
		epoch = time.Unix(n, 0).UTC()
	}
	if err := release.Write(ctx, *out, *version, epoch); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: K3s STAND-IN %s (test double, not K3s) laid out like a release\n", *out, *version)
	return nil
}
