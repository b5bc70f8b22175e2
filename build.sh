#!/usr/bin/env bash
# Quick start, step 1: install what the build needs, build etoile and
# etoile-agent into bin/, and the default image into out/.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh
ensure_packages "${BUILD_PACKAGES[@]}"
ensure_apt_lists
ensure_go
# On a machine that cannot reach the K3s release, build the
# image without K3s (said loudly) rather than fail; ETOILE_K3S_DIR=DIR takes
# K3s from a local release folder instead.
make build image
