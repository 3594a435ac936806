//! S3 through rust-s3: a destination's validated settings, streaming uploads in
//! fixed-size multipart parts (memory stays at one part whatever the dump size;
//! nothing is committed until the dump is known good, and an abandoned upload is
//! aborted, so no partial object is ever visible), streaming downloads, listing,
//! deletion, and S3 errors turned into sentences that name the cause.

use crate::names::ValidationError;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::{Bucket, Region};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Parts are this big (S3's minimum is 5 MiB, except the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// A destination's settings, validated, with the secret opened.
#[derive(Clone)]
pub struct Target {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub access_key: String,
    pub secret_key: String,
    pub path_style: bool,
    /// Connections go through [`crate::outbound::Pinning`] (a user-given
    /// endpoint with private targets refused); `false` for the operator's own
    /// command line and with `BERTH_ALLOW_PRIVATE_TARGETS`.
    pub pinned: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn err(field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, message)
}

/// `http(s)://host[:port]`, no path, query, credentials or whitespace.
pub fn parse_endpoint(raw: &str) -> Result<String, ValidationError> {
    const FIELD: &str = "endpoint";
    let s = raw.trim().trim_end_matches('/');
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| err(FIELD, "must start with https:// or http://"))?;
    let ok = !rest.is_empty()
        && rest.len() <= 253
        && rest
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']'));
    if !ok {
        return Err(err(
            FIELD,
            "must be a URL such as https://s3.example.com or http://127.0.0.1:9000 (no path)",
        ));
    }
    Ok(s.to_owned())
}

/// `[a-z0-9-]`, 1–32 (e.g. `us-east-1`); empty means `us-east-1`.
pub fn parse_region(raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok("us-east-1".into());
    }
    if s.len() > 32
        || !s
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return Err(err(
            "region",
            "must be lower-case letters, digits and '-' (e.g. us-east-1)",
        ));
    }
    Ok(s.to_owned())
}

/// S3's bucket naming rules: 3–63 of `[a-z0-9.-]`, starting and ending alphanumeric.
pub fn parse_bucket(raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim();
    let b = s.as_bytes();
    let ok = (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !s.contains("..");
    if !ok {
        return Err(err(
            "bucket",
            "must be 3-63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit",
        ));
    }
    Ok(s.to_owned())
}

/// Key prefix: `/`-separated segments of `[A-Za-z0-9._-]`, no `.`/`..` segment,
/// at most 200 characters; surrounding slashes are dropped. Empty is allowed.
pub fn parse_prefix(raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim().trim_matches('/');
    if s.is_empty() {
        return Ok(String::new());
    }
    let ok = s.len() <= 200
        && s.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        });
    if !ok {
        return Err(err(
            "prefix",
            "must be path segments of letters, digits, '.', '_' and '-' separated by '/'",
        ));
    }
    Ok(s.to_owned())
}

/// Access key IDs: 1–128 of `[A-Za-z0-9+/=_.-]`.
pub fn parse_access_key(raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim();
    if s.is_empty()
        || s.len() > 128
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'_' | b'.' | b'-'))
    {
        return Err(err("access_key", "must be 1-128 letters, digits or + / = _ . -"));
    }
    Ok(s.to_owned())
}

/// Secret keys: 1–256 printable ASCII characters, no spaces.
pub fn parse_secret_key(raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim();
    if s.is_empty() || s.len() > 256 || !s.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(err("secret_key", "must be 1-256 printable characters without spaces"));
    }
    Ok(s.to_owned())
}

impl Target {
    fn bucket_with(&self, timeout: Option<std::time::Duration>) -> Result<Box<Bucket>, String> {
        let region = Region::Custom {
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
        };
        let creds = Credentials::new(Some(&self.access_key), Some(&self.secret_key), None, None, None)
            .map_err(|e| format!("S3 credentials: {e}"))?;
        let mut b = Bucket::new(&self.bucket, region, creds).map_err(|e| describe(&e))?;
        if self.path_style {
            b = b.with_path_style();
        }
        if self.pinned {
            if !self.endpoint.starts_with("https://") {
                return Err("a plain http:// endpoint needs BERTH_ALLOW_PRIVATE_TARGETS; use https://".into());
            }
            let proxy = crate::outbound::Pinning::get().map_err(|e| format!("starting the outbound proxy: {e}"))?;
            let proxy = reqwest::Proxy::https(proxy.url()).map_err(|e| format!("outbound proxy: {e}"))?;
            b = Box::new(b.set_proxy(proxy).map_err(|e| describe(&e))?);
        }
        b.set_request_timeout(timeout);
        Ok(b)
    }

    pub fn bucket(&self) -> Result<Box<Bucket>, String> {
        self.bucket_with(Some(std::time::Duration::from_secs(120)))
    }

    /// For downloads of any size: no overall deadline (the body streams for as
    /// long as the restore reads it).
    pub fn streaming_bucket(&self) -> Result<Box<Bucket>, String> {
        self.bucket_with(None)
    }

    /// `<prefix>/<rest>`, or `<rest>` without a prefix.
    pub fn key(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_owned()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }
}

fn xml_tag<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].trim())
}

/// An S3 error as a sentence naming the cause: S3's own error code and message
/// when it answered, the connection problem when it did not.
pub fn describe(e: &S3Error) -> String {
    match e {
        S3Error::HttpFailWithBody(status, body) => {
            let code = xml_tag(body, "Code").unwrap_or("");
            let message = xml_tag(body, "Message").unwrap_or("");
            let hint = match code {
                "NoSuchBucket" => " (the bucket does not exist)",
                "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" => " (check the access key and secret)",
                _ => "",
            };
            if code.is_empty() {
                // Not S3's error document: whatever answered is not echoed
                // (the endpoint is user-given; its body is not ours to show).
                format!("S3 answered HTTP {status} without an S3 error code")
            } else {
                format!("S3 answered HTTP {status} {code}: {message}{hint}")
            }
        }
        S3Error::Reqwest(r) => {
            let mut msg = format!("cannot reach S3: {r}");
            let mut src = std::error::Error::source(r);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        }
        other => format!("S3: {other}"),
    }
}

/// Lists at most one key under the prefix: fails, naming the cause, when the
/// bucket is missing or the credentials are refused. Run before a dump starts,
/// so a bad destination fails in a second rather than after the whole dump.
pub async fn preflight(target: &Target) -> Result<(), String> {
    let bucket = target.bucket()?;
    bucket
        .list_page(target.key(""), None, None, None, Some(1))
        .await
        .map_err(|e| describe(&e))?;
    Ok(())
}

/// Lists, writes and deletes a small object: proves the endpoint, bucket and
/// credentials work, or says exactly why not.
pub async fn test_connection(target: &Target) -> Result<(), String> {
    preflight(target).await?;
    let bucket = target.bucket()?;
    let key = target.key(&format!(".berth-connection-test-{}", uuid::Uuid::new_v4().simple()));
    bucket
        .put_object_with_content_type(&key, b"berth connection test", "text/plain")
        .await
        .map_err(|e| describe(&e))?;
    bucket.delete_object(&key).await.map_err(|e| describe(&e))?;
    Ok(())
}

/// An upload read to its end but not yet visible in the bucket.
pub enum Staged {
    /// Smaller than one part: sent in one PUT at commit.
    Small(Vec<u8>),
    Multipart {
        upload_id: String,
        parts: Vec<s3::serde_types::Part>,
        total: u64,
    },
}

async fn fill(reader: &mut (dyn AsyncRead + Unpin + Send), buf: &mut Vec<u8>) -> std::io::Result<bool> {
    // Reads until the buffer holds a part or the stream ends; true at the end.
    while buf.len() < PART_SIZE {
        let n = (&mut *reader)
            .take((PART_SIZE - buf.len()) as u64)
            .read_to_end(buf)
            .await?;
        if n == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads `reader` to its end, uploading full parts as they fill. `progress`
/// counts the bytes read; `initiated` hears the multipart upload's ID as soon as
/// there is one (so it can be recorded for a reaper). On any failure the
/// multipart upload is aborted.
pub async fn stage(
    bucket: &Bucket,
    key: &str,
    reader: &mut (dyn AsyncRead + Unpin + Send),
    progress: &AtomicU64,
    initiated: &(dyn Fn(&str) + Send + Sync),
) -> Result<Staged, String> {
    let mut buf = Vec::with_capacity(PART_SIZE);
    let ended = fill(reader, &mut buf)
        .await
        .map_err(|e| format!("reading the dump: {e}"))?;
    progress.fetch_add(buf.len() as u64, Ordering::Relaxed);
    if ended {
        return Ok(Staged::Small(buf));
    }
    let init = bucket
        .initiate_multipart_upload(key, "application/gzip")
        .await
        .map_err(|e| describe(&e))?;
    let upload_id = init.upload_id;
    initiated(&upload_id);
    let mut parts = Vec::new();
    let mut total = 0u64;
    let result = async {
        loop {
            let ended = buf.len() < PART_SIZE;
            if !buf.is_empty() {
                let n = buf.len() as u64;
                let chunk = std::mem::replace(&mut buf, Vec::with_capacity(PART_SIZE));
                let part = bucket
                    .put_multipart_chunk(chunk, key, parts.len() as u32 + 1, &upload_id, "application/gzip")
                    .await
                    .map_err(|e| describe(&e))?;
                parts.push(part);
                total += n;
            }
            if ended {
                return Ok::<_, String>(());
            }
            // A short (or empty) buffer after this read is the last part.
            fill(reader, &mut buf)
                .await
                .map_err(|e| format!("reading the dump: {e}"))?;
            progress.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
    }
    .await;
    match result {
        Ok(()) => Ok(Staged::Multipart {
            upload_id,
            parts,
            total,
        }),
        Err(e) => {
            let _ = bucket.abort_upload(key, &upload_id).await;
            Err(e)
        }
    }
}

/// Makes a staged upload visible; returns its size.
pub async fn commit(bucket: &Bucket, key: &str, staged: Staged) -> Result<u64, String> {
    match staged {
        Staged::Small(body) => {
            let n = body.len() as u64;
            bucket
                .put_object_with_content_type(key, &body, "application/gzip")
                .await
                .map_err(|e| describe(&e))?;
            Ok(n)
        }
        Staged::Multipart {
            upload_id,
            parts,
            total,
        } => {
            if let Err(e) = bucket.complete_multipart_upload(key, &upload_id, parts).await {
                let _ = bucket.abort_upload(key, &upload_id).await;
                return Err(describe(&e));
            }
            Ok(total)
        }
    }
}

/// Drops a staged upload: nothing of it remains in the bucket.
pub async fn abort(bucket: &Bucket, key: &str, staged: Staged) {
    if let Staged::Multipart { upload_id, .. } = staged {
        if let Err(e) = bucket.abort_upload(key, &upload_id).await {
            tracing::warn!(key, error = %describe(&e), "aborting a multipart upload");
        }
    }
}

/// The object as a byte stream (errors as `io::Error`), for a decompressor.
pub async fn download(target: &Target, key: &str) -> Result<impl AsyncRead + Unpin + Send + 'static, String> {
    use futures::StreamExt;
    let bucket = target.streaming_bucket()?;
    let resp = bucket.get_object_stream(key).await.map_err(|e| describe(&e))?;
    if resp.status_code >= 300 {
        return Err(format!("S3 answered HTTP {} for {key}", resp.status_code));
    }
    let stream = resp.bytes.map(|r| r.map_err(|e| std::io::Error::other(describe(&e))));
    Ok(tokio_util::io::StreamReader::new(stream))
}

/// One object in a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub last_modified: String,
}

pub async fn list(target: &Target, prefix: &str) -> Result<Vec<Listed>, String> {
    let bucket = target.bucket()?;
    let pages = bucket.list(prefix.to_owned(), None).await.map_err(|e| describe(&e))?;
    let mut out: Vec<Listed> = pages
        .into_iter()
        .flat_map(|p| p.contents)
        .map(|o| Listed {
            key: o.key,
            size: o.size,
            last_modified: o.last_modified,
        })
        .collect();
    out.sort_by(|a, b| b.key.cmp(&a.key));
    Ok(out)
}

pub async fn delete(target: &Target, key: &str) -> Result<(), String> {
    let bucket = target.bucket()?;
    bucket.delete_object(key).await.map_err(|e| describe(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_allow_listed() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:9000/").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(parse_endpoint("s3.example.com").unwrap_err().field, "endpoint");
        assert_eq!(parse_endpoint("https://x/path").unwrap_err().field, "endpoint");
        assert_eq!(parse_endpoint("https://a b").unwrap_err().field, "endpoint");
        assert_eq!(parse_bucket("my-backups").unwrap(), "my-backups");
        for bad in ["ab", "My", "-x-", "a;b", "a\nb", "a..b"] {
            assert_eq!(parse_bucket(bad).unwrap_err().field, "bucket", "{bad:?}");
        }
        assert_eq!(parse_prefix("/berth/prod/").unwrap(), "berth/prod");
        assert_eq!(parse_prefix("").unwrap(), "");
        for bad in ["a/../b", "$(id)", "a;b", "a\nb", "a b", "a`b`", "a|b", "x/./y", "a//b"] {
            assert_eq!(parse_prefix(bad).unwrap_err().field, "prefix", "{bad:?}");
        }
        assert_eq!(parse_region("").unwrap(), "us-east-1");
        assert_eq!(parse_region("us east").unwrap_err().field, "region");
        assert_eq!(parse_access_key("AKIA 1").unwrap_err().field, "access_key");
        assert_eq!(parse_secret_key("a\u{7f}").unwrap_err().field, "secret_key");
    }

    #[test]
    fn s3_errors_name_the_cause() {
        let e = S3Error::HttpFailWithBody(
            404,
            "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>".into(),
        );
        assert_eq!(
            describe(&e),
            "S3 answered HTTP 404 NoSuchBucket: The specified bucket does not exist (the bucket does not exist)"
        );
        let e = S3Error::HttpFailWithBody(
            403,
            "<Error><Code>SignatureDoesNotMatch</Code><Message>x</Message></Error>".into(),
        );
        assert!(describe(&e).contains("check the access key and secret"));
    }

    #[test]
    fn keys_join_the_prefix() {
        let mut t = Target {
            endpoint: "http://x".into(),
            region: "us-east-1".into(),
            bucket: "b".into(),
            prefix: "p/q".into(),
            access_key: "a".into(),
            secret_key: "s".into(),
            pinned: false,
            path_style: true,
        };
        assert_eq!(t.key("db/1.gz"), "p/q/db/1.gz");
        t.prefix.clear();
        assert_eq!(t.key("db/1.gz"), "db/1.gz");
        assert!(!format!("{t:?}").contains("\"s\""), "the secret is not in Debug");
    }
}
