#!/bin/bash
# Idle memory of one `berth` binary (docs/BENCHMARKS.md, "Idle memory and the
# release profile"): `berth serve` started as the bench starts it (worker on,
# Docker connected, Traefik managed from the locally built image), on a
# database a first start migrated; prints VmRSS, RssAnon and RssFile 2 s after
# the first /health 200, and with SMAPS=1 every mapping above 500 kB resident.
#
# Usage (against the test services: DATABASE_URL, REDIS_URL, DOCKER_HOST set):
#   bench/idle_rss.sh target/release/berth
set -euo pipefail
bin=$1
inst=bi$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
db=${inst}db data=$(mktemp -d) key=$(openssl rand -hex 32) port=$((20000 + RANDOM % 20000))
psql "$DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
cleanup() {
  docker rm -f "$inst-traefik" >/dev/null 2>&1 || true
  docker network ls -q --filter "name=$inst" | xargs -r docker network rm >/dev/null 2>&1 || true
  psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
run() {
  BERTH_WORKER=on BERTH_INSTANCE=$inst BERTH_NETWORK=$inst BERTH_PROXY_NAME=$inst-traefik \
    BERTH_TRAEFIK_IMAGE=berth-test/traefik:3 BERTH_ALLOW_LOCAL_IMAGES=on BERTH_PROXY_BIND=127.0.0.1 \
    BERTH_HTTP_PORT=$((port + 1)) BERTH_HTTPS_PORT=$((port + 2)) \
    BERTH_DATA_DIR=$data BERTH_TRAEFIK_DIR=$data/traefik \
    DATABASE_URL=${DATABASE_URL%/*}/$db BERTH_REDIS_PREFIX=$inst: BERTH_LISTEN=127.0.0.1:$port \
    BERTH_SECRET_KEY=$key RUST_LOG=warn "$bin" serve >"$data/log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 400); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/health" && break
    sleep 0.05
  done
  sleep 2
  grep -E "VmRSS|RssAnon|RssFile" "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' '
  echo
  if [ -n "${SMAPS:-}" ]; then
    awk '/^[0-9a-f]+-/{m=$0} /^Rss:/{if ($2>500) print $2" kB  "m}' "/proc/$pid/smaps"
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}
run >/dev/null # the first start migrates the database; the second is measured
run
