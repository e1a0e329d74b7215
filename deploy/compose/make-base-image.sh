#!/usr/bin/env bash
# Build a Debian bookworm image with python3 + venv from Debian's packages (mmdebstrap → docker import).
#
# Used where no image registry is reachable: `docker build --build-arg BASE_IMAGE=<this image>` then builds
# kpulse on it. The image is built only when missing (set KPULSE_BASE_REBUILD=1 to force).
#
#   deploy/compose/make-base-image.sh [IMAGE]        # default kpulse-base/debian-python:bookworm
set -euo pipefail

image=${1:-kpulse-base/debian-python:bookworm}
suite=${KPULSE_BASE_SUITE:-bookworm}
mirror=${KPULSE_BASE_MIRROR:-http://deb.debian.org/debian}
security_mirror=${KPULSE_BASE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

if [[ ${KPULSE_BASE_REBUILD:-0} != 1 ]] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "make-base-image: $image already present"
    exit 0
fi
command -v mmdebstrap >/dev/null || { echo "make-base-image: mmdebstrap is missing (apt-get install mmdebstrap)" >&2; exit 1; }

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

# Documentation, man pages and translations are of no use in a container: keep them out of the image
# (copyright files stay, as Debian's licences ask).
mmdebstrap \
    --variant=minbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/maybe-merged-usr \
    --include=python3,python3-venv,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --aptopt='APT::Install-Recommends "false"' \
    "$suite" "$workdir/rootfs.tar" \
    "deb $mirror $suite main" \
    "deb $mirror $suite-updates main" \
    "deb $security_mirror $suite-security main" </dev/null

docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "kpulse base: Debian $suite minbase + python3, python3-venv, ca-certificates (mmdebstrap)" \
    "$workdir/rootfs.tar" "$image"
echo "make-base-image: built $image"
