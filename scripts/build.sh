#!/usr/bin/env bash
# Builds Berth: the hydration bundle (release WASM -> wasm-bindgen -> wasm-opt),
# the Tailwind CSS, the static assets, and the `berth` server binary.
#   PROFILE=release scripts/build.sh   builds the server in release mode (default: debug)
# Output: target/site/ (served as the site root) and target/<profile>/berth.
# Every step is incremental: a second run with no changes takes seconds.
# scripts/run.sh and scripts/test.sh source this file and call build_berth.

build_berth() {
  local tools=$PWD/.tools site=target/site pkg=target/site/pkg
  local wasm=target/wasm32-unknown-unknown/wasm-release/frontend.wasm
  mkdir -p "$pkg"
  step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

  phase "building the browser bundle (WASM, CSS)" "first time about 3 min, then seconds"
  cargo build --locked --quiet -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release
  if [ ! -f "$pkg/berth_bg.wasm" ] || [ "$wasm" -nt "$pkg/berth_bg.wasm" ]; then
    step "wasm-bindgen + wasm-opt"
    wasm-bindgen --target web --no-typescript --out-dir "$pkg" --out-name berth "$wasm"
    # The features the Rust wasm32 target enables by default; wasm-opt must accept them.
    "$tools/npm/node_modules/.bin/wasm-opt" -Oz \
      --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-reference-types --enable-multivalue \
      "$pkg/berth_bg.wasm" -o "$pkg/berth_bg.wasm"
  fi
  step "css (Tailwind v4)"
  "$tools/venv/bin/tailwindcss" -i style/main.css -o "$pkg/berth.css" --minify 2>&1 | grep -v '^≈' || true
  test -s "$pkg/berth.css"
  # Served to clients that accept gzip.
  for f in "$pkg/berth_bg.wasm" "$pkg/berth.js" "$pkg/berth.css"; do
    [ "$f.gz" -nt "$f" ] || gzip -9 -k -f "$f"
  done
  cp -r public/. "$site/"

  phase "building the server (${PROFILE:-debug})" "first time about 4 min, then seconds"
  if [ "${PROFILE:-debug}" = release ]; then
    cargo build --locked --quiet -p server --release
  else
    cargo build --locked --quiet -p server
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/.."
  . scripts/phase.sh
  . scripts/deps.sh
  ensure_machine run
  phase "installing build tools" "first time about 3 min, then instant"
  scripts/tools.sh
  build_berth
  phase_summary
fi
