#!/usr/bin/env bash
# Étoile's hardware inventory and NVIDIA device files checked against a live
# machine with NVIDIA GPUs and their driver loaded, as root: `make gpu-check`
# (which builds what it runs), or scripts/gpu-check.sh OUTDIR with BIN naming
# a folder holding etoile-agent and gpu/{inventory,nvdev,k3s}.test (`make gpu-tests`).
# Not part of `make test`: its machines have no GPU. Everything seen is written
# to OUTDIR, in five files; the exit status is the tests'.
set -u
export LC_ALL=C # $EPOCHREALTIME's decimal point
out=${1:?usage: scripts/gpu-check.sh OUTDIR}
bin=${BIN:-bin}
mkdir -p "$out"
for f in "$bin/etoile-agent" "$bin/gpu/inventory.test" "$bin/gpu/nvdev.test" "$bin/gpu/k3s.test"; do
	[ -x "$f" ] || { echo "gpu-check: $f is missing: run make gpu-tests (or make gpu-check)" >&2; exit 2; }
done
command -v nvidia-smi >/dev/null || { echo "gpu-check: nvidia-smi is not on the PATH: this check needs a machine with an NVIDIA GPU and its driver" >&2; exit 2; }
rc=0
: >"$out/inventory.txt"
: >"$out/tests.log"
{
	echo "## machine"; uname -a; grep -E '^(PRETTY_NAME|VERSION_ID)=' /etc/os-release 2>/dev/null
	echo "## /proc/driver/nvidia/version"; cat /proc/driver/nvidia/version 2>&1
	echo "## nvidia-smi -L"; nvidia-smi -L 2>&1
	echo "## device files"; ls -l /dev/nvidia* 2>&1
	echo "## /proc/driver/nvidia/capabilities"
	find /proc/driver/nvidia/capabilities -type f -exec sh -c 'echo "$1: $(tr "\n" " " <"$1")"' _ {} \; 2>&1
	echo "## what K3s looks for to offer runtimeClassName nvidia, and a container runtime"
	for p in nvidia-container-runtime nvidia-container-runtime.cdi nvidia-container-runtime-experimental nvidia-ctk nvidia-container-cli containerd runc; do
		printf '%s: %s\n' "$p" "$(command -v "$p" || ls /usr/local/nvidia/toolkit/"$p" 2>/dev/null || echo none)"
	done
	echo "## etoile-agent inventory --json, timed (three runs)"
	for i in 1 2 3; do
		s=$EPOCHREALTIME; "$bin/etoile-agent" inventory --json >"$out/inventory.json" 2>>"$out/inventory.txt" || rc=1; e=$EPOCHREALTIME
		awk -v i="$i" -v s="$s" -v e="$e" 'BEGIN { printf "run %d: %.3f s\n", i, e - s }'
	done
} >"$out/machine.txt" 2>&1
"$bin/etoile-agent" inventory >>"$out/inventory.txt" 2>&1 || rc=1
nvidia-smi -q -x >"$out/nvidia-smi-q.xml" 2>&1
for t in inventory nvdev k3s; do
	echo "### $t" >>"$out/tests.log"
	"$bin/gpu/$t.test" -test.v -test.count=1 -test.run Live >>"$out/tests.log" 2>&1 || rc=1
done
cat "$out/tests.log"
echo "gpu-check: $( [ $rc = 0 ] && echo passed || echo FAILED ); what was seen is in $out"
exit $rc
