//! Fixed-window counters in Redis for throttling login attempts. Windows expire
//! on their own, so a throttled account is never locked out for good. A counter
//! is taken before the attempt it guards (incremented atomically, then
//! compared), so parallel attempts cannot slip past it.

use crate::error::StoreError;
use crate::kv::Kv;

/// A limit of `max` events per `window_secs`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u64,
    pub window_secs: u64,
}

/// `Some(seconds until the window resets)` when the counter is already at its limit.
pub async fn check(kv: &Kv, key: &str, limit: Limit) -> Result<Option<u64>, StoreError> {
    let mut conn = kv.conn().await?;
    let full = kv.key(key);
    let (count, ttl): (Option<u64>, i64) = redis::pipe().get(&full).ttl(&full).query_async(&mut conn).await?;
    if count.unwrap_or(0) >= limit.max {
        Ok(Some(if ttl > 0 { ttl as u64 } else { limit.window_secs }))
    } else {
        Ok(None)
    }
}

/// Takes one attempt: counts it (the window starts with the first) and returns
/// `Some(seconds until the window resets)` when this attempt is over the limit.
pub async fn take(kv: &Kv, key: &str, limit: Limit) -> Result<Option<u64>, StoreError> {
    let mut conn = kv.conn().await?;
    let full = kv.key(key);
    let (count, ttl): (u64, i64) = redis::pipe()
        .atomic()
        .incr(&full, 1u64)
        .cmd("EXPIRE")
        .arg(&full)
        .arg(limit.window_secs)
        .arg("NX")
        .ignore()
        .ttl(&full)
        .query_async(&mut conn)
        .await?;
    Ok((count > limit.max).then_some(if ttl > 0 { ttl as u64 } else { limit.window_secs }))
}

/// The count in the key's current window.
pub async fn count(kv: &Kv, key: &str) -> Result<u64, StoreError> {
    let mut conn = kv.conn().await?;
    let n: Option<u64> = redis::cmd("GET").arg(kv.key(key)).query_async(&mut conn).await?;
    Ok(n.unwrap_or(0))
}

/// Counts one event; the window starts with the first event.
pub async fn hit(kv: &Kv, key: &str, limit: Limit) -> Result<(), StoreError> {
    let mut conn = kv.conn().await?;
    let full = kv.key(key);
    let _: () = redis::pipe()
        .atomic()
        .incr(&full, 1u64)
        .ignore()
        .cmd("EXPIRE")
        .arg(&full)
        .arg(limit.window_secs)
        .arg("NX")
        .ignore()
        .query_async(&mut conn)
        .await?;
    Ok(())
}

pub async fn reset(kv: &Kv, key: &str) -> Result<(), StoreError> {
    let mut conn = kv.conn().await?;
    let _: () = redis::cmd("DEL").arg(kv.key(key)).query_async(&mut conn).await?;
    Ok(())
}

/// The part of a client address a limit is keyed by: an IPv4 address whole, an
/// IPv6 address by its /64 (one host usually holds a whole /64, so per-address
/// keys would be free to rotate).
pub fn client_key(addr: &str) -> String {
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(v4) => v4.to_string(),
        Err(_) => addr.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::client_key;

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        assert_eq!(client_key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(client_key("2001:db8:1:2:ffff::1"), "2001:db8:1:2::/64");
        assert_eq!(client_key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(client_key("192.0.2.7"), "192.0.2.7");
    }
}
