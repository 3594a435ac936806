//! Validated newtypes for every name a user types. Each parses once, at the edge,
//! with an allow-list grammar; code inside the engine takes the newtype and never
//! re-validates. A failure names the field so the UI can show it beside the input.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A value that failed validation, and which form field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Trimmed free text of 1..=max characters without control characters.
fn display_text(field: &'static str, raw: &str, max: usize) -> Result<String, ValidationError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    if s.chars().count() > max {
        return Err(ValidationError::new(field, format!("must be at most {max} characters")));
    }
    if has_control(s) {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(s.to_owned())
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, field = $field:literal, max = $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const FIELD: &'static str = $field;
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                display_text($field, raw, $max).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_newtype!(
    /// A person's display name.
    PersonName, field = "name", max = 100
);
text_newtype!(
    /// An organization's display name.
    OrgName, field = "organization", max = 64
);
text_newtype!(
    /// A project's display name: 1–64 characters, unique in its organization.
    ProjectName, field = "name", max = 64
);

/// A project's optional description, at most 500 characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(String);

impl Description {
    pub const FIELD: &'static str = "description";
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        if s.chars().count() > 500 {
            return Err(ValidationError::new(Self::FIELD, "must be at most 500 characters"));
        }
        if s.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
            return Err(ValidationError::new(Self::FIELD, "must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, lower-cased. The grammar is deliberately plain (one `@`, a
/// dotted domain of DNS labels, printable ASCII local part): deliverability is
/// not checked, but nothing that could smuggle a header or a space gets in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub const FIELD: &'static str = "email";
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim().to_ascii_lowercase();
        let err = |m: &str| Err(ValidationError::new(Self::FIELD, m));
        if s.is_empty() {
            return err("is required");
        }
        if s.len() > 254 {
            return err("must be at most 254 characters");
        }
        let Some((local, domain)) = s.split_once('@') else {
            return err("must look like name@example.com");
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok || !domain.contains('.') || DomainLabels::check(domain).is_err() {
            return err("must look like name@example.com");
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}
impl From<Email> for String {
    fn from(v: Email) -> String {
        v.0
    }
}
impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// DNS label rules shared by domains and environment names: `[a-z0-9-]`, 1–63
/// characters, no leading or trailing hyphen.
struct DomainLabels;
impl DomainLabels {
    fn label_ok(label: &str) -> bool {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    }
    fn check(name: &str) -> Result<(), ()> {
        if name.len() > 253 || !name.split('.').all(Self::label_ok) {
            return Err(());
        }
        Ok(())
    }
}

/// A password as typed: 10 to 1024 characters. Never logged, never serialized.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN: usize = 10;
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        let n = raw.chars().count();
        if n < Self::MIN {
            return Err(ValidationError::new(
                field,
                format!("must be at least {} characters", Self::MIN),
            ));
        }
        if n > 1024 {
            return Err(ValidationError::new(field, "must be at most 1024 characters"));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// An environment's name: a DNS label of at most 32 characters (it becomes part
/// of container and network names later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvironmentName(String);

impl EnvironmentName {
    pub const FIELD: &'static str = "name";
    pub const PRODUCTION: &'static str = "production";
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(ValidationError::new(Self::FIELD, "is required"));
        }
        if s.len() > 32 || !DomainLabels::label_ok(s) {
            return Err(ValidationError::new(
                Self::FIELD,
                "must be 1–32 lowercase letters, digits or hyphens, not starting or ending with a hyphen",
            ));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn production() -> Self {
        Self(Self::PRODUCTION.to_owned())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for EnvironmentName {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}
impl From<EnvironmentName> for String {
    fn from(v: EnvironmentName) -> String {
        v.0
    }
}

/// A member's role in an organization, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub const FIELD: &'static str = "role";
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw.trim() {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err(ValidationError::new(Self::FIELD, "must be owner, admin or member")),
        }
    }
    /// Admins and owners manage members, invites and destructive project actions.
    pub fn can_manage(self) -> bool {
        self >= Role::Admin
    }
}

/// A limited member's role in one project (see `crate::access`), from least to
/// most powerful: a viewer sees it and reads its logs; a deployer also deploys,
/// rolls back, cancels, and edits variables and domains; an admin also creates
/// and deletes apps and database services and runs backups and restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectRole {
    Viewer,
    Deployer,
    Admin,
}

impl ProjectRole {
    pub const FIELD: &'static str = "project_role";
    pub const ALL: [ProjectRole; 3] = [ProjectRole::Viewer, ProjectRole::Deployer, ProjectRole::Admin];
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Viewer => "viewer",
            ProjectRole::Deployer => "deployer",
            ProjectRole::Admin => "admin",
        }
    }
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        Self::parse_as(Self::FIELD, raw)
    }
    /// As [`Self::parse`], naming `field` (a form's `grants[2].role`) in the error.
    pub fn parse_as(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        match raw.trim() {
            "viewer" => Ok(ProjectRole::Viewer),
            "deployer" => Ok(ProjectRole::Deployer),
            "admin" => Ok(ProjectRole::Admin),
            _ => Err(ValidationError::new(field, "must be viewer, deployer or admin")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_roles_parse_and_order() {
        for r in ProjectRole::ALL {
            assert_eq!(ProjectRole::parse(r.as_str()).unwrap(), r);
        }
        assert!(ProjectRole::Viewer < ProjectRole::Deployer && ProjectRole::Deployer < ProjectRole::Admin);
        let e = ProjectRole::parse_as("grants[1].role", "owner").unwrap_err();
        assert_eq!(e.field, "grants[1].role");
    }

    #[test]
    fn emails() {
        assert_eq!(Email::parse(" Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@x.com",
            "ada@localhost",
            "a b@x.com",
            "ada@x..com",
            "ada@-x.com",
            "ada@x.com\r\nBcc: y",
        ] {
            let e = Email::parse(bad).unwrap_err();
            assert_eq!(e.field, "email", "{bad:?}");
        }
    }

    #[test]
    fn passwords_have_a_minimum_and_hide_in_debug() {
        assert_eq!(Password::parse("password", "short").unwrap_err().field, "password");
        let p = Password::parse("password", "long enough pw").unwrap();
        assert_eq!(format!("{p:?}"), "Password(***)");
    }

    #[test]
    fn project_names_are_bounded_display_text() {
        assert_eq!(ProjectName::parse("  My shop ").unwrap().as_str(), "My shop");
        assert!(ProjectName::parse("").is_err());
        assert!(ProjectName::parse(&"x".repeat(65)).is_err());
        assert!(ProjectName::parse(&"é".repeat(64)).is_ok());
        assert!(ProjectName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn environment_names_are_dns_labels() {
        assert!(EnvironmentName::parse("staging-2").is_ok());
        for bad in ["Staging", "-x", "x-", "a_b", "a.b", "$(rm -rf)", &"a".repeat(33)] {
            assert!(EnvironmentName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_order_by_power() {
        assert!(Role::Owner.can_manage() && Role::Admin.can_manage() && !Role::Member.can_manage());
        assert!(Role::parse("root").is_err());
    }
}
