//! A minimal HTTP/1.1 client for Berth's own probes: health checks against a
//! container, and requests through Traefik to confirm a route moved. One request
//! per connection (`Connection: close`), the answer read to its end (at most
//! 64 KiB), all within one timeout. Not a general client: no TLS, no redirects.

use std::time::Duration;

/// What came back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Http1Error {
    #[error("connection refused")]
    Refused,
    #[error("timed out")]
    Timeout,
    #[error("the answer was not HTTP")]
    NotHttp,
}

/// `method path` on `ip:port` with `Host: host`.
pub async fn request(
    ip: &str,
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<Reply, Http1Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect((ip, port))
            .await
            .map_err(|_| Http1Error::Refused)?;
        let req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: berth\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|_| Http1Error::Refused)?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while buf.len() <= 64 * 1024 {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        parse(&String::from_utf8_lossy(&buf))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| Http1Error::Timeout)?
}

fn parse(text: &str) -> Result<Reply, Http1Error> {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or(Http1Error::NotHttp)?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_headers_and_body() {
        let r = parse("HTTP/1.1 404 Not Found\r\nX-Berth-Deployment: abc\r\nContent-Length: 3\r\n\r\nno!").unwrap();
        assert_eq!(
            (r.status, r.header("x-berth-deployment"), r.body.as_str()),
            (404, Some("abc"), "no!")
        );
        assert_eq!(parse("SSH-2.0-OpenSSH\r\n").unwrap_err(), Http1Error::NotHttp);
        assert_eq!(parse("").unwrap_err(), Http1Error::NotHttp);
    }
}
