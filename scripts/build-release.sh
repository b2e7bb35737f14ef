#!/usr/bin/env bash
# Build the release shim the way it is shipped and print the directory that holds it.
#
# The shipped binary is a static, non-PIE executable: no dynamic loader or libc pages to map at
# start-up and no relocations to write, which makes each shim's start faster and its private
# memory smaller (see BENCHMARKS.md). Cargo applies these flags only to the target when
# --target is given, so build scripts and proc-macros still build normally; the result lands in
# target/<host-triple>/release.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="${RUSTFLAGS:-} -C relocation-model=static -C target-feature=+crt-static" \
    "$cargo" build --release --target "$host" --bin containerd-shim-myshim-v2 >&2
target_dir=$("$cargo" metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
echo "${target_dir:-$PWD/target}/$host/release"
