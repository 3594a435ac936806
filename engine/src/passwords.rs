//! Password hashing with argon2id (the `argon2` crate's default parameters, m=19 MiB,
//! t=2, p=1, per OWASP). Hashing is CPU-bound, so it runs on a blocking thread.

use crate::names::Password;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

pub async fn hash(password: &Password) -> Result<String, HashError> {
    let pw = password.expose().to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    })
    .await
    .map_err(|e| HashError(e.to_string()))?
}

/// True when `password` matches `stored`. A malformed stored hash never matches.
pub async fn verify(password: &str, stored: &str) -> bool {
    let pw = password.to_owned();
    let stored = stored.to_owned();
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password, verified against when the email is unknown so that
/// a login for a missing account takes as long as one with a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(crate::secrets::generate_key_string().as_bytes(), &salt)
            .expect("hashing a random password")
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id() {
        let p = Password::parse("password", "correct horse battery").unwrap();
        let h = hash(&p).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h).await);
        assert!(!verify("correct horse battery!", &h).await);
        assert!(!verify("anything", "not a hash").await);
    }
}
