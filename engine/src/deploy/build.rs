//! What an image is built from: the context directory packed into a tar file on
//! disk (streamed to the engine by [`crate::docker`]), the Dockerfile inside it,
//! target and arguments. Static sites get a generated Dockerfile on top of
//! Berth's static-server base image.

use crate::apps::spec::Build;
use crate::docker::BuildSpec;
use crate::logs::DeployLog;
use crate::Engine;
use std::path::Path;

/// The Dockerfile Berth writes for static sites (busybox httpd serves /srv/www).
pub const STATIC_DOCKERFILE: &str = "Dockerfile.berth-static";
pub const STATIC_PORT: u16 = 8080;

/// The runtime a new application starts with: the defaults, and for a static
/// build the port its server listens on (the page and the API both create
/// apps through this).
pub fn default_runtime(build: &Build) -> crate::apps::spec::Runtime {
    let mut runtime = crate::apps::spec::Runtime::default();
    if matches!(build, Build::Static { .. }) {
        runtime.port = STATIC_PORT;
    }
    runtime
}

fn static_dockerfile(base: &str) -> String {
    format!(
        "FROM {base}\nCOPY . /srv/www\nEXPOSE {STATIC_PORT}\nCMD [\"httpd\", \"-f\", \"-v\", \"-p\", \"{STATIC_PORT}\", \"-h\", \"/srv/www\"]\n"
    )
}

/// Packs `dir` into `tar_path` (plus a generated Dockerfile for static builds).
fn pack(dir: &Path, tar_path: &Path, extra: Option<(&str, &str)>) -> std::io::Result<()> {
    let file = std::fs::File::create(tar_path)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.follow_symlinks(false);
    tar.append_dir_all(".", dir)?;
    if let Some((name, contents)) = extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, contents.as_bytes())?;
    }
    tar.into_inner()?.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Packs the build context into a tar file in the work directory and says how
/// to build it; the error is the reason the deployment fails with.
pub async fn prepare(
    engine: &Engine,
    build: &Build,
    root: &Path,
    work: &Path,
    tag: &str,
    log: &DeployLog,
) -> Result<BuildSpec, String> {
    let tar_path = work.join("context.tar");
    let (context, dockerfile, target, args, extra) = match build {
        Build::Dockerfile {
            dockerfile,
            context,
            target,
            args,
        } => {
            let ctx = super::git::confined(root, context, "build context")?;
            let df = super::git::confined(&ctx, dockerfile, "dockerfile")?;
            if !df.is_file() {
                return Err(format!("dockerfile {dockerfile:?} is not a file"));
            }
            let rel = df
                .strip_prefix(&ctx)
                .map_err(|_| format!("dockerfile {dockerfile:?} must be inside the build context"))?
                .to_string_lossy()
                .into_owned();
            (ctx, rel, target.clone(), args.clone(), None)
        }
        Build::Static { directory } => {
            let dir = super::git::confined(root, directory, "static directory")?;
            (
                dir,
                STATIC_DOCKERFILE.to_owned(),
                None,
                Default::default(),
                Some(static_dockerfile(&engine.deploy.static_image)),
            )
        }
    };
    // What the build starts from: never another app's build or an image ID.
    let text = match &extra {
        Some(generated) => generated.clone(),
        None => tokio::fs::read_to_string(context.join(&dockerfile))
            .await
            .map_err(|e| format!("reading the dockerfile: {e}"))?,
    };
    let args: Vec<(String, String)> = args.into_iter().collect();
    check_base_images(&text, &args)?;
    let tp = tar_path.clone();
    tokio::task::spawn_blocking(move || pack(&context, &tp, extra.as_deref().map(|d| (STATIC_DOCKERFILE, d))))
        .await
        .map_err(|e| format!("packing the build context: {e}"))?
        .map_err(|e| format!("packing the build context: {e}"))?;
    let size = std::fs::metadata(&tar_path).map(|m| m.len()).unwrap_or(0);
    log.line(format!("==> build context {:.1} MB", size as f64 / 1e6));
    Ok(BuildSpec {
        context: tar_path,
        dockerfile,
        tag: tag.to_owned(),
        target,
        args,
        // Images only on this host (tests, development) are used as they are.
        pull: !engine.deploy.host.allow_local_images,
        cpu_shares: Some(BUILD_CPU_SHARES),
    })
}

/// A build's CPU weight, a quarter of a container's default (1024): a build
/// takes whatever CPU is free, but the apps already serving (and Traefik, at
/// four times the default) run first when the cores are contended, so one
/// tenant's `cargo build` does not become every tenant's tail latency.
pub const BUILD_CPU_SHARES: i32 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_dockerfile_serves_the_directory() {
        let d = static_dockerfile("busybox:1.36");
        assert!(d.starts_with("FROM busybox:1.36\n"));
        assert!(d.contains("\"-h\", \"/srv/www\""));
    }
}

/// Checks every image a Dockerfile starts from or copies from (every stage's
/// `FROM`, `COPY --from=`), with `ARG` defaults and the build's arguments
/// substituted: none may be one of Berth's own builds (`berth/…`, another app's
/// image that is on this host without a pull) or an image ID. The error is the
/// reason the deployment fails with.
pub fn check_base_images(dockerfile: &str, args: &[(String, String)]) -> Result<(), String> {
    let mut vars: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let overrides: std::collections::HashMap<&str, &str> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut stages: Vec<String> = Vec::new();
    let mut seen_from = false;
    for (n, line) in instructions(dockerfile).into_iter().enumerate() {
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else { continue };
        let rest: Vec<&str> = words.collect();
        match keyword.to_ascii_uppercase().as_str() {
            // ARGs before the first FROM are the ones FROM lines can use.
            "ARG" if !seen_from => {
                for decl in &rest {
                    let (name, default) = decl.split_once('=').unwrap_or((decl, ""));
                    let value = overrides
                        .get(name)
                        .map(|v| (*v).to_owned())
                        .unwrap_or_else(|| unquote(default));
                    vars.insert(name.to_owned(), value);
                }
            }
            "FROM" => {
                seen_from = true;
                let operands: Vec<&str> = rest.iter().copied().filter(|w| !w.starts_with("--")).collect();
                let image = substitute(operands.first().copied().unwrap_or(""), &vars);
                if !stages.iter().any(|s| s.eq_ignore_ascii_case(&image)) {
                    refuse_image(&image).map_err(|why| format!("line {}: FROM {image}: {why}", n + 1))?;
                }
                if let (Some(as_), Some(name)) = (operands.get(1), operands.get(2)) {
                    if as_.eq_ignore_ascii_case("as") {
                        stages.push((*name).to_owned());
                    }
                }
            }
            "COPY" | "ADD" => {
                for flag in rest.iter().filter_map(|w| w.strip_prefix("--from=")) {
                    let source = substitute(flag, &vars);
                    let is_stage = stages.iter().any(|s| s.eq_ignore_ascii_case(&source))
                        || source.parse::<usize>().is_ok_and(|i| i < stages.len().max(1));
                    if !is_stage {
                        refuse_image(&source).map_err(|why| format!("line {}: COPY --from={source}: {why}", n + 1))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Why an image source's reference may not run, if it may not (the same rules
/// as for base images).
pub fn refuse_app_image(image: &str) -> Result<(), &'static str> {
    refuse_image(image)
}

/// Why an image reference may not be built from, if it may not.
fn refuse_image(image: &str) -> Result<(), &'static str> {
    let lower = image.to_ascii_lowercase();
    let name = ["docker.io/", "index.docker.io/", "registry-1.docker.io/"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower);
    if name.starts_with("berth/") {
        return Err("images under berth/ are Berth's builds of applications; build from a registry image instead");
    }
    let id = name.strip_prefix("sha256:").unwrap_or(name);
    if id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("an image ID names whatever is on this host; use a registry reference");
    }
    Ok(())
}

/// `$NAME`, `${NAME}`, `${NAME:-word}` and `${NAME:+word}` replaced from `vars`.
fn substitute(raw: &str, vars: &std::collections::HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            chars.next();
            let inner: String = chars.by_ref().take_while(|c| *c != '}').collect();
            let (name, op) = match inner.split_once(':') {
                Some((n, op)) => (n, Some(op)),
                None => (inner.as_str(), None),
            };
            let value = vars.get(name).filter(|v| !v.is_empty());
            match op {
                Some(op) if op.starts_with('-') => out.push_str(value.map(String::as_str).unwrap_or(&op[1..])),
                Some(op) if op.starts_with('+') => {
                    if value.is_some() {
                        out.push_str(&op[1..]);
                    }
                }
                _ => out.push_str(value.map(String::as_str).unwrap_or("")),
            }
        } else {
            let name: String =
                std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_')).collect();
            out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
        }
    }
    out
}

fn unquote(s: &str) -> String {
    s.trim_matches(|c| c == '"' || c == '\'').to_owned()
}

/// A Dockerfile's instructions: comments dropped, `\` continuations joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.starts_with('#') || trimmed.is_empty()) {
            continue;
        }
        if let Some(cont) = trimmed.strip_suffix('\\') {
            current.push_str(cont);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod base_image_tests {
    use super::check_base_images;

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn other_apps_builds_and_image_ids_are_refused_in_every_form() {
        let refused = |df: &str, a: &[(&str, &str)]| check_base_images(df, &args(a)).unwrap_err();
        assert!(refused("FROM berth/blog:0123456789abcdef\n", &[]).contains("berth/"));
        assert!(refused("FROM docker.io/Berth/blog:1\n", &[]).contains("berth/"));
        assert!(refused("ARG BASE=berth/blog:1\nFROM ${BASE}\n", &[]).contains("line 2"));
        assert!(refused("ARG BASE=alpine:3\nFROM $BASE\n", &[("BASE", "berth/blog:1")]).contains("berth/"));
        assert!(refused("FROM alpine:3 AS build\nRUN make\nFROM berth/x:1\n", &[]).contains("line 3"));
        assert!(refused("FROM alpine:3\nCOPY --from=berth/other:1 /app /app\n", &[]).contains("COPY"));
        assert!(refused("FROM \\\n  berth/split:1\n", &[]).contains("berth/"));
        assert!(refused("FROM 0123456789ab\n", &[]).contains("image ID"));
        assert!(refused("FROM sha256:0123456789abcdef0123\n", &[]).contains("image ID"));
        assert!(refused("ARG B\nFROM ${B:-berth/default:1}\n", &[]).contains("berth/"));
    }

    #[test]
    fn ordinary_dockerfiles_pass() {
        let ok = |df: &str| check_base_images(df, &[]).unwrap();
        ok("# syntax=docker/dockerfile:1\nFROM node:20 AS deps\nRUN npm ci\nFROM node:20-slim\nCOPY --from=deps /app /app\nCOPY --from=0 /x /x\n");
        ok("ARG VERSION=3.19\nFROM alpine:${VERSION}\nARG BERTH=berth/not-a-base\nRUN echo $BERTH\n");
        ok("FROM ghcr.io/acme/berth-tools:1\n");
    }
}
