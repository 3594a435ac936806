//! `wasm-split <input.wasm> <pkg-dir> <out-name>`: the step cargo-leptos runs for
//! `--split`, for a build driven by `scripts/build.sh` instead.
//!
//! The input is the browser bundle linked with `--emit-relocs`. Every function
//! reachable only through a `#[lazy]` split point (a lazy route's view, a lazy
//! server function) moves into a chunk under `<pkg-dir>`; what two chunks share
//! moves into a chunk of its own. The main module goes to `<input>_split.wasm`,
//! for wasm-bindgen (with `--keep-lld-exports`, since the chunks import the main
//! module's functions by their linker names). The loader script and the manifest
//! get the names Leptos's `HydrationScripts` looks for, so the server can tell
//! the browser which chunks a route needs before it asks for them.
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// The loader's name when files are not hashed, which Leptos's `HydrationScripts` expects.
const LINK_NAME: &str = "__wasm_split.______________________.js";
const LINK_NAME_RELATIVE: &str = "./__wasm_split.______________________.js";

/// Where the generated loader notes that a chunk failed to load.
const LOAD_FAILED: &str = "console.error(e);\n            success = false;";

/// How the generated loader fetches each chunk.
const CHUNK_FETCH: &str = "const src = fetch(new URL(";

/// Makes the loader retry a chunk fetch that fails on the network (a dropped
/// connection, a changed network) or with a server error, four times with a
/// growing pause, and reload the page when a chunk still cannot be used.
/// Leptos's lazy routes turn a failed load into a panic, which ends the page,
/// so a transient failure must not reach them.
fn harden_loader(loader: &std::path::Path) -> Result<()> {
    let js = std::fs::read_to_string(loader).with_context(|| format!("reading {}", loader.display()))?;
    let chunks = js.matches(CHUNK_FETCH).count();
    let all = js.matches("fetch(").count();
    if chunks == 0 || chunks != all {
        bail!(
            "{}: expected every fetch to be `{CHUNK_FETCH}…`, found {chunks} of {all}",
            loader.display()
        );
    }
    let retry = r#"async function fetchWithRetry(url) {
    for (let attempt = 0; ; attempt++) {
        try {
            const response = await fetch(url);
            if (response.ok || response.status < 500 || attempt >= 4) return response;
        } catch (e) {
            if (attempt >= 4) throw e;
        }
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
    }
}
function reloadOnce() {
    try {
        const last = Number(sessionStorage.getItem("berth-chunk-reload") || 0);
        if (Date.now() - last < 60000) return;
        sessionStorage.setItem("berth-chunk-reload", String(Date.now()));
    } catch (_) {
        return;
    }
    location.reload();
}
"#;
    let js = js.replace(CHUNK_FETCH, "const src = fetchWithRetry(new URL(");
    // When a chunk still does not load (or does not fit the main module: a new
    // release replaced the files under an open page), the page reloads to get a
    // matching bundle, at most once a minute, so a lasting failure shows.
    if js.matches(LOAD_FAILED).count() != 1 {
        bail!("{}: expected one `{LOAD_FAILED}` in the loader", loader.display());
    }
    let js = js.replace(LOAD_FAILED, &format!("{LOAD_FAILED}\n            reloadOnce();"));
    // After the import line, which must stay first.
    let (head, tail) = js.split_once('\n').context("the loader is one line")?;
    std::fs::write(loader, format!("{head}\n{retry}{tail}"))?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, pkg, name] = args.as_slice() else {
        bail!("usage: wasm-split <input.wasm> <pkg-dir> <out-name>");
    };
    let input = PathBuf::from(input);
    let pkg = PathBuf::from(pkg);
    let wasm = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
    let stem = input
        .file_stem()
        .and_then(|s| s.to_str())
        .context("input has no file name")?;
    let main_out = input.with_file_name(format!("{stem}_split.wasm"));
    // Chunks load relative to the main JS module, which wasm-bindgen writes as `<name>.js`.
    let main_module = format!("./{name}.js");
    let split = wasm_split_cli_support::transform({
        let mut opts = wasm_split_cli_support::Options::new(&wasm);
        opts.output_dir = &pkg;
        opts.main_out_path = &main_out;
        opts.main_module = &main_module;
        // The name Leptos expects when files are not hashed.
        opts.link_name = LINK_NAME_RELATIVE;
        opts
    })
    .map_err(|e| anyhow::anyhow!("splitting {}: {e}", input.display()))?;
    harden_loader(&pkg.join(LINK_NAME))?;
    let manifest = serde_json::to_string_pretty(&split.prefetch_map)?;
    std::fs::write(pkg.join("__wasm_split_manifest.json"), manifest)?;
    for module in &split.split_modules {
        println!("{}", module.display());
    }
    Ok(())
}
