//! What an application is made of, as validated values: its source (image or git),
//! how it is built, and how its container runs. Every user-typed string passes an
//! allow-list grammar here, once; the deploy pipeline takes these types and hands
//! them to git and Docker as argument vectors or API fields, never to a shell.

use crate::names::ValidationError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn err(field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, message)
}

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// An application name: a DNS label (lower-case letters, digits, `-`; 1–63
/// characters; no leading or trailing `-`). It names containers, images and the
/// default domain, so it is unique on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppName(String);

impl AppName {
    pub const FIELD: &'static str = "name";
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        Self::parse_as(Self::FIELD, raw)
    }
    pub fn parse_as(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(err(field, "is required"));
        }
        if !is_label(s) {
            return Err(err(
                field,
                "must be a DNS label: lower-case letters, digits and '-', 1-63 characters, not starting or ending with '-'",
            ));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A DNS host name (lower-cased): dot-separated labels, 1–253 characters, at least
/// one dot or the name `localhost`'s subdomains; no wildcard, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainName(String);

impl DomainName {
    pub const FIELD: &'static str = "host";
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim().to_ascii_lowercase();
        if s.is_empty() {
            return Err(err(Self::FIELD, "is required"));
        }
        if s.len() > 253 || !s.split('.').all(is_label) {
            return Err(err(
                Self::FIELD,
                "must be a DNS name: labels of lower-case letters, digits and '-', separated by dots",
            ));
        }
        if !s.contains('.') {
            return Err(err(Self::FIELD, "must have at least two labels (e.g. app.example.com)"));
        }
        Ok(Self(s))
    }
    /// A host a route may name: a [`DomainName`], or a wildcard `*.<name>` (one
    /// leading label, certificates only through DNS-01) under at least two labels.
    pub fn parse_route(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        match s.strip_prefix("*.") {
            Some(rest) => {
                let base = Self::parse(rest)?;
                Ok(Self(format!("*.{}", base.0)))
            }
            None => Self::parse(s),
        }
    }
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A path prefix for a route: `/` or `/segment[/segment...]` with segments of
/// `[A-Za-z0-9._~-]`, never `.` or `..`.
pub fn parse_path_prefix(raw: &str) -> Result<String, ValidationError> {
    const FIELD: &str = "path_prefix";
    let s = raw.trim();
    if s.is_empty() || s == "/" {
        return Ok("/".into());
    }
    let s = s.trim_end_matches('/');
    let Some(rest) = s.strip_prefix('/') else {
        return Err(err(FIELD, "must start with '/'"));
    };
    for seg in rest.split('/') {
        if seg.is_empty()
            || seg == "."
            || seg == ".."
            || !seg
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'~' | b'-'))
        {
            return Err(err(
                FIELD,
                "segments may use letters, digits, '.', '_', '~' and '-' (no '..', no empty segments)",
            ));
        }
    }
    if s.len() > 200 {
        return Err(err(FIELD, "must be at most 200 characters"));
    }
    Ok(s.to_owned())
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 characters.
pub fn parse_env_name(raw: &str) -> Result<String, ValidationError> {
    const FIELD: &str = "env";
    let s = raw.trim();
    let mut chars = s.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 128;
    if !ok {
        return Err(err(
            FIELD,
            format!("{s:?} is not a valid name: use [A-Za-z_][A-Za-z0-9_]*"),
        ));
    }
    Ok(s.to_owned())
}

/// An OCI image reference: `[registry[:port]/]path[:tag][@sha256:digest]`, with
/// the grammar of distribution/reference (lower-case path components).
pub fn parse_image(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(err(field, "is required"));
    }
    if s.len() > 255 {
        return Err(err(field, "must be at most 255 characters"));
    }
    let bad = || {
        err(
            field,
            "is not a valid image reference (e.g. nginx:1.27 or ghcr.io/org/app:tag)",
        )
    };
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let hex = d.strip_prefix("sha256:").ok_or_else(bad)?;
        if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
            return Err(bad());
        }
    }
    // A tag follows the last ':' that comes after the last '/'.
    let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        let b = t.as_bytes();
        if b.is_empty()
            || b.len() > 128
            || !(b[0].is_ascii_alphanumeric() || b[0] == b'_')
            || !b
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        {
            return Err(bad());
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // A first component with a '.' or ':' (or `localhost`) is a registry host[:port].
    if parts.len() > 1 && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        };
        if !h
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') && !l.starts_with('-'))
        {
            return Err(bad());
        }
        if let Some(p) = port {
            if p.parse::<u16>().is_err() {
                return Err(bad());
            }
        }
    }
    let component_ok = |c: &str| {
        // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
            && !c.contains("..")
            && !c.contains("___")
    };
    if parts.is_empty() || !parts.iter().all(|c| component_ok(c)) {
        return Err(bad());
    }
    Ok(s.to_owned())
}

/// A git repository URL: `https://host/path`, `ssh://[user@]host[:port]/path` or
/// scp-like `user@host:path`; `file:///absolute/path` only when local sources are
/// enabled by the administrator. Characters are allow-listed, so no option
/// (`-...`), transport helper (`ext::`), whitespace or quoting gets through.
pub fn parse_git_url(raw: &str, allow_local: bool) -> Result<String, ValidationError> {
    const FIELD: &str = "repository";
    let s = raw.trim();
    if s.is_empty() {
        return Err(err(FIELD, "is required"));
    }
    if s.len() > 500 {
        return Err(err(FIELD, "must be at most 500 characters"));
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'~' | b'-' | b'/' | b':' | b'@' | b'%' | b'+'))
    {
        return Err(err(FIELD, "contains characters a repository URL cannot have"));
    }
    if s.starts_with('-') || s.contains("::") || s.split('/').any(|seg| seg == "..") {
        return Err(err(FIELD, "is not an allowed repository URL"));
    }
    let host_ok = |h: &str| {
        !h.is_empty()
            && !h.starts_with('-')
            && h.split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
    };
    if let Some(rest) = s.strip_prefix("https://") {
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| err(FIELD, "needs a repository path"))?;
        if authority.contains('@') {
            return Err(err(
                FIELD,
                "must not carry credentials; use a deploy key with an ssh URL",
            ));
        }
        let host = authority.split_once(':').map(|(h, p)| (h, p.parse::<u16>().is_ok()));
        let ok = match host {
            Some((h, port_ok)) => host_ok(h) && port_ok,
            None => host_ok(authority),
        };
        if !ok || path.is_empty() {
            return Err(err(FIELD, "is not a valid https URL"));
        }
        return Ok(s.to_owned());
    }
    if let Some(rest) = s.strip_prefix("ssh://") {
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| err(FIELD, "needs a repository path"))?;
        let host = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
        let host = host.split_once(':').map(|(h, _)| h).unwrap_or(host);
        if !host_ok(host) || path.is_empty() {
            return Err(err(FIELD, "is not a valid ssh URL"));
        }
        return Ok(s.to_owned());
    }
    if let Some(path) = s.strip_prefix("file://") {
        if !allow_local {
            return Err(err(FIELD, "local repositories are disabled on this server"));
        }
        if !path.starts_with('/') {
            return Err(err(FIELD, "a file URL needs an absolute path"));
        }
        return Ok(s.to_owned());
    }
    if s.contains("://") {
        return Err(err(FIELD, "only https and ssh repositories are supported"));
    }
    // scp-like: user@host:path
    if let Some((user_host, path)) = s.split_once(':') {
        if let Some((user, host)) = user_host.split_once('@') {
            if !user.is_empty() && host_ok(host) && !path.is_empty() && !path.starts_with('-') {
                return Ok(s.to_owned());
            }
        }
    }
    Err(err(
        FIELD,
        "must be an https or ssh URL (e.g. https://github.com/org/repo.git)",
    ))
}

/// A branch name under git's ref rules (check-ref-format), with a conservative
/// character allow-list and never a leading `-`.
pub fn parse_branch(raw: &str) -> Result<String, ValidationError> {
    const FIELD: &str = "branch";
    let s = raw.trim();
    if s.is_empty() {
        return Err(err(FIELD, "is required"));
    }
    let bad = |why: &str| err(FIELD, why.to_owned());
    if s.len() > 200 {
        return Err(bad("must be at most 200 characters"));
    }
    if s.starts_with('-') {
        return Err(bad("must not start with '-'"));
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'/' | b'-' | b'+'))
    {
        return Err(bad("may only use letters, digits, '.', '_', '/', '-' and '+'"));
    }
    if s.contains("..")
        || s.contains("//")
        || s.starts_with('/')
        || s.ends_with('/')
        || s.ends_with('.')
        || s.ends_with(".lock")
        || s.split('/').any(|c| c.starts_with('.') || c.ends_with(".lock"))
        || s == "HEAD"
    {
        return Err(bad("is not a valid git branch name"));
    }
    Ok(s.to_owned())
}

/// A path relative to the checkout (subdirectory, Dockerfile, build context,
/// static directory): segments of `[A-Za-z0-9._-]`, no `..`, not absolute, no
/// leading `-`. `""` and `.` mean the root. The pipeline still resolves it and
/// checks it stays inside the checkout (symlinks).
pub fn parse_rel_path(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim().trim_end_matches('/');
    let s = s.strip_prefix("./").unwrap_or(s);
    if s.is_empty() || s == "." {
        return Ok(".".into());
    }
    if s.len() > 255 {
        return Err(err(field, "must be at most 255 characters"));
    }
    if s.starts_with('/') {
        return Err(err(field, "must be relative to the repository"));
    }
    for seg in s.split('/') {
        if seg.is_empty()
            || seg == ".."
            || seg == "."
            || seg.starts_with('-')
            || !seg
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            return Err(err(
                field,
                "must be a relative path of letters, digits, '.', '_' and '-' (no '..', no leading '-')",
            ));
        }
    }
    Ok(s.to_owned())
}

/// A Dockerfile target stage name.
pub fn parse_stage(raw: &str) -> Result<Option<String>, ValidationError> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > 64
        || s.starts_with('-')
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    {
        return Err(err(
            "target",
            "must be a stage name of letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(Some(s.to_owned()))
}

/// Where an application's image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    Image {
        image: String,
        /// Registry user; the password is sealed separately (`source_secret`).
        #[serde(default)]
        registry_user: Option<String>,
    },
    Git {
        url: String,
        branch: String,
        /// Directory inside the repository the build starts from ("." = root).
        #[serde(default = "dot")]
        subdir: String,
    },
}

fn dot() -> String {
    ".".into()
}

impl Source {
    /// The host a stored registry password or deploy key is sent to: the
    /// image's registry (`docker.io` when the reference names none), or the git
    /// remote's host and port.
    pub fn credential_host(&self) -> String {
        match self {
            Source::Image { image, .. } => {
                let first = image.split('/').next().unwrap_or("");
                if image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
                    first.to_ascii_lowercase()
                } else {
                    "docker.io".into()
                }
            }
            Source::Git { url, .. } => match crate::deploy::git::endpoint(url) {
                Some(ep) => format!("{}:{}", ep.host, ep.port),
                None => url.clone(),
            },
        }
    }

    /// A git source's repository as webhooks name it (host and path, lower-case
    /// host, no scheme, user, port, `.git` or trailing slash); `None` for images.
    pub fn repo_key(&self) -> Option<String> {
        match self {
            Source::Git { url, .. } => Some(repo_key(url)),
            Source::Image { .. } => None,
        }
    }
}

/// Repository URLs the way a person compares them: scheme, credentials, port,
/// `.git` and the case of the host aside (`git@github.com:o/r.git` =
/// `https://github.com/o/r`).
pub fn repo_key(url: &str) -> String {
    let u = url.trim().trim_end_matches('/');
    let u = u.strip_suffix(".git").unwrap_or(u);
    let rest = match u.split_once("://") {
        Some((_, r)) => r.to_owned(),
        // scp-like user@host:path
        None => u.replacen(':', "/", 1),
    };
    let rest = rest.rsplit_once('@').map(|(_, r)| r.to_owned()).unwrap_or(rest);
    let (host, path) = rest.split_once('/').unwrap_or((&rest, ""));
    let host = host.split(':').next().unwrap_or(host);
    format!("{}/{}", host.to_ascii_lowercase(), path)
}

/// How a git source becomes an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Build {
    Dockerfile {
        #[serde(default = "default_dockerfile")]
        dockerfile: String,
        #[serde(default = "dot")]
        context: String,
        #[serde(default)]
        target: Option<String>,
        /// Build arguments are not secrets: they end up in the image history.
        #[serde(default)]
        args: BTreeMap<String, String>,
    },
    /// A directory of files served by a small static-file server image.
    Static {
        #[serde(default = "dot")]
        directory: String,
    },
}

fn default_dockerfile() -> String {
    "Dockerfile".into()
}

impl Default for Build {
    fn default() -> Self {
        Build::Dockerfile {
            dockerfile: default_dockerfile(),
            context: dot(),
            target: None,
            args: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    Always,
    #[default]
    UnlessStopped,
    OnFailure,
}

impl RestartPolicy {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw.trim() {
            "no" => Ok(Self::No),
            "always" => Ok(Self::Always),
            "" | "unless-stopped" => Ok(Self::UnlessStopped),
            "on-failure" => Ok(Self::OnFailure),
            _ => Err(err("restart", "must be no, always, unless-stopped or on-failure")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::Always => "always",
            Self::UnlessStopped => "unless-stopped",
            Self::OnFailure => "on-failure",
        }
    }
}

/// How Berth decides a new container is ready for traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HealthProbe {
    /// Something accepts TCP connections on the container port.
    Tcp,
    /// `GET path` on the container port answers 2xx/3xx.
    Http { path: String },
    /// A command run in the container (argument vector, no shell) exits 0.
    Command { argv: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive failures tolerated after the start period before the deployment fails.
    pub retries: u32,
    /// How long a container may take to become healthy at all.
    pub start_period_secs: u64,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            probe: HealthProbe::Tcp,
            interval_ms: 500,
            timeout_ms: 2_000,
            retries: 3,
            start_period_secs: 60,
        }
    }
}

/// A volume mounted into the container: a named volume (owned by the app) or,
/// for administrators only, a host path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Named volume (a DNS label; Docker's name is `berth-<app>-<name>`) or, when
    /// `bind` is set, an absolute host path.
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub bind: bool,
    #[serde(default)]
    pub read_only: bool,
}

/// How the container runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    pub port: u16,
    /// Replaces the image's command when set (argument vector).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// CPU limit in thousandths of a CPU.
    #[serde(default)]
    pub cpu_millis: Option<u32>,
    #[serde(default)]
    pub memory_mb: Option<u32>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub health: HealthCheck,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// How long the old container keeps running after traffic moved away.
    #[serde(default = "default_drain")]
    pub drain_secs: u64,
}

fn default_drain() -> u64 {
    10
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            port: 80,
            command: None,
            cpu_millis: None,
            memory_mb: None,
            restart: RestartPolicy::default(),
            health: HealthCheck::default(),
            volumes: Vec::new(),
            drain_secs: default_drain(),
        }
    }
}

/// An absolute container path for a mount target: `/` segments of safe characters.
pub fn parse_container_path(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim();
    if !s.starts_with('/') || s == "/" {
        return Err(err(field, "must be an absolute path other than /"));
    }
    if s.len() > 255
        || s[1..].split('/').any(|seg| {
            seg.is_empty()
                || seg == ".."
                || !seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        })
    {
        return Err(err(
            field,
            "must be an absolute path of letters, digits, '.', '_' and '-' (no '..')",
        ));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// A command as an argument vector: given as one argument per line (so spaces
/// inside an argument need no quoting); no control characters.
pub fn parse_argv(field: &'static str, raw: &str) -> Result<Option<Vec<String>>, ValidationError> {
    let argv: Vec<String> = raw
        .lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .filter(|l| !l.trim().is_empty())
        .collect();
    if argv.is_empty() {
        return Ok(None);
    }
    if argv.len() > 64 || argv.iter().any(|a| a.len() > 1024 || a.chars().any(char::is_control)) {
        return Err(err(
            field,
            "at most 64 arguments of up to 1024 characters, without control characters",
        ));
    }
    Ok(Some(argv))
}

/// Parses `.env` text: `NAME=value` lines, `#` comments and blank lines ignored,
/// optional `export `, values optionally in single or double quotes (taken
/// literally: no interpolation). Values otherwise reach the container byte for
/// byte, including `=`, `#`, `$` and spaces inside.
pub fn parse_dotenv(raw: &str) -> Result<Vec<(String, String)>, ValidationError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, line) in raw.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let t = t.strip_prefix("export ").unwrap_or(t);
        let Some((name, value)) = t.split_once('=') else {
            return Err(err("env", format!("line {}: expected NAME=value", i + 1)));
        };
        let name = parse_env_name(name).map_err(|e| err("env", format!("line {}: {}", i + 1, e.message)))?;
        let value = if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"')) || (value.starts_with('\'') && value.ends_with('\'')))
        {
            value[1..value.len() - 1].to_owned()
        } else {
            value.to_owned()
        };
        if value.contains('\0') {
            return Err(err("env", format!("line {}: values cannot contain NUL", i + 1)));
        }
        if let Some(slot) = out.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            out.push((name, value));
        }
    }
    Ok(out)
}

/// A variable as a `.env` line that [`parse_dotenv`] reads back the same:
/// double-quoted when its value holds a line break, starts with a quote, or
/// has spaces at either end.
pub fn dotenv_line(name: &str, value: &str) -> String {
    if value.contains('\n') || value.starts_with(['"', '\'']) || value != value.trim() {
        format!("{name}=\"{value}\"")
    } else {
        format!("{name}={value}")
    }
}

/// Variables given as name/value pairs (the REST API's JSON object): each
/// name as `.env` names are held, no NUL in a value; the field named is `env.NAME`.
pub fn parse_vars(pairs: Vec<(String, String)>) -> Result<Vec<(String, String)>, ValidationError> {
    pairs
        .into_iter()
        .map(|(name, value)| {
            let parsed = parse_env_name(&name).map_err(|e| err("env", format!("{name:?}: {}", e.message)))?;
            if value.contains('\0') {
                return Err(err("env", format!("{parsed}: values cannot contain NUL")));
            }
            Ok((parsed, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_are_dns_labels() {
        assert!(AppName::parse("web-1").is_ok());
        for bad in ["", "-web", "web-", "Web", "a_b", "a.b", "a b", &"a".repeat(64), "x;rm"] {
            assert_eq!(AppName::parse(bad).unwrap_err().field, "name", "{bad:?}");
        }
    }

    #[test]
    fn image_references() {
        for ok in [
            "nginx",
            "nginx:1.27",
            "library/nginx:latest",
            "ghcr.io/org/app:v1.2.3",
            "localhost:5000/app",
            "registry.example.com:443/a/b/c:tag_1",
            "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "berth-test/busybox:1",
        ] {
            assert!(parse_image("image", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "-nginx",
            "nginx;rm -rf /",
            "nginx:$(id)",
            "a/../b",
            "nginx@sha256:xyz",
            "nginx latest",
            "--help",
        ] {
            assert!(parse_image("image", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn git_urls() {
        for ok in [
            "https://github.com/org/repo.git",
            "https://git.example.com:8443/org/repo",
            "ssh://git@github.com/org/repo.git",
            "git@github.com:org/repo.git",
        ] {
            assert!(parse_git_url(ok, false).is_ok(), "{ok}");
        }
        assert!(parse_git_url("file:///tmp/repo", true).is_ok());
        for bad in [
            "file:///tmp/repo",
            "ext::sh -c touch% /tmp/pwned",
            "ext::sh",
            "-uhttps://x",
            "--upload-pack=touch /tmp/x",
            "https://user:pass@github.com/a/b",
            "http://github.com/a/b",
            "https://github.com/a/$(id)",
            "https://github.com/a/b;id",
            "git@github.com:-oProxyCommand=x",
            "https://github.com/../../etc",
            "fd::17",
        ] {
            assert_eq!(parse_git_url(bad, false).unwrap_err().field, "repository", "{bad}");
        }
    }

    #[test]
    fn branches_follow_ref_rules() {
        for ok in ["main", "release/1.2", "feature-x", "v1.0+build"] {
            assert!(parse_branch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-main",
            "--upload-pack=x",
            "a..b",
            "a b",
            "a;b",
            "$(id)",
            "a/",
            "/a",
            "a.lock",
            ".hidden",
            "a//b",
            "a~1",
            "a^",
            "a:b",
            "a@{1}",
            "HEAD",
            "`id`",
        ] {
            assert_eq!(parse_branch(bad).unwrap_err().field, "branch", "{bad}");
        }
    }

    #[test]
    fn relative_paths_stay_inside() {
        assert_eq!(parse_rel_path("subdir", "").unwrap(), ".");
        assert_eq!(parse_rel_path("subdir", "./web/").unwrap(), "web");
        assert_eq!(parse_rel_path("subdir", "apps/web").unwrap(), "apps/web");
        for bad in ["../x", "a/../../b", "/etc", "-rf", "a;b", "a b", "a/$(x)", "a\nb"] {
            assert_eq!(parse_rel_path("subdir", bad).unwrap_err().field, "subdir", "{bad}");
        }
    }

    #[test]
    fn domains_and_prefixes() {
        assert_eq!(
            DomainName::parse("App.Example.com").unwrap().as_str(),
            "app.example.com"
        );
        assert!(DomainName::parse("web.localhost").is_ok());
        for bad in ["", "localhost", "a..b", "-a.b", "a_b.c", "*.example.com", "a.b;c"] {
            assert!(DomainName::parse(bad).is_err(), "{bad}");
        }
        let w = DomainName::parse_route("*.Example.com").unwrap();
        assert!(w.is_wildcard());
        assert_eq!(w.as_str(), "*.example.com");
        for bad in [
            "*.com",
            "**.a.b",
            "a.*.b",
            "*",
            "x`).b",
            "a.b || c",
            "a b.c",
            "\u{FF21}.example.com",
        ] {
            assert!(DomainName::parse_route(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_path_prefix("").unwrap(), "/");
        assert_eq!(parse_path_prefix("/api/").unwrap(), "/api");
        for bad in ["api", "/a/../b", "/a b", "/a`b`"] {
            assert!(parse_path_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dotenv_values_are_literal() {
        let vars = parse_dotenv("# c\nexport A=1\nB=x=y#z $HOME \nC=\"quoted value\"\nD=''\n\nA=2\n").unwrap();
        assert_eq!(
            vars,
            vec![
                ("A".into(), "2".into()),
                ("B".into(), "x=y#z $HOME ".into()),
                ("C".into(), "quoted value".into()),
                ("D".into(), "".into())
            ]
        );
        assert_eq!(parse_dotenv("1A=x").unwrap_err().field, "env");
        assert_eq!(parse_dotenv("A-B=x").unwrap_err().field, "env");
        assert_eq!(parse_dotenv("novalue").unwrap_err().field, "env");
    }

    #[test]
    fn argv_is_one_argument_per_line() {
        assert_eq!(
            parse_argv("command", "httpd\n-f\n-h\n/www dir\n").unwrap(),
            Some(vec!["httpd".into(), "-f".into(), "-h".into(), "/www dir".into()])
        );
        assert_eq!(parse_argv("command", "  \n").unwrap(), None);
    }
}
