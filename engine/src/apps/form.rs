//! Application settings as a user types them (plain strings, one per form field),
//! parsed into the validated spec types. Every failure names the field; nothing
//! is stored unless everything parses.

use super::spec::{self, AppName, Build, HealthCheck, HealthProbe, RestartPolicy, Runtime, Source, Volume};
use super::SecretChange;
use crate::names::ValidationError;
use std::collections::BTreeMap;

fn err(field: &'static str, m: impl Into<String>) -> ValidationError {
    ValidationError::new(field, m)
}

/// Where the image comes from and how it is built.
#[derive(Debug, Clone, Default)]
pub struct SourceForm {
    /// `image` or `git`.
    pub kind: String,
    pub image: String,
    pub registry_user: String,
    /// Registry password (image) or deploy key (git); empty keeps the stored one.
    pub secret: String,
    pub clear_secret: bool,
    pub repository: String,
    pub branch: String,
    pub subdir: String,
    /// `dockerfile` or `static`.
    pub build_kind: String,
    pub dockerfile: String,
    pub context: String,
    pub target: String,
    /// `NAME=value` per line.
    pub build_args: String,
    pub static_dir: String,
}

impl SourceForm {
    /// The form filled in from a stored source and build (no secret: empty
    /// keeps the stored one), so that a change of some fields (the REST API's
    /// `PATCH`) goes through [`SourceForm::parse`] whole, like the page's form.
    pub fn of(source: &Source, build: &Build) -> Self {
        let mut f = SourceForm::default();
        match source {
            Source::Image { image, registry_user } => {
                f.kind = "image".into();
                f.image = image.clone();
                f.registry_user = registry_user.clone().unwrap_or_default();
                f.branch = "main".into();
            }
            Source::Git { url, branch, subdir } => {
                f.kind = "git".into();
                f.repository = url.clone();
                f.branch = branch.clone();
                f.subdir = subdir.clone();
            }
        }
        match build {
            Build::Dockerfile {
                dockerfile,
                context,
                target,
                args,
            } => {
                f.build_kind = "dockerfile".into();
                f.dockerfile = dockerfile.clone();
                f.context = context.clone();
                f.target = target.clone().unwrap_or_default();
                f.build_args = args.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            }
            Build::Static { directory } => {
                f.build_kind = "static".into();
                f.static_dir = directory.clone();
                // What the form offers if the build is switched to a Dockerfile.
                f.dockerfile = "Dockerfile".into();
                f.context = ".".into();
            }
        }
        f
    }

    pub fn parse(&self, allow_local: bool) -> Result<(Source, SecretChange, Build), ValidationError> {
        let source = match self.kind.trim() {
            "image" => {
                let user = self.registry_user.trim();
                if user.len() > 200 || user.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return Err(err("registry_user", "must be a user name without spaces"));
                }
                Source::Image {
                    image: spec::parse_image("image", &self.image)?,
                    registry_user: (!user.is_empty()).then(|| user.to_owned()),
                }
            }
            "git" => Source::Git {
                url: spec::parse_git_url(&self.repository, allow_local)?,
                branch: spec::parse_branch(&self.branch)?,
                subdir: spec::parse_rel_path("subdir", &self.subdir)?,
            },
            _ => return Err(err("source", "must be image or git")),
        };
        let secret = if self.clear_secret {
            SecretChange::Clear
        } else if self.secret.trim().is_empty() {
            SecretChange::Keep
        } else {
            if self.secret.len() > 16 * 1024 || self.secret.contains('\0') {
                return Err(err("secret", "is too long or contains NUL"));
            }
            if matches!(source, Source::Git { .. }) && !self.secret.contains("PRIVATE KEY") {
                return Err(err(
                    "secret",
                    "a deploy key must be a private key in OpenSSH/PEM format",
                ));
            }
            SecretChange::Set(self.secret.trim_end().to_owned())
        };
        let build = match self.build_kind.trim() {
            "" | "dockerfile" => {
                let mut args = BTreeMap::new();
                for (i, line) in self.build_args.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let (k, v) = line
                        .split_once('=')
                        .ok_or_else(|| err("build_args", format!("line {}: expected NAME=value", i + 1)))?;
                    let k = spec::parse_env_name(k)
                        .map_err(|e| err("build_args", format!("line {}: {}", i + 1, e.message)))?;
                    args.insert(k, v.to_owned());
                }
                Build::Dockerfile {
                    dockerfile: match spec::parse_rel_path("dockerfile", &self.dockerfile)? {
                        d if d == "." => "Dockerfile".into(),
                        d => d,
                    },
                    context: spec::parse_rel_path("context", &self.context)?,
                    target: spec::parse_stage(&self.target)?,
                    args,
                }
            }
            "static" => Build::Static {
                directory: spec::parse_rel_path("static_dir", &self.static_dir)?,
            },
            _ => return Err(err("build", "must be dockerfile or static")),
        };
        Ok((source, secret, build))
    }
}

/// Container settings (the Advanced tab).
#[derive(Debug, Clone, Default)]
pub struct RuntimeForm {
    pub port: String,
    /// One argument per line.
    pub command: String,
    pub cpu_millis: String,
    pub memory_mb: String,
    pub restart: String,
    /// `tcp`, `http` or `command`.
    pub health: String,
    pub health_path: String,
    /// One argument per line.
    pub health_command: String,
    pub health_interval_ms: String,
    pub health_timeout_ms: String,
    pub health_retries: String,
    pub health_start_period_secs: String,
    /// `name:/container/path[:ro]` (named volume) or `/host/path:/container/path[:ro]`
    /// (bind mount, admins only), one per line.
    pub volumes: String,
    pub drain_secs: String,
}

fn number<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
    field: &'static str,
    raw: &str,
    min: T,
    max: T,
) -> Result<Option<T>, ValidationError> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(Some(v)),
        _ => Err(err(field, format!("must be a whole number from {min} to {max}"))),
    }
}

impl RuntimeForm {
    /// The form filled in from settings already parsed, so that a change of
    /// some fields (the REST API's `PATCH`) goes through [`RuntimeForm::parse`]
    /// whole, like the page's form: `of(r).parse() == r`.
    pub fn of(r: &Runtime) -> Self {
        let (health, health_path, health_command) = match &r.health.probe {
            HealthProbe::Tcp => ("tcp", String::new(), String::new()),
            HealthProbe::Http { path } => ("http", path.clone(), String::new()),
            HealthProbe::Command { argv } => ("command", String::new(), argv.join("\n")),
        };
        let opt = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_default();
        RuntimeForm {
            port: r.port.to_string(),
            command: r.command.as_ref().map(|c| c.join("\n")).unwrap_or_default(),
            cpu_millis: opt(r.cpu_millis),
            memory_mb: opt(r.memory_mb),
            restart: r.restart.as_str().to_owned(),
            health: health.to_owned(),
            health_path,
            health_command,
            health_interval_ms: r.health.interval_ms.to_string(),
            health_timeout_ms: r.health.timeout_ms.to_string(),
            health_retries: r.health.retries.to_string(),
            health_start_period_secs: r.health.start_period_secs.to_string(),
            volumes: r
                .volumes
                .iter()
                .map(|v| format!("{}:{}{}\n", v.source, v.target, if v.read_only { ":ro" } else { "" }))
                .collect(),
            drain_secs: r.drain_secs.to_string(),
        }
    }

    pub fn parse(&self) -> Result<Runtime, ValidationError> {
        let d = Runtime::default();
        let hd = HealthCheck::default();
        let probe = match self.health.trim() {
            "" | "tcp" => HealthProbe::Tcp,
            "http" => {
                let p = self.health_path.trim();
                let p = if p.is_empty() { "/" } else { p };
                if !p.starts_with('/') || p.len() > 200 || !p.bytes().all(|c| c.is_ascii_graphic() && c != b'#') {
                    return Err(err("health_path", "must be a path starting with / (no spaces)"));
                }
                HealthProbe::Http { path: p.to_owned() }
            }
            "command" => HealthProbe::Command {
                argv: spec::parse_argv("health_command", &self.health_command)?
                    .ok_or_else(|| err("health_command", "is required for a command health check"))?,
            },
            _ => return Err(err("health", "must be tcp, http or command")),
        };
        let mut volumes = Vec::new();
        for (i, line) in self.volumes.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split(':').collect();
            let (source, target, ro) = match parts.as_slice() {
                [s, t] => (*s, *t, false),
                [s, t, "ro"] => (*s, *t, true),
                _ => return Err(err("volumes", format!("line {}: expected source:/path[:ro]", i + 1))),
            };
            let bind = source.starts_with('/');
            let source = if bind {
                spec::parse_container_path("volumes", source)?
            } else {
                AppName::parse_as("volumes", source)?.as_str().to_owned()
            };
            volumes.push(Volume {
                source,
                target: spec::parse_container_path("volumes", target)?,
                bind,
                read_only: ro,
            });
        }
        Ok(Runtime {
            port: number("port", &self.port, 1u16, 65535)?.unwrap_or(d.port),
            command: spec::parse_argv("command", &self.command)?,
            cpu_millis: number("cpu_millis", &self.cpu_millis, 10u32, 256_000)?,
            memory_mb: number("memory_mb", &self.memory_mb, 6u32, 1_048_576)?,
            restart: RestartPolicy::parse(&self.restart)?,
            health: HealthCheck {
                probe,
                interval_ms: number("health_interval_ms", &self.health_interval_ms, 100u64, 60_000)?
                    .unwrap_or(hd.interval_ms),
                timeout_ms: number("health_timeout_ms", &self.health_timeout_ms, 100u64, 60_000)?
                    .unwrap_or(hd.timeout_ms),
                retries: number("health_retries", &self.health_retries, 1u32, 100)?.unwrap_or(hd.retries),
                start_period_secs: number("health_start_period_secs", &self.health_start_period_secs, 1u64, 3600)?
                    .unwrap_or(hd.start_period_secs),
            },
            volumes,
            drain_secs: number("drain_secs", &self.drain_secs, 0u64, 3600)?.unwrap_or(d.drain_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(repo: &str, branch: &str, subdir: &str) -> SourceForm {
        SourceForm {
            kind: "git".into(),
            repository: repo.into(),
            branch: branch.into(),
            subdir: subdir.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_filled_in_form_parses_back_to_its_settings() {
        let r = RuntimeForm {
            port: "8080".into(),
            command: "/bin/app\n--flag with space".into(),
            memory_mb: "256".into(),
            restart: "always".into(),
            health: "http".into(),
            health_path: "/up".into(),
            volumes: "data:/var/lib/app\ncache:/cache:ro\n".into(),
            drain_secs: "3".into(),
            ..Default::default()
        }
        .parse()
        .unwrap();
        assert_eq!(RuntimeForm::of(&r).parse().unwrap(), r);
        let d = Runtime::default();
        assert_eq!(RuntimeForm::of(&d).parse().unwrap(), d);
    }

    #[test]
    fn a_filled_in_source_form_parses_back_to_its_source_and_build() {
        let mut with_args = git("https://example.com/a/b.git", "release", "web");
        with_args.build_kind = "dockerfile".into();
        with_args.dockerfile = "deploy/Dockerfile".into();
        with_args.target = "runtime".into();
        with_args.build_args = "A=1\nB=two words\n".into();
        let mut image = SourceForm {
            kind: "image".into(),
            image: "registry.example.com/team/app:1.2".into(),
            registry_user: "robot".into(),
            ..Default::default()
        };
        image.build_kind = "static".into();
        image.static_dir = "dist".into();
        for form in [with_args, image] {
            let (source, _, build) = form.parse(false).unwrap();
            let (again, secret, build_again) = SourceForm::of(&source, &build).parse(false).unwrap();
            assert_eq!((again, build_again), (source, build));
            assert!(matches!(secret, SecretChange::Keep));
        }
    }

    #[test]
    fn hostile_source_fields_name_the_field() {
        let cases = [
            (git("ext::sh -c touch% /tmp/x", "main", ""), "repository"),
            (
                git("https://github.com/a/b", "--upload-pack=touch /tmp/x", ""),
                "branch",
            ),
            (git("https://github.com/a/b", "main", "../../etc"), "subdir"),
            (git("https://github.com/a/b;touch /tmp/x", "main", ""), "repository"),
            (git("-oProxyCommand=touch /tmp/x", "main", ""), "repository"),
            (git("https://github.com/a/b", "main$(touch /tmp/x)", ""), "branch"),
        ];
        for (form, field) in cases {
            let e = form.parse(false).err().unwrap_or_else(|| panic!("{form:?} parsed"));
            assert_eq!(e.field, field, "{form:?}");
        }
        let image = SourceForm {
            kind: "image".into(),
            image: "nginx;touch /tmp/x".into(),
            ..Default::default()
        };
        assert_eq!(image.parse(false).err().unwrap().field, "image");
        let df = SourceForm {
            dockerfile: "../Dockerfile".into(),
            ..git("https://github.com/a/b", "main", "")
        };
        assert_eq!(df.parse(false).err().unwrap().field, "dockerfile");
    }

    #[test]
    fn runtime_form_parses_and_bounds() {
        let rt = RuntimeForm {
            port: "8080".into(),
            command: "node\nserver.js".into(),
            memory_mb: "256".into(),
            health: "http".into(),
            health_path: "/healthz".into(),
            volumes: "data:/var/lib/data\n/srv/shared:/shared:ro".into(),
            ..Default::default()
        }
        .parse()
        .unwrap();
        assert_eq!(rt.port, 8080);
        assert_eq!(rt.command, Some(vec!["node".into(), "server.js".into()]));
        assert_eq!(rt.volumes.len(), 2);
        assert!(rt.volumes[1].bind && rt.volumes[1].read_only);
        assert_eq!(
            RuntimeForm {
                port: "0".into(),
                ..Default::default()
            }
            .parse()
            .unwrap_err()
            .field,
            "port"
        );
        assert_eq!(
            RuntimeForm {
                volumes: "data:../x".into(),
                ..Default::default()
            }
            .parse()
            .unwrap_err()
            .field,
            "volumes"
        );
    }
}
