#!/bin/bash
# Cross-build `hearth` for arm64 (aarch64-unknown-linux-gnu: Raspberry Pi 3/4/400, CM4,
# Zero 2 W) with Debian's cross gcc, and print the binary's path on stdout.
#
#   image/cross-build.sh [--check]
#
# Needs: gcc-aarch64-linux-gnu libc6-dev-arm64-cross cmake (Debian) and the Rust target
# (`rustup target add aarch64-unknown-linux-gnu`); `--check` also needs qemu-user-static.
# Environment:
#   CARGO_TARGET_DIR   where to build (default: the repository's target/)
#
# Everything cargo and the `cc`/`cmake` crates need is passed in the environment, so the
# repository has no .cargo/config.toml: a native `cargo build` is not affected. libopus
# (the `opus` crate) is built by cmake with a small toolchain file written next to the
# build.
#
# --check then runs the binary under qemu-user (qemu-aarch64-static, no binfmt needed):
# `hearth --version`, and `hearth serve` with its default configuration (TLS on, a fresh
# data directory, discovery off) until it answers GET /.well-known/hearth over HTTPS with
# the fingerprint of the certificate it presented. .ci/run does this on every change.
set -euo pipefail

REPO=$(dirname "$(dirname "$(readlink -f "$0")")")
TARGET=aarch64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

log() { echo "cross-build: $*" >&2; }
die() { log "error: $*"; exit 1; }

for need in aarch64-linux-gnu-gcc aarch64-linux-gnu-ar cmake cargo; do
    command -v "$need" >/dev/null ||
        die "$need missing (Debian: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross cmake)"
done
rustup target list --installed 2>/dev/null | grep -qx "$TARGET" ||
    die "Rust target $TARGET missing: rustup target add $TARGET"

mkdir -p "$TARGET_DIR"
toolchain=$TARGET_DIR/toolchain-aarch64.cmake
cat >"$toolchain" <<'EOF'
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
EOF

(
    cd "$REPO"
    export CARGO_TARGET_DIR=$TARGET_DIR
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    export CMAKE_TOOLCHAIN_FILE_aarch64_unknown_linux_gnu=$toolchain
    # No build paths in the binary: the same source gives the same bytes.
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo --remap-path-prefix=$REPO=/hearth"
    cargo build --locked --release --target "$TARGET" >&2
)
bin=$TARGET_DIR/$TARGET/release/hearth
case "$(od -An -tx1 -j18 -N2 "$bin" | tr -d ' ')" in
    b700) ;; # ELF e_machine 183: aarch64
    *) die "$bin is not an aarch64 ELF binary" ;;
esac
log "built $bin ($(stat -c %s "$bin") bytes)"

if [ "${1:-}" = "--check" ]; then
    command -v qemu-aarch64-static >/dev/null || die "qemu-aarch64-static missing (apt-get install qemu-user-static)"
    for need in curl openssl; do command -v "$need" >/dev/null || die "$need missing"; done
    run() { qemu-aarch64-static -L /usr/aarch64-linux-gnu "$bin" "$@"; }
    version=$(run --version)
    log "under qemu-user: $version"
    case "$version" in hearth\ *) ;; *) die "unexpected --version output: $version" ;; esac

    tmp=$(mktemp -d)
    pid=
    cleanup() {
        [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
        [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
        rm -rf "$tmp"
    }
    trap cleanup EXIT
    # Only what a check on this host must change from the defaults: a loopback port
    # chosen by the kernel, and no multicast on the host's network.
    cat >"$tmp/hearth.toml" <<'EOF'
listen = "127.0.0.1:0"
[discovery]
enabled = false
EOF
    # Started directly (not through `run`), so that $! is the server itself and the
    # cleanup's kill reaches it.
    qemu-aarch64-static -L /usr/aarch64-linux-gnu "$bin" serve \
        --config "$tmp/hearth.toml" --data "$tmp/data" >"$tmp/log" 2>&1 &
    pid=$!
    url=
    for _ in $(seq 1 600); do
        url=$(sed -n 's|.*listening on \(https://[0-9.:]*\).*|\1|p' "$tmp/log" | head -n 1)
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/log" >&2; die "hearth exited under qemu-user"; }
        sleep 0.1
    done
    [ -n "$url" ] || { cat "$tmp/log" >&2; die "hearth did not log an https listening address in 60 s"; }
    body=$(curl --silent --show-error --fail --max-time 30 --insecure "$url/.well-known/hearth")
    presented=$(echo | openssl s_client -connect "${url#https://}" 2>/dev/null |
        openssl x509 -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f')
    [ -n "$presented" ] || die "no certificate presented at $url"
    echo "$body" | tr -d ' \n' | tr 'A-F' 'a-f' | grep -q "\"tls_fingerprint\":\"[^\"]*$presented" ||
        die "/.well-known/hearth ($body) does not carry the presented certificate's fingerprint $presented"
    log "under qemu-user: $url/.well-known/hearth answered over TLS with the presented certificate's fingerprint"
fi
echo "$bin"
