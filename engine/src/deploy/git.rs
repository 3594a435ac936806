//! Cloning a repository with the `git` program: an argument vector (never a shell
//! string), `--` before positional values, transports allow-listed by git's own
//! `protocol.*.allow` settings on top of the URL grammar, no prompts, and a deploy
//! key written 0600 to a temporary file that is removed when the clone ends.

use crate::logs::DeployLog;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct Checkout {
    pub dir: PathBuf,
    pub commit: String,
}

/// Maps git's complaints to the reasons the UI shows.
pub fn classify_failure(stderr: &str) -> String {
    let s = stderr.to_ascii_lowercase();
    let why = if s.contains("remote branch") && s.contains("not found") {
        "ref not found (no such branch)"
    } else if s.contains("authentication failed")
        || s.contains("permission denied")
        || s.contains("could not read username")
        || s.contains("terminal prompts disabled")
        || s.contains("host key verification failed")
    {
        "authentication failed"
    } else if s.contains("repository not found")
        || s.contains("does not appear to be a git repository")
        || s.contains("not found")
    {
        "repository not found"
    } else if s.contains("could not resolve host") || s.contains("connection refused") || s.contains("timed out") {
        "the repository host is unreachable"
    } else if s.contains("transport") && s.contains("not allowed") {
        "this transport is not allowed"
    } else {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("git failed");
        return format!("clone failed: {}", last.trim());
    };
    format!("clone failed: {why}")
}

/// Clones `branch` of `url` (shallow) into `dest`.
pub async fn clone(
    url: &str,
    branch: &str,
    deploy_key: Option<&str>,
    allow_local: bool,
    dest: &Path,
    log: &DeployLog,
    cancel: &CancellationToken,
) -> Result<Checkout, String> {
    let work = dest.parent().ok_or("bad checkout path")?;
    let key_file = match deploy_key {
        Some(key) => {
            let path = work.join("deploy_key");
            write_private(&path, key).map_err(|e| format!("writing the deploy key: {e}"))?;
            Some(path)
        }
        None => None,
    };
    let _cleanup = KeyGuard(key_file.clone());
    let mut cmd = tokio::process::Command::new("git");
    cmd.args([
        "-c",
        "protocol.allow=never",
        "-c",
        "protocol.https.allow=always",
        "-c",
        "protocol.ssh.allow=always",
    ]);
    if allow_local {
        cmd.args(["-c", "protocol.file.allow=always"]);
    }
    cmd.args([
        "clone",
        "--depth",
        "1",
        "--single-branch",
        "--no-tags",
        "--progress",
        "--branch",
        branch,
        "--",
        url,
    ])
    .arg(dest)
    .env("GIT_TERMINAL_PROMPT", "0")
    .env("GIT_CONFIG_NOSYSTEM", "1")
    .env("GIT_PROTOCOL_FROM_USER", "0")
    .env("HOME", work)
    .env_remove("GIT_SSH")
    .env_remove("GIT_ASKPASS")
    .env_remove("SSH_ASKPASS")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    if let Some(k) = &key_file {
        // The key path is Berth's own (IDs only); git runs this through a shell,
        // which is why no user input may ever reach it.
        cmd.env(
            "GIT_SSH_COMMAND",
            format!(
                "ssh -i '{}' -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile='{}' -o BatchMode=yes",
                k.display(),
                work.join("known_hosts").display()
            ),
        );
    } else {
        cmd.env(
            "GIT_SSH_COMMAND",
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        );
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run git: {e}"))?;
    let stderr = child.stderr.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let collect = async {
        let mut all = String::new();
        let mut lines = BufReader::new(stderr).split(b'\n');
        while let Ok(Some(raw)) = lines.next_segment().await {
            let text = String::from_utf8_lossy(&raw);
            // Progress lines repaint with \r: log only their final state.
            let last = text.rsplit('\r').next().unwrap_or("").to_owned();
            if !last.trim().is_empty() {
                log.output(&last);
                all.push_str(&last);
                all.push('\n');
            }
        }
        let mut out = BufReader::new(stdout).lines();
        while let Ok(Some(l)) = out.next_line().await {
            log.output(&l);
        }
        all
    };
    let (status, stderr_text) = tokio::select! {
        r = async { let text = collect.await; (child.wait().await, text) } => r,
        _ = cancel.cancelled() => {
            let _ = child.kill().await;
            return Err("cancelled".into());
        }
    };
    let status = status.map_err(|e| format!("git: {e}"))?;
    if !status.success() {
        return Err(classify_failure(&stderr_text));
    }
    let out = tokio::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dest)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", work)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("git rev-parse: {e}"))?;
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || commit.len() < 40 {
        return Err("clone failed: could not read the commit".into());
    }
    Ok(Checkout {
        dir: dest.to_owned(),
        commit,
    })
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    if !contents.ends_with('\n') {
        f.write_all(b"\n")?;
    }
    Ok(())
}

struct KeyGuard(Option<PathBuf>);

impl Drop for KeyGuard {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `base/rel`, resolved (symlinks included) and required to stay inside `base`.
pub fn confined(base: &Path, rel: &str, field: &str) -> Result<PathBuf, String> {
    let base = base.canonicalize().map_err(|e| format!("checkout: {e}"))?;
    let joined = base.join(rel);
    let real = joined
        .canonicalize()
        .map_err(|_| format!("{field} {rel:?} does not exist in the repository"))?;
    if !real.starts_with(&base) {
        return Err(format!("{field} {rel:?} points outside the repository"));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_get_specific_reasons() {
        assert_eq!(
            classify_failure("warning: Could not find remote branch nope to clone.\nfatal: Remote branch nope not found in upstream origin"),
            "clone failed: ref not found (no such branch)"
        );
        assert_eq!(
            classify_failure("fatal: could not read Username for 'https://github.com': terminal prompts disabled"),
            "clone failed: authentication failed"
        );
        assert_eq!(
            classify_failure("fatal: '/tmp/x' does not appear to be a git repository"),
            "clone failed: repository not found"
        );
    }

    #[test]
    fn confinement_rejects_symlink_escapes() {
        let dir = std::env::temp_dir().join(format!("berth-confine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("repo/web")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("repo/escape")).unwrap();
        assert!(confined(&dir.join("repo"), "web", "subdir").is_ok());
        assert!(confined(&dir.join("repo"), "escape", "subdir")
            .unwrap_err()
            .contains("outside"));
        assert!(confined(&dir.join("repo"), "missing", "subdir")
            .unwrap_err()
            .contains("does not exist"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
