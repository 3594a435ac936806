#!/usr/bin/env bash
# Berth's own image without a registry: the base is Debian 13 made by
# debootstrap from the machine's Debian mirror (with the runtime packages
# already in it), and the binaries and site are the ones scripts/build.sh made
# on this host, handed to the Dockerfile as its build image. With a registry,
# `docker build .` compiles inside Docker from the official images instead.
#
#   scripts/image.sh [TAG]        (default berth-local/berth:<version>)
#   PROFILE=release|debug         which build of the host to package (default release)
#
# Sourced, it provides build_base_image and build_berth_image.

# The Debian 13 base: minbase plus what Berth runs (pg_dump 17 dumps servers
# up to 17; git and ssh clone; tini reaps). About 2-3 minutes the first time.
build_base_image() {
  local tag=$1 mirror root
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
  root=$(mktemp -d)
  debootstrap --variant=minbase \
    --include=ca-certificates,git,openssh-client,postgresql-client-17,tini \
    trixie "$root" "$mirror" >/dev/null
  # No package lists, caches or manuals in the image.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
  tar -C "$root" -c . | docker import - "$tag" >/dev/null
  local rc=$?
  rm -rf "$root"
  return $rc
}

# Berth's image from this host's build: a build image holding /out (the
# binary and the site) on the base, then the Dockerfile with both as arguments.
build_berth_image() {
  local tag=$1 profile=${2:-release} base=${3:-berth-local/debian:trixie} here ctx release
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  build_base_image "$base" || return 1
  ctx=$(mktemp -d)
  mkdir -p "$ctx/out"
  cp "$here/target/$profile/berth" "$ctx/out/berth"
  cp -r "$here/target/site" "$ctx/out/site"
  printf 'FROM %s\nCOPY out /out\n' "$base" >"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t berth-local/prebuilt "$ctx" >/dev/null || { rm -rf "$ctx"; return 1; }
  rm -rf "$ctx"
  release=$(awk -F'"' '/^version/{print $2; exit}' "$here/Cargo.toml")
  release="$release+$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo local)"
  DOCKER_BUILDKIT=0 docker build -q \
    --build-arg BUILD_IMAGE=berth-local/prebuilt \
    --build-arg BERTH_RELEASE="$release" \
    --build-arg BASE_IMAGE="$base" \
    -t "$tag" "$here" >/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  version=$(awk -F'"' '/^version/{print $2; exit}' "$(dirname "$0")/../Cargo.toml")
  build_berth_image "${1:-berth-local/berth:$version}" "${PROFILE:-release}"
  docker image inspect "${1:-berth-local/berth:$version}" --format '{{.Id}} {{.Size}} bytes'
fi
