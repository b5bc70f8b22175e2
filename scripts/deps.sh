# shellcheck shell=bash
# Installs, with apt, the Debian packages a step needs when they are missing.
# Sourced by build.sh and the Makefile's test target.

# What `./build.sh` needs: a C compiler for the hub's SQLite (cgo), git for
# the version and SOURCE_DATE_EPOCH, make; apt itself downloads the kernel and
# bootloader packages into the cache.
BUILD_PACKAGES=(make gcc libc6-dev git ca-certificates)

# What `make test` needs on top: QEMU and firmware to boot the media, and
# independent tools to verify what Étoile wrote, a browser for the hub page.
# isolinux and syslinux-common (only recommended by isolinux, and apt here
# installs no recommends): the boot code the ISO writer's tests build with;
# kmod: the depmod the generated module index is compared with; cryptsetup-bin:
# the veritysetup that checks the dm-verity hash tree image/verity writes.
TEST_PACKAGES=(qemu-system-x86 qemu-utils ovmf ipxe-qemu xorriso gdisk dosfstools mtools squashfs-tools
	cpio zstd xz-utils e2fsprogs iproute2 file chromium isolinux syslinux-common kmod cryptsetup-bin)

missing_packages() {
	local p out=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || out+=("$p")
	done
	echo "${out[@]}"
}

ensure_packages() {
	local missing
	missing=$(missing_packages "$@")
	if [ -z "$missing" ]; then
		return 0
	fi
	echo "Installing with apt: $missing"
	local sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null; then sudo="sudo"; else
			echo "error: these Debian packages are missing and I am not root: $missing" >&2
			echo "       install them with: apt-get install $missing" >&2
			return 1
		fi
	fi
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086
	$sudo apt-get install -y -q --no-install-recommends $missing >/dev/null || {
		$sudo apt-get update -q >/dev/null
		$sudo apt-get install -y -q --no-install-recommends $missing >/dev/null
	}
}

# ensure_apt_lists makes sure apt knows the packages `etoile build` downloads.
ensure_apt_lists() {
	if ! apt-cache policy linux-image-amd64 2>/dev/null | grep -q 'Candidate: [0-9]'; then
		echo "Refreshing apt's package lists (apt-get update)"
		if [ "$(id -u)" -ne 0 ]; then sudo apt-get update -q >/dev/null; else apt-get update -q >/dev/null; fi
	fi
}

ensure_go() {
	if ! command -v go >/dev/null; then
		echo "error: Go is not installed. Étoile needs Go 1.26 or newer: https://go.dev/doc/install" >&2
		echo "       (an older Go ≥ 1.21 also works: it fetches the toolchain go.mod names by itself)" >&2
		return 1
	fi
	# Go before 1.21 (Debian 12's golang-go is 1.19) cannot fetch the
	# toolchain go.mod asks for and fails with a confusing error.
	local v minor
	v=$(go env GOVERSION 2>/dev/null || true)
	minor=$(printf '%s' "$v" | sed -n 's/^go1\.\([0-9][0-9]*\).*/\1/p')
	if [ -n "$minor" ] && [ "$minor" -lt 21 ]; then
		echo "error: $(command -v go) is $v; Étoile needs Go 1.26 or newer (Go ≥ 1.21 fetches it by itself):" >&2
		echo "       install it from https://go.dev/doc/install and put it first on PATH" >&2
		return 1
	fi
}

# ensure_chronyd unpacks Debian's chrony under the QA work folder for the time
# test's NTP server, unless a chronyd is installed: installing the package
# would start a time daemon that takes over a developer machine's clock.
ensure_chronyd() {
	local dir="${ETOILE_QA_WORKDIR:-qa/work}/tools/chrony" debs
	if command -v chronyd >/dev/null || [ -x "$dir/root/usr/sbin/chronyd" ]; then
		return 0
	fi
	echo "Unpacking Debian's chrony into $dir (the time test's NTP server; nothing is installed)"
	mkdir -p "$dir" && rm -f "$dir"/chrony_*.deb
	(cd "$dir" && apt-get download -q chrony >apt.log 2>&1) || {
		cat "$dir/apt.log" >&2
		echo "error: apt-get download chrony failed in $dir: run apt-get update, or install chrony" >&2
		return 1
	}
	debs=("$dir"/chrony_*.deb)
	dpkg-deb -x "${debs[0]}" "$dir/root.tmp" && mv "$dir/root.tmp" "$dir/root"
}
