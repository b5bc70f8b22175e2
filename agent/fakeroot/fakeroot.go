// Package fakeroot is for tests only. It builds folders that look like a booting machine's root
// (sysfs, /proc/cmdline, /dev, /lib/modules) for tests of the agent that run
// as ordinary processes.
package fakeroot

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etoile-os/etoile/internal/xorriso"
)

// Write writes files (path relative to root → content), making folders.
func Write(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Links makes symbolic links (path relative to root → target, as written),
// making folders: sysfs's device and driver links.
func Links(t testing.TB, root string, links map[string]string) {
	t.Helper()
	for name, target := range links {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
}

// WriteExec writes files as Write does, executable (0755): a stand-in
// program the code under test looks up or runs.
func WriteExec(t testing.TB, root string, files map[string]string) {
	t.Helper()
	Write(t, root, files)
	for name := range files {
		if err := os.Chmod(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// Block adds a block device to sysfs (class/block/NAME/uevent) and its node
// under dev/ holding content. partName and partition describe a GPT partition.
func Block(t testing.TB, root, name string, partition bool, partName string, content []byte) {
	t.Helper()
	ue := "MAJOR=8\nMINOR=0\nDEVNAME=" + name + "\n"
	if partition {
		ue += "DEVTYPE=partition\nPARTN=1\n"
		if partName != "" {
			ue += "PARTNAME=" + partName + "\n"
		}
	} else {
		ue += "DEVTYPE=disk\n"
	}
	Write(t, root, map[string]string{"sys/class/block/" + name + "/uevent": ue})
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "dev", name), content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ISO makes a real ISO9660 image with xorriso, holding files, and returns
// its bytes. A missing xorriso fails the test, naming the package.
func ISO(t testing.TB, label string, files map[string]string) []byte {
	t.Helper()
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Fatalf("xorriso is needed to make a test ISO: apt-get install -y xorriso")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	Write(t, src, files)
	out := filepath.Join(dir, "test.iso")
	if b, err := xorriso.Run("-as", "mkisofs", "-quiet", "-R", "-V", label, "-o", out, src); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Modules copies a modules.dep and modules.alias pair into
// root/lib/modules/release and makes an empty file for every module listed,
// except those in leaveOut.
func Modules(t testing.TB, root, release, depFile, aliasFile string, leaveOut ...string) {
	t.Helper()
	dir := filepath.Join(root, "lib", "modules", release)
	dep, err := os.ReadFile(depFile)
	if err != nil {
		t.Fatal(err)
	}
	alias, err := os.ReadFile(aliasFile)
	if err != nil {
		t.Fatal(err)
	}
	Write(t, dir, map[string]string{"modules.dep": string(dep), "modules.alias": string(alias)})
	for _, line := range strings.Split(string(dep), "\n") {
		file, _, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(file, "#") {
			continue
		}
		skip := false
		for _, l := range leaveOut {
			if strings.HasSuffix(file, "/"+l+".ko") {
				skip = true
			}
		}
		if !skip {
			Write(t, dir, map[string]string{file: ""})
		}
	}
}

// PersistencedStandin is a STAND-IN for NVIDIA's nvidia-persistenced, not the
// daemon (which needs a GPU and its driver): like the daemon, its first
// process forks a background process, which writes the pid file named by
// $NVPD_PIDFILE, and exits; the background process stops on SIGTERM, noting
// it in $NVPD_DIR/stopped. Each run is a line in $NVPD_DIR/runs and its
// arguments are in $NVPD_DIR/args. Like the daemon, it fails when the pid
// file's folder cannot be made (its parent, /var/run, missing). The file
// $NVPD_DIR/mode makes it fail as the daemon does without a usable driver
// ("fail"), exit without a pid file ("nopid"), hang before forking ("hang")
// or hang after forking ("slow").
const PersistencedStandin = `#!/bin/sh
echo run >> "$NVPD_DIR/runs"
echo "$@" > "$NVPD_DIR/args"
fail() { echo "nvidia-persistenced failed to initialize. Check syslog for more details." >&2; exit 1; }
mode=$(cat "$NVPD_DIR/mode" 2>/dev/null)
case "$mode" in
fail) fail;;
nopid) exit 0;;
hang) exec sleep 600;;
esac
dir=$(dirname "$NVPD_PIDFILE")
[ -d "$dir" ] || mkdir "$dir" 2>/dev/null || fail
sh -c 'trap "echo stopped >> \"$NVPD_DIR/stopped\"; exit 0" TERM; echo $$ > "$NVPD_PIDFILE"; while :; do sleep 0.05; done' </dev/null >/dev/null 2>&1 &
[ "$mode" = slow ] && exec sleep 600
exit 0
`

// Persistenced puts PersistencedStandin at root's usr/bin/nvidia-persistenced
// with the image's /var/run (a link to /run) and returns the environment
// that points the stand-in at its files: dir (its runs, args, mode and
// stopped files) and pidFile (under root's var/run).
func Persistenced(t testing.TB, root string) (env []string, dir, pidFile string) {
	t.Helper()
	bin := filepath.Join(root, "usr/bin/nvidia-persistenced")
	Write(t, root, map[string]string{"usr/bin/nvidia-persistenced": PersistencedStandin})
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"run", "var"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../run", filepath.Join(root, "var/run")); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	pidFile = filepath.Join(root, "var/run/nvidia-persistenced/nvidia-persistenced.pid")
	return []string{"PATH=/usr/bin:/bin", "NVPD_DIR=" + dir, "NVPD_PIDFILE=" + pidFile}, dir, pidFile
}
