//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernelRequests are the names the kernel asks /sbin/modprobe for (its
// request_module, `modprobe -q -- NAME`) when K3s's networking first uses
// a feature: iptables matches and targets by their ipt_/ip6t_ names (as
// x_tables asks), tables, ipset types, nf_tables expressions and chains
// (iptables-nft), an IPVS scheduler, kube-proxy's conntrack netlink and
// nfacct, what the bandwidth plugin's traffic
// control takes (an ifb link, qdiscs, a u32 filter, a mirred action). A stand-in run with
// k3sstandin.kernel_check asks for each as the kernel would.
var kernelRequests = []string{
	"ipt_MASQUERADE", "ipt_REJECT", "ipt_REDIRECT", "ipt_DNAT", "ipt_MARK", "ipt_mark", "ipt_comment", "ipt_conntrack",
	"ipt_addrtype", "ipt_multiport", "ipt_statistic", "ipt_tcp", "ipt_ipvs", "ipt_physdev", "ipt_set", "ipt_limit", "ipt_NFLOG",
	"iptable_mangle", "iptable_raw",
	"ip6table_filter", "ip6table_nat", "ip6table_mangle", "ip6t_REJECT", "ip6t_MASQUERADE",
	"nfnetlink-subsys-6", "ip_set_hash:ip", "ip_set_hash:net", "ip_set_hash:ip,port", "ip_set_bitmap:port",
	"nft-expr-match", "nft-expr-masq", "nft-chain-2-nat", "nft-expr-ct", "nft-expr-2-fib", "nft-expr-2-reject", "nft-expr-numgen",
	"nf-logger-2-1", "ip_vs_rr", "nfnetlink-subsys-1", "nfnetlink-subsys-7", "ipt_nfacct",
	"rtnl-link-ifb", "sch_ingress", "sch_tbf", "cls_u32", "act_mirred",
}

// kernelCheck does what K3s's networking makes the kernel do the first time
// it runs: it makes a veth pair (flannel's bridge plugin does for each pod;
// the kernel asks for rtnl-link-veth) and asks /sbin/modprobe for each of
// kernelRequests exactly as the kernel's request_module does; and it checks,
// as containerd does for a pod's mount propagation, that / is a shared
// mount, that /bin/sh is K3s's busybox (shellIsK3s), that the kubelet
// finds a machine-id, that /dev/net/tun and /dev/fuse open (their modules
// loading as they do), and that /dev/shm is a tmpfs for hostIPC pods. It
// returns
// one line for syslog: standin-kernel-check-ok, or standin-kernel-check-
// failed with what failed.
func kernelCheck(ctx context.Context, modprobe, dataDir string) string {
	var failed []string
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "standin-v0"}, PeerName: "standin-v1"}
	if err := netlink.LinkAdd(veth); err != nil {
		failed = append(failed, fmt.Sprintf("veth pair: %v", err))
	} else if err := netlink.LinkDel(veth); err != nil {
		failed = append(failed, fmt.Sprintf("removing the veth pair: %v", err))
	}
	if err := rootShared("/proc/self/mountinfo"); err != nil {
		failed = append(failed, err.Error())
	}
	if err := shellIsK3s("/", dataDir); err != nil {
		failed = append(failed, err.Error())
	}
	if err := machineID("/etc/machine-id"); err != nil {
		failed = append(failed, err.Error())
	}
	// What pods open: a VPN sidecar /dev/net/tun, a FUSE driver /dev/fuse
	// (their modules load as they are opened); a hostIPC pod gets /dev/shm.
	for _, dev := range []string{"/dev/net/tun", "/dev/fuse"} {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			failed = append(failed, fmt.Sprintf("opening %s: %v", dev, err))
			continue
		}
		f.Close()
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		failed = append(failed, fmt.Sprintf("/dev/shm is not a tmpfs (%v)", err))
	} else if fi, err := os.Stat("/dev/shm"); err != nil || fi.Mode().Perm() != 0o777 || fi.Mode()&os.ModeSticky == 0 {
		failed = append(failed, fmt.Sprintf("/dev/shm is not 1777: %v %v", fi.Mode(), err))
	}
	for _, name := range kernelRequests {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, modprobe, "-q", "--", name)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v %s", name, err, strings.TrimSpace(out.String())))
		}
	}
	if len(failed) > 0 {
		return "standin-kernel-check-failed " + strings.Join(failed, "; ")
	}
	return fmt.Sprintf("standin-kernel-check-ok veth=made requests=%d", len(kernelRequests))
}
