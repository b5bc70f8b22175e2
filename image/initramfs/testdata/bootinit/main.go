// Command bootinit is a test /init: it loads every module listed in the
// initramfs's modules.dep, dependencies first, reports each result on the
// console and powers the VM off. TestBootRealKernel reads its output.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/etoile-os/etoile/agent/kmod"
)

func main() {
	fmt.Println("bootinit: started as pid", os.Getpid())
	if err := run(); err != nil {
		fmt.Println("bootinit: error:", err)
	}
	fmt.Println("bootinit: done")
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run() error {
	var uts unix.Utsname
	unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	dir := filepath.Join("/lib/modules", release)
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return err
	}
	defer f.Close()
	deps := map[string][]string{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		order = append(order, mod)
	}
	done := map[string]bool{}
	load := func(p string) {
		if done[p] {
			return
		}
		done[p] = true
		// The agent's loader: finit_module for a .ko, decompression and
		// init_module for the .ko.zst files the initramfs holds.
		switch err := (kmod.SyscallLoader{}).Load(filepath.Base(p), filepath.Join(dir, p)); {
		case err == nil:
			fmt.Printf("bootinit: module %s loaded\n", p)
		default:
			name := err.Error()
			var errno unix.Errno
			if errors.As(err, &errno) {
				name = unix.ErrnoName(errno)
			}
			fmt.Printf("bootinit: module %s error %s\n", p, name)
		}
	}
	for _, m := range order {
		// modules.dep lists dependencies so that loading from the end works
		d := deps[m]
		for i := len(d) - 1; i >= 0; i-- {
			load(d[i])
		}
		load(m)
	}
	fmt.Printf("bootinit: %d modules processed\n", len(done))
	return nil
}
