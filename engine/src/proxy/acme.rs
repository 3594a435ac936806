//! Certificates from an ACME CA: the instance's ACME settings (directory,
//! contact, DNS-01 provider, HTTP/3), their grammar, and the part of Traefik's
//! static configuration they become: three certificate resolvers sharing one
//! `acme.json` on a volume. DNS provider credentials never enter the
//! command line, labels or the environment `docker inspect` shows: each is a
//! file (mode 0600) named by a `<NAME>_FILE` variable, which lego reads.

use crate::accounts::Caller;
use crate::db::schema::instance_settings;
use crate::error::StoreError;
use crate::instance::InstanceError;
use crate::names::ValidationError;
use crate::Engine;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Where `acme.json` lives in the Traefik container (a named volume).
pub const ACME_DIR: &str = "/etc/berth/acme";
/// Where the DNS provider's credential files appear in the Traefik container.
pub const DNS_SECRETS_DIR: &str = "/etc/berth/dns";
/// Where an operator's extra CA bundle for the ACME directory appears.
pub const CA_FILE: &str = "/etc/berth/acme-ca.pem";

/// The resolvers Traefik is started with; domains name them (`CertSource::resolver`,
/// beside which they are defined: a domain's options never reach up into the proxy).
pub use crate::apps::domain_options::{DNS01, HTTP01, TLSALPN01};

/// What instance administrators set for certificates.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AcmeSettings {
    /// The directory URL (`None`: Let's Encrypt production).
    pub directory: Option<String>,
    pub email: Option<String>,
    /// A lego provider code (`cloudflare`, `route53`, `httpreq`, ...).
    pub dns_provider: Option<String>,
    /// The provider's variables, `NAME` → value (secret).
    pub dns_credentials: Vec<(String, String)>,
    /// Nameservers (`host:port`) the propagation check asks.
    pub dns_resolvers: Vec<String>,
    /// Skip lego's check that the TXT record reached the zone's nameservers
    /// (for nameservers that answer no SOA queries, as Pebble's test DNS).
    pub dns_skip_propagation: bool,
    pub http3: bool,
}

impl std::fmt::Debug for AcmeSettings {
    /// Credential values are secret: names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeSettings")
            .field("directory", &self.directory)
            .field("email", &self.email)
            .field("dns_provider", &self.dns_provider)
            .field(
                "dns_credentials",
                &self.dns_credentials.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("dns_resolvers", &self.dns_resolvers)
            .field("dns_skip_propagation", &self.dns_skip_propagation)
            .field("http3", &self.http3)
            .finish()
    }
}

impl AcmeSettings {
    pub fn directory(&self) -> &str {
        self.directory.as_deref().unwrap_or(LETS_ENCRYPT)
    }
}

/// The settings form as the browser sends it.
#[derive(Debug, Clone, Default)]
pub struct AcmeForm {
    /// `production`, `staging`, or a URL.
    pub directory: String,
    pub email: String,
    pub dns_provider: String,
    /// `NAME=value` per line; a line with a name alone keeps its current value.
    pub dns_credentials: String,
    pub dns_resolvers: String,
    pub dns_skip_propagation: bool,
    pub http3: bool,
}

/// `allow_private`: the instance lets outbound requests reach private and
/// loopback addresses (`HostPolicy::allow_private_targets`), as a test CA needs.
pub fn parse_directory(raw: &str, allow_private: bool) -> Result<Option<String>, ValidationError> {
    const F: &str = "acme_directory";
    let s = raw.trim();
    match s {
        "" | "production" => return Ok(None),
        "staging" => return Ok(Some(LETS_ENCRYPT_STAGING.into())),
        _ => {}
    }
    let url = url::Url::parse(s).map_err(|_| ValidationError::new(F, "must be production, staging or an https URL"))?;
    if url.scheme() != "https" || url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(ValidationError::new(F, "must be an https URL without credentials"));
    }
    if s.len() > 512
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '`' || c == ',')
    {
        return Err(ValidationError::new(F, "must be an https URL"));
    }
    if !allow_private {
        let private = match url.host() {
            Some(url::Host::Ipv4(ip)) => !crate::outbound::is_public(ip.into()),
            Some(url::Host::Ipv6(ip)) => !crate::outbound::is_public(ip.into()),
            Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
            None => true,
        };
        if private {
            return Err(ValidationError::new(F, "must not be a private or loopback address"));
        }
    }
    Ok(Some(url.to_string()))
}

pub fn parse_email(raw: &str) -> Result<Option<String>, ValidationError> {
    const F: &str = "acme_email";
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let ok = s.len() <= 254
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_{|}~-".contains(&c))
                && crate::apps::spec::DomainName::parse(domain).is_ok()
        });
    if ok {
        Ok(Some(s.to_owned()))
    } else {
        Err(ValidationError::new(F, "must be an e-mail address"))
    }
}

fn parse_provider(raw: &str) -> Result<Option<String>, ValidationError> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() <= 32 && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        Ok(Some(s.to_owned()))
    } else {
        Err(ValidationError::new(
            "dns_provider",
            "must be a provider code Traefik knows (lower-case letters and digits, e.g. cloudflare)",
        ))
    }
}

fn parse_credentials(raw: &str, current: &[(String, String)]) -> Result<Vec<(String, String)>, ValidationError> {
    const F: &str = "dns_credentials";
    let mut out: Vec<(String, String)> = Vec::new();
    for line in raw.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (name, value) = match line.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (line, None),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
        if !name_ok {
            return Err(ValidationError::new(
                F,
                "a name is upper-case letters, digits and '_' (e.g. CF_DNS_API_TOKEN)",
            ));
        }
        if name.starts_with("LEGO_") || name.ends_with("_FILE") {
            return Err(ValidationError::new(F, format!("{name} is set by Berth")));
        }
        let value = match value {
            Some(v) if !v.is_empty() && v.len() <= 4096 && !v.chars().any(char::is_control) => v.to_owned(),
            Some(_) => {
                return Err(ValidationError::new(
                    F,
                    format!("{name} needs a value (at most 4096 characters)"),
                ))
            }
            None => match current.iter().find(|(n, _)| n == name) {
                Some((_, v)) => v.clone(),
                None => return Err(ValidationError::new(F, format!("{name} needs a value (NAME=value)"))),
            },
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(ValidationError::new(F, format!("{name} is given twice")));
        }
        out.push((name.to_owned(), value));
    }
    if out.len() > 20 {
        return Err(ValidationError::new(F, "at most 20 variables"));
    }
    Ok(out)
}

fn parse_resolvers(raw: &str) -> Result<Vec<String>, ValidationError> {
    raw.split([',', '\n', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<std::net::SocketAddr>()
                .map(|a| a.to_string())
                .map_err(|_| ValidationError::new("dns_resolvers", "each must be an address and port, e.g. 1.1.1.1:53"))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| {
            if v.len() > 4 {
                Err(ValidationError::new("dns_resolvers", "at most 4"))
            } else {
                Ok(v)
            }
        })
}

impl AcmeForm {
    pub fn parse(&self, current: &AcmeSettings, allow_private: bool) -> Result<AcmeSettings, ValidationError> {
        let dns_provider = parse_provider(&self.dns_provider)?;
        let dns_credentials = parse_credentials(&self.dns_credentials, &current.dns_credentials)?;
        if dns_provider.is_none() && !dns_credentials.is_empty() {
            return Err(ValidationError::new("dns_provider", "is required with credentials"));
        }
        Ok(AcmeSettings {
            directory: parse_directory(&self.directory, allow_private)?,
            email: parse_email(&self.email)?,
            dns_provider,
            dns_credentials,
            dns_resolvers: parse_resolvers(&self.dns_resolvers)?,
            dns_skip_propagation: self.dns_skip_propagation,
            http3: self.http3,
        })
    }
}

impl AcmeSettings {
    /// The form showing these settings: credential names only.
    pub fn to_form(&self) -> AcmeForm {
        AcmeForm {
            directory: match self.directory.as_deref() {
                None => "production".into(),
                Some(LETS_ENCRYPT_STAGING) => "staging".into(),
                Some(url) => url.into(),
            },
            email: self.email.clone().unwrap_or_default(),
            dns_provider: self.dns_provider.clone().unwrap_or_default(),
            dns_credentials: self.dns_credentials.iter().map(|(n, _)| format!("{n}\n")).collect(),
            dns_resolvers: self.dns_resolvers.join(", "),
            dns_skip_propagation: self.dns_skip_propagation,
            http3: self.http3,
        }
    }

    /// Traefik's static arguments for the resolvers and HTTP/3.
    pub fn traefik_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut resolver = |name: &str, challenge: &[String]| {
            let p = format!("--certificatesresolvers.{name}.acme");
            args.push(format!("{p}.caserver={}", self.directory()));
            if let Some(email) = &self.email {
                args.push(format!("{p}.email={email}"));
            }
            args.push(format!("{p}.storage={ACME_DIR}/acme.json"));
            args.extend(challenge.iter().map(|c| format!("{p}.{c}")));
        };
        resolver(
            HTTP01,
            &["httpchallenge=true".into(), "httpchallenge.entrypoint=web".into()],
        );
        resolver(TLSALPN01, &["tlschallenge=true".into()]);
        if let Some(provider) = &self.dns_provider {
            let mut c = vec![
                "dnschallenge=true".to_owned(),
                format!("dnschallenge.provider={provider}"),
            ];
            if !self.dns_resolvers.is_empty() {
                c.push(format!("dnschallenge.resolvers={}", self.dns_resolvers.join(",")));
            }
            if self.dns_skip_propagation {
                c.push("dnschallenge.propagation.disablechecks=true".into());
            }
            resolver(DNS01, &c);
        }
        if self.http3 {
            args.push("--entrypoints.websecure.http3=true".into());
        }
        args
    }

    /// The Traefik container's environment for the DNS provider: a `_FILE`
    /// variable per credential, naming its file in [`DNS_SECRETS_DIR`].
    pub fn traefik_env(&self) -> Vec<String> {
        self.dns_credentials
            .iter()
            .map(|(n, _)| format!("{n}_FILE={DNS_SECRETS_DIR}/{n}"))
            .collect()
    }
}

// The settings row (administrators change it; Traefik is restarted with it).

fn dns_slot() -> crate::secrets::Slot<'static> {
    crate::secrets::Slot::new("instance_settings", "dns_credentials", "instance")
}

#[derive(Queryable)]
struct AcmeRow {
    directory: Option<String>,
    email: Option<String>,
    dns_provider: Option<String>,
    dns_credentials: Option<String>,
    dns_resolvers: Option<String>,
    dns_skip_propagation: bool,
    http3: bool,
}

/// The certificate settings Traefik is configured with (defaults when never set).
pub async fn settings(engine: &Engine) -> Result<AcmeSettings, InstanceError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let row: Option<AcmeRow> = instance_settings::table
        .select((
            instance_settings::acme_directory,
            instance_settings::acme_email,
            instance_settings::dns_provider,
            instance_settings::dns_credentials,
            instance_settings::dns_resolvers,
            instance_settings::dns_skip_propagation,
            instance_settings::http3,
        ))
        .first(&mut conn)
        .await
        .optional()?;
    let Some(r) = row else {
        return Ok(AcmeSettings::default());
    };
    let dns_credentials: Vec<(String, String)> = match r.dns_credentials {
        None => Vec::new(),
        Some(sealed) => {
            let json = engine
                .secret
                .open_text(dns_slot(), &sealed)
                .map_err(|e| StoreError::Corrupt(format!("DNS provider credentials: {e}")))?;
            serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("DNS provider credentials: {e}")))?
        }
    };
    Ok(AcmeSettings {
        directory: r.directory,
        email: r.email,
        dns_provider: r.dns_provider,
        dns_credentials,
        dns_resolvers: r
            .dns_resolvers
            .map(|s| s.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
        dns_skip_propagation: r.dns_skip_propagation,
        http3: r.http3,
    })
}

/// Saves the certificate settings (administrators only) and restarts Traefik
/// with them when it is managed; `acme.json` stays on its volume.
pub async fn update(engine: &Engine, caller: &Caller, form: &AcmeForm) -> Result<(), InstanceError> {
    crate::instance::require_admin(caller)?;
    let current = settings(engine).await?;
    let s = form.parse(&current, engine.deploy.host.allow_private_targets)?;
    let sealed = (!s.dns_credentials.is_empty()).then(|| {
        engine.secret.seal(
            dns_slot(),
            serde_json::to_string(&s.dns_credentials)
                .expect("serializes")
                .as_bytes(),
        )
    });
    let resolvers = (!s.dns_resolvers.is_empty()).then(|| s.dns_resolvers.join(","));
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let values = (
        instance_settings::acme_directory.eq(&s.directory),
        instance_settings::acme_email.eq(&s.email),
        instance_settings::dns_provider.eq(&s.dns_provider),
        instance_settings::dns_credentials.eq(&sealed),
        instance_settings::dns_resolvers.eq(&resolvers),
        instance_settings::dns_skip_propagation.eq(s.dns_skip_propagation),
        instance_settings::http3.eq(s.http3),
        instance_settings::updated_at.eq(diesel::dsl::now),
    );
    crate::audited!(conn, InstanceError, {
        Ok(diesel::insert_into(instance_settings::table)
            .values((instance_settings::singleton.eq(true), values))
            .on_conflict(instance_settings::singleton)
            .do_update()
            .set(values)
            .execute(conn)
            .await?)
    })
    .await?;
    drop(conn);
    tracing::info!(user.id = %caller.user_id, settings = ?s, "certificate settings changed");
    if engine.deploy.proxy.manage {
        if let Err(e) = crate::proxy::ensure(engine).await {
            // Saved all the same: the reconciler applies them when Docker is back.
            tracing::warn!(error = %e, "restarting Traefik with the new certificate settings");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_ask_lets_encrypt_with_two_resolvers() {
        let args = AcmeSettings::default().traefik_args();
        assert!(args.contains(&format!("--certificatesresolvers.http01.acme.caserver={LETS_ENCRYPT}")));
        assert!(args.contains(&"--certificatesresolvers.http01.acme.httpchallenge.entrypoint=web".to_owned()));
        assert!(args.contains(&"--certificatesresolvers.tlsalpn01.acme.tlschallenge=true".to_owned()));
        assert!(args.contains(&"--certificatesresolvers.tlsalpn01.acme.storage=/etc/berth/acme/acme.json".to_owned()));
        assert!(!args.iter().any(|a| a.contains("dns01") || a.contains("http3")));
    }

    #[test]
    fn the_form_becomes_settings_and_keeps_secrets_out_of_args() {
        let f = AcmeForm {
            directory: "staging".into(),
            email: "ops@example.com".into(),
            dns_provider: "cloudflare".into(),
            dns_credentials: "CF_DNS_API_TOKEN=tok-123\n".into(),
            dns_resolvers: "1.1.1.1:53, [2606:4700:4700::1111]:53".into(),
            dns_skip_propagation: false,
            http3: true,
        };
        let s = f.parse(&AcmeSettings::default(), false).unwrap();
        assert_eq!(s.directory(), LETS_ENCRYPT_STAGING);
        let args = s.traefik_args();
        assert!(args.contains(&"--certificatesresolvers.dns01.acme.dnschallenge.provider=cloudflare".to_owned()));
        assert!(args.contains(
            &"--certificatesresolvers.dns01.acme.dnschallenge.resolvers=1.1.1.1:53,[2606:4700:4700::1111]:53"
                .to_owned()
        ));
        assert!(args.contains(&"--entrypoints.websecure.http3=true".to_owned()));
        assert!(!args.iter().any(|a| a.contains("tok-123")));
        assert_eq!(
            s.traefik_env(),
            ["CF_DNS_API_TOKEN_FILE=/etc/berth/dns/CF_DNS_API_TOKEN"]
        );
        assert!(!format!("{s:?}").contains("tok-123"));
        // Shown again, names only; saved again, the value is kept.
        let again = s.to_form();
        assert_eq!(again.dns_credentials, "CF_DNS_API_TOKEN\n");
        assert_eq!(again.parse(&s, false).unwrap(), s);
    }

    #[test]
    fn hostile_settings_name_their_field() {
        let bad = |f: AcmeForm| f.parse(&AcmeSettings::default(), false).unwrap_err().field;
        let d = AcmeForm::default;
        assert_eq!(
            bad(AcmeForm {
                directory: "http://ca.example.com/dir".into(),
                ..d()
            }),
            "acme_directory"
        );
        assert_eq!(
            bad(AcmeForm {
                directory: "https://127.0.0.1:14000/dir".into(),
                ..d()
            }),
            "acme_directory"
        );
        assert_eq!(
            bad(AcmeForm {
                directory: "https://169.254.169.254/".into(),
                ..d()
            }),
            "acme_directory"
        );
        assert_eq!(
            bad(AcmeForm {
                email: "a@b".into(),
                ..d()
            }),
            "acme_email"
        );
        assert_eq!(
            bad(AcmeForm {
                email: "a b@example.com".into(),
                ..d()
            }),
            "acme_email"
        );
        assert_eq!(
            bad(AcmeForm {
                dns_provider: "cloud flare".into(),
                ..d()
            }),
            "dns_provider"
        );
        assert_eq!(
            bad(AcmeForm {
                dns_provider: "x".into(),
                dns_credentials: "lower=1".into(),
                ..d()
            }),
            "dns_credentials"
        );
        assert_eq!(
            bad(AcmeForm {
                dns_provider: "x".into(),
                dns_credentials: "LEGO_CA_CERTIFICATES=/x".into(),
                ..d()
            }),
            "dns_credentials"
        );
        assert_eq!(
            bad(AcmeForm {
                dns_provider: "x".into(),
                dns_credentials: "A".into(),
                ..d()
            }),
            "dns_credentials"
        );
        assert_eq!(
            bad(AcmeForm {
                dns_credentials: "A=1".into(),
                ..d()
            }),
            "dns_provider"
        );
        assert_eq!(
            bad(AcmeForm {
                dns_resolvers: "ns1.example.com".into(),
                ..d()
            }),
            "dns_resolvers"
        );
        // A test CA on loopback, where the instance allows private targets.
        let ok = AcmeForm {
            directory: "https://127.0.0.1:14000/dir".into(),
            ..d()
        };
        assert!(ok.parse(&AcmeSettings::default(), true).is_ok());
    }
}
