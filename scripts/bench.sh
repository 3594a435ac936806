#!/usr/bin/env bash
# `make bench`: builds Berth in release mode and measures the budgets recorded in
# docs/BENCHMARKS.md against real PostgreSQL, Redis and Docker (started here unless
# DATABASE_URL / REDIS_URL / DOCKER_HOST are set). Prints Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
trap stop_services EXIT
PROFILE=release scripts/build.sh
svc=$PWD/target/bench-services
stop_leftovers "$svc"
if [ -z "${DATABASE_URL:-}" ]; then rm -rf "$svc/postgres"; start_postgres "$svc/postgres" 55444; fi
if [ -z "${REDIS_URL:-}" ]; then rm -rf "$svc/redis"; start_redis "$svc/redis" 56394 no; fi
if [ -z "${DOCKER_HOST:-}" ] && ! docker version >/dev/null 2>&1; then start_dockerd "$svc/docker"; fi
build_test_images
if [ -z "${BERTH_TEST_S3_URL:-}" ]; then rm -rf "$svc/s3"; start_s3 "$svc/s3" 56904; fi
export BERTH_BIN=$PWD/target/release/berth BERTH_SITE_ROOT=$PWD/target/site
cargo run --locked --release -q -p bench --bin bench
cargo run --locked --release -q -p bench --bin deploy
cargo run --locked --release -q -p bench --bin backup
cargo run --locked --release -q -p bench --bin events
cargo run --locked --release -q -p bench --bin metrics
