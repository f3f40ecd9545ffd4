#!/bin/bash
# Build a flashable arm64 SD-card image of Hearth for the Raspberry Pi 4, 400, CM4, 3 and
# Zero 2 W (not the Pi 5: Debian's kernels do not support it), from Debian bookworm
# packages and a cross-built `hearth`. See image/README.md.
#
#   sudo image/build-image.sh [OUTDIR]          (default OUTDIR: $WORK/out)
#
# Runs as root on a Debian 12 (amd64) host. No loop devices: the FAT and ext4 file systems
# are made as files and copied into the disk image. Settings (environment):
#
#   WORK               scratch directory (default /var/tmp/hearth-image); never the repo
#   SUITE              Debian suite (default bookworm)
#   SNAPSHOT           snapshot.debian.org time stamp, e.g. 20261120T000000Z: take every
#                      package from that snapshot (the reproducible way). Without it the
#                      packages come from MIRROR as it is today.
#   MIRROR, SECURITY_MIRROR   default http://deb.debian.org/debian{,-security}
#   SOURCE_DATE_EPOCH  time stamp of every file (default: the commit time of HEAD)
#   HEARTH_BIN         package this aarch64 binary instead of cross-building one
#   COMPRESS           xz (default), zstd or none
#   ROOT_NAME          server name written to /etc/hearth/hearth.toml (default "Hearth")
#
# The script calls itself as mmdebstrap's hooks (`essential-hook`, `customize`); those are
# internal.
set -euo pipefail

SELF=$(readlink -f "$0")
REPO=$(dirname "$(dirname "$SELF")")
TARGET=aarch64-unknown-linux-gnu
BOOT_MIB=512          # FAT partition: room for two kernels and initrds during an upgrade
BOOT_START_MIB=4
IMAGE_NAME=hearth-rpi-arm64

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------
# Hook: after the essential packages, before the kernel. Divert update-initramfs so that
# no package builds an initramfs under emulation; `customize` builds it once.
essential_hook() {
    local root=$1
    chroot "$root" dpkg-divert --quiet --local --rename \
        --divert /usr/sbin/update-initramfs.hearth-image --add /usr/sbin/update-initramfs
    printf '#!/bin/sh\n# diverted while the image is built\nexit 0\n' >"$root/usr/sbin/update-initramfs"
    chmod 755 "$root/usr/sbin/update-initramfs"
}

# ---------------------------------------------------------------------------------------
# Hook: all packages are installed. Configure the system, install Hearth, build the
# initramfs and fill /boot/firmware.
customize() {
    local root=$1 deb=$2 name=$3

    # Hearth from its Debian package (deb/): binary, unit (enabled by its postinst), system
    # user, data directory and /etc/hearth/hearth.toml, a conffile. The box's name goes
    # into that file, which thereby counts as changed by its owner: an upgrade keeps it.
    [ -f "$deb" ] || die "no hearth package at $deb"
    [ "$(dpkg-deb --field "$deb" Architecture)" = arm64 ] || die "$deb is not an arm64 package"
    install -m 644 "$deb" "$root/tmp/hearth.deb"
    chroot "$root" dpkg -i /tmp/hearth.deb
    rm "$root/tmp/hearth.deb"
    sed -i "s/^name = .*/name = \"$name\"/" "$root/etc/hearth/hearth.toml"
    # Until the box has an owner, its web client offers "Set up this Hearth", which needs
    # the setup code the server made at first start. The server keeps it, with the box's
    # addresses and TLS fingerprint, in /run/hearth (the only place it may write besides
    # its data); hearth-setup-file.path copies the code file to the boot partition, and
    # agetty shows the banner through /etc/issue.d/hearth.issue.
    cat >>"$root/etc/hearth/hearth.toml" <<EOF

[setup]
code_file = "/run/hearth/hearth-setup.txt"
issue_file = "/run/hearth/hearth.issue"
EOF

    # The setup code on the FAT boot partition, readable on any computer: copied there by
    # root (the server cannot write outside its own directories, and should never write
    # where the kernel and config.txt live), deleted once the box is claimed.
    install -d -m 755 "$root/usr/lib/hearth-image"
    cat >"$root/usr/lib/hearth-image/setup-file" <<'EOF'
#!/bin/sh
# Mirrors Hearth's setup code file to the boot partition; removes it there once Hearth
# has deleted its own (the box is set up). Run by hearth-setup-file.service.
set -eu
src=/run/hearth/hearth-setup.txt
dst=/boot/firmware/hearth-setup.txt
if [ -f "$src" ]; then
    cp "$src" "$dst.new"
    mv "$dst.new" "$dst"
else
    rm -f "$dst"
fi
sync -f /boot/firmware
EOF
    chmod 755 "$root/usr/lib/hearth-image/setup-file"
    cat >"$root/usr/lib/systemd/system/hearth-setup-file.service" <<'EOF'
[Unit]
Description=Copy Hearth's setup code to the boot partition (or remove it once set up)
After=hearth.service

[Service]
Type=oneshot
ExecStart=/usr/lib/hearth-image/setup-file
EOF
    cat >"$root/usr/lib/systemd/system/hearth-setup-file.path" <<'EOF'
[Unit]
Description=Watch Hearth's setup code file

[Path]
PathChanged=/run/hearth/hearth-setup.txt

[Install]
WantedBy=multi-user.target
EOF
    # The console banner: agetty prints /etc/issue, then every /etc/issue.d/*.issue.
    install -d -m 755 "$root/etc/issue.d"
    ln -sf /run/hearth/hearth.issue "$root/etc/issue.d/hearth.issue"

    # First boot: grow the root partition (MBR, so not systemd-repart) and its ext4.
    install -d -m 755 "$root/usr/lib/hearth-image"
    cat >"$root/usr/lib/hearth-image/grow-root" <<'EOF'
#!/bin/sh
# Grow the partition holding / to the end of its disk, then the ext4 file system in it.
# Run once, at first boot, by hearth-grow-root.service.
set -eu
part=$(readlink -f "/sys/dev/block/$(mountpoint -d /)")
partno=$(cat "$part/partition")
disk=/dev/$(basename "$(dirname "$part")")
dev=/dev/$(basename "$part")
rc=0
growpart "$disk" "$partno" || rc=$?
case $rc in
    0) echo "hearth-grow-root: partition $partno of $disk grown" ;;
    1) echo "hearth-grow-root: $dev already fills $disk" ;;
    *) echo "hearth-grow-root: growpart failed ($rc)"; exit "$rc" ;;
esac
resize2fs "$dev"
echo "hearth-grow-root: $(df -h --output=size / | tail -n 1 | tr -d ' ') root file system"
mkdir -p /var/lib/hearth-image
touch /var/lib/hearth-image/root-grown
EOF
    chmod 755 "$root/usr/lib/hearth-image/grow-root"
    cat >"$root/usr/lib/systemd/system/hearth-grow-root.service" <<'EOF'
[Unit]
Description=Grow the root partition and file system to fill the card (first boot)
ConditionPathExists=!/var/lib/hearth-image/root-grown
DefaultDependencies=no
Conflicts=shutdown.target
After=systemd-remount-fs.service
Before=sysinit.target shutdown.target

[Service]
Type=oneshot
ExecStart=/usr/lib/hearth-image/grow-root
StandardOutput=journal+console

[Install]
WantedBy=sysinit.target
EOF

    # Wired network by DHCP; DNS by systemd-resolved; mDNS (hearth.local) by Avahi, so
    # resolved keeps off UDP 5353, which Hearth's own LAN discovery shares with Avahi.
    install -d "$root/etc/systemd/network" "$root/etc/systemd/resolved.conf.d" \
        "$root/etc/systemd/journald.conf.d"
    printf '[Match]\nName=eth* en*\n\n[Network]\nDHCP=yes\n' \
        >"$root/etc/systemd/network/20-wired.network"
    printf '[Resolve]\nMulticastDNS=no\nLLMNR=no\n' \
        >"$root/etc/systemd/resolved.conf.d/hearth-image.conf"
    # The journal stays on disk (it tells what happened before a power cut) but capped.
    printf '[Journal]\nStorage=persistent\nSystemMaxUse=64M\n' \
        >"$root/etc/systemd/journald.conf.d/hearth-image.conf"

    # Boot files: cmdline.txt and config.txt are generated from these by raspi-firmware's
    # hooks at every kernel, firmware or initramfs update (firmware-notes/config-and-boot.md).
    cat >"$root/etc/default/raspi-firmware" <<'EOF'
# Read by raspi-firmware's hooks, which write /boot/firmware/cmdline.txt and config.txt.
# Run `update-initramfs -u` after a change. Set by Hearth's image build.
ROOTPART=LABEL=RASPIROOT
CMA=0
CONSOLES="ttyS1,115200 tty0"
EOF
    printf 'gpu_mem=32\n' >"$root/etc/default/raspi-firmware-custom"
    # Without FSTYPE the initramfs (built in a chroot) has no fsck for the root.
    printf 'FSTYPE=ext4\n' >"$root/etc/initramfs-tools/conf.d/hearth-image"

    # The console: root has no password until the owner sets one (no SSH is installed,
    # so this is a login only at the Pi's own screen and keyboard or serial port).
    chroot "$root" passwd --quiet --delete root

    chroot "$root" systemd-sysusers
    chroot "$root" systemctl enable --quiet hearth-grow-root.service \
        hearth-setup-file.path \
        systemd-networkd.service systemd-resolved.service avahi-daemon.service \
        systemd-timesyncd.service

    # The initramfs, once, then the boot partition's files.
    rm "$root/usr/sbin/update-initramfs"
    chroot "$root" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
    local kver
    kver=$(basename "$(ls -1 "$root"/boot/vmlinuz-* | sort -V | tail -n 1)")
    kver=${kver#vmlinuz-}
    log "building the initramfs for $kver (slow under emulation)"
    chroot "$root" update-initramfs -c -k "$kver"
    chroot "$root" /etc/kernel/postinst.d/z50-raspi-firmware "$kver" "/boot/vmlinuz-$kver"
    [ -f "$root/boot/firmware/cmdline.txt" ] || die "raspi-firmware wrote no cmdline.txt"
}

# ---------------------------------------------------------------------------------------
build() {
    [ "$(id -u)" = 0 ] || die "run as root (mmdebstrap --mode=root, chroot)"
    local out=${1:-}
    WORK=${WORK:-/var/tmp/hearth-image}
    out=${out:-$WORK/out}
    local suite=${SUITE:-bookworm}
    local mirror=${MIRROR:-http://deb.debian.org/debian}
    local secmirror=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
    local aptopts=()
    if [ -n "${SNAPSHOT:-}" ]; then
        mirror=http://snapshot.debian.org/archive/debian/$SNAPSHOT
        secmirror=http://snapshot.debian.org/archive/debian-security/$SNAPSHOT
        aptopts=(--aptopt='Acquire::Check-Valid-Until "false"')
    fi
    if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
        SOURCE_DATE_EPOCH=$(git -C "$REPO" log -1 --format=%ct)
    fi
    export SOURCE_DATE_EPOCH TZ=UTC LC_ALL=C.UTF-8
    local name=${ROOT_NAME:-Hearth}
    case "$WORK" in "$REPO"|"$REPO"/*) die "WORK must be outside the repository" ;; esac

    local need
    for need in mmdebstrap mkfs.vfat mcopy mmd mkfs.ext4 debugfs sfdisk qemu-aarch64-static; do
        command -v "$need" >/dev/null || die "$need missing: apt-get install mmdebstrap \
qemu-user-static binfmt-support dosfstools mtools fdisk e2fsprogs gcc-aarch64-linux-gnu \
libc6-dev-arm64-cross cmake xz-utils zstd"
    done
    command -v cargo-deb >/dev/null || die "cargo-deb missing: bash .ci/setup installs it"
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        mountpoint -q /proc/sys/fs/binfmt_misc ||
            mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        update-binfmts --enable qemu-aarch64 || true
    fi
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "binfmt for arm64 not registered"

    mkdir -p "$WORK" "$out"
    local t0=$SECONDS

    # 1. Hearth's arm64 Debian package: the binary cross-built with Debian's
    # gcc-aarch64-linux-gnu (or HEARTH_BIN), packaged by cargo-deb (deb/build.sh).
    local commit="unknown (HEARTH_BIN given)"
    if [ -z "${HEARTH_BIN:-}" ]; then
        commit=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
        git -C "$REPO" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null ||
            commit="$commit + uncommitted changes"
        log "cross-building hearth for $TARGET and packaging it (deb/build.sh arm64)"
    fi
    local deb
    deb=$(CARGO_TARGET_DIR=$WORK/target "$REPO/deb/build.sh" arm64 "$WORK/deb")
    deb=$(readlink -f "$deb")
    local bin=$WORK/hearth-from-deb
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/hearth >"$bin"

    # 2. The root file system.
    local rootfs=$WORK/rootfs
    rm -rf "$rootfs" "$WORK/bootfs"
    log "mmdebstrap $suite arm64 from $mirror"
    local pkgs=(
        systemd-sysv udev kmod dbus
        linux-image-arm64 raspi-firmware zstd
        e2fsprogs dosfstools fdisk cloud-guest-utils
        iproute2 netbase ca-certificates
        systemd-timesyncd systemd-resolved avahi-daemon
        nano
    )
    mmdebstrap --mode=root --arch=arm64 --variant=minbase \
        --include="$(IFS=,; echo "${pkgs[*]}")" \
        "${aptopts[@]}" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --essential-hook="\"$SELF\" essential-hook \"\$1\"" \
        --customize-hook="\"$SELF\" customize \"\$1\" \"$deb\" \"$name\"" \
        "$suite" "$rootfs" \
        "deb $mirror $suite main non-free-firmware" \
        "deb $mirror $suite-updates main non-free-firmware" \
        "deb $secmirror $suite-security main non-free-firmware"
    log "mmdebstrap done"

    # 3. Host-side finishing: identity, apt sources, no build leftovers.
    echo hearth >"$rootfs/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\thearth\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n' \
        >"$rootfs/etc/hosts"
    cat >"$rootfs/etc/fstab" <<'EOF'
# <file system>    <mount point>   <type>  <options>           <dump> <pass>
LABEL=RASPIROOT    /               ext4    rw,noatime          0      1
LABEL=RASPIFIRM    /boot/firmware  vfat    rw,noatime          0      2
EOF
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb http://deb.debian.org/debian $suite main non-free-firmware
deb http://deb.debian.org/debian $suite-updates main non-free-firmware
deb http://deb.debian.org/debian-security $suite-security main non-free-firmware
EOF
    ln -sfn ../run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"
    # Each device makes its own machine id at first boot (and so counts as first boot).
    : >"$rootfs/etc/machine-id"
    rm -f "$rootfs/var/lib/dbus/machine-id"
    ln -s /etc/machine-id "$rootfs/var/lib/dbus/machine-id"
    # Logs and caches that record when and where the image was built.
    find "$rootfs/var/log" -type f -delete
    rm -rf "$rootfs/var/cache/ldconfig/aux-cache" "$rootfs/var/lib/apt/lists/"* \
        "$rootfs/var/cache/apt/"*.bin "$rootfs/var/cache/debconf/"*-old \
        "$rootfs/var/lib/dpkg/"*-old "$rootfs/etc/"*- "$rootfs/tmp/"* "$rootfs/var/tmp/"*
    # Password ages: days since 1970 at build time; pin them to SOURCE_DATE_EPOCH.
    local day=$((SOURCE_DATE_EPOCH / 86400))
    sed -i -E "s/^([^:]*:[^:]*:)[0-9]+:/\1$day:/" "$rootfs/etc/shadow"
    dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f '${Package}\t${Version}\n' | sort >"$out/$IMAGE_NAME.packages"

    # 4. Split off the boot partition's files, pin every time stamp.
    mkdir -p "$WORK/bootfs"
    mv "$rootfs/boot/firmware/"* "$WORK/bootfs/"
    find "$rootfs" "$WORK/bootfs" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"

    # 5. FAT boot file system, files added in sorted order.
    log "making the FAT file system"
    local boot_img=$WORK/boot.img root_img=$WORK/root.img img=$out/$IMAGE_NAME.img
    rm -f "$boot_img" "$root_img" "$img"
    mkfs.vfat -F 32 -n RASPIFIRM --invariant -C "$boot_img" $((BOOT_MIB * 1024)) >/dev/null
    (
        cd "$WORK/bootfs"
        export MTOOLS_SKIP_CHECK=1
        find . -mindepth 1 -type d | LC_ALL=C sort | while read -r d; do
            mmd -i "$boot_img" "::/${d#./}"
        done
        find . -type f | LC_ALL=C sort | while read -r f; do
            mcopy -i "$boot_img" -p -m "$f" "::/${f#./}"
        done
    )

    # 6. ext4 root file system from the tree, with fixed UUID, hash seed and times.
    local used_mib root_mib
    used_mib=$(du -s --block-size=1M "$rootfs" | cut -f1)
    root_mib=$(( (used_mib * 13 / 10 + 256 + 3) / 4 * 4 ))
    log "making the ext4 file system: ${used_mib} MiB of files in ${root_mib} MiB"
    E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -L RASPIROOT \
        -U 6b1c3a54-8e5e-4c1f-9f3e-48656172746a \
        -E root_owner=0:0,hash_seed=2f5b2a6e-0d3b-4f4e-8a51-48656172746a \
        -d "$rootfs" "$root_img" "${root_mib}M"
    # mke2fs -d copies ctime and atime from the tree, which the host set at extraction.
    (cd "$rootfs" && find . -mindepth 1 | LC_ALL=C sort) | while IFS= read -r p; do
        p=${p#.}
        case "$p" in *'"'*) log "skipping time fix for odd name: $p"; continue ;; esac
        printf 'sif "%s" ctime @%s\nsif "%s" atime @%s\nsif "%s" crtime @%s\n' \
            "$p" "$SOURCE_DATE_EPOCH" "$p" "$SOURCE_DATE_EPOCH" "$p" "$SOURCE_DATE_EPOCH"
    done >"$WORK/debugfs.cmd"
    printf 'sif / ctime @%s\nsif / atime @%s\nsif / crtime @%s\n' \
        "$SOURCE_DATE_EPOCH" "$SOURCE_DATE_EPOCH" "$SOURCE_DATE_EPOCH" >>"$WORK/debugfs.cmd"
    E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$WORK/debugfs.cmd" "$root_img" \
        >"$WORK/debugfs.log" 2>&1
    E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH e2fsck -fn "$root_img" >/dev/null ||
        die "e2fsck found problems in $root_img"

    # 7. The disk: MBR, FAT at 4 MiB (bootable, type c), ext4 behind it.
    log "assembling $img"
    local root_start_mib=$((BOOT_START_MIB + BOOT_MIB))
    truncate -s $(( (root_start_mib + root_mib) * 1024 * 1024 )) "$img"
    sfdisk --quiet "$img" <<EOF
label: dos
label-id: 0x48656172
unit: sectors

start=$((BOOT_START_MIB * 2048)), size=$((BOOT_MIB * 2048)), type=c, bootable
start=$((root_start_mib * 2048)), size=$((root_mib * 2048)), type=83
EOF
    dd if="$boot_img" of="$img" bs=1M seek="$BOOT_START_MIB" conv=notrunc,sparse status=none
    dd if="$root_img" of="$img" bs=1M seek="$root_start_mib" conv=notrunc,sparse status=none
    rm -f "$boot_img" "$root_img"

    # 8. Record and compress.
    {
        echo "suite=$suite"
        echo "mirror=$mirror"
        echo "security_mirror=$secmirror"
        echo "snapshot=${SNAPSHOT:-}"
        echo "source_date_epoch=$SOURCE_DATE_EPOCH"
        echo "hearth_commit=$commit"
        echo "hearth_sha256=$(sha256sum "$bin" | cut -d' ' -f1)"
        echo "hearth_deb=$(basename "$deb") $(sha256sum "$deb" | cut -d' ' -f1)"
        echo "kernel=$(ls "$WORK/bootfs" | sed -n 's/^vmlinuz-//p')"
    } >"$out/$IMAGE_NAME.build-info"
    (cd "$out" && sha256sum "$IMAGE_NAME.img" >"$IMAGE_NAME.img.sha256")
    case "${COMPRESS:-xz}" in
        xz) log "compressing (xz)"; xz -T0 -6 -k -f "$img"; local z=$img.xz ;;
        zstd) log "compressing (zstd)"; zstd -q -T0 -15 -k -f "$img"; local z=$img.zst ;;
        none) local z= ;;
        *) die "COMPRESS: xz, zstd or none" ;;
    esac
    [ -z "$z" ] || (cd "$out" && sha256sum "$(basename "$z")" >>"$IMAGE_NAME.img.sha256")
    log "done in $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s: $img"
    log "size $(stat -c %s "$img") bytes, $(du -B1 "$img" | cut -f1) bytes allocated${z:+, $(basename "$z") $(stat -c %s "$z") bytes}"
    cat "$out/$IMAGE_NAME.img.sha256" >&2
}

# One compound command, read whole before it runs, that exits: bash reads no further from
# this file, so editing it during a (long) build does not break that build.
{
    case "${1:-}" in
        essential-hook) shift; essential_hook "$@" ;;
        customize) shift; customize "$@" ;;
        -h|--help) sed -n '2,22p' "$SELF" | sed 's/^# \{0,1\}//' ;;
        *) build "$@" ;;
    esac
    exit
}
