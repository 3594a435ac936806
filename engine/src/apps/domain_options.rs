//! What a user sets per domain beyond its host and path: how an HTTPS domain
//! gets its certificate and the proxy features in front of the app (redirects,
//! HSTS, www/apex, basic auth, headers, compression, rate limit). Parsed here
//! from the form's text into values the route serializer (`crate::proxy::routes`)
//! can write without escaping anything: every name and value has a grammar.

use crate::names::ValidationError;
use serde::{Deserialize, Serialize};

/// How an HTTPS domain gets its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CertSource {
    /// ACME HTTP-01 through the `web` entrypoint (the default).
    #[default]
    Http,
    /// ACME TLS-ALPN-01 on the `websecure` entrypoint (port 80 may stay closed).
    Tls,
    /// ACME DNS-01 through the instance's DNS provider: the only way to a wildcard.
    Dns,
    /// A certificate the user uploaded (`crate::proxy::certs`).
    Custom,
}

/// Traefik's certificate resolvers by name (`crate::proxy::acme` starts
/// Traefik with them).
pub const HTTP01: &str = "http01";
pub const TLSALPN01: &str = "tlsalpn01";
pub const DNS01: &str = "dns01";

impl CertSource {
    pub const FIELD: &'static str = "cert";
    pub fn as_str(self) -> &'static str {
        match self {
            CertSource::Http => "http",
            CertSource::Tls => "tls",
            CertSource::Dns => "dns",
            CertSource::Custom => "custom",
        }
    }
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw.trim() {
            "" | "http" => Ok(CertSource::Http),
            "tls" => Ok(CertSource::Tls),
            "dns" => Ok(CertSource::Dns),
            "custom" => Ok(CertSource::Custom),
            _ => Err(ValidationError::new(Self::FIELD, "must be http, tls, dns or custom")),
        }
    }
    /// Traefik's certificate resolver for this source (`None`: no ACME).
    pub fn resolver(self) -> Option<&'static str> {
        match self {
            CertSource::Http => Some(HTTP01),
            CertSource::Tls => Some(TLSALPN01),
            CertSource::Dns => Some(DNS01),
            CertSource::Custom => None,
        }
    }
}

/// Strict-Transport-Security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hsts {
    pub max_age: u32,
    pub include_subdomains: bool,
}

/// Which of `example.com` and `www.example.com` is canonical; both are routed
/// and the other redirects to it (308).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Www {
    #[default]
    None,
    ToWww,
    ToApex,
}

impl Www {
    pub fn as_str(self) -> &'static str {
        match self {
            Www::None => "",
            Www::ToWww => "to_www",
            Www::ToApex => "to_apex",
        }
    }
}

/// A basic-auth user: the password is kept only as a bcrypt hash (`$2y$`,
/// the form Traefik's htpasswd reader takes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicUser {
    pub user: String,
    pub hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests per second on average.
    pub average: u32,
    pub burst: u32,
}

/// The per-domain proxy features, stored as JSON on the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainOptions {
    /// HTTP answers 308 to the HTTPS URL (HTTPS domains only).
    #[serde(default = "yes")]
    pub redirect_https: bool,
    #[serde(default)]
    pub hsts: Option<Hsts>,
    #[serde(default)]
    pub www: Www,
    #[serde(default)]
    pub basic_auth: Vec<BasicUser>,
    /// Response headers added to every answer.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub compress: bool,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

fn yes() -> bool {
    true
}

impl Default for DomainOptions {
    fn default() -> Self {
        Self {
            redirect_https: true,
            hsts: None,
            www: Www::None,
            basic_auth: Vec::new(),
            headers: Vec::new(),
            compress: false,
            rate_limit: None,
        }
    }
}

/// The domain form's fields as the browser sends them.
#[derive(Debug, Clone, Default)]
pub struct OptionsForm {
    pub redirect_https: bool,
    pub hsts_max_age: String,
    pub hsts_subdomains: bool,
    pub www: String,
    /// `user:password` per line; a line with a user alone keeps that user's
    /// current password.
    pub basic_auth: String,
    /// `Name: value` per line.
    pub headers: String,
    pub compress: bool,
    pub rate_average: String,
    pub rate_burst: String,
}

const MAX_HSTS: u32 = 2 * 365 * 24 * 3600;
const MAX_USERS: usize = 50;
const MAX_HEADERS: usize = 30;
const MAX_RATE: u32 = 1_000_000;

fn number(field: &'static str, raw: &str, min: u32, max: u32) -> Result<Option<u32>, ValidationError> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .map(Some)
        .ok_or_else(|| ValidationError::new(field, format!("must be a whole number from {min} to {max}")))
}

/// Headers Traefik or the browser own: setting them here would break routing,
/// HSTS or the deployment marker.
fn reserved_header(name: &str) -> bool {
    const RESERVED: [&str; 8] = [
        "connection",
        "content-length",
        "transfer-encoding",
        "host",
        "upgrade",
        "strict-transport-security",
        "x-berth-deployment",
        "set-cookie",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

fn parse_headers(raw: &str) -> Result<Vec<(String, String)>, ValidationError> {
    const F: &str = "headers";
    let mut out: Vec<(String, String)> = Vec::new();
    for line in raw.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ValidationError::new(F, "each line must be Name: value"));
        };
        let name = name.trim();
        let value = value.trim();
        if name.is_empty() || name.len() > 64 || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
            return Err(ValidationError::new(
                F,
                "a header name is letters, digits and '-' (at most 64)",
            ));
        }
        if reserved_header(name) {
            return Err(ValidationError::new(F, format!("{name} is set by Berth or Traefik")));
        }
        if value.len() > 1024 || !value.bytes().all(|c| (0x20..0x7f).contains(&c)) {
            return Err(ValidationError::new(
                F,
                "a header value is printable ASCII (at most 1024)",
            ));
        }
        if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(ValidationError::new(F, format!("{name} is given twice")));
        }
        out.push((name.to_owned(), value.to_owned()));
    }
    if out.len() > MAX_HEADERS {
        return Err(ValidationError::new(F, format!("at most {MAX_HEADERS} headers")));
    }
    Ok(out)
}

fn valid_user(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Basic-auth users from the form; `hash` turns a new password into its stored
/// form (bcrypt in production, something cheap in unit tests).
fn parse_users(
    raw: &str,
    current: &[BasicUser],
    hash: &dyn Fn(&str) -> String,
) -> Result<Vec<BasicUser>, ValidationError> {
    const F: &str = "basic_auth";
    let mut out: Vec<BasicUser> = Vec::new();
    for line in raw
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
    {
        let (user, password) = match line.split_once(':') {
            Some((u, p)) => (u.trim(), Some(p)),
            None => (line.trim(), None),
        };
        if !valid_user(user) {
            return Err(ValidationError::new(
                F,
                "a user name is letters, digits, '.', '_' and '-' (at most 64)",
            ));
        }
        if out.iter().any(|u| u.user == user) {
            return Err(ValidationError::new(F, format!("{user} is given twice")));
        }
        let hash = match password {
            Some(p) => {
                if p.is_empty() || p.chars().count() > 128 || p.chars().any(char::is_control) {
                    return Err(ValidationError::new(
                        F,
                        "a password is 1 to 128 characters without control characters",
                    ));
                }
                hash(p)
            }
            None => match current.iter().find(|u| u.user == user) {
                Some(u) => u.hash.clone(),
                None => {
                    return Err(ValidationError::new(
                        F,
                        format!("{user} needs a password (user:password)"),
                    ))
                }
            },
        };
        out.push(BasicUser {
            user: user.to_owned(),
            hash,
        });
    }
    if out.len() > MAX_USERS {
        return Err(ValidationError::new(F, format!("at most {MAX_USERS} users")));
    }
    Ok(out)
}

/// bcrypt at cost 10, written as `$2y$` (Apache's htpasswd form, which Traefik reads).
pub fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash_with_result(password, 10)
        .expect("bcrypt with a valid cost")
        .format_for_version(bcrypt::Version::TwoY)
}

impl OptionsForm {
    /// The options for `host`, keeping the current basic-auth hashes for users
    /// given without a password.
    pub fn parse(&self, host: &str, current: &DomainOptions) -> Result<DomainOptions, ValidationError> {
        self.parse_with(host, current, &bcrypt_hash)
    }

    fn parse_with(
        &self,
        host: &str,
        current: &DomainOptions,
        hash: &dyn Fn(&str) -> String,
    ) -> Result<DomainOptions, ValidationError> {
        let hsts = number("hsts_max_age", &self.hsts_max_age, 0, MAX_HSTS)?.map(|max_age| Hsts {
            max_age,
            include_subdomains: self.hsts_subdomains,
        });
        let www = match self.www.trim() {
            "" | "none" => Www::None,
            "to_www" => Www::ToWww,
            "to_apex" => Www::ToApex,
            _ => return Err(ValidationError::new("www", "must be none, to_www or to_apex")),
        };
        if www != Www::None {
            if host.starts_with("*.") {
                return Err(ValidationError::new("www", "a wildcard domain has no www form"));
            }
            // `www.example.com` ↔ `example.com`: the apex needs two labels of its own.
            let apex = host.strip_prefix("www.").unwrap_or(host);
            if !apex.contains('.') {
                return Err(ValidationError::new(
                    "www",
                    "needs a domain with a www form (e.g. example.com)",
                ));
            }
        }
        let average = number("rate_average", &self.rate_average, 1, MAX_RATE)?;
        let burst = number("rate_burst", &self.rate_burst, 1, MAX_RATE)?;
        let rate_limit = match (average, burst) {
            (None, None) => None,
            (Some(average), burst) => Some(RateLimit {
                average,
                burst: burst.unwrap_or(average),
            }),
            (None, Some(_)) => return Err(ValidationError::new("rate_average", "is required with a burst")),
        };
        Ok(DomainOptions {
            redirect_https: self.redirect_https,
            hsts,
            www,
            basic_auth: parse_users(&self.basic_auth, &current.basic_auth, hash)?,
            headers: parse_headers(&self.headers)?,
            compress: self.compress,
            rate_limit,
        })
    }
}

impl DomainOptions {
    /// The form showing these options (passwords never leave: users only).
    pub fn to_form(&self) -> OptionsForm {
        OptionsForm {
            redirect_https: self.redirect_https,
            hsts_max_age: self.hsts.map(|h| h.max_age.to_string()).unwrap_or_default(),
            hsts_subdomains: self.hsts.is_some_and(|h| h.include_subdomains),
            www: self.www.as_str().into(),
            basic_auth: self.basic_auth.iter().map(|u| format!("{}\n", u.user)).collect(),
            headers: self.headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect(),
            compress: self.compress,
            rate_average: self.rate_limit.map(|r| r.average.to_string()).unwrap_or_default(),
            rate_burst: self.rate_limit.map(|r| r.burst.to_string()).unwrap_or_default(),
        }
    }

    /// The other host of a www/apex pair, when there is one.
    pub fn www_pair(&self, host: &str) -> Option<(String, String)> {
        let apex = host.strip_prefix("www.").unwrap_or(host).to_owned();
        let www = format!("www.{apex}");
        match self.www {
            Www::None => None,
            // (from, to)
            Www::ToWww => Some((apex, www)),
            Www::ToApex => Some((www, apex)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap(p: &str) -> String {
        format!("h({p})")
    }

    #[test]
    fn stored_options_default_to_redirecting() {
        let o: DomainOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o, DomainOptions::default());
        assert!(o.redirect_https);
    }

    #[test]
    fn the_form_parses_into_options() {
        let f = OptionsForm {
            redirect_https: true,
            hsts_max_age: "31536000".into(),
            hsts_subdomains: true,
            www: "to_www".into(),
            basic_auth: "alice:s3cret pass\nbob:x\n".into(),
            headers: "X-Frame-Options: DENY\nX-Team: blue green\n".into(),
            compress: true,
            rate_average: "100".into(),
            rate_burst: "".into(),
        };
        let o = f.parse_with("example.com", &DomainOptions::default(), &cheap).unwrap();
        assert_eq!(
            o.hsts,
            Some(Hsts {
                max_age: 31536000,
                include_subdomains: true
            })
        );
        assert_eq!(
            o.www_pair("example.com"),
            Some(("example.com".into(), "www.example.com".into()))
        );
        assert_eq!(
            o.basic_auth[0],
            BasicUser {
                user: "alice".into(),
                hash: "h(s3cret pass)".into()
            }
        );
        assert_eq!(o.headers[1], ("X-Team".into(), "blue green".into()));
        assert_eq!(
            o.rate_limit,
            Some(RateLimit {
                average: 100,
                burst: 100
            })
        );
        // Shown again: users without passwords, which keep their hashes.
        let again = o.to_form();
        assert_eq!(again.basic_auth, "alice\nbob\n");
        let kept = again
            .parse_with("example.com", &o, &|_| panic!("no new password"))
            .unwrap();
        assert_eq!(kept, o);
    }

    #[test]
    fn hostile_options_name_their_field() {
        let bad = |f: OptionsForm| {
            f.parse_with("example.com", &DomainOptions::default(), &cheap)
                .unwrap_err()
                .field
        };
        let base = OptionsForm::default;
        assert_eq!(
            bad(OptionsForm {
                hsts_max_age: "-1".into(),
                ..base()
            }),
            "hsts_max_age"
        );
        assert_eq!(
            bad(OptionsForm {
                www: "`x`".into(),
                ..base()
            }),
            "www"
        );
        assert_eq!(
            bad(OptionsForm {
                basic_auth: "a b:c".into(),
                ..base()
            }),
            "basic_auth"
        );
        assert_eq!(
            bad(OptionsForm {
                basic_auth: "carol".into(),
                ..base()
            }),
            "basic_auth"
        );
        assert_eq!(
            bad(OptionsForm {
                headers: "X-A: b\u{7}c".into(),
                ..base()
            }),
            "headers"
        );
        assert_eq!(
            bad(OptionsForm {
                headers: "X A: b".into(),
                ..base()
            }),
            "headers"
        );
        assert_eq!(
            bad(OptionsForm {
                headers: "X-A: caf\u{e9}".into(),
                ..base()
            }),
            "headers"
        );
        assert_eq!(
            bad(OptionsForm {
                headers: "X-Berth-Deployment: forged".into(),
                ..base()
            }),
            "headers"
        );
        assert_eq!(
            bad(OptionsForm {
                rate_burst: "5".into(),
                ..base()
            }),
            "rate_average"
        );
        assert_eq!(
            bad(OptionsForm {
                rate_average: "0".into(),
                ..base()
            }),
            "rate_average"
        );
        let wild = OptionsForm {
            www: "to_apex".into(),
            ..base()
        }
        .parse_with("*.example.com", &DomainOptions::default(), &cheap);
        assert_eq!(wild.unwrap_err().field, "www");
    }

    #[test]
    fn bcrypt_hashes_are_in_htpasswd_form() {
        let h = bcrypt_hash("pw");
        assert!(h.starts_with("$2y$10$"), "{h}");
        assert!(bcrypt::verify("pw", &h).unwrap());
    }
}
