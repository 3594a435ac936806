//! Cloning a repository with the `git` program: an argument vector (never a shell
//! string), `--` before positional values, transports allow-listed by git's own
//! `protocol.*.allow` settings on top of the URL grammar, no prompts, and a deploy
//! key written 0600 to a temporary file that is removed when the clone ends.

use crate::logs::DeployLog;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct Checkout {
    pub dir: PathBuf,
    pub commit: String,
    /// The ssh host keys accepted on a first clone (`known_hosts` lines), to pin.
    pub learned_host_keys: Option<String>,
}

/// How a repository URL is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Https,
    Ssh,
    File,
}

/// The transport, host and port of a repository URL (in the forms
/// [`crate::apps::spec::parse_git_url`] accepts). The host is letters, digits,
/// `.` and `-` only: it reaches an ssh command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
}

pub fn endpoint(url: &str) -> Option<Endpoint> {
    if url.starts_with("file://") {
        return Some(Endpoint {
            transport: Transport::File,
            host: String::new(),
            port: 0,
        });
    }
    let (transport, authority, with_port) = if let Some(rest) = url.strip_prefix("https://") {
        (Transport::Https, rest.split('/').next()?, true)
    } else if let Some(rest) = url.strip_prefix("ssh://") {
        (Transport::Ssh, rest.split('/').next()?, true)
    } else {
        // scp-like `user@host:path`: the colon starts the path, there is no port.
        (Transport::Ssh, url.split_once(':')?.0, false)
    };
    let host_port = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let default = if transport == Transport::Https { 443 } else { 22 };
    let (host, port) = match host_port.split_once(':') {
        Some((h, p)) if with_port => (h, p.parse().ok()?),
        Some(_) => return None,
        None => (host_port, default),
    };
    let ok = !host.is_empty()
        && !host.starts_with('-')
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
    ok.then(|| Endpoint {
        transport,
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// Maps git's complaints to the reasons the UI shows. `pinned`: an ssh host
/// key was pinned at an earlier clone.
pub fn classify_failure(stderr: &str, pinned: bool) -> String {
    let s = stderr.to_ascii_lowercase();
    if pinned && (s.contains("host key verification failed") || s.contains("remote host identification has changed")) {
        return "clone failed: the server's ssh host key is not the one pinned at the first clone; if it really \
                changed, an admin can reset the pin on the application's Source tab"
            .into();
    }
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
    } else if s.contains("redirect") {
        "the server answered with a redirect (not followed: use the repository's final URL)"
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

/// What to clone, and how to reach it.
pub struct Remote<'a> {
    pub url: &'a str,
    pub branch: &'a str,
    pub deploy_key: Option<&'a str>,
    pub allow_local: bool,
    /// The checked address of the URL's host: git connects there and nowhere
    /// else (https: `http.curloptResolve`; ssh: `HostName`).
    pub pin: Option<(Endpoint, IpAddr)>,
    /// ssh host keys pinned at the first clone; `None`: accept and learn them.
    pub known_hosts: Option<&'a str>,
}

/// How much of git's error output is kept for [`classify_failure`].
const STDERR_TAIL: usize = 64 * 1024;

/// Reads `from` to its end as capped lines; `keep` gets each finished one.
async fn read_lines(mut from: impl tokio::io::AsyncRead + Unpin, keep: &mut impl FnMut(crate::lines::Piece)) {
    let mut splitter = crate::lines::Splitter::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => splitter.push(&buf[..n], keep),
        }
    }
    splitter.finish(keep);
}

/// Clones `branch` of the remote (shallow) into `dest`.
pub async fn clone(
    remote: Remote<'_>,
    dest: &Path,
    log: &DeployLog,
    cancel: &CancellationToken,
) -> Result<Checkout, String> {
    let work = dest.parent().ok_or("bad checkout path")?;
    let key_file = match remote.deploy_key {
        Some(key) => {
            let path = work.join("deploy_key");
            write_private(&path, key).map_err(|e| format!("writing the deploy key: {e}"))?;
            Some(path)
        }
        None => None,
    };
    let _cleanup = KeyGuard(key_file.clone());
    let known_hosts = work.join("known_hosts");
    let _ = std::fs::remove_file(&known_hosts);
    if let Some(pinned) = remote.known_hosts {
        write_private(&known_hosts, pinned).map_err(|e| format!("writing the pinned host keys: {e}"))?;
    }
    let mut cmd = tokio::process::Command::new("git");
    cmd.args([
        "-c",
        "protocol.allow=never",
        "-c",
        "protocol.https.allow=always",
        "-c",
        "protocol.ssh.allow=always",
        // A redirect could lead anywhere: only the checked address is reached.
        "-c",
        "http.followRedirects=false",
    ]);
    if remote.allow_local {
        cmd.args(["-c", "protocol.file.allow=always"]);
    }
    let mut ssh = String::from("ssh -o BatchMode=yes -o IdentitiesOnly=yes");
    if let Some((ep, addr)) = &remote.pin {
        match ep.transport {
            Transport::Https => {
                let addr = match addr {
                    IpAddr::V6(v6) => format!("[{v6}]"),
                    IpAddr::V4(v4) => v4.to_string(),
                };
                cmd.arg("-c")
                    .arg(format!("http.curloptResolve={}:{}:{addr}", ep.host, ep.port));
            }
            // The host is letters, digits, dots and dashes ([`endpoint`]) and the
            // address an IP address: safe on the command line git hands a shell.
            Transport::Ssh => ssh.push_str(&format!(" -o HostName={addr} -o HostKeyAlias={}", ep.host)),
            Transport::File => {}
        }
    }
    // The key and known_hosts paths are Berth's own (IDs only): git runs
    // GIT_SSH_COMMAND through a shell, which is why no user input may reach it.
    if let Some(k) = &key_file {
        ssh.push_str(&format!(" -i '{}'", k.display()));
    }
    let strict = if remote.known_hosts.is_some() {
        "yes"
    } else {
        "accept-new"
    };
    ssh.push_str(&format!(
        " -o StrictHostKeyChecking={strict} -o UserKnownHostsFile='{}' -o GlobalKnownHostsFile=/dev/null",
        known_hosts.display()
    ));
    cmd.args([
        "clone",
        "--depth",
        "1",
        "--single-branch",
        "--no-tags",
        "--progress",
        "--branch",
        remote.branch,
        "--",
        remote.url,
    ])
    .arg(dest)
    .env("GIT_TERMINAL_PROMPT", "0")
    .env("GIT_CONFIG_NOSYSTEM", "1")
    .env("GIT_PROTOCOL_FROM_USER", "0")
    .env("HOME", work)
    .env("GIT_SSH_COMMAND", ssh)
    .env_remove("GIT_SSH")
    .env_remove("GIT_ASKPASS")
    .env_remove("SSH_ASKPASS")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("cannot run git: {e}"))?;
    let stderr = child.stderr.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let collect = async {
        // Bounded: lines end at \n or \r and are capped, and only the tail of the
        // error output is kept (a remote printing without end cannot grow memory).
        let mut tail = String::new();
        read_lines(stderr, &mut |p: crate::lines::Piece| {
            // Progress meters repaint with \r: log only their final state.
            if p.repaint || p.text.trim().is_empty() {
                return;
            }
            log.output(&p.text);
            tail.push_str(&p.text);
            tail.push('\n');
            if tail.len() > STDERR_TAIL {
                let mut cut = tail.len() - STDERR_TAIL / 2;
                while !tail.is_char_boundary(cut) {
                    cut += 1;
                }
                tail.drain(..cut);
            }
        })
        .await;
        read_lines(stdout, &mut |p: crate::lines::Piece| {
            if !p.repaint {
                log.output(&p.text)
            }
        })
        .await;
        tail
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
        return Err(classify_failure(&stderr_text, remote.known_hosts.is_some()));
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
    let learned_host_keys = match (&remote.pin, remote.known_hosts) {
        (Some((ep, _)), None) if ep.transport == Transport::Ssh => std::fs::read_to_string(&known_hosts)
            .ok()
            .filter(|k| !k.trim().is_empty()),
        _ => None,
    };
    Ok(Checkout {
        dir: dest.to_owned(),
        commit,
        learned_host_keys,
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
            classify_failure("warning: Could not find remote branch nope to clone.\nfatal: Remote branch nope not found in upstream origin", false),
            "clone failed: ref not found (no such branch)"
        );
        assert_eq!(
            classify_failure(
                "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
                false
            ),
            "clone failed: authentication failed"
        );
        assert_eq!(
            classify_failure("fatal: '/tmp/x' does not appear to be a git repository", false),
            "clone failed: repository not found"
        );
    }

    #[test]
    fn endpoints_of_every_url_form() {
        let ep = |u: &str| endpoint(u).map(|e| (e.transport, e.host, e.port));
        assert_eq!(
            ep("https://GitHub.com/o/r.git"),
            Some((Transport::Https, "github.com".into(), 443))
        );
        assert_eq!(
            ep("https://git.example.com:8443/o/r"),
            Some((Transport::Https, "git.example.com".into(), 8443))
        );
        assert_eq!(
            ep("ssh://git@github.com/o/r.git"),
            Some((Transport::Ssh, "github.com".into(), 22))
        );
        assert_eq!(
            ep("ssh://git@127.0.0.1:2222/srv/r.git"),
            Some((Transport::Ssh, "127.0.0.1".into(), 2222))
        );
        assert_eq!(
            ep("git@github.com:o/r.git"),
            Some((Transport::Ssh, "github.com".into(), 22))
        );
        assert_eq!(ep("file:///tmp/r").map(|e| e.0), Some(Transport::File));
        assert_eq!(ep("git@-oProxyCommand=x:o/r"), None);
        assert!(classify_failure(
            "Host key verification failed.\nfatal: Could not read from remote repository.",
            true
        )
        .contains("not the one pinned at the first clone"));
        assert_eq!(
            classify_failure(
                "Host key verification failed.\nfatal: Could not read from remote repository.",
                false
            ),
            "clone failed: authentication failed"
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
