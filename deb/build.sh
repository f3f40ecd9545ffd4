#!/bin/bash
# Build Hearth's Debian package for amd64 or arm64 with cargo-deb, and print its path.
#
#   deb/build.sh amd64|arm64 [OUTDIR]        (default OUTDIR: target/debian)
#
# amd64 builds natively (`cargo deb`, the release profile). arm64 cross-builds the binary
# with image/cross-build.sh (Debian's gcc-aarch64-linux-gnu; see there) and packages it,
# or packages the arm64 binary HEARTH_BIN names. CARGO_TARGET_DIR is honoured.
# Needs cargo-deb (`.ci/setup` installs the pinned version). What the package holds and
# does: docs/operations.md, "The Debian package".
set -euo pipefail

REPO=$(dirname "$(dirname "$(readlink -f "$0")")")
arch=${1:-}
out=${2:-}
command -v cargo-deb >/dev/null ||
    { echo "deb/build.sh: cargo-deb missing (bash .ci/setup installs it)" >&2; exit 1; }
cd "$REPO"
out=${out:-${CARGO_TARGET_DIR:-$REPO/target}/debian}
mkdir -p "$out"
case "$arch" in
    amd64)
        cargo deb --locked --output "$out" | tail -n 1
        ;;
    arm64)
        if [ -n "${HEARTH_BIN:-}" ]; then
            # A binary built elsewhere: laid where cargo-deb looks for it.
            bin=$(readlink -f "$HEARTH_BIN")
            CARGO_TARGET_DIR=$(mktemp -d)
            trap 'rm -rf "$CARGO_TARGET_DIR"' EXIT
            export CARGO_TARGET_DIR
            install -D -m 755 "$bin" "$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/hearth"
        else
            "$REPO/image/cross-build.sh" >/dev/null
        fi
        # Already stripped by the release profile; no host `strip` reads an arm64 binary.
        cargo deb --no-build --no-strip --target aarch64-unknown-linux-gnu --output "$out" |
            tail -n 1
        ;;
    *)
        echo "usage: deb/build.sh amd64|arm64 [OUTDIR]" >&2
        exit 2
        ;;
esac
