#!/usr/bin/env bash
# `make test`: every test. Builds the site and the server, then runs unit,
# integration and browser tests against real PostgreSQL, Redis, Docker and
# Chromium. Uses DATABASE_URL / REDIS_URL / DOCKER_HOST when set (.ci/run sets
# them); otherwise starts throwaway ones under target/test-services and stops
# them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
trap stop_services EXIT

scripts/build.sh

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
build_test_images
if [ -z "${BERTH_TEST_S3_URL:-}" ]; then
  rm -rf "$svc/s3"; start_s3 "$svc/s3" 56900
fi

export BERTH_BIN=$PWD/target/debug/berth
export BERTH_SITE_ROOT=$PWD/target/site
# `frontend` is the WASM entry: built for the host it would unify `leptos/hydrate` into
# the server (and the `berth` binary the browser test runs), so it is excluded here.
cargo test --locked --workspace --exclude frontend --no-fail-fast -- --test-threads "${BERTH_TEST_THREADS:-4}"
