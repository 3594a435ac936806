//! Connections to addresses users give (S3 endpoints, git remotes): a user must
//! not be able to make Berth reach the loopback interface, a private network or
//! a cloud metadata service on their behalf, unless the operator allows private
//! targets (`BERTH_ALLOW_PRIVATE_TARGETS`, development and tests).
//!
//! Checking a name and then letting a library resolve it again leaves a window
//! (DNS rebinding), so connections go only to the addresses checked here: git
//! gets them pinned (`http.curloptResolve`, ssh `HostName`), and rust-s3 talks
//! through [`Pinning`], a CONNECT proxy on loopback that resolves, checks and
//! connects itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("{host} does not resolve: {reason}")]
    Unresolvable { host: String, reason: String },
    #[error(
        "{host} is a loopback, private, link-local or metadata address ({addr}); this instance does not connect \
         to those (BERTH_ALLOW_PRIVATE_TARGETS)"
    )]
    Private { host: String, addr: IpAddr },
}

/// Whether `ip` is an ordinary address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 is AWS metadata)
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64: embeds an IPv4 address
                || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
                || (s[0] == 0x2002)) // 6to4: embeds an IPv4 address
        }
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local() // 169.254/16, the metadata address among them
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // carrier-grade NAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
        || o[0] >= 240) // reserved
}

/// The policy: refuse non-public addresses unless private targets are allowed.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub allow_private: bool,
}

impl Policy {
    pub fn of(engine: &crate::Engine) -> Self {
        Self {
            allow_private: engine.deploy.host.allow_private_targets,
        }
    }

    /// Resolves `host` and returns its addresses on `port`, refusing when any of
    /// them is not public (a name that also points inside is not trusted).
    pub async fn resolve(self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OutboundError> {
        // Bracketed IPv6 literals come from URLs.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| OutboundError::Unresolvable {
                    host: host.to_owned(),
                    reason: e.to_string(),
                })?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(OutboundError::Unresolvable {
                host: host.to_owned(),
                reason: "no addresses".into(),
            });
        }
        if !self.allow_private {
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(OutboundError::Private {
                    host: host.to_owned(),
                    addr: bad.ip(),
                });
            }
        }
        Ok(addrs)
    }

    /// Refuses a host that is an address literal in any form a resolver accepts
    /// (`127.0.0.1`, `2130706433`, `0x7f000001`, `0177.1`) and not public: a
    /// check at the form, before anything is stored. Names are checked when used.
    pub fn check_literal(self, host: &str) -> Result<(), OutboundError> {
        if self.allow_private {
            return Ok(());
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip = bare.parse::<IpAddr>().ok().or_else(|| inet_aton(bare).map(IpAddr::V4));
        match ip {
            Some(addr) if !is_public(addr) => Err(OutboundError::Private {
                host: host.to_owned(),
                addr,
            }),
            _ => Ok(()),
        }
    }
}

/// An IPv4 address in the loose forms of `inet_aton` (1 to 4 parts, each
/// decimal, `0x` hex or `0` octal), which resolvers and curl accept too.
fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        let n = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            u64::from_str_radix(h, 16).ok()?
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()?
        } else {
            p.parse::<u64>().ok()?
        };
        nums.push(n);
    }
    let (last, head) = nums.split_last()?;
    if head.iter().any(|n| *n > 255) || *last >= 1u64 << (8 * (4 - head.len())) {
        return None;
    }
    let mut v: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i);
    }
    Some(Ipv4Addr::from((v | last) as u32))
}

/// A CONNECT proxy on loopback for HTTPS clients that resolve names themselves
/// (rust-s3): it resolves the requested host, refuses non-public addresses and
/// connects to the address it checked. Only this process may use it: it wants a
/// random credential.
pub struct Pinning {
    url: String,
}

impl Pinning {
    /// The process's proxy, started on first use (needs a Tokio runtime).
    pub fn get() -> std::io::Result<&'static Pinning> {
        static PROXY: OnceLock<Pinning> = OnceLock::new();
        if let Some(p) = PROXY.get() {
            return Ok(p);
        }
        let listener = std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0))
            .or_else(|_| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let secret = {
            use rand::RngCore;
            let mut b = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut b);
            hex::encode(b)
        };
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let expected = format!(
            "basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("berth:{secret}"))
        );
        let url = match addr {
            SocketAddr::V6(a) => format!("http://berth:{secret}@[::1]:{}", a.port()),
            SocketAddr::V4(a) => format!("http://berth:{secret}@127.0.0.1:{}", a.port()),
        };
        let started = PROXY.get_or_init(|| {
            tokio::spawn(serve(listener, expected));
            Pinning { url }
        });
        Ok(started)
    }

    /// The proxy URL (with its credential) for `reqwest::Proxy::https`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

async fn serve(listener: tokio::net::TcpListener, expected: String) {
    let policy = Policy { allow_private: false };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let expected = expected.clone();
        tokio::spawn(async move {
            if let Err(e) = tunnel(stream, &expected, policy).await {
                tracing::debug!(error = %e, "outbound proxy");
            }
        });
    }
}

/// One `CONNECT host:port` request: checked, then bytes copied both ways.
async fn tunnel(stream: tokio::net::TcpStream, expected: &str, policy: Policy) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    // The request head, bounded: a request line and a few headers.
    loop {
        let mut line = String::new();
        let n = (&mut reader).take(8192).read_line(&mut line).await?;
        if n == 0 || line == "\r\n" || line == "\n" || head.len() > 32 {
            break;
        }
        head.push(line.trim_end().to_owned());
    }
    let stream = reader.get_mut();
    let refuse = |code: &str| format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let authorized = head.iter().skip(1).any(|h| {
        h.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("proxy-authorization") && v.trim().eq_ignore_ascii_case(expected)
        })
    });
    if !authorized {
        stream
            .write_all(refuse("407 Proxy Authentication Required").as_bytes())
            .await?;
        return Ok(());
    }
    let target = head
        .first()
        .and_then(|l| l.strip_prefix("CONNECT "))
        .and_then(|l| l.split(' ').next())
        .and_then(|hp| hp.rsplit_once(':'))
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)));
    let Some((host, port)) = target else {
        stream.write_all(refuse("405 Method Not Allowed").as_bytes()).await?;
        return Ok(());
    };
    let addrs = match policy.resolve(&host, port).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "refused an outbound connection");
            stream.write_all(refuse("403 Forbidden").as_bytes()).await?;
            return Ok(());
        }
    };
    let mut upstream = None;
    for a in addrs {
        if let Ok(Ok(s)) =
            tokio::time::timeout(std::time::Duration::from_secs(10), tokio::net::TcpStream::connect(a)).await
        {
            upstream = Some(s);
            break;
        }
    }
    let Some(mut upstream) = upstream else {
        stream.write_all(refuse("502 Bad Gateway").as_bytes()).await?;
        return Ok(());
    };
    stream.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await?;
    // Bytes the client sent after the head (TLS hello) are in the reader's buffer.
    let buffered = reader.buffer().to_vec();
    let mut client = reader.into_inner();
    if !buffered.is_empty() {
        upstream.write_all(&buffered).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "140.82.112.3", "2606:4700:4700::1111"] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn numeric_host_forms_are_recognised() {
        let strict = Policy { allow_private: false };
        for h in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "127.1",
            "169.254.169.254",
            "[::1]",
        ] {
            assert!(strict.check_literal(h).is_err(), "{h}");
        }
        for h in ["github.com", "1.1.1.1", "gitlab.example.com"] {
            assert!(strict.check_literal(h).is_ok(), "{h}");
        }
        assert!(Policy { allow_private: true }.check_literal("127.0.0.1").is_ok());
        assert_eq!(inet_aton("2130706433"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(inet_aton("0x7f.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(inet_aton("256.1.1.1"), None);
        assert_eq!(inet_aton("github"), None);
    }

    #[tokio::test]
    async fn names_resolving_inside_are_refused() {
        let strict = Policy { allow_private: false };
        let e = strict.resolve("localhost", 443).await.unwrap_err();
        assert!(matches!(e, OutboundError::Private { .. }), "{e}");
        assert!(Policy { allow_private: true }.resolve("localhost", 443).await.is_ok());
    }

    /// The proxy refuses a CONNECT to a private address even with its
    /// credential, and anything without the credential.
    #[tokio::test]
    async fn the_pinning_proxy_refuses_private_targets() {
        let p = Pinning::get().unwrap();
        let rest = p.url().strip_prefix("http://").unwrap();
        let (cred, addr) = rest.split_once('@').unwrap();
        let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cred);
        let ask = |req: String| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let refused = ask(format!(
            "CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic {auth}\r\n\r\n"
        ))
        .await;
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
        let anonymous = ask("CONNECT 1.1.1.1:443 HTTP/1.1\r\nHost: x\r\n\r\n".into()).await;
        assert!(anonymous.starts_with("HTTP/1.1 407"), "{anonymous}");
    }
}
