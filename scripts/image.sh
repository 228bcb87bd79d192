#!/usr/bin/env bash
# Builds the threadcenter image offline, from a local release build: nothing is pulled.
#
#   scripts/image.sh [--tag NAME] [--binary PATH] [--base IMAGE]
#
# Without --base the image is FROM scratch: the binary, the shared libraries `ldd` lists
# for it and the dynamic loader, an /etc/passwd naming the unprivileged user it runs as,
# and an empty /tmp. With --base IMAGE (an image already in the local store, e.g. one
# you built or loaded) only the binary is added on top of it. Either way the image runs
# as uid 10001, its ENTRYPOINT is ["threadcenter"] like the Dockerfile's, and the script
# checks that `docker run --rm TAG --version` answers what the binary itself answers.
#
# --binary defaults to target/release/threadcenter, built first with
# `cargo build --release --locked`. docs/containers.md says more.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=threadcenter:local
binary=
base=
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
    --tag) tag=${2:?--tag needs a name, e.g. --tag threadcenter:local}; shift 2 ;;
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --base) base=${2:?--base needs an image name}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "image.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

command -v docker >/dev/null 2>&1 || {
    echo "image.sh: no docker command; install a Docker engine (Debian: apt-get install docker.io)" >&2
    exit 1
}
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
    echo "image.sh: the docker daemon does not answer; start dockerd (or the docker service) first" >&2
    exit 1
}
if [ -z "$binary" ]; then
    echo "== cargo build --release --locked"
    cargo build --release --locked
    binary=target/release/threadcenter
fi
[ -x "$binary" ] || { echo "image.sh: $binary is not an executable file" >&2; exit 1; }
if [ -n "$base" ] && ! docker image inspect "$base" >/dev/null 2>&1; then
    echo "image.sh: the base image '$base' is not in the local store (nothing is pulled here); docker pull or docker load it first" >&2
    exit 1
fi

version=$("$binary" --version)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin"
cp "$binary" "$root/usr/local/bin/threadcenter"

if [ -z "$base" ]; then
    # Every library ldd resolves (`name => /path (addr)`) and the loader (`/path (addr)`).
    # The vdso has no file and is skipped.
    libs=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    for lib in $libs; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    mkdir -p "$root/etc" "$root/tmp"
    chmod 1777 "$root/tmp"
    printf 'root:x:0:0:root:/:/nonexistent\nthreadcenter:x:10001:10001:threadcenter:/:/nonexistent\n' >"$root/etc/passwd"
    printf 'root:x:0:\nthreadcenter:x:10001:\n' >"$root/etc/group"
    from=scratch
else
    from=$base
fi

cat >"$ctx/Dockerfile" <<EOF
FROM $from
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
LABEL org.opencontainers.image.title=threadcenter \\
      org.opencontainers.image.version="${version#threadcenter }" \\
      org.opencontainers.image.description="threadcenter, built offline by scripts/image.sh from $from"
USER 10001:10001
ENTRYPOINT ["threadcenter"]
CMD ["--help"]
EOF

echo "== docker build -t $tag (FROM $from, $binary)"
# The classic builder needs nothing but the daemon (no buildx plugin, no pull).
DOCKER_BUILDKIT=0 docker build --quiet --pull=false -t "$tag" "$ctx" >/dev/null

got=$(docker run --rm --network none "$tag" --version)
if [ "$got" != "$version" ]; then
    echo "image.sh: the image answers '$got' to --version, the binary '$version'" >&2
    exit 1
fi
size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "$tag: $got, $((size / 1024 / 1024)) MiB ($size bytes)"
