#!/bin/bash
# Smoke test of a built image: boot its kernel, initrd and root file system under
# qemu-system-aarch64 -M virt (software emulation), check from the host that Hearth
# answers GET /.well-known/hearth over TLS with a tls_fingerprint that is the SHA-256 of
# the certificate it presents, then set the box up as its owner would: the setup code and
# fingerprint from hearth-setup.txt on the guest's FAT partition, and Chromium
# (image/smoke-setup.mjs) through the forwarded port claiming the box, making a guild
# and sending a message. Prints the time from qemu's start to the setup page being
# served. See image/README.md.
#
#   image/smoke.sh IMAGE [TIMEOUT_SECONDS]       (default 600, for the boot and the setup file)
#
# SMOKE_CONSOLE=FILE keeps the guest's serial console log there.
# The image file is not changed: the guest writes to a qcow2 overlay 2 GiB larger than
# the image (so the first-boot growth of the root partition runs too), deleted afterwards.
# Guest network: qemu user mode, one port forwarded from 127.0.0.1 to the guest's 443.
# Needs qemu-system-arm, qemu-utils, mtools, curl, openssl, node and Debian's chromium,
# with playwright-core in tests/js/node_modules (`npm ci` in tests/js).
set -euo pipefail

here=$(dirname "$(readlink -f "$0")")
img=$(readlink -f "${1:?usage: smoke.sh IMAGE [TIMEOUT_SECONDS]}")
timeout_s=${2:-600}
for need in qemu-system-aarch64 qemu-img mcopy mtype curl openssl sfdisk node; do
    command -v "$need" >/dev/null || { echo "smoke: $need missing" >&2; exit 2; }
done
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] ||
    { echo "smoke: ${CHROMIUM:-/usr/bin/chromium} missing (apt-get install chromium)" >&2; exit 2; }
[ -n "${PLAYWRIGHT_CORE:-}" ] || [ -d "$here/../tests/js/node_modules/playwright-core" ] ||
    { echo "smoke: playwright-core missing: npm ci in tests/js" >&2; exit 2; }
ms() { date +%s%3N; }
# Seconds since qemu started, to a tenth.
since_start() {
    local d=$((($(ms) - start_ms) / 100))
    echo "$((d / 10)).$((d % 10))"
}

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
boot_size=$(sfdisk --dump "$img" | sed -n 's/.*, size= *\([0-9]*\),.*type=c.*/\1/p' | head -n 1)
if [ -z "$boot_start" ] || [ -z "$boot_size" ]; then echo "smoke: no FAT partition in $img" >&2; exit 2; fi
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

# No network boot ROM (romfile=): the kernel is loaded directly, and qemu then needs no
# ipxe-qemu (only recommended by qemu-system-arm).
# The Pi's cmdline.txt, with the virt machine's PL011 serial console instead of the Pi's.
append="root=LABEL=RASPIROOT rw fsck.repair=yes net.ifnames=0 rootwait console=ttyAMA0"

# The guest's FAT partition as it is now in the overlay (qemu keeps running: -U reads
# without its lock), and hearth-setup.txt from it on stdout; nothing when it is not there.
boot_file() {
    rm -f "$tmp/fat.img"
    qemu-img convert -U -O raw --image-opts \
        "driver=raw,offset=$((boot_start * 512)),size=$((boot_size * 512)),file.driver=qcow2,file.file.driver=file,file.file.filename=$tmp/disk.qcow2" \
        "$tmp/fat.img" 2>/dev/null || return 0
    mtype -i "$tmp/fat.img" ::/hearth-setup.txt 2>/dev/null | tr -d '\r' || true
}

start=$SECONDS
start_ms=$(ms)
qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 \
    -kernel "$tmp/vmlinuz" -initrd "$tmp/initrd.img" -append "$append" \
    -drive "file=$tmp/disk.qcow2,format=qcow2,if=virtio" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:443" \
    -device virtio-net-pci,netdev=n0,romfile= \
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
    # Often: the time to the first answer is what this measures.
    sleep 1
done
elapsed=$(since_start)

status=0
if [ -z "$answer" ]; then
    echo "smoke: FAIL: no HTTP answer within ${timeout_s}s" >&2
    status=1
else
    echo "smoke: HTTP 200 after ${elapsed}s: $answer"
    fp=$(printf '%s' "$answer" | sed -n 's/.*"tls_fingerprint" *: *"\([0-9a-fA-F:]*\)".*/\1/p')
    openssl s_client -connect "127.0.0.1:$port" -servername hearth.local </dev/null 2>/dev/null |
        openssl x509 -outform PEM >"$tmp/cert.pem" 2>/dev/null || true
    presented=$(openssl x509 -in "$tmp/cert.pem" -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1)
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

# The setup page: the web client served while the box waits for its owner (the first
# answer may come before the server has read everything; this one is what a browser gets).
if [ "$status" = 0 ]; then
    setup_s=
    while [ $((SECONDS - start)) -lt "$timeout_s" ]; do
        if curl -sk --max-time 10 -o "$tmp/known.json" "https://127.0.0.1:$port/.well-known/hearth" &&
            grep -q '"setup" *: *true' "$tmp/known.json" &&
            curl -sk --max-time 10 -o "$tmp/index.html" -w '%{http_code} %{content_type}\n' \
                "https://127.0.0.1:$port/" | grep -q '^200 text/html'; then
            setup_s=$(since_start)
            break
        fi
        sleep 1
    done
    if [ -z "$setup_s" ]; then
        echo "smoke: FAIL: the box never offered its setup page (.well-known: $(cat "$tmp/known.json" 2>/dev/null))" >&2
        status=1
    else
        echo "smoke: setup page served ${setup_s}s after qemu started"
    fi
fi

# The setup code and fingerprint where an owner reads them: hearth-setup.txt on the FAT
# partition, which the guest copies there (and syncs) once the server has written it.
code=
if [ "$status" = 0 ]; then
    while [ $((SECONDS - start)) -lt "$timeout_s" ]; do
        setup_txt=$(boot_file)
        code=$(printf '%s\n' "$setup_txt" | grep -oE '^ +[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$' | tr -d ' ' | head -n 1 || true)
        [ -n "$code" ] && break
        sleep 3
    done
    if [ -z "$code" ]; then
        echo "smoke: FAIL: no setup code in hearth-setup.txt on the boot partition" >&2
        status=1
    else
        echo "smoke: hearth-setup.txt on the boot partition, $(since_start)s after qemu started:"
        printf '%s\n' "$setup_txt" | sed 's/^/smoke:   | /'
        file_fp=$(printf '%s\n' "$setup_txt" | grep -oE '([0-9A-F]{2}:){31}[0-9A-F]{2}' | head -n 1 || true)
        if [ "$(echo "$file_fp" | tr -d : | tr A-F a-f)" != "$presented" ]; then
            echo "smoke: FAIL: hearth-setup.txt gives fingerprint '$file_fp', the box presents $presented" >&2
            status=1
        fi
    fi
fi

# Chromium sets the box up through the forwarded port under the box's own origin,
# trusting the public key of the certificate checked above and nothing else.
if [ "$status" = 0 ]; then
    origin=$(sed -n 's/.*"origin" *: *"\([^"]*\)".*/\1/p' "$tmp/known.json")
    spki=$(openssl x509 -in "$tmp/cert.pem" -noout -pubkey | openssl pkey -pubin -outform DER |
        openssl dgst -sha256 -binary | base64)
    echo "smoke: Chromium sets up $origin (mapped to 127.0.0.1:$port, key $spki)"
    if node "$here/smoke-setup.mjs" "$origin" "$port" "$code" "$spki" "$presented" "$start_ms" \
        2>&1 | sed 's/^/browser: /'; then
        echo "smoke: the box is set up in Chromium, a guild made and a message sent, $(since_start)s after qemu started"
    else
        echo "smoke: FAIL: the setup in Chromium failed" >&2
        status=1
    fi
fi

# Once claimed, the box deletes the setup code file, from the boot partition too.
if [ "$status" = 0 ]; then
    gone=
    for _ in $(seq 20); do
        [ -z "$(boot_file)" ] && { gone=1; break; }
        sleep 3
    done
    if [ -z "$gone" ]; then
        echo "smoke: FAIL: hearth-setup.txt is still on the boot partition after the setup" >&2
        status=1
    else
        echo "smoke: hearth-setup.txt is gone from the boot partition"
    fi
fi

# What the console showed of the first boot.
grep -a -E 'hearth-grow-root|Welcome to|hearth login:|Failed to start|Hearth|Web:|TLS certificate|Setup code' "$tmp/console.log" |
    sed 's/\x1b\[[0-9;]*m//g' | head -n 30 | sed 's/^/console: /' || true
if ! grep -aq 'hearth-grow-root: partition .* grown' "$tmp/console.log"; then
    echo "smoke: note: the console shows no root partition growth (yet)" >&2
fi
if grep -aq 'FAILED' "$tmp/console.log"; then
    echo "smoke: note: units failed during boot:" >&2
    grep -a 'FAILED' "$tmp/console.log" | sed 's/\x1b\[[0-9;]*m//g' >&2
fi
[ -z "${SMOKE_CONSOLE:-}" ] || cp "$tmp/console.log" "$SMOKE_CONSOLE"
if [ "$status" = 0 ]; then
    echo "smoke: PASS (${elapsed}s to answer over TLS, ${setup_s}s to the setup page, $(since_start)s in all)"
fi
if [ "$status" != 0 ]; then
    echo "--- last 40 console lines ---" >&2
    tail -n 40 "$tmp/console.log" | sed 's/\x1b\[[0-9;]*m//g' >&2
fi
exit "$status"
