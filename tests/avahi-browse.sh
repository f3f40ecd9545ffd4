#!/usr/bin/env bash
# Checks with Avahi, the mDNS stack of most Linux LANs, that a running `hearth serve` is
# seen as `_hearth._tcp` with its TXT record (origin, key, key_fp, tls, v), and its web
# client as `_https._tcp` (TXT path=/) at the same host and port. Not run by `cargo
# test`; run it by hand as root (docs/protocol.md: "LAN discovery").
#
#   bash tests/avahi-browse.sh          two network namespaces joined by a veth pair:
#                                       hearth in one; a private avahi-daemon (its own
#                                       D-Bus and /run) and avahi-browse in the other.
#                                       Nothing is sent on the host's interfaces.
#   bash tests/avahi-browse.sh --host   hearth on this host (0.0.0.0, a free port, origin
#                                       https://HOSTNAME.local:PORT) and the host's own
#                                       avahi-daemon (started if needed). This announces
#                                       on your real LAN.
#
# Installs what it lacks from Debian's packages (avahi-daemon, avahi-utils, dbus,
# iproute2). HEARTH_BIN names the binary to check (default: a fresh `cargo build`).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=namespaces
case "${1:-}" in
    "") ;;
    --host) mode=host ;;
    *) echo "usage: $0 [--host]" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "avahi-browse.sh: run as root (namespaces, packages, avahi-daemon)" >&2
    exit 2
fi

missing=()
command -v avahi-daemon >/dev/null 2>&1 || missing+=(avahi-daemon)
command -v avahi-browse >/dev/null 2>&1 || missing+=(avahi-utils)
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    echo "avahi-browse.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -n "${HEARTH_BIN:-}" ]; then
    bin=$(readlink -f "$HEARTH_BIN")
else
    cargo build --quiet
    bin=$PWD/target/debug/hearth
fi

work=$(mktemp -d)
ns_a=hearth-avahi-$$-a
ns_b=hearth-avahi-$$-b
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "$mode" = namespaces ]; then
        ip netns delete "$ns_a" 2>/dev/null || true
        ip netns delete "$ns_b" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

name=hearth-avahi-check
if [ "$mode" = namespaces ]; then
    ip netns add "$ns_a"
    ip netns add "$ns_b"
    ip -n "$ns_a" link add hveth type veth peer name hveth netns "$ns_b"
    for pair in "$ns_a 10.77.1.1" "$ns_b 10.77.1.2"; do
        set -- $pair
        ip -n "$1" addr add "$2/24" dev hveth
        ip -n "$1" link set lo up
        ip -n "$1" link set hveth up multicast on
        ip -n "$1" route add 224.0.0.0/4 dev hveth
    done
    in_a=(ip netns exec "$ns_a")
    in_b=(ip netns exec "$ns_b")
    listen=10.77.1.1:0
    printf 'name = "%s"\n' "$name" >"$work/hearth.toml"
else
    in_a=()
    in_b=()
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
    listen=0.0.0.0:$port
    printf 'name = "%s"\npublic_url = "https://%s.local:%s"\n' "$name" "$(hostname)" "$port" >"$work/hearth.toml"
fi

# Hearth, HTTPS and discovery on (the defaults).
"${in_a[@]}" "$bin" --config "$work/hearth.toml" serve --data "$work/data" --listen "$listen" \
    2>"$work/hearth.log" &
pids+=($!)
for _ in $(seq 100); do
    grep -q "listening on" "$work/hearth.log" && break
    sleep 0.1
done
origin=$(sed -n 's/.*listening on [^ ]* as \([^ ]*\) .*/\1/p' "$work/hearth.log")
tls=$(sed -n 's/.*SHA-256 fingerprint \([0-9A-F:]*\).*/\1/p' "$work/hearth.log" | tr -d : | tr A-F a-f)
if [ -z "$origin" ] || [ -z "$tls" ]; then
    echo "avahi-browse.sh: hearth did not start:" >&2
    cat "$work/hearth.log" >&2
    exit 1
fi
echo "hearth: $origin, TLS certificate $tls" >&2

if [ "$mode" = namespaces ]; then
    # A private system bus for the private avahi-daemon and avahi-browse.
    cat >"$work/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$work/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
EOF
    dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile &
    pids+=($!)
    export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$work/bus.sock
    cat >"$work/avahi-daemon.conf" <<EOF
[server]
host-name=avahi-check
use-ipv4=yes
use-ipv6=no
allow-interfaces=hveth
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
disable-publishing=yes
EOF
    for _ in $(seq 50); do
        [ -S "$work/bus.sock" ] && break
        sleep 0.1
    done
    # Its own /run (pid file, socket), so it does not meet a host avahi-daemon's.
    "${in_b[@]}" unshare --mount --propagation private sh -c \
        'mount -t tmpfs tmpfs /run && exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f "$1"' \
        sh "$work/avahi-daemon.conf" 2>"$work/avahi.log" &
    pids+=($!)
else
    if ! avahi-daemon --check 2>/dev/null; then
        echo "avahi-browse.sh: starting avahi-daemon" >&2
        systemctl start avahi-daemon 2>/dev/null || service avahi-daemon start 2>/dev/null || {
            [ -S /run/dbus/system_bus_socket ] || service dbus start
            avahi-daemon -D
        }
    fi
fi

# Browse (resolving) until hearth's instance shows, at most 30 s.
line=""
for _ in $(seq 30); do
    out=$("${in_b[@]}" avahi-browse -rpt _hearth._tcp 2>"$work/browse.err" || true)
    line=$(printf '%s\n' "$out" | grep "^=;[^;]*;IPv4;$name;_hearth._tcp;" | head -n 1 || true)
    [ -n "$line" ] && break
    sleep 1
done
if [ -z "$line" ]; then
    echo "avahi-browse.sh: FAILED: avahi-browse never listed $name" >&2
    echo "--- last avahi-browse output" >&2
    printf '%s\n' "$out" >&2
    cat "$work/browse.err" >&2
    [ -f "$work/avahi.log" ] && { echo "--- avahi-daemon" >&2; cat "$work/avahi.log" >&2; }
    echo "--- hearth" >&2
    cat "$work/hearth.log" >&2
    exit 1
fi
echo "avahi-browse: $line"

# =;IFACE;PROTO;NAME;TYPE;DOMAIN;HOST;ADDRESS;PORT;TXT
LINE=$line ORIGIN=$origin TLS=$tls MODE=$mode python3 - <<'EOF'
import base64, hashlib, os, re, sys

fields = os.environ["LINE"].split(";", 9)
host, address, port, txt = fields[6], fields[7], fields[8], fields[9]
props = dict(p.split("=", 1) for p in re.findall(r'"([^"]*)"', txt) if "=" in p)
errors = []
def check(what, ok):
    print(f"  {'ok ' if ok else 'BAD'} {what}")
    if not ok:
        errors.append(what)

origin = os.environ["ORIGIN"]
check(f"origin = {props.get('origin')}", props.get("origin") == origin)
check(f"port {port} is the origin's", origin.endswith(":" + port))
if os.environ["MODE"] == "namespaces":
    check(f"address {address} is hearth's", address == "10.77.1.1")
check(f"tls = {props.get('tls')}", props.get("tls") == os.environ["TLS"])
check(f"v = {props.get('v')}", props.get("v") == "1")
key = props.get("key", "")
try:
    raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
except Exception:
    raw = b""
check(f"key {key} is 32 bytes (base64url)", len(raw) == 32)
digest = hashlib.sha256(raw).hexdigest()
fp = ":".join(digest[i:i + 4] for i in range(0, 64, 4))
check(f"key_fp = {props.get('key_fp')} is SHA-256 of key", props.get("key_fp") == fp)
check(f"host {host} is hearth-….local", host.startswith("hearth-") and host.endswith(".local"))
sys.exit(1 if errors else 0)
EOF

# The web client's announcement beside it: _https._tcp, same instance, host and port,
# TXT path=/.
web=""
for _ in $(seq 10); do
    out=$("${in_b[@]}" avahi-browse -rptk _https._tcp 2>>"$work/browse.err" || true)
    web=$(printf '%s\n' "$out" | grep "^=;[^;]*;IPv4;$name;_https._tcp;" | head -n 1 || true)
    [ -n "$web" ] && break
    sleep 1
done
echo "avahi-browse: $web"
IFS=';' read -r _ _ _ _ _ _ web_host _ web_port web_txt <<<"$web"
IFS=';' read -r _ _ _ _ _ _ hearth_host _ hearth_port _ <<<"$line"
if [ -z "$web" ] || [ "$web_txt" != '"path=/"' ] || [ "$web_host" != "$hearth_host" ] ||
    [ "$web_port" != "$hearth_port" ]; then
    echo "avahi-browse.sh: FAILED: _https._tcp not announced as $name at $hearth_host:$hearth_port with path=/" >&2
    echo "--- last avahi-browse output" >&2
    printf '%s\n' "$out" >&2
    echo "--- hearth" >&2
    cat "$work/hearth.log" >&2
    exit 1
fi
echo "  ok  _https._tcp at $web_host:$web_port with TXT path=/"
echo "avahi-browse.sh: OK, Avahi sees $name at $origin with its TXT record, and its web client"
