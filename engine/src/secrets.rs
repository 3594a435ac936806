//! Secrets at rest: the master key from `BERTH_SECRET_KEY` (32 random bytes),
//! sub-keys derived from it with HKDF per purpose, and AES-256-GCM sealing of
//! values (env values, DB passwords, S3 keys, deploy keys, webhook secrets)
//! before they are written to PostgreSQL. Each sealed value is bound to where it
//! lives (table, column, row) as associated data: moved to another row or
//! column, it no longer opens.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error(
        "must be 32 random bytes written as 64 hex digits or in base64 (generate one with `openssl rand -hex 32`); \
         an installation set up with an older, longer key: move it to BERTH_PREVIOUS_SECRET_KEY and Berth re-seals \
         everything under the new one at start"
    )]
    NotThirtyTwoBytes,
    #[error("is shorter than 32 characters, so no Berth ever accepted it")]
    NotAPreviousKey,
    #[error("is not random (a repeated pattern); generate one with `openssl rand -hex 32`")]
    LowEntropy,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not decrypt with this key here (another key, or it was moved from another row)")]
    WrongKey,
}

/// Where a sealed value is stored. It is sealed for that place and opens only
/// there: a ciphertext copied to another row, column or table fails to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot<'a> {
    pub table: &'static str,
    pub column: &'static str,
    /// The row's key (its id; for env vars, app id and name).
    pub row: &'a str,
}

impl<'a> Slot<'a> {
    pub fn new(table: &'static str, column: &'static str, row: &'a str) -> Self {
        Self { table, column, row }
    }

    fn aad(&self) -> Vec<u8> {
        format!("berth:{}.{}:{}", self.table, self.column, self.row).into_bytes()
    }
}

/// The master key. Debug output never shows it.
#[derive(Clone)]
pub struct SecretKey(Arc<[u8; 32]>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// The 32 bytes a key string encodes: 64 hex digits, or base64 (standard or
/// URL-safe, padded or not).
fn key_bytes(raw: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = if raw.len() == 64 && raw.bytes().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(raw).ok()?
    } else {
        [&B64, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(raw).ok())?
    };
    (bytes.len() == 32).then_some(bytes)
}

/// A key whose bytes repeat a short pattern (all zeros, `abab…`) was typed, not
/// drawn: 32 random bytes have at least 20 distinct values with overwhelming
/// probability (fewer than 16 happens with probability below 10^-11).
fn looks_random(bytes: &[u8]) -> bool {
    let distinct: std::collections::HashSet<u8> = bytes.iter().copied().collect();
    distinct.len() >= 16
}

impl SecretKey {
    /// Accepts exactly 32 bytes, written as 64 hex digits or in base64; the key
    /// actually used is derived from the string with HKDF (as it always was, so
    /// data sealed under an earlier Berth still opens).
    pub fn from_config(raw: &str) -> Result<Self, SecretKeyError> {
        let raw = raw.trim();
        let bytes = key_bytes(raw).ok_or(SecretKeyError::NotThirtyTwoBytes)?;
        if !looks_random(&bytes) {
            return Err(SecretKeyError::LowEntropy);
        }
        let hk = Hkdf::<Sha256>::new(Some(b"berth-master-v1"), raw.as_bytes());
        let mut key = [0u8; 32];
        hk.expand(b"master", &mut key).expect("32 bytes is a valid HKDF length");
        Ok(Self(Arc::new(key)))
    }

    /// A key an earlier Berth accepted (at least 32 characters), derived exactly
    /// as it was then: only for `BERTH_PREVIOUS_SECRET_KEY`, to re-seal what it
    /// sealed under the current key.
    pub fn from_previous_config(raw: &str) -> Result<Self, SecretKeyError> {
        let raw = raw.trim();
        if raw.len() < 32 {
            return Err(SecretKeyError::NotAPreviousKey);
        }
        let hk = Hkdf::<Sha256>::new(Some(b"berth-master-v1"), raw.as_bytes());
        let mut key = [0u8; 32];
        hk.expand(b"master", &mut key).expect("32 bytes is a valid HKDF length");
        Ok(Self(Arc::new(key)))
    }

    /// A random key, for tests.
    pub fn generate() -> Self {
        Self::from_config(&generate_key_string()).expect("a random key is strong")
    }

    /// A sub-key for one purpose, so that keys never cross uses.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::from_prk(self.0.as_ref()).expect("32-byte PRK");
        let mut out = [0u8; 32];
        hk.expand(purpose.as_bytes(), &mut out)
            .expect("32 bytes is a valid HKDF length");
        out
    }

    /// Encrypts `plaintext` for storage in `slot`: `v2:` + base64(nonce ‖
    /// ciphertext+tag), the slot as associated data.
    pub fn seal(&self, slot: Slot<'_>, plaintext: &[u8]) -> String {
        let cipher = Aes256Gcm::new_from_slice(&self.derive("seal-v2")).expect("32-byte key");
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = slot.aad();
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption cannot fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("v2:{}", B64.encode(out))
    }

    /// Decrypts a value made by [`SecretKey::seal`] for this very slot.
    pub fn open(&self, slot: Slot<'_>, sealed: &str) -> Result<Vec<u8>, SealError> {
        let raw = decode(sealed.strip_prefix("v2:").ok_or(SealError::Malformed)?)?;
        let (nonce, ct) = raw.split_at(12);
        let cipher = Aes256Gcm::new_from_slice(&self.derive("seal-v2")).expect("32-byte key");
        let aad = slot.aad();
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| SealError::WrongKey)
    }

    /// As [`SecretKey::open`], into text.
    pub fn open_text(&self, slot: Slot<'_>, sealed: &str) -> Result<String, SealError> {
        String::from_utf8(self.open(slot, sealed)?).map_err(|_| SealError::Malformed)
    }

    /// Decrypts a value sealed by Berth before values were bound to their slot
    /// (`v1:`): only [`crate::reseal`] uses this, once, to move them to `v2`.
    pub(crate) fn open_unbound(&self, sealed: &str) -> Result<Vec<u8>, SealError> {
        let raw = decode(sealed.strip_prefix("v1:").ok_or(SealError::Malformed)?)?;
        let (nonce, ct) = raw.split_at(12);
        let cipher = Aes256Gcm::new_from_slice(&self.derive("seal-v1")).expect("32-byte key");
        cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| SealError::WrongKey)
    }

    /// A `v1:` value as the earlier Berth sealed it (tests of the upgrade).
    #[cfg(any(test, feature = "testing"))]
    pub fn seal_unbound(&self, plaintext: &[u8]) -> String {
        let cipher = Aes256Gcm::new_from_slice(&self.derive("seal-v1")).expect("32-byte key");
        let nonce = [7u8; 12];
        let ct = cipher.encrypt(Nonce::from_slice(&nonce), plaintext).expect("encrypts");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("v1:{}", B64.encode(out))
    }
}

/// The nonce ‖ ciphertext bytes of a sealed value's body (split at 12 by callers).
fn decode(body: &str) -> Result<Vec<u8>, SealError> {
    let raw = B64.decode(body).map_err(|_| SealError::Malformed)?;
    if raw.len() < 12 + 16 {
        return Err(SealError::Malformed);
    }
    Ok(raw)
}

/// 32 random bytes, hex-encoded.
/// A bearer token (deploy tokens, invites, setup tokens): 32 random bytes, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// How a bearer token is stored and looked up: its SHA-256, hex (the token
/// itself is never stored).
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

pub fn generate_key_string() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Reads the development key file, creating it (mode 0600, never overwritten) on
/// first use.
pub fn load_or_create_key_file(path: &Path) -> std::io::Result<String> {
    load_or_create_secret_file(path, generate_key_string).map(|(key, _)| key)
}

/// The secret in `path` (trimmed), or, when there is none, `make()` written
/// there first with mode 0600 from its first byte; whether it was made here.
/// When another process makes it at the same moment, theirs is used.
pub fn load_or_create_secret_file(path: &Path, make: impl FnOnce() -> String) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(s) => return Ok((s.trim().to_owned(), false)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let value = make();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(value.as_bytes())?;
            f.write_all(b"\n")?;
            Ok((value, true))
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok((std::fs::read_to_string(path)?.trim().to_owned(), false))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_32_random_bytes_in_hex_or_base64() {
        let not32 = |raw: &str| matches!(SecretKey::from_config(raw), Err(SecretKeyError::NotThirtyTwoBytes));
        assert!(not32("short"));
        // 32 characters of "entropy" by letter counts, but not 32 bytes of key.
        assert!(not32("abcdefghijklmnopqrstuvwxyz012345"));
        assert!(not32("changeme-changeme-changeme-changeme"));
        assert!(not32(&"ab".repeat(31)), "62 hex digits");
        assert!(matches!(
            SecretKey::from_config(&"00".repeat(32)),
            Err(SecretKeyError::LowEntropy)
        ));
        assert!(matches!(
            SecretKey::from_config(&"abcd".repeat(16)),
            Err(SecretKeyError::LowEntropy)
        ));
        assert!(SecretKey::from_config(&generate_key_string()).is_ok());
        let mut b = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut b);
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        assert!(
            SecretKey::from_config(&B64.encode(b)).is_ok(),
            "base64 (openssl rand -base64 32)"
        );
        assert!(SecretKey::from_config(&URL_SAFE_NO_PAD.encode(b)).is_ok());
    }

    #[test]
    fn seal_round_trips_and_binds_to_the_key_and_the_slot() {
        let k = SecretKey::generate();
        let here = Slot::new("app_env_vars", "value", "app1/DATABASE_URL");
        let sealed = k.seal(here, b"postgres://u:p@h/db\n\0bytes");
        assert!(!sealed.contains("postgres"));
        assert_eq!(k.open(here, &sealed).unwrap(), b"postgres://u:p@h/db\n\0bytes");
        assert_ne!(k.seal(here, b"x"), k.seal(here, b"x"), "nonces are random");
        assert!(matches!(
            SecretKey::generate().open(here, &sealed),
            Err(SealError::WrongKey)
        ));
        let elsewhere = Slot::new("app_env_vars", "value", "app2/DATABASE_URL");
        assert!(
            matches!(k.open(elsewhere, &sealed), Err(SealError::WrongKey)),
            "moved to another row"
        );
        let other_column = Slot::new("applications", "deploy_token", "app1/DATABASE_URL");
        assert!(matches!(k.open(other_column, &sealed), Err(SealError::WrongKey)));
        assert!(matches!(k.open(here, "v2:!!"), Err(SealError::Malformed)));
        // The unbound format of earlier Berths opens only for resealing.
        let old = k.seal_unbound(b"legacy");
        assert!(matches!(k.open(here, &old), Err(SealError::Malformed)));
        assert_eq!(k.open_unbound(&old).unwrap(), b"legacy");
    }

    #[test]
    fn key_file_is_created_once_with_0600() {
        let dir = std::env::temp_dir().join(format!("berth-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("secret.key");
        let a = load_or_create_key_file(&path).unwrap();
        let b = load_or_create_key_file(&path).unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
