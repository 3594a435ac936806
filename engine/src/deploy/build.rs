//! Building an image through the Engine API: the context directory is packed into
//! a tar file on disk, streamed to `POST /build`, and the build's output goes to
//! the deployment log. Static sites get a generated Dockerfile on top of Berth's
//! static-server base image.

use crate::apps::spec::Build;
use crate::docker::DockerError;
use crate::logs::DeployLog;
use crate::Engine;
use futures::StreamExt;
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// The Dockerfile Berth writes for static sites (busybox httpd serves /srv/www).
pub const STATIC_DOCKERFILE: &str = "Dockerfile.berth-static";
pub const STATIC_PORT: u16 = 8080;

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

/// Builds `tag` from the checkout; the error is the reason the deployment fails with.
/// No labels are added: the legacy builder turns each into an extra step with an
/// intermediate container (~0.1 s each, docs/BENCHMARKS.md); images are tracked
/// by their `berth/<app>:<deployment>` tag instead.
#[allow(clippy::too_many_arguments)]
pub async fn build(
    engine: &Engine,
    build: &Build,
    root: &Path,
    work: &Path,
    tag: &str,
    log: &DeployLog,
    cancel: &CancellationToken,
) -> Result<(), String> {
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
    let tp = tar_path.clone();
    tokio::task::spawn_blocking(move || pack(&context, &tp, extra.as_deref().map(|d| (STATIC_DOCKERFILE, d))))
        .await
        .map_err(|e| format!("packing the build context: {e}"))?
        .map_err(|e| format!("packing the build context: {e}"))?;
    let size = std::fs::metadata(&tar_path).map(|m| m.len()).unwrap_or(0);
    log.line(format!("==> build context {:.1} MB", size as f64 / 1e6));

    let docker = engine.docker.client().await.map_err(|e| e.to_string())?;
    let file = tokio::fs::File::open(&tar_path).await.map_err(|e| e.to_string())?;
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
    let options = bollard::query_parameters::BuildImageOptions {
        dockerfile,
        t: Some(tag.to_owned()),
        target: target.unwrap_or_default(),
        buildargs: Some(args.into_iter().collect()),
        rm: true,
        forcerm: true,
        version: bollard::query_parameters::BuilderVersion::BuilderV1,
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(body));
    let mut step = String::from("0");
    loop {
        let item = tokio::select! {
            i = stream.next() => i,
            // Dropping the stream closes the request; the engine stops the build.
            _ = cancel.cancelled() => return Err("cancelled".into()),
        };
        let Some(item) = item else { break };
        match item {
            Ok(info) => {
                if let Some(text) = info.stream {
                    for l in text.lines() {
                        if let Some(rest) = l.strip_prefix("Step ") {
                            step = rest.split(' ').next().unwrap_or("?").to_owned();
                        }
                        if !l.is_empty() {
                            log.output(l);
                        }
                    }
                }
                if let Some(s) = info.status {
                    log.output(s);
                }
                if let Some(e) = info.error.or(info.error_detail.and_then(|d| d.message)) {
                    log.output(&e);
                    return Err(format!("build failed at step {step}: {}", e.trim()));
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(format!("build failed at step {step}: {error}"));
            }
            Err(e) => return Err(format!("build failed at step {step}: {e}")),
        }
    }
    Ok(())
}

/// Pulls `image` (with registry credentials when given), logging progress.
pub async fn pull(
    engine: &Engine,
    image: &str,
    credentials: Option<bollard::auth::DockerCredentials>,
    log: &DeployLog,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let docker = engine.docker.client().await.map_err(|e: DockerError| e.to_string())?;
    let (from, tag) = split_tag(image);
    let options = bollard::query_parameters::CreateImageOptionsBuilder::new()
        .from_image(from)
        .tag(tag)
        .build();
    let mut stream = docker.create_image(Some(options), None, credentials);
    let mut last = String::new();
    loop {
        let item = tokio::select! {
            i = stream.next() => i,
            _ = cancel.cancelled() => return Err("cancelled".into()),
        };
        let Some(item) = item else { break };
        match item {
            Ok(info) => {
                if let Some(s) = info.status {
                    if s != last {
                        log.output(&s);
                        last = s;
                    }
                }
            }
            Err(e) => return Err(format!("pulling {image} failed: {e}")),
        }
    }
    Ok(())
}

/// `repo[:tag]` → (`repo`, `tag`); a digest reference keeps its digest in `repo`.
pub(crate) fn split_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_after_the_last_slash() {
        assert_eq!(split_tag("nginx"), ("nginx", "latest"));
        assert_eq!(split_tag("localhost:5000/app:v1"), ("localhost:5000/app", "v1"));
        assert_eq!(split_tag("localhost:5000/app"), ("localhost:5000/app", "latest"));
    }

    #[test]
    fn static_dockerfile_serves_the_directory() {
        let d = static_dockerfile("busybox:1.36");
        assert!(d.starts_with("FROM busybox:1.36\n"));
        assert!(d.contains("\"-h\", \"/srv/www\""));
    }
}
