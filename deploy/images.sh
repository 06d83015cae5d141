#!/usr/bin/env bash
# Build toxiguard's images with podman on a Debian base made from Debian's own packages, then run
# the serve image's own command on a model bundle and check /ready and one prediction.
#
# Where no image registry is reachable (our machines), the base is not pulled: mmdebstrap builds
# a Debian 12 root filesystem (python3, python3-venv, ca-certificates), cached between runs, and
# `podman import` makes it the base image. `podman run` does not work in our sandbox, so the
# check runs the image's CMD in a chroot of a created (never started) container's file system.
#
#   deploy/images.sh                    build serve and full, check serve
#   IMAGES=serve deploy/images.sh       build (and check) serve only
#   BUNDLE=DIR deploy/images.sh         check with this bundle (`toxiguard export bundle DIR`)
#
# Needs root, podman and mmdebstrap (apt-get install podman mmdebstrap), and .venv for the bundle.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGES=${IMAGES:-serve full}
CACHE=${TOXIGUARD_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toxiguard/images}
BASE=localhost/toxiguard-base:bookworm
ROOTFS=$CACHE/bookworm-rootfs.tar
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# pip inside the build trusts what pip here trusts (a proxy may re-sign PyPI's certificate).
HOST_CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
# torch's CPU wheel for `full`: a local folder of wheels where PyTorch's index is unreachable.
WHEELS=${TORCH_WHEELS:-/opt/wheels}
STARTED=$SECONDS

say() { printf '[images %4ds] %s\n' "$((SECONDS - STARTED))" "$*"; }
fail() { say "FAILED: $*" >&2; exit 1; }

for tool in podman mmdebstrap curl; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (apt-get install podman mmdebstrap curl)"
done

# ---- the base image: Debian 12 from Debian's packages, its root filesystem cached
if ! podman image exists "$BASE"; then
    if [[ ! -f $ROOTFS ]]; then
        say "building the Debian 12 root filesystem with mmdebstrap (cached in $CACHE)"
        mkdir -p "$CACHE"
        mmdebstrap --quiet --format=tar --variant=minbase \
            --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS.partial" \
            "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
            "deb $SECURITY_MIRROR bookworm-security main"
        mv "$ROOTFS.partial" "$ROOTFS"
    fi
    say "importing $ROOTFS as $BASE"
    podman import --quiet "$ROOTFS" "$BASE" >/dev/null
fi

# ---- the images
build_args=(--isolation chroot -f deploy/Dockerfile --build-arg "BASE_IMAGE=$BASE")
if [[ -f $HOST_CA ]]; then
    build_args+=(--volume "$HOST_CA:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
fi
if compgen -G "$WHEELS/torch-*.whl" >/dev/null; then
    build_args+=(--volume "$WHEELS:/run/wheels:ro" --build-arg TORCH_FIND_LINKS=/run/wheels)
fi
for target in $IMAGES; do
    say "building toxiguard-$target (target $target)"
    started=$SECONDS
    podman build --quiet "${build_args[@]}" --target "$target" \
        -t "localhost/toxiguard-$target:latest" . >/dev/null
    say "built toxiguard-$target in $((SECONDS - started)) s"
done
podman images --filter reference='localhost/toxiguard-*' \
    --format '{{.Repository}}:{{.Tag}}  {{.Size}}'

[[ " $IMAGES " == *" serve "* ]] || exit 0

# ---- the serve image's own command, on a bundle, in a chroot of its file system
work=$(mktemp -d)
container=""
mnt=""
server=""
cleanup() {
    set +e  # undo as much as can be undone
    if [[ -n $server ]]; then
        kill "$server" 2>/dev/null
        wait "$server" 2>/dev/null
    fi
    if [[ -n $mnt ]]; then
        for point in bundle dev proc; do
            if mountpoint -q "$mnt/$point"; then umount --recursive --lazy "$mnt/$point"; fi
        done
    fi
    if [[ -n $container ]]; then podman rm --force "$container" >/dev/null; fi
    rm -rf "$work"
}
trap cleanup EXIT

bundle=${BUNDLE:-}
if [[ -z $bundle ]]; then
    say "training a demo champion and exporting its bundle"
    (
        # Only this home: no registry, database or bundle of the caller's settings leaks in.
        unset "${!TOXIGUARD_@}" "${!MLFLOW_@}"
        export TOXIGUARD_HOME=$work/home
        .venv/bin/toxiguard data demo "$work/demo.csv.gz" --rows 1500
        .venv/bin/toxiguard train --data "$work/demo.csv.gz" --model complement-nb
        .venv/bin/toxiguard export bundle "$work/bundle"
    ) >"$work/bundle.log" 2>&1 || { cat "$work/bundle.log" >&2; fail "making the bundle"; }
    bundle=$work/bundle
fi
[[ -d $bundle ]] || fail "no bundle directory at $bundle"

image=localhost/toxiguard-serve:latest
# One line per entry; grep drops the empty line the template ends with.
mapfile -t environment < <(podman image inspect "$image" --format '{{range .Config.Env}}{{println .}}{{end}}' | grep .)
mapfile -t command < <(podman image inspect "$image" --format '{{range .Config.Cmd}}{{println .}}{{end}}' | grep .)
user=$(podman image inspect "$image" --format '{{.Config.User}}')
workdir=$(podman image inspect "$image" --format '{{.Config.WorkingDir}}')
container=$(podman create "$image")
mnt=$(podman mount "$container")
uid=$(chroot "$mnt" id -u "$user")
gid=$(chroot "$mnt" id -g "$user")
mkdir -p "$mnt/bundle"
mount -t proc proc "$mnt/proc"
# A /dev of its own: the device nodes a Python server opens, and a /dev/shm for its locks.
mount -t tmpfs -o mode=755 tmpfs "$mnt/dev"
for node in null zero random urandom; do
    touch "$mnt/dev/$node"
    mount --bind "/dev/$node" "$mnt/dev/$node"
done
mkdir "$mnt/dev/shm"
mount -t tmpfs -o mode=1777 tmpfs "$mnt/dev/shm"
mount --bind -o ro "$bundle" "$mnt/bundle"
cp /etc/resolv.conf "$mnt/etc/resolv.conf" 2>/dev/null || true

# The chroot shares this machine's network: the image's CMD (0.0.0.0:8000) is moved to a free
# loopback port by appending --host and --port (the last value of an option wins), so the check
# never meets a server already on 8000 nor listens beyond this machine.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
command+=(--host 127.0.0.1 --port "$PORT")
say "running the image's command as $user: ${command[*]} (TOXIGUARD_MODEL_DIR=/bundle)"
# shellcheck disable=SC2016  # $1 and $@ are the inner sh's: cd to the image's WORKDIR, then exec
chroot --userspec="$uid:$gid" "$mnt" /usr/bin/env -i "${environment[@]}" \
    TOXIGUARD_MODEL_DIR=/bundle sh -c 'cd "$1" && shift && exec "$@"' sh "$workdir" \
    "${command[@]}" >"$work/serve.log" 2>&1 &
server=$!

for _ in $(seq 120); do
    if curl -sf -o /dev/null "http://127.0.0.1:$PORT/ready"; then break; fi
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; fail "the server exited"; }
    sleep 1
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/ready" || { cat "$work/serve.log" >&2; fail "/ready never answered 200"; }
say "/ready: 200"
answer=$(curl -sf -X POST "http://127.0.0.1:$PORT/v1/predict" -H 'content-type: application/json' \
    -d '{"texts": ["you are a complete idiot", "thanks for fixing the typo"]}') \
    || fail "POST /v1/predict failed"
python3 - "$answer" <<'EOF' || fail "the prediction is not what the API promises: $answer"
import json, sys
answer = json.loads(sys.argv[1])
labels = {"toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"}
results = answer["predictions"]
assert len(results) == 2, results
for result in results:
    assert set(result["scores"]) == labels, result
    assert all(0.0 <= value <= 1.0 for value in result["scores"].values()), result
print("prediction:", json.dumps(results[0]["scores"]))
EOF
say "serve image checked: /ready and a prediction from its own command"
