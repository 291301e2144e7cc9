#!/usr/bin/env bash
# Regenerates bpf/biolatency.bpf.o from bpf/biolatency.bpf.c with clang (Debian: clang, llvm,
# libbpf-dev, linux-libc-dev; scripts/install-test-deps.sh installs them). The object is committed
# and embedded in the binary (include_bytes!), so a plain `cargo build` needs no clang; run this
# after changing the C source and commit both.
#   build-bpf.sh [OUTPUT]   (default: bpf/biolatency.bpf.o next to the source)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/bpf/biolatency.bpf.c
out=${1:-$root/bpf/biolatency.bpf.o}
clang=${CLANG:-clang}
# <asm/types.h> lives under the multiarch include directory, which -target bpf does not search.
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
"$clang" -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_x86 \
    -I"/usr/include/$multiarch" -c "$src" -o "$out"
# Debug info is kept (.BTF/.BTF.ext are what CO-RE needs); DWARF is not.
llvm-strip -g "$out"
echo "build-bpf: wrote $out ($(stat -c %s "$out") bytes)"
