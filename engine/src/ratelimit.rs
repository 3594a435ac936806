//! Fixed-window counters in Redis for throttling login attempts. Windows expire
//! on their own, so a throttled account is never locked out for good.

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
