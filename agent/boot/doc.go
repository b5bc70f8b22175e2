// Package boot is the agent's PID 1 sequence: a plain list of named steps,
// run in order, each logged with its duration and the time since the kernel
// started (CLOCK_BOOTTIME, the origin of the kernel's own timestamps):
//
//	etoile: step=drivers t=0.52s took=110ms
//
// The order (see Early and Sequence):
//
//	mount-api     /proc, /sys, /dev (devtmpfs), /run (tmpfs), /sys/fs/cgroup (cgroup2); mounted ones are skipped
//	cmdline       etoile.slot=a|b, etoile.system=URL, etoile.system.sha256=HEX, etoile.debug, etoile.poweroff
//	drivers       every /sys/bus/*/devices/*/modalias matched against modules.alias (no udev), until no new
//	              device appears; then loop, squashfs, overlay, isofs
//	[network]     here when the image comes over HTTP
//	find-image    etoile.system= → download to /run (tmpfs) and verify the SHA-256 before use;
//	              etoile.slot= → the GPT partition named ETOILE-A/ETOILE-B;
//	              otherwise the block device whose ISO9660 volume id is ETOILE (CD or USB stick)
//	mount-system  ISO read-only at /run/etoile/media; squashfs read-only at /run/etoile/system (through a
//	              loop device for a file, directly for a slot partition); tmpfs at /run/etoile/overlay;
//	              overlay at /sysroot
//	switch-root   the agent and kernel modules bind-mounted read-only into /sysroot, /proc /sys /dev /run
//	              moved there, /sysroot moved onto / and chroot: the agent stays PID 1 with its state
//	network       DHCP on every link with carrier, in parallel; hostname from DHCP or etoile-<MAC>
//	(background)  late-modules: the rest of /etc/etoile/modules (netfilter, wireguard…); the entropy
//	              wait; the hotplug watch (uevents → drivers for devices plugged in later)
//	BeforeReady   the services (machine config, K3s, local API); they may wait on ModulesLoaded
//	ready         one line on every console: etoile: ready version= boot= source= slot= ip= [k3s=…]
//
// A failing step prints `etoile: error step=… reason="…" fix="…"` on every
// console and the boot stops there; PID 1 then stays up (StayUp) so that the
// machine can be looked at and fixed. Steps marked Optional (drivers,
// network) log a warning instead.
//
// # Why switch-root bind-mounts instead of copying
//
// The initramfs holds only the agent and the kernel modules, and the new
// root needs both: the agent at /usr/bin/etoile-agent (also /sbin/modprobe)
// and /lib/modules for devices found later and for K3s's netfilter modules.
// Bind-mounting them read-only costs nothing, where copying 10–30 MB into the
// overlay's tmpfs took seconds under emulation and held them twice in RAM.
// When the system image has its own /lib/modules/<release> (an extension's
// drivers, indexed by the build together with the initramfs's modules), the
// two are laid over each other instead (a read-only overlay, the image's on
// top), the agent reads the merged index and loads the drivers of devices
// that had none; the image's modules-load.d files name what loads with the
// late modules.
// For the same reason the initramfs's files are not deleted after the
// switch, unlike switch_root(8). pivot_root is impossible from an initramfs,
// so the switch is MS_MOVE + chroot, and the agent does not exec anything:
// K3s (issue 3) is started later from the new root by this same process.
//
// # Staying up, signals, power
//
// PID 1 catches every signal that would otherwise end a Go program and
// follows busybox init: SIGTERM or SIGINT (Ctrl-Alt-Del) reboot, SIGUSR2 or
// SIGPWR power off, SIGUSR1 halts; each stops all processes (SIGTERM, up
// to 30 s, SIGKILL), syncs and calls reboot(2). The kernel argument etoile.poweroff
// powers the machine off 2 s after the ready line or a fatal error, so that
// a test VM ends by itself. Orphans are reaped on SIGCHLD; children the agent
// waits for itself (K3s) are started with Reaper.Start and keep their status.
//
// # Under --root
//
// `etoile-agent agent --root DIR` runs the same steps against DIR: sysfs,
// /proc/cmdline, /dev nodes (plain files) and /lib/modules are read under
// DIR, the image is really downloaded (to DIR/run), module loads and mounts
// are recorded instead of made, and the network is left alone.
package boot
