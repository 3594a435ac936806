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
        args: args.into_iter().collect(),
    })
}

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
