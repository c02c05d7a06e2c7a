#!/usr/bin/env bash
# gantry's main job on a built-in default, no registry or internet needed:
# make a busybox image from the host's busybox-static, fetch it into the
# store, and run it as a pod that prints something.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash scripts/make-busybox-image.sh "$work/busybox" latest >&2
gantry() { ./bin/gantry "$@"; }
id=$(gantry fetch "oci:$work/busybox:latest")
echo "fetched busybox as $id" >&2
gantry run --rm --net=none "$id" --exec /bin/sh -- -c 'echo "hello from a gantry pod: $(hostname), uid $(id -u), $(busybox | head -1)"'
