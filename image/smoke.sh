#!/bin/bash
# Smoke test of a built image: boot its kernel, initrd and root file system under
# qemu-system-aarch64 -M virt (software emulation) and check from the host that Hearth
# answers GET /.well-known/hearth over TLS with a tls_fingerprint that is the SHA-256 of
# the certificate it presents. See image/README.md.
#
#   image/smoke.sh IMAGE [TIMEOUT_SECONDS]       (default 600)
#
# SMOKE_CONSOLE=FILE keeps the guest's serial console log there.
# The image file is not changed: the guest writes to a qcow2 overlay 2 GiB larger than
# the image (so the first-boot growth of the root partition runs too), deleted afterwards.
# Guest network: qemu user mode, one port forwarded from 127.0.0.1 to the guest's 443.
# Needs qemu-system-arm, qemu-utils, mtools, curl, openssl.
set -euo pipefail

img=$(readlink -f "${1:?usage: smoke.sh IMAGE [TIMEOUT_SECONDS]}")
timeout_s=${2:-600}
for need in qemu-system-aarch64 qemu-img mcopy curl openssl sfdisk; do
    command -v "$need" >/dev/null || { echo "smoke: $need missing" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hearth-smoke.XXXXXX")
qemu_pid=
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid"
        wait "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# Kernel and initrd from the FAT partition (the first one), by the names config.txt uses.
boot_start=$(sfdisk --dump "$img" | sed -n 's/.*: start= *\([0-9]*\),.*type=c.*/\1/p' | head -n 1)
[ -n "$boot_start" ] || { echo "smoke: no FAT partition in $img" >&2; exit 2; }
fat="$img@@$((boot_start * 512))"
export MTOOLS_SKIP_CHECK=1
mcopy -n -i "$fat" ::/config.txt "$tmp/config.txt"
kernel=$(sed -n 's/^kernel=//p' "$tmp/config.txt")
initrd=$(sed -n 's/^initramfs \([^ ]*\).*/\1/p' "$tmp/config.txt")
mcopy -n -i "$fat" "::/$kernel" "$tmp/vmlinuz"
mcopy -n -i "$fat" "::/$initrd" "$tmp/initrd.img"
mcopy -n -i "$fat" ::/cmdline.txt "$tmp/cmdline.txt"
echo "smoke: kernel $kernel, initrd $initrd"
echo "smoke: cmdline.txt: $(cat "$tmp/cmdline.txt")"

size=$(stat -c %s "$img")
qemu-img create -q -f qcow2 -F raw -b "$img" "$tmp/disk.qcow2" $((size + 2 * 1024 * 1024 * 1024))

# A free port on the host's loopback.
port=
for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "smoke: no free port" >&2; exit 2; }

# The Pi's cmdline.txt, with the virt machine's PL011 serial console instead of the Pi's.
append="root=LABEL=RASPIROOT rw fsck.repair=yes net.ifnames=0 rootwait console=ttyAMA0"

start=$SECONDS
qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 \
    -kernel "$tmp/vmlinuz" -initrd "$tmp/initrd.img" -append "$append" \
    -drive "file=$tmp/disk.qcow2,format=qcow2,if=virtio" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:443" \
    -device virtio-net-pci,netdev=n0 \
    -display none -monitor none -serial "file:$tmp/console.log" &
qemu_pid=$!
echo "smoke: qemu pid $qemu_pid, https://127.0.0.1:$port/ -> guest :443"

# qemu's user network accepts every connection on the forwarded port, whether or not
# anything listens in the guest: only a real HTTP answer counts.
answer=
while [ $((SECONDS - start)) -lt "$timeout_s" ]; do
    kill -0 "$qemu_pid" 2>/dev/null || { echo "smoke: qemu exited" >&2; break; }
    if curl -sk --max-time 10 -o "$tmp/answer.json" -w '%{http_code}' \
        "https://127.0.0.1:$port/.well-known/hearth" >"$tmp/code" 2>/dev/null &&
        [ "$(cat "$tmp/code")" = 200 ]; then
        answer=$(cat "$tmp/answer.json")
        break
    fi
    sleep 3
done
elapsed=$((SECONDS - start))

status=0
if [ -z "$answer" ]; then
    echo "smoke: FAIL: no HTTP answer within ${timeout_s}s" >&2
    status=1
else
    echo "smoke: HTTP 200 after ${elapsed}s: $answer"
    fp=$(printf '%s' "$answer" | sed -n 's/.*"tls_fingerprint" *: *"\([0-9a-fA-F:]*\)".*/\1/p')
    presented=$(openssl s_client -connect "127.0.0.1:$port" -servername hearth.local \
        </dev/null 2>/dev/null | openssl x509 -outform DER | sha256sum | cut -d' ' -f1)
    if [ -z "$fp" ]; then
        echo "smoke: FAIL: the answer has no tls_fingerprint" >&2
        status=1
    elif [ "$(echo "$fp" | tr -d : | tr A-F a-f)" != "$presented" ]; then
        echo "smoke: FAIL: tls_fingerprint $fp, certificate presented $presented" >&2
        status=1
    else
        echo "smoke: tls_fingerprint matches the certificate presented: $fp"
    fi
fi

# What the console showed of the first boot.
grep -a -E 'hearth-grow-root|Welcome to|hearth login:|Failed to start|Hearth' "$tmp/console.log" |
    sed 's/\x1b\[[0-9;]*m//g' | head -n 30 | sed 's/^/console: /' || true
if ! grep -aq 'hearth-grow-root: partition .* grown' "$tmp/console.log"; then
    echo "smoke: note: the console shows no root partition growth (yet)" >&2
fi
if grep -aq 'FAILED' "$tmp/console.log"; then
    echo "smoke: note: units failed during boot:" >&2
    grep -a 'FAILED' "$tmp/console.log" | sed 's/\x1b\[[0-9;]*m//g' >&2
fi
[ -z "${SMOKE_CONSOLE:-}" ] || cp "$tmp/console.log" "$SMOKE_CONSOLE"
if [ "$status" = 0 ]; then echo "smoke: PASS (${elapsed}s to answer)"; fi
if [ "$status" != 0 ]; then
    echo "--- last 40 console lines ---" >&2
    tail -n 40 "$tmp/console.log" | sed 's/\x1b\[[0-9;]*m//g' >&2
fi
exit "$status"
