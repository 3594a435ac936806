#!/usr/bin/env bash
# Builds Berth: the hydration bundle (release WASM -> wasm-bindgen -> wasm-opt),
# the Tailwind CSS, the static assets, and the `berth` server binary.
#   PROFILE=release scripts/build.sh   builds the server in release mode (default: debug)
# Output: target/site/ (served as the site root) and target/<profile>/berth.
# Every step is incremental: a second run with no changes takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/tools.sh
TOOLS=$PWD/.tools
SITE=target/site
PKG=$SITE/pkg
mkdir -p "$PKG"

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

step "wasm (frontend, profile wasm-release)"
cargo build --locked -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release
WASM=target/wasm32-unknown-unknown/wasm-release/frontend.wasm
if [ ! -f "$PKG/berth_bg.wasm" ] || [ "$WASM" -nt "$PKG/berth_bg.wasm" ]; then
  step "wasm-bindgen + wasm-opt"
  wasm-bindgen --target web --no-typescript --out-dir "$PKG" --out-name berth "$WASM"
  # The features the Rust wasm32 target enables by default; wasm-opt must accept them.
  "$TOOLS/npm/node_modules/.bin/wasm-opt" -Oz \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$PKG/berth_bg.wasm" -o "$PKG/berth_bg.wasm"
fi

step "css (Tailwind v4)"
"$TOOLS/venv/bin/tailwindcss" -i style/main.css -o "$PKG/berth.css" --minify 2>&1 | grep -v '^≈' || true
test -s "$PKG/berth.css"

step "precompressed copies (served to clients that accept gzip)"
for f in "$PKG/berth_bg.wasm" "$PKG/berth.js" "$PKG/berth.css"; do
  [ "$f.gz" -nt "$f" ] || gzip -9 -k -f "$f"
done

step "static assets"
cp -r public/. "$SITE/"

step "server (${PROFILE:-debug})"
if [ "${PROFILE:-debug}" = release ]; then
  cargo build --locked -p server --release
else
  cargo build --locked -p server
fi
