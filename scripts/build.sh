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
  cargo build --locked --quiet --profile tool -p wasm-split
  local split=target/tool/wasm-split
  if [ ! -f "$pkg/berth_bg.wasm" ] || [ "$wasm" -nt "$pkg/berth_bg.wasm" ] || [ "$split" -nt "$pkg/berth_bg.wasm" ]; then
    # The bundle is split at its lazy routes (see app/src/pages/mod.rs): the
    # split tool writes the chunks, their loader and the manifest into pkg/ and
    # the main module beside the input; wasm-bindgen keeps the linker's exports
    # the chunks import; wasm-opt shrinks each module.
    step "wasm-split + wasm-bindgen + wasm-opt"
    rm -f "$pkg"/*.wasm "$pkg"/*.wasm.gz "$pkg"/*.wasm.br "$pkg"/__wasm_split*
    "$split" "$wasm" "$pkg" berth >/dev/null
    wasm-bindgen --target web --no-typescript --keep-lld-exports --no-demangle \
      --out-dir "$pkg" --out-name berth "${wasm%.wasm}_split.wasm"
    # The feature flags are those the Rust wasm32 target enables by default,
    # which wasm-opt must accept. (It warns about a name subsection it does not
    # know, from --no-demangle: harmless.)
    ls "$pkg"/*.wasm | xargs -P "$(nproc)" -I{} "$tools/npm/node_modules/.bin/wasm-opt" -Oz \
      --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-reference-types --enable-multivalue {} -o {} \
      2> >(grep -v 'unknown name subsection' >&2)
  fi
  step "css (Tailwind v4)"
  "$tools/venv/bin/tailwindcss" -i style/main.css -o "$pkg/berth.css" --minify 2>&1 | grep -v '^≈' || true
  test -s "$pkg/berth.css"
  # Served precompressed: Brotli where the browser accepts it, else gzip.
  for f in "$pkg"/*.wasm "$pkg"/*.js "$pkg/berth.css"; do
    [ "$f.gz" -nt "$f" ] || gzip -9 -k -f "$f"
    [ "$f.br" -nt "$f" ] || brotli -q 11 -k -f "$f"
  done
  # Each build is also reached as pkg/<id>/ (a link back to pkg/), the id from
  # the modules' content: the server points pages there (pkg/BUILD), so a page
  # loads only its own release's files, and the browser may keep them for good.
  local id
  id=$(cat "$pkg"/*.wasm "$pkg"/*.js | sha256sum | cut -c1-16)
  find "$pkg" -maxdepth 1 -type l -delete
  ln -s . "$pkg/$id"
  echo "$id" > "$pkg/BUILD"
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
