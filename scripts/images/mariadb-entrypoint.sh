#!/bin/sh
# The test image's entrypoint, with the official `mariadb` image's contract:
# MARIADB_ROOT_PASSWORD (required, as there), MARIADB_DATABASE, MARIADB_USER and
# MARIADB_PASSWORD (each optional; the MYSQL_* names too); data in
# /var/lib/mysql, initialised on the first start; root@'%' and the user get
# the passwords. Runs as uid 999 (mysql).
set -e
datadir=/var/lib/mysql
root_pw=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}
database=${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}
user=${MARIADB_USER:-${MYSQL_USER:-}}
password=${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}
# SQL string literals and identifiers, quotes doubled.
lit() { printf "'%s'" "$(printf %s "$1" | sed "s/'/''/g; s/\\\\/\\\\\\\\/g")"; }
ident() { printf '`%s`' "$(printf %s "$1" | sed 's/`/``/g')"; }

if [ "$1" = mariadbd ] && [ ! -d "$datadir/mysql" ]; then
  if [ -z "$root_pw" ]; then
    echo "error: database is uninitialized and MARIADB_ROOT_PASSWORD is not set" >&2
    exit 1
  fi
  mariadb-install-db --no-defaults --datadir="$datadir" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve --rpm >/tmp/install-db.log 2>&1 || { cat /tmp/install-db.log >&2; exit 1; }
  mariadbd --no-defaults --datadir="$datadir" --skip-networking --socket=/tmp/init.sock --skip-log-bin &
  pid=$!
  i=0
  until mariadb-admin --no-defaults --socket=/tmp/init.sock -uroot ping --silent >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 300 ] || { echo "error: the first start did not answer" >&2; exit 1; }
    sleep 0.1
  done
  {
    echo "SET @@SESSION.SQL_LOG_BIN=0;"
    # As the official image: only root@localhost (and the system account)
    # remain of what mariadb-install-db made (it adds password-less root@host,
    # root@127.0.0.1 and root@::1), then root@'%' with the password.
    echo "DELETE FROM mysql.global_priv WHERE user NOT IN ('mariadb.sys', 'root') OR host <> 'localhost';"
    echo "FLUSH PRIVILEGES;"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(lit "$root_pw");"
    echo "CREATE USER 'root'@'%' IDENTIFIED BY $(lit "$root_pw");"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "$database" ]; then
      echo "CREATE DATABASE IF NOT EXISTS $(ident "$database");"
    fi
    if [ -n "$user" ] && [ -n "$password" ]; then
      echo "CREATE USER $(lit "$user")@'%' IDENTIFIED BY $(lit "$password");"
      [ -z "$database" ] || echo "GRANT ALL ON $(ident "$database").* TO $(lit "$user")@'%';"
    fi
    echo "FLUSH PRIVILEGES;"
  } | mariadb --no-defaults --socket=/tmp/init.sock -uroot
  kill "$pid"
  wait "$pid" || true
fi
if [ "$1" = mariadbd ]; then
  shift
  exec mariadbd --no-defaults --datadir="$datadir" --socket=/tmp/mysqld.sock --skip-name-resolve \
    --bind-address=0.0.0.0 "$@"
fi
exec "$@"
