#!/bin/sh
# Build `local/debian-gcc:12`, an image with Debian's C toolchain (gcc, binutils, libc6-dev, make) and
# busybox's shell and tools, with no registry and no network: a root filesystem assembled from the
# files of this machine's installed Debian packages (and everything they depend on), then
# `docker import`ed. Pipelines (docs/pipelines.md) build C programs in it; the container has no
# network, so a pipeline's dependencies come from its image or its workspace.
#
#   scripts/build-toolchain-image.sh           build if missing, print the image id
#   scripts/build-toolchain-image.sh --force   rebuild
#
# Needs: docker, and the packages gcc, libc6-dev, make, busybox-static installed (scripts/setup-machine.sh
# installs them). Takes ~10-20 s. The image runs as 1000:1000 in /work by default, like local/busybox:1.
set -eu

IMAGE=${YAGNA_TOOLCHAIN_IMAGE:-local/debian-gcc:12}
ROOTS="gcc make libc6-dev"
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "usage: $0 [--force]" >&2; exit 2 ;;
    esac
done

if [ "$FORCE" = 0 ] && docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null; then
    exit 0
fi
for tool in dpkg-query docker tar; do
    command -v "$tool" >/dev/null || { echo "build-toolchain-image: $tool is missing" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "build-toolchain-image: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }

# Every installed package the roots need, recursively (Depends and Pre-Depends; alternatives: the
# first one installed).
deps_of() {
    dpkg-query -W -f='${Depends}, ${Pre-Depends}\n' "$1" 2>/dev/null | tr ',' '\n' |
        while IFS= read -r alt; do
            for choice in $(printf '%s' "$alt" | tr '|' '\n' | sed 's/(.*)//; s/:any//; s/ //g'); do
                [ -n "$choice" ] || continue
                if dpkg-query -W -f='${Status}' "$choice" 2>/dev/null | grep -q "ok installed"; then
                    echo "$choice"; break
                fi
            done
        done
}
seen=" "
todo="$ROOTS"
while [ -n "$todo" ]; do
    next=""
    for pkg in $todo; do
        case "$seen" in *" $pkg "*) continue ;; esac
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || {
            echo "build-toolchain-image: package $pkg is not installed (apt-get install $ROOTS)" >&2; exit 1; }
        seen="$seen$pkg "
        next="$next $(deps_of "$pkg" | tr '\n' ' ')"
    done
    todo=$next
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM
list="$stage/files"
merged="s#^\$^##"  # no rewrite unless /usr is merged
for d in bin lib lib64 sbin; do
    [ "$(readlink "/$d" 2>/dev/null)" = "usr/$d" ] && merged="$merged; s#^$d/#usr/$d/#"
done
for pkg in $seen; do
    dpkg-query -L "$pkg" 2>/dev/null
done | while IFS= read -r path; do
    # regular files and symlinks only (directories come with them); on a merged /usr, /bin/x is /usr/bin/x
    case "$path" in /bin|/lib|/lib64|/sbin) continue ;; esac
    if [ -f "$path" ] || [ -L "$path" ]; then printf '%s\n' "${path#/}"; fi
done | sed -E "$merged" | sort -u > "$list"
mkdir -p "$stage/root"
tar -C / -cf - --no-recursion -T "$list" | tar -C "$stage/root" -xf -

root="$stage/root"
# usrmerge: /bin, /lib, /lib64, /sbin point into /usr as on the host
for d in bin lib lib64 sbin; do
    if [ -L "/$d" ]; then
        rm -rf "${root:?}/$d"
        ln -s "$(readlink "/$d")" "$root/$d"
    fi
done
mkdir -p "$root/usr/bin" "$root/work" "$root/tmp" "$root/etc" "$root/usr/local/bin"
cp /bin/busybox "$root/usr/local/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ -e "$root/usr/bin/$applet" ] || [ -e "$root/usr/local/bin/$applet" ] || ln -s busybox "$root/usr/local/bin/$applet"
done
[ -e "$root/usr/bin/sh" ] || ln -s ../local/bin/busybox "$root/usr/bin/sh"
# Debian names the compiler `cc` through /etc/alternatives (made by postinst scripts, not in dpkg -L)
[ -e "$root/usr/bin/cc" ] || ln -s gcc "$root/usr/bin/cc"
[ -e "$root/usr/bin/c99" ] || ln -s gcc "$root/usr/bin/c99"
printf 'root:x:0:0:root:/root:/bin/sh\nyagna:x:1000:1000:yagna:/work:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nyagna:x:1000:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
chown 1000:1000 "$root/work" 2>/dev/null || true

tar -C "$root" -cf - . | docker import \
    -c 'USER 1000:1000' -c 'WORKDIR /work' -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    -c 'LABEL network.yagna.test-image=toolchain' - "$IMAGE" >/dev/null
docker image inspect --format '{{.Id}}' "$IMAGE"
