#!/bin/sh
# Build the rendering demo's image `local/render:1` with no registry, in about a second.
#
# It is the exe-unit test image `local/busybox:1` (built first if missing, by
# scripts/build-test-image.sh) plus /bin/mandel: examples/render/mandel.c
# compiled here, statically (gcc -O2 -static, no -march: the same bytes out on
# any x86_64). Same user (1000:1000), WORKDIR (/work), PATH and CMD as the base.
#
# The image carries labels with the source's sha256 and the base image's id: it
# is rebuilt only when mandel.c or the base changed, or with --force.
#
#   scripts/build-render-image.sh           build if needed, print the image id
#   scripts/build-render-image.sh --force   rebuild
#
# Needs: docker (engine reachable), gcc and a static libc (Debian: libc6-dev),
# and what scripts/build-test-image.sh needs (a static busybox).
#
# How: `docker create` the base (never started), `docker cp` the binary in,
# `docker commit`. Unlike `docker build FROM local/busybox:1` this needs neither
# the legacy builder nor BuildKit (which may try to resolve the base from a
# registry), and the image shares the base's layer.
# A rebuild removes the image it replaces unless a container still uses it.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$HERE/../examples/render/mandel.c
IMAGE=${YAGNA_RENDER_IMAGE:-local/render:1}
BASE=${YAGNA_TEST_IMAGE:-local/busybox:1}
CFLAGS="-O2 -static"
LABEL_SRC=network.yagna.render.source-sha256
LABEL_BASE=network.yagna.render.base-image

FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "usage: $0 [--force]" >&2; exit 2 ;;
    esac
done

[ -f "$SRC" ] || { echo "missing $SRC" >&2; exit 1; }
command -v gcc >/dev/null 2>&1 || { echo "gcc not found (Debian: apt-get install gcc libc6-dev)" >&2; exit 1; }

# The base image (built if missing); its id is the last line the script prints.
BASE_ID=$(YAGNA_TEST_IMAGE=$BASE "$HERE/build-test-image.sh" | tail -n 1)
case "$BASE_ID" in sha256:*) ;; *) echo "build-test-image.sh printed no image id: $BASE_ID" >&2; exit 1 ;; esac

# The key: the source and the compiler flags (a flag change is a rebuild too).
SRC_SHA=$( (cat "$SRC"; echo "CFLAGS=$CFLAGS") | sha256sum | cut -d' ' -f1)

if [ "$FORCE" = 0 ]; then
    have=$(docker image inspect --format "{{index .Config.Labels \"$LABEL_SRC\"}} {{index .Config.Labels \"$LABEL_BASE\"}} {{.Id}}" "$IMAGE" 2>/dev/null || true)
    if [ -n "$have" ] && [ "${have% *}" = "$SRC_SHA $BASE_ID" ]; then
        echo "${have##* }"
        exit 0
    fi
fi

OLD=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
WORK=$(mktemp -d)
CID=""
cleanup() {
    [ -z "$CID" ] || docker rm -f "$CID" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck disable=SC2086 # CFLAGS is a list of flags
gcc $CFLAGS -o "$WORK/mandel" "$SRC" -lm
"$WORK/mandel" 0 --frames 2 --width 8 --height 6 --out "$WORK/check.ppm" >/dev/null \
    || { echo "the compiled mandel does not run" >&2; exit 1; }
chmod 0755 "$WORK/mandel"

# A container of the base is created, never started; labels on it would become
# the image's labels, so the new image's labels are set by --change only.
CID=$(docker create "$BASE_ID")
docker cp "$WORK/mandel" "$CID:/bin/mandel"  # owned by root in the image
docker commit \
    --change "LABEL $LABEL_SRC=$SRC_SHA" \
    --change "LABEL $LABEL_BASE=$BASE_ID" \
    --change 'USER 1000:1000' \
    --change 'WORKDIR /work' \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["/bin/sh"]' \
    "$CID" "$IMAGE" >/dev/null
NEW=$(docker image inspect --format '{{.Id}}' "$IMAGE")
# The image this one replaces, now untagged: removed unless a container uses it.
if [ -n "$OLD" ] && [ "$OLD" != "$NEW" ]; then
    docker rmi "$OLD" >/dev/null 2>&1 || true
fi
echo "$NEW"
