//! What Berth checks before it lets Traefik ask a CA for a certificate, so a
//! domain that cannot pass a challenge fails here with a reason instead of
//! spending the CA's rate limit: the name resolves (through the instance's
//! nameservers when it has them, else the system's), to this server's address
//! when that is known (`BERTH_PUBLIC_IPS`), never to a private one unless the
//! instance allows private targets; and Traefik answers on its HTTP port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

/// A DNS query for `host` of type `qtype` (1: A, 28: AAAA).
fn query(id: u16, host: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + host.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // recursion desired, one question
    for label in host.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// Skips a (possibly compressed) name; the offset after it.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)? as usize;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l => at += 1 + l,
        }
    }
}

/// The A and AAAA addresses in an answer to query `id`.
fn answers(msg: &[u8], id: u16) -> Option<Vec<IpAddr>> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id {
        return None;
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip_name(msg, at)?;
        let head = msg.get(at..at + 10)?;
        let rtype = u16::from_be_bytes([head[0], head[1]]);
        let len = u16::from_be_bytes([head[8], head[9]]) as usize;
        let data = msg.get(at + 10..at + 10 + len)?;
        match (rtype, len) {
            (1, 4) => out.push(IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3]))),
            (28, 16) => out.push(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?))),
            _ => {}
        }
        at += 10 + len;
    }
    Some(out)
}

async fn ask(server: SocketAddr, host: &str, qtype: u16) -> Result<Vec<IpAddr>, String> {
    let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("literal");
    let sock = tokio::net::UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    let id: u16 = rand::random();
    sock.send_to(&query(id, host, qtype), server)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    tokio::time::timeout(TIMEOUT, async {
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.map_err(|e| e.to_string())?;
            if from == server {
                if let Some(a) = answers(&buf[..n], id) {
                    return Ok(a);
                }
            }
        }
    })
    .await
    .map_err(|_| format!("the nameserver {server} did not answer"))?
}

/// The addresses `host` resolves to.
pub async fn resolve(host: &str, nameservers: &[SocketAddr]) -> Result<Vec<IpAddr>, String> {
    let Some(server) = nameservers.first() else {
        let found = tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((host, 80)))
            .await
            .map_err(|_| "the system's resolver did not answer".to_owned())?;
        return Ok(found.map(|a| a.map(|s| s.ip()).collect()).unwrap_or_default());
    };
    let mut all = ask(*server, host, 1).await?;
    all.extend(ask(*server, host, 28).await.unwrap_or_default());
    Ok(all)
}

/// Whether `resolved` lets a CA reach this server for `host`.
pub fn judge(host: &str, resolved: &[IpAddr], public: &[IpAddr], allow_private: bool) -> Result<(), String> {
    if resolved.is_empty() {
        return Err(format!(
            "{host} does not resolve: add an A (or AAAA) record pointing at this server"
        ));
    }
    let list = resolved.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    if !public.is_empty() && !resolved.iter().any(|ip| public.contains(ip)) {
        let mine = public.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        return Err(format!("{host} resolves to {list}, not to this server ({mine})"));
    }
    if !allow_private && !resolved.iter().any(|ip| crate::outbound::is_public(*ip)) {
        return Err(format!(
            "{host} resolves to {list}: a private address a CA cannot reach"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_through_compressed_names() {
        // An answer to "a.test" A: header, the question, one A record by pointer.
        let mut msg = query(7, "a.test", 1);
        msg[2] = 0x81;
        msg[3] = 0x80;
        msg[7] = 1; // one answer
        msg.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 9]);
        assert_eq!(answers(&msg, 7), Some(vec!["203.0.113.9".parse().unwrap()]));
        assert_eq!(answers(&msg, 8), None, "another query's answer");
    }

    #[test]
    fn the_judgement_names_what_is_wrong() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(judge("a.test", &[], &[], true)
            .unwrap_err()
            .contains("does not resolve"));
        assert!(judge("a.test", &[ip("10.0.0.1")], &[], false)
            .unwrap_err()
            .contains("private"));
        assert!(judge("a.test", &[ip("10.0.0.1")], &[], true).is_ok());
        let e = judge("a.test", &[ip("93.184.215.14")], &[ip("93.184.216.34")], false).unwrap_err();
        assert!(e.contains("not to this server (93.184.216.34)"), "{e}");
        assert!(judge("a.test", &[ip("93.184.216.34")], &[ip("93.184.216.34")], false).is_ok());
    }
}
