package image

import (
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"time"
)

// layer is what the SBOM says of a site overlay folder or an image
// extension: what it is, and the SHA-256 that identifies its content.
type layer struct {
	kind, name, sha256, comment string
}

// layers describes the spec's overlay folders and extensions as they are
// now (the build has just staged them): a squashfs layer by its file's
// SHA-256, a folder by its tree's (treeSHA256).
func (b *Builder) layers() ([]layer, error) {
	var out []layer
	for i, dir := range b.Spec.OverlayDirs() {
		sum, n, err := treeSHA256(dir)
		if err != nil {
			return nil, fmt.Errorf("overlays[%d]: %w", i, err)
		}
		out = append(out, layer{kind: "overlay", name: overlayName(i, b.Spec.Overlays[i]), sha256: sum,
			comment: fmt.Sprintf("site overlay folder (overlays[%d], %s): %d entries; its checksum is of the tree (each path, mode and content or link target, in order)", i, b.Spec.Overlays[i], n)})
	}
	for i, e := range b.Spec.Extensions {
		if e.Squashfs != "" {
			sum, _, err := fileSHA256(b.Spec.Resolve(e.Squashfs))
			if err != nil {
				return nil, fmt.Errorf("extensions[%d].squashfs: %w", i, err)
			}
			out = append(out, layer{kind: "extension", name: e.Name, sha256: sum,
				comment: fmt.Sprintf("image extension (extensions[%d]): the squashfs layer %s", i, filepath.Base(e.Squashfs))})
			continue
		}
		sum, n, err := treeSHA256(b.Spec.Resolve(e.Dir))
		if err != nil {
			return nil, fmt.Errorf("extensions[%d].dir: %w", i, err)
		}
		out = append(out, layer{kind: "extension", name: e.Name, sha256: sum,
			comment: fmt.Sprintf("image extension (extensions[%d]): a folder of %d entries; its checksum is of the tree (each path, mode and content or link target, in order)", i, n)})
	}
	return out, nil
}

// overlayName is the SBOM's name of overlays[i], given in the spec as o:
// its last element as the spec writes it (site for overlays/site), never
// the build host's path, which would make the SBOM, and SHA256SUMS that
// lists it, differ by where the checkout is (overlays: ["."] in a folder
// named alice-checkout or ci-build-1234); overlays[i] where o names no
// folder of its own (".", "..").
func overlayName(i int, o string) string {
	name := path.Base(path.Clean(filepath.ToSlash(o)))
	if name == "." || name == ".." || name == "/" {
		return fmt.Sprintf("overlays[%d]", i)
	}
	return name
}

// treeSHA256 digests the tree under dir: for each entry below it, in
// lexical order, a line "path NUL mode NUL sha256-of-content-or-link-target",
// the mode being the one the entry gets in the image (checkoutMode), not
// the checkout's, which the umask of whoever made it decides.
// It returns the hex digest and the number of entries.
func treeSHA256(dir string) (string, int, error) {
	h := sha256.New()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var what string
		mode := info.Mode().Type() | checkoutMode(info.Mode())
		switch {
		case info.Mode().IsRegular():
			if what, _, err = fileSHA256(p); err != nil {
				return err
			}
		case info.Mode()&fs.ModeSymlink != 0:
			if what, err = os.Readlink(p); err != nil {
				return err
			}
			mode = fs.ModeSymlink | 0o777 // a symlink's own mode means nothing
		}
		n++
		fmt.Fprintf(h, "%s\x00%o\x00%s\n", filepath.ToSlash(rel), uint32(mode), what)
		return nil
	})
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// agentVersionLine is what `etoile-agent version` prints.
var agentVersionLine = regexp.MustCompile(`^etoile-agent (\S+) \(commit (\S+)\)\n?$`)

// agentIdentity returns the version and commit of the agent that goes into
// the image, as the agent itself says them (`etoile-agent version`) where
// this machine can run it (the image's architecture is this machine's),
// else this tool's: the agent built from the same tree (make build). An
// agent from another tree than this tool (--agent) is told of in the log.
func (b *Builder) agentIdentity(bi *buildinfo.BuildInfo) (version, commit string) {
	version, commit = b.Tool.Version, b.Tool.Commit
	if bi.Path != AgentPackage {
		return version, commit
	}
	if arch, ok := ArchInfo(b.Spec.Arch); !ok || arch.Name != runtime.GOARCH || runtime.GOOS != "linux" {
		if b.Log != nil {
			b.Log.Info("the agent is for another architecture than this machine's: the SBOM gives it this tool's version and commit",
				"agent", b.AgentPath, "version", version, "commit", commit)
		}
		return version, commit
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.AgentPath, "version")
	cmd.Env = []string{}
	out, err := cmd.Output()
	m := agentVersionLine.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		if b.Log != nil {
			b.Log.Warn("the agent did not say its version: the SBOM gives this tool's", "agent", b.AgentPath, "output", string(out))
		}
		return version, commit
	}
	if (m[1] != version || m[2] != commit) && b.Log != nil {
		b.Log.Warn("the agent is from another build than this tool", "agent", b.AgentPath, "agent_version", m[1], "agent_commit", m[2],
			"tool_version", version, "tool_commit", commit, "fix", "build both with `make build`, or mean it")
	}
	return m[1], m[2]
}
