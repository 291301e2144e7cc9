#!/usr/bin/env bash
# Makes a clean Debian 12 image for the package test (tests/prod.rs installs the .deb into it with
# dpkg), with the local Docker engine and no registry: debootstrap's minimal base system from the
# Debian mirror, imported as an image. Does nothing when the image exists.
#   scripts/debian-image.sh [TAG]    default: storwatch-test/debian:12
# DEBIAN_MIRROR overrides the mirror (default http://deb.debian.org/debian). Needs root and
# debootstrap (scripts/install-test-deps.sh installs it).
set -euo pipefail
tag=${1:-storwatch-test/debian:12}
if docker image inspect "$tag" >/dev/null 2>&1; then
    exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >&2
# No package lists or cached archives in the image: it is what `docker run debian:12` would be.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import - "$tag" >/dev/null
echo "debian-image: made $tag" >&2
