#!/usr/bin/env bash
# Builds the storwatch container image with the local Docker engine and no registry: FROM scratch,
# holding the binary and the shared libraries ldd says it needs, nothing else, with the OCI labels.
#   scripts/build-image.sh [BINARY] [TAG]     default: target/release/storwatch storwatch:latest
# Run it against the host with read-only mounts, and devices at their own paths (--device /dev/X,
# the image reads --path.dev=/dev); README "Container image" has the commands, which a test runs:
#   docker run -d --network host --pid host \
#     -v /proc:/host/proc:ro -v /sys:/host/sys:ro -v /:/host/root:ro storwatch:latest
set -euo pipefail
bin=${1:-target/release/storwatch}
tag=${2:-storwatch:latest}
[[ -x $bin ]] || { echo "build-image: $bin is not an executable (cargo build --release first)" >&2; exit 1; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/etc"
cp "$bin" "$ctx/rootfs/usr/bin/storwatch"
# The dynamic loader and every library, at the paths the binary looks for them.
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
done
echo 'nobody:x:65534:65534:nobody:/:/usr/bin/storwatch' > "$ctx/rootfs/etc/passwd"
echo 'nogroup:x:65534:' > "$ctx/rootfs/etc/group"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
USER 65534:65534
EXPOSE 9747
ENTRYPOINT ["/usr/bin/storwatch", "--path.procfs=/host/proc", "--path.sysfs=/host/sys", "--path.rootfs=/host/root", "--path.dev=/dev"]
DOCKERFILE
# OCI annotations (image-spec annotations.md), the version and revision as the binary reports them.
read -r _ version _ revision < <("$bin" --version)
revision=${revision%)}
created=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)
docker build -q -t "$tag" \
    --label org.opencontainers.image.title=storwatch \
    --label "org.opencontainers.image.description=Storage health agent for hosts running persistent container storage: Prometheus metrics judged against the spec" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    --label "org.opencontainers.image.created=$created" \
    --label org.opencontainers.image.base.name=scratch \
    "$ctx"
