package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/etoile-os/etoile/agent/config"
	"github.com/etoile-os/etoile/image"
	"github.com/etoile-os/etoile/schema"
)

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("etoile build", stderr)
	specPath := fs.String("f", "", "image spec (YAML, kind: ImageSpec); default: the built-in spec")
	outDir := fs.String("o", "out", "output folder")
	agentPath := fs.String("agent", "", "static etoile-agent binary (default: $ETOILE_AGENT, else etoile-agent beside this program, else on PATH)")
	cacheDir := fs.String("cache", "", "cache folder (default $XDG_CACHE_HOME/etoile or ~/.cache/etoile)")
	kernelDir := fs.String("kernel-dir", "", "take the kernel from this folder (vmlinuz + lib/modules/<version>) instead of the spec's source")
	k3sDir := fs.String("k3s-dir", os.Getenv("ETOILE_K3S_DIR"), "take K3s from this release folder (k3s, k3s-airgap-images-amd64.tar.zst, sha256sum-amd64.txt); default $ETOILE_K3S_DIR")
	k3sOptional := fs.Bool("k3s-optional", false, "when K3s's source cannot be reached over the network, build without K3s (loudly) instead of failing")
	machineConfig := fs.String("config", "", "bake this machine config (kind: MachineConfig) into the media as /etoile/config.yaml (- reads standard input)")
	printSpec := fs.Bool("print-default-spec", false, "print the built-in image spec and exit")
	verbose := fs.Bool("v", false, "log debug detail")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: give the spec with -f", fs.Arg(0))
	}
	if *printSpec {
		_, err := stdout.Write(image.DefaultSpecYAML())
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if err := checkOutDir(*outDir); err != nil {
		return err
	}
	// The K3s folder replaces the spec's K3s source: the spec is validated
	// with it (a spec with k3s.source dir and no k3s.dir is complete then).
	if *k3sDir != "" {
		abs, err := filepath.Abs(*k3sDir)
		if err != nil {
			return err
		}
		if st, err := os.Stat(abs); err != nil || !st.IsDir() {
			return fmt.Errorf("--k3s-dir / ETOILE_K3S_DIR %q is not a folder: give a folder holding k3s, k3s-airgap-images-amd64.tar.zst and sha256sum-amd64.txt", abs)
		}
		*k3sDir = abs
	}
	// So does the kernel folder, the spec's kernel.package or kernel.dir.
	if *kernelDir != "" {
		abs, err := filepath.Abs(*kernelDir)
		if err != nil {
			return err
		}
		if st, err := os.Stat(abs); err != nil || !st.IsDir() {
			return fmt.Errorf("--kernel-dir %q is not a folder: give a folder holding vmlinuz and lib/modules/<version>", abs)
		}
		*kernelDir = abs
	}
	spec, err := image.LoadSpecWith(ctx, *specPath, image.SpecOptions{K3sDir: *k3sDir, KernelDir: *kernelDir})
	if err != nil {
		return err
	}
	if err := outsideOverlays(*outDir, spec); err != nil {
		return err
	}
	var cfgData []byte
	if *machineConfig != "" {
		if *machineConfig == "-" {
			cfgData, err = readStdin(config.MaxSize)
		} else {
			cfgData, err = schema.ReadFileContext(ctx, *machineConfig, config.MaxSize)
		}
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		_, warnings, err := config.Check(cfgData)
		if err != nil {
			return fmt.Errorf("--config %s is not a valid machine config:\n%w", *machineConfig, err)
		}
		for _, w := range warnings {
			log.Warn("machine config", "file", *machineConfig, "warning", w)
		}
	}
	// Only the ISO and the raw disk carry a baked-in config: refuse one
	// that no output would carry (a node would boot without it, and
	// nothing would say why), and say so when the netboot set lacks it.
	var netbootWithout string
	if cfgData != nil {
		if netbootWithout, err = image.CheckConfigOutputs(spec.Outputs); err != nil {
			return err
		}
		if netbootWithout != "" {
			log.Warn(netbootWithout)
		}
	}
	if *cacheDir == "" {
		if *cacheDir, err = image.DefaultCacheDir(); err != nil {
			return err
		}
	}
	agent, err := findAgent(*agentPath)
	if err != nil {
		return err
	}
	epoch, err := sourceDateEpoch(log)
	if err != nil {
		return err
	}
	b := &image.Builder{
		Spec: spec, OutDir: *outDir, CacheDir: *cacheDir, AgentPath: agent, Epoch: epoch,
		Tool: image.ToolInfo{Version: version, Commit: commit}, Log: log,
		K3sDir: *k3sDir, K3sOptional: *k3sOptional, MachineConfig: cfgData,
	}
	start := time.Now()
	res, err := b.Build(ctx)
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return fmt.Errorf("build interrupted: %s is unchanged", *outDir)
		}
		return fmt.Errorf("build failed, %s is unchanged: %w", *outDir, err)
	}
	fmt.Fprintf(stdout, "Built Étoile (kernel %s) in %s into %s:\n", res.Kernel, time.Since(start).Round(100*time.Millisecond), *outDir)
	for _, a := range res.Artifacts {
		fmt.Fprintf(stdout, "  %-32s %8.1f MB  sha256:%s\n", a.Name, float64(a.Size)/1e6, a.SHA256[:16])
	}
	if len(res.OwnerOnly) > 0 {
		fmt.Fprintf(stdout, "%s: readable by their owner only (mode 0600), because they hold the machine config (its tokens and passwords).\n", strings.Join(res.OwnerOnly, ", "))
	}
	if netbootWithout != "" {
		fmt.Fprintf(stdout, "WARNING: %s.\n", netbootWithout)
	}
	switch {
	case res.K3s != "" && res.K3sStandin:
		fmt.Fprintf(stdout, "The K3s STAND-IN (qa/k3sstandin, a test double of the K3s command line, NOT K3s) is in the system image in K3s's place, as %s.\n", res.K3s)
	case res.K3s != "":
		fmt.Fprintf(stdout, "K3s %s is in the system image.\n", res.K3s)
	case res.K3sMissing != "":
		fmt.Fprintf(stdout, "WARNING: this image has NO K3s: %s\n  To include it offline: etoile build --k3s-dir DIR (a K3s release folder), or ETOILE_K3S_DIR=DIR ./build.sh\n", res.K3sMissing)
	default:
		fmt.Fprintln(stdout, "This image has no K3s (k3s.source: none).")
	}
	return nil
}

// findAgent locates the static agent that becomes /init.
func findAgent(flagPath string) (string, error) {
	candidates := []string{flagPath, os.Getenv("ETOILE_AGENT")}
	if self, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(self), "etoile-agent"))
	}
	if p, err := exec.LookPath("etoile-agent"); err == nil {
		candidates = append(candidates, p)
	}
	for i, c := range candidates {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return filepath.Abs(c)
		} else if i < 2 {
			return "", fmt.Errorf("etoile-agent binary %q: not a file (run `make build`, which writes bin/etoile-agent)", c)
		}
	}
	return "", errors.New("no etoile-agent binary found: run `make build` (it writes bin/etoile-agent beside bin/etoile), or give --agent PATH")
}

// sourceDateEpoch fixes every timestamp in the media: SOURCE_DATE_EPOCH when
// set, else the time of the commit this etoile was built from (commitTime,
// baked in by `make build`), else 0 (1970-01-01, with a warning): never the
// clock, so a build stays reproducible whatever is missing.
func sourceDateEpoch(log *slog.Logger) (int64, error) {
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: expected seconds since 1970 (e.g. $(git log -1 --format=%%ct))", v)
		}
		if n > math.MaxUint32 {
			return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q is after February 2106, which the initramfs's cpio format cannot hold: give a time before (e.g. $(git log -1 --format=%%ct))", v)
		}
		return n, nil
	}
	if commitTime != "" {
		// The same bounds as SOURCE_DATE_EPOCH: a malformed baked-in time is
		// a broken build of etoile, not "no commit time".
		n, err := strconv.ParseInt(commitTime, 10, 64)
		if err != nil || n < 0 || n > math.MaxUint32 {
			return 0, fmt.Errorf("this etoile was linked with commit time %q (-X main.commitTime), not seconds since 1970 before February 2106: set SOURCE_DATE_EPOCH (e.g. $(git log -1 --format=%%ct)), or rebuild etoile with `make build`", commitTime)
		}
		return n, nil
	}
	log.Warn("no SOURCE_DATE_EPOCH and no commit time in this binary: timestamps set to 1970-01-01")
	return 0, nil
}

// checkOutDir refuses an -o that cannot be the output folder.
func checkOutDir(dir string) error {
	if strings.TrimSpace(dir) == "" {
		return errors.New("-o is empty: give the output folder (out by default)")
	}
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return fmt.Errorf("-o %s is a file, not a folder: give the output folder (it is made when missing)", dir)
	}
	return nil
}

// outsideOverlays refuses an output folder inside one of the spec's
// overlays or extension folders: the build copies those into the image,
// and would copy its own output (its work folder) into itself. Paths are
// compared with their symlinks resolved: -o sitelink/out, sitelink a link
// to an overlay, is inside it too.
func outsideOverlays(out string, spec *image.ImageSpec) error {
	abs, err := resolvedPath(out)
	if err != nil {
		return err
	}
	check := func(field, dir string) error {
		if dir == "" {
			return nil
		}
		d, err := resolvedPath(dir)
		if err != nil {
			return nil
		}
		if rel, err := filepath.Rel(d, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			where := dir
			if d != filepath.Clean(dir) {
				where = dir + ", that is " + d
			}
			return fmt.Errorf("-o %s is inside %s (%s), which the build copies into the image: give an output folder outside it", out, field, where)
		}
		return nil
	}
	for i, o := range spec.OverlayDirs() {
		if err := check(fmt.Sprintf("overlays[%d]", i), o); err != nil {
			return err
		}
	}
	for i, e := range spec.Extensions {
		if e.Dir != "" {
			if err := check(fmt.Sprintf("extensions[%d].dir", i), spec.Resolve(e.Dir)); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolvedPath returns p absolute, with its symlinks resolved: for a path
// that does not exist yet (an -o the build will make), those of its deepest
// existing parent, the rest kept as written.
func resolvedPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for d := abs; ; {
		if r, err := filepath.EvalSymlinks(d); err == nil {
			return filepath.Join(r, rest), nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(d), rest)
		d = parent
	}
}

// stdin is what --config - reads (tests replace it).
var stdin io.Reader = os.Stdin

// readStdin reads standard input, at most limit bytes.
func readStdin(limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(stdin, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading standard input: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("standard input is larger than %d bytes: a machine config is a small YAML document", limit)
	}
	return data, nil
}
