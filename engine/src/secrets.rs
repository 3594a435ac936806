//! Secrets at rest: the master key from `BERTH_SECRET_KEY`, sub-keys derived from
//! it with HKDF per purpose, and AES-256-GCM sealing of values (env values, DB
//! passwords, S3 keys, deploy keys) before they are written to PostgreSQL.

use aes_gcm::aead::{Aead, KeyInit};
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
    #[error("must be at least 32 characters (generate one with `openssl rand -hex 32`)")]
    TooShort,
    #[error("has too little entropy (generate one with `openssl rand -hex 32`)")]
    LowEntropy,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not decrypt with this key")]
    WrongKey,
}

/// The master key. Debug output never shows it.
#[derive(Clone)]
pub struct SecretKey(Arc<[u8; 32]>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// Estimated entropy in bits of a string, from its character frequencies: a cheap
/// guard against `changeme-changeme-changeme-changeme`, not a proof of randomness.
fn entropy_bits(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in s.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = s.chars().count() as f64;
    let per_char: f64 = counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    per_char * n
}

impl SecretKey {
    /// Accepts any string of at least 32 characters whose estimated entropy is at
    /// least 128 bits; the 256-bit key is derived from it with HKDF.
    pub fn from_config(raw: &str) -> Result<Self, SecretKeyError> {
        let raw = raw.trim();
        if raw.len() < 32 {
            return Err(SecretKeyError::TooShort);
        }
        if entropy_bits(raw) < 128.0 {
            return Err(SecretKeyError::LowEntropy);
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

    /// Encrypts `plaintext` for storage: `v1:` + base64(nonce ‖ ciphertext+tag).
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let cipher = Aes256Gcm::new_from_slice(&self.derive("seal-v1")).expect("32-byte key");
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("AES-GCM encryption cannot fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("v1:{}", B64.encode(out))
    }

    /// Decrypts a value made by [`SecretKey::seal`].
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SealError> {
        let body = sealed.strip_prefix("v1:").ok_or(SealError::Malformed)?;
        let raw = B64.decode(body).map_err(|_| SealError::Malformed)?;
        if raw.len() < 12 + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, ct) = raw.split_at(12);
        let cipher = Aes256Gcm::new_from_slice(&self.derive("seal-v1")).expect("32-byte key");
        cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| SealError::WrongKey)
    }
}

/// 32 random bytes, hex-encoded.
pub fn generate_key_string() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Reads the development key file, creating it (mode 0600, never overwritten) on
/// first use.
pub fn load_or_create_key_file(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => return Ok(s.trim().to_owned()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = generate_key_string();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(key.as_bytes())?;
            f.write_all(b"\n")?;
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(std::fs::read_to_string(path)?.trim().to_owned()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_keys_are_refused() {
        assert!(matches!(SecretKey::from_config("short"), Err(SecretKeyError::TooShort)));
        assert!(matches!(
            SecretKey::from_config("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            Err(SecretKeyError::LowEntropy)
        ));
        assert!(matches!(
            SecretKey::from_config("changeme-changeme-changeme-changeme"),
            Err(SecretKeyError::LowEntropy)
        ));
        assert!(SecretKey::from_config(&generate_key_string()).is_ok());
    }

    #[test]
    fn seal_round_trips_and_binds_to_the_key() {
        let k = SecretKey::generate();
        let sealed = k.seal(b"postgres://u:p@h/db\n\0bytes");
        assert!(!sealed.contains("postgres"));
        assert_eq!(k.open(&sealed).unwrap(), b"postgres://u:p@h/db\n\0bytes");
        assert_ne!(k.seal(b"x"), k.seal(b"x"), "nonces are random");
        assert!(matches!(SecretKey::generate().open(&sealed), Err(SealError::WrongKey)));
        assert!(matches!(k.open("v1:!!"), Err(SealError::Malformed)));
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
