#!/usr/bin/env bash
# Checks that a box renamed by Avahi gets the name right: two private avahi-daemons in two
# network namespaces joined by a veth pair both want `hearth`; the second becomes
# `hearth-2.local`, and a `hearth serve` started on that one while Avahi still probes
# (no public_url, listening on 0.0.0.0) must take `https://hearth-2.local:8443` as its
# origin and cover `hearth-2.local` and its address in its certificate
# (docs/lan-certificates.md, "The names in the self-signed certificate"). Not run by
# `cargo test`; run it by hand as root. Nothing is sent on the host's interfaces.
#
# Installs what it lacks from Debian's packages (avahi-daemon, dbus, iproute2, openssl),
# without starting the host's avahi-daemon. HEARTH_BIN names the binary to check
# (default: a fresh `cargo build`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "avahi-names.sh: run as root (namespaces, packages, avahi-daemon)" >&2
    exit 2
fi
missing=()
command -v avahi-daemon >/dev/null 2>&1 || missing+=(avahi-daemon)
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    echo "avahi-names.sh: installing ${missing[*]}" >&2
    # No service is started on the host by the packages' scripts (policy-rc.d 101).
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || { rm -f /usr/sbin/policy-rc.d; exit 1; }
    rm -f /usr/sbin/policy-rc.d
fi
if [ -n "${HEARTH_BIN:-}" ]; then
    bin=$(readlink -f "$HEARTH_BIN")
else
    cargo build --quiet
    bin=$PWD/target/debug/hearth
fi

work=$(mktemp -d)
ns_a=hearth-names-$$-a
ns_b=hearth-names-$$-b
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    ip netns delete "$ns_a" 2>/dev/null || true
    ip netns delete "$ns_b" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns_a"
ip netns add "$ns_b"
ip -n "$ns_a" link add hveth type veth peer name hveth netns "$ns_b"
for pair in "$ns_a 10.77.2.1" "$ns_b 10.77.2.2"; do
    set -- $pair
    ip -n "$1" addr add "$2/24" dev hveth
    ip -n "$1" link set lo up
    ip -n "$1" link set hveth up multicast on
    ip -n "$1" route add 224.0.0.0/4 dev hveth
done

# Each side: a private system bus and an avahi-daemon (its own /run) wanting `hearth`.
start_avahi() {
    local ns=$1
    cat >"$work/bus-$ns.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$work/bus-$ns.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
EOF
    dbus-daemon --config-file="$work/bus-$ns.conf" --nofork --nopidfile 2>/dev/null &
    pids+=($!)
    printf '[server]\nhost-name=hearth\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=hveth\nenable-dbus=yes\n[wide-area]\nenable-wide-area=no\n' \
        >"$work/avahi-$ns.conf"
    for _ in $(seq 50); do
        [ -S "$work/bus-$ns.sock" ] && break
        sleep 0.1
    done
    DBUS_SYSTEM_BUS_ADDRESS=unix:path=$work/bus-$ns.sock ip netns exec "$ns" \
        unshare --mount --propagation private sh -c \
        'mount -t tmpfs tmpfs /run && exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f "$1"' \
        sh "$work/avahi-$ns.conf" 2>"$work/avahi-$ns.log" &
    pids+=($!)
}
avahi_state() {
    DBUS_SYSTEM_BUS_ADDRESS=unix:path=$work/bus-$1.sock \
        busctl --system call org.freedesktop.Avahi / org.freedesktop.Avahi.Server GetState \
        2>/dev/null || true
}

start_avahi "$ns_a"
for _ in $(seq 100); do
    [ "$(avahi_state "$ns_a")" = "i 2" ] && break
    sleep 0.1
done
[ "$(avahi_state "$ns_a")" = "i 2" ] || { echo "avahi-names.sh: the first avahi-daemon did not settle" >&2; cat "$work/avahi-$ns_a.log" >&2; exit 1; }

# The second box: Avahi starts probing `hearth`, and Hearth starts at once.
start_avahi "$ns_b"
for _ in $(seq 50); do
    [ -n "$(avahi_state "$ns_b")" ] && break
    sleep 0.1
done
printf 'listen = "0.0.0.0:8443"\n[discovery]\nenabled = false\n' >"$work/hearth.toml"
DBUS_SYSTEM_BUS_ADDRESS=unix:path=$work/bus-$ns_b.sock ip netns exec "$ns_b" \
    "$bin" --config "$work/hearth.toml" serve --data "$work/data" 2>"$work/hearth.log" &
pids+=($!)
for _ in $(seq 300); do
    grep -q "listening on" "$work/hearth.log" && break
    sleep 0.1
done
cat "$work/hearth.log" >&2

status=0
origin=$(cat "$work/data/origin" 2>/dev/null || true)
sans=$(openssl x509 -in "$work/data/tls/cert.pem" -noout -ext subjectAltName 2>/dev/null || true)
check() {
    if [ "$2" = ok ]; then echo "  ok  $1"; else echo "  BAD $1"; status=1; fi
}
[ "$origin" = "https://hearth-2.local:8443" ] && r=ok || r=bad
check "origin $origin" "$r"
case "$sans" in *"DNS:hearth-2.local"*) r=ok ;; *) r=bad ;; esac
check "certificate names hearth-2.local" "$r"
case "$sans" in *"IP Address:10.77.2.2"*) r=ok ;; *) r=bad ;; esac
check "certificate names 10.77.2.2" "$r"
[ "$status" = 0 ] && echo "avahi-names.sh: PASS" || { echo "avahi-names.sh: FAIL ($sans)" >&2; }
exit "$status"
