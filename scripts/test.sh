#!/usr/bin/env bash
# `make test`: every test, on a fresh Debian 12/13 machine too. Installs the
# Debian packages it lacks (as root; otherwise prints the apt-get line and stops)
# and the build tools, builds the site and the server, then runs unit,
# integration and browser tests against real PostgreSQL, Redis, Docker, an
# S3-compatible server and Chromium. Uses DATABASE_URL / REDIS_URL / DOCKER_HOST
# when set; otherwise starts throwaway ones under target/test-services and stops
# them afterwards. Prints how long each phase took.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/phase.sh
. scripts/deps.sh
. scripts/services.sh
. scripts/build.sh
. scripts/image.sh
trap 'stop_services; phase_summary' EXIT

ensure_machine test
phase "installing build and test tools" "first time about 5 min, then instant"
scripts/tools.sh test
build_berth

phase "checking the browser code's DOM reads (clippy)" "first time about 1 min"
# The one lint enforced here: a form's named control shadows the form's own
# property (`id`, `name`, …) and such a read traps the WASM module; clippy.toml
# names them. Other lints are for review, not a reason to fail the tests.
cargo clippy --locked --quiet -p frontend --target wasm32-unknown-unknown -- \
  -A clippy::all -D clippy::disallowed_methods

phase "starting PostgreSQL, Redis, Docker and S3 for the tests" "seconds"
svc=$PWD/target/test-services
stop_leftovers "$svc"
if [ -z "${DATABASE_URL:-}" ]; then
  rm -rf "$svc/postgres"; BERTH_PG_FSYNC=off start_postgres "$svc/postgres" 55442
fi
if [ -z "${REDIS_URL:-}" ]; then
  rm -rf "$svc/redis"; start_redis "$svc/redis" 56392 no
fi
if [ -z "${DOCKER_HOST:-}" ] && ! docker version >/dev/null 2>&1; then
  start_dockerd "$svc/docker"
fi
if [ -z "${BERTH_TEST_S3_URL:-}" ]; then
  rm -rf "$svc/s3"; start_s3 "$svc/s3" 56900
fi
phase "building local test images (busybox, Traefik, PostgreSQL, Redis, MariaDB)" "first time about 20 s"
build_test_images
phase "building Berth's own image (Debian 13 base by debootstrap, this build)" "first time about 3 min, then seconds"
build_berth_image berth-local/berth:test debug
export BERTH_TEST_IMAGE=berth-local/berth:test

phase "compiling and running the tests" "first time about 8 min"
export BERTH_BIN=$PWD/target/debug/berth
export BERTH_SITE_ROOT=$PWD/target/site
# `frontend` is the WASM entry: built for the host it would unify `leptos/hydrate` into
# the server (and the `berth` binary the browser test runs), so it is excluded here.
# Every test binary is built first, then each runs under a time limit
# (BERTH_TEST_TIMEOUT seconds, default 900): a hang fails its binary by name
# and the others still run; the run ends with the list of what failed.
cargo test --locked --workspace --exclude frontend --no-run --message-format=json-render-diagnostics \
  > target/test-binaries.json
mapfile -t binaries < <(python3 scripts/test_binaries.py target/test-binaries.json)
if [ "${#binaries[@]}" -lt 20 ]; then
  echo "FAILED: only ${#binaries[@]} test binaries were found in target/test-binaries.json" >&2
  exit 1
fi
failed=()
for b in "${binaries[@]}"; do
  IFS=$'\t' read -r dir name exe <<<"$b"
  echo "     Running $name ($exe)"
  rc=0
  (cd "$dir" && timeout --kill-after=10 "${BERTH_TEST_TIMEOUT:-900}" "$exe" --test-threads "${BERTH_TEST_THREADS:-4}") || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    failed+=("$name (TIMED OUT after ${BERTH_TEST_TIMEOUT:-900} s)")
  elif [ "$rc" -ne 0 ]; then
    failed+=("$name")
  fi
done
cargo test --locked --workspace --exclude frontend --doc || failed+=("doc tests")
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
