#!/bin/sh
# Build the exe-unit test image `local/busybox:1` with no registry, in seconds.
#
# The image is a root filesystem holding Debian's static busybox and its applet
# links, /etc/passwd and /etc/group with root and an unprivileged user `yagna`
# (uid/gid 1000), an empty /work owned by 1000:1000 (the runtime mounts its
# writable work volume there; the volume copies this owner and mode when it is
# first mounted) and /tmp (mode 1777; the runtime mounts a tmpfs over it).
# It runs as 1000:1000 in /work by default.
#
#   scripts/build-test-image.sh           build if missing, print the image id
#   scripts/build-test-image.sh --force   rebuild
#
# Needs: docker (engine reachable), a static /bin/busybox; as root on Debian it
# installs busybox-static with apt-get when the static binary is missing.
set -eu

IMAGE=${YAGNA_TEST_IMAGE:-local/busybox:1}
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "usage: $0 [--force]" >&2; exit 2 ;;
    esac
done

if [ "$FORCE" = 0 ] && docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null; then
    exit 0
fi

u() { od -An -t u"$3" -j "$2" -N "$3" "$1" | tr -d ' '; }
is_static() {
    # A static ELF has no PT_INTERP (type 3) program header. Read the 64-bit
    # little-endian header with od (no `file`/`readelf` on a fresh machine).
    [ -x "$1" ] || return 1
    [ "$(od -An -c -N 4 "$1" | tr -d ' ')" = '177ELF' ] || return 1
    [ "$(u "$1" 4 1)" = 2 ] || return 1  # ELFCLASS64
    phoff=$(u "$1" 32 8); phentsize=$(u "$1" 54 2); phnum=$(u "$1" 56 2)
    i=0
    while [ "$i" -lt "$phnum" ]; do
        [ "$(u "$1" $((phoff + i * phentsize)) 4)" = 3 ] && return 1
        i=$((i + 1))
    done
    return 0
}

BUSYBOX=""
for candidate in /bin/busybox /usr/bin/busybox; do
    if is_static "$candidate"; then BUSYBOX=$candidate; break; fi
done
if [ -z "$BUSYBOX" ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "no static busybox: install busybox-static (as root: apt-get install busybox-static)" >&2
        exit 1
    fi
    echo "installing busybox-static" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >&2 \
        || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >&2; }
    BUSYBOX=/bin/busybox
    is_static "$BUSYBOX" || { echo "$BUSYBOX is not static" >&2; exit 1; }
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/work" "$ROOT/tmp" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
# Every applet as a relative link next to busybox (/bin/sh, /bin/sleep, ...);
# PATH in the image is only /bin, so the applets' install dirs do not matter.
for applet in $("$ROOT/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$ROOT/bin/$applet"
done
ln -s bin "$ROOT/sbin"
mkdir -p "$ROOT/usr"
ln -s ../bin "$ROOT/usr/bin"
ln -s ../bin "$ROOT/usr/sbin"
cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
yagna:x:1000:1000:yagna:/work:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
yagna:x:1000:
nogroup:x:65534:
EOF
chmod 0644 "$ROOT/etc/passwd" "$ROOT/etc/group"
chmod 1777 "$ROOT/tmp"
chmod 0755 "$ROOT/work"
chown 1000:1000 "$ROOT/work" 2>/dev/null || true

# --numeric-owner: names on the build host do not matter, ids do.
tar -C "$ROOT" --numeric-owner -c . | docker import \
    --change 'USER 1000:1000' \
    --change 'WORKDIR /work' \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["/bin/sh"]' \
    - "$IMAGE" >/dev/null
docker image inspect --format '{{.Id}}' "$IMAGE"
