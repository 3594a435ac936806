//! The client side of the REST API: where it is and which key to send
//! (stored by `berth login` in the user's config directory, mode 0600), one
//! JSON request, every page of a list, and server-sent events as a stream.

use anyhow::{bail, Context};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

/// What `berth login` keeps.
#[derive(Serialize, Deserialize)]
pub struct Stored {
    pub url: String,
    pub key: String,
}

/// `$XDG_CONFIG_HOME/berth/cli.json`, else `~/.config/berth/cli.json`.
pub fn config_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("berth").join("cli.json"))
}

/// Writes the URL and key readable by the user only (the directory 0700, the
/// file 0600, replaced whole).
pub fn store(stored: &Stored) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = config_path()?;
    let dir = path.parent().expect("a file in a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(".cli.json.new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(stored)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// A client of one Berth's API with one key.
pub struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(url: &str, key: &str) -> anyhow::Result<Self> {
        let url = url.trim().trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            bail!("the URL must start with https:// (or http:// for a local Berth): {url}");
        }
        Ok(Self {
            base: format!("{url}/api/v1"),
            key: key.trim().to_owned(),
            http: reqwest::Client::builder()
                .user_agent(concat!("berth-cli/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()?,
        })
    }

    /// From the environment (`BERTH_API_URL`, `BERTH_API_KEY`) over what
    /// `berth login` stored.
    pub fn from_env() -> anyhow::Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let stored: Option<Stored> = config_path()
            .ok()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let url = env("BERTH_API_URL").or_else(|| stored.as_ref().map(|s| s.url.clone()));
        let key = env("BERTH_API_KEY").or_else(|| stored.as_ref().map(|s| s.key.clone()));
        match (url, key) {
            (Some(url), Some(key)) => Self::new(&url, &key),
            _ => bail!("not logged in: run `berth login --url <your Berth>` (or set BERTH_API_URL and BERTH_API_KEY)"),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    /// The API's error as a sentence: its message, and the field at fault.
    async fn failure(res: reqwest::Response) -> anyhow::Error {
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        match serde_json::from_str::<Value>(&body) {
            Ok(v) if v["error"].is_string() => match v["field"].as_str() {
                Some(field) => anyhow::anyhow!("{field}: {} ({status})", v["error"].as_str().unwrap_or("")),
                None => anyhow::anyhow!("{} ({status})", v["error"].as_str().unwrap_or("")),
            },
            _ => anyhow::anyhow!("the server answered {status}"),
        }
    }

    /// One request; its JSON answer (`null` when it has no body).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        if !res.status().is_success() {
            return Err(Self::failure(res).await);
        }
        let bytes = res.bytes().await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Every item of a list, following its cursors.
    pub async fn all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = vec![];
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page = match &cursor {
                None => self.get(&format!("{path}{sep}limit=100")).await?,
                Some(c) => self.get(&format!("{path}{sep}limit=100&cursor={c}")).await?,
            };
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(items),
            }
        }
    }

    /// A server-sent event stream: (event name, data) until the server ends it.
    pub async fn events(&self, path: &str) -> anyhow::Result<impl Stream<Item = anyhow::Result<(String, String)>>> {
        let res = self
            .request(reqwest::Method::GET, path)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        if !res.status().is_success() {
            return Err(Self::failure(res).await);
        }
        let bytes = res.bytes_stream();
        Ok(futures::stream::unfold(
            (bytes.boxed(), Vec::<u8>::new()),
            |(mut bytes, mut buf)| async move {
                loop {
                    if let Some(end) = find_blank_line(&buf) {
                        let block: Vec<u8> = buf.drain(..end.1).collect();
                        if let Some(event) = parse_block(&String::from_utf8_lossy(&block[..end.0])) {
                            return Some((Ok(event), (bytes, buf)));
                        }
                        continue;
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                        Some(Err(e)) => return Some((Err(anyhow::Error::from(e)), (bytes, buf))),
                        None => return None,
                    }
                }
            },
        ))
    }
}

/// Where the first event block ends: (its length, the length with the blank line).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// One event block: `event:` and `data:` lines (data lines joined by line
/// breaks); a block of comments only (keep-alives) is nothing.
fn parse_block(block: &str) -> Option<(String, String)> {
    let mut event = String::from("message");
    let mut data: Vec<&str> = vec![];
    for line in block.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(v) = line.strip_prefix("event:") {
            event = v.strip_prefix(' ').unwrap_or(v).to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() {
        return None;
    }
    Some((event, data.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_blocks_parse_and_keep_alives_are_skipped() {
        assert_eq!(
            parse_block("event: line\ndata: one\ndata: two"),
            Some(("line".into(), "one\ntwo".into()))
        );
        assert_eq!(parse_block(": keep-alive"), None);
        assert_eq!(parse_block("data:x"), Some(("message".into(), "x".into())));
        assert_eq!(find_blank_line(b"data: a\n\ndata: b"), Some((7, 9)));
        assert_eq!(find_blank_line(b"data: a\n"), None);
    }
}
