//! Moves every secret sealed by an earlier Berth (format `v1:`, not bound to
//! where it is stored) to the slot-bound format (`v2:`), and after a key
//! rotation every value sealed under `BERTH_PREVIOUS_SECRET_KEY` to the current
//! key: `berth serve` and `berth worker` run it after the migrations. Each value is rewritten only
//! if it is still the one read (a conditional UPDATE), so concurrent starts are
//! harmless, and a second run finds nothing to do.

use crate::error::StoreError;
use crate::secrets::{SecretKey, Slot};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// A sealed column: its table, column, and the SQL expression of a row's key
/// (the `row` of its [`Slot`]).
struct Column {
    table: &'static str,
    column: &'static str,
    row_key: &'static str,
}

const COLUMNS: [Column; 12] = [
    Column {
        table: "users",
        column: "totp_secret",
        row_key: "id::text",
    },
    Column {
        table: "users",
        column: "totp_pending",
        row_key: "id::text",
    },
    Column {
        table: "applications",
        column: "source_secret",
        row_key: "id::text",
    },
    Column {
        table: "applications",
        column: "webhook_secret",
        row_key: "id::text",
    },
    Column {
        table: "applications",
        column: "deploy_token",
        row_key: "id::text",
    },
    Column {
        table: "app_env_vars",
        column: "value",
        row_key: "application_id::text || '/' || name",
    },
    Column {
        table: "database_services",
        column: "password",
        row_key: "id::text",
    },
    Column {
        table: "database_services",
        column: "root_password",
        row_key: "id::text",
    },
    Column {
        table: "s3_destinations",
        column: "secret_key",
        row_key: "id::text",
    },
    Column {
        table: "notification_channels",
        column: "settings",
        row_key: "id::text",
    },
    Column {
        table: "instance_settings",
        column: "dns_credentials",
        row_key: "'instance'",
    },
    Column {
        table: "certificates",
        column: "key",
        row_key: "domain_id::text",
    },
];

#[derive(diesel::QueryableByName)]
struct Sealed {
    #[diesel(sql_type = Text)]
    row_key: String,
    #[diesel(sql_type = Text)]
    value: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{table}.{column} of row {row}: {reason} (is BERTH_SECRET_KEY the key this database was sealed with?)")]
    Unreadable {
        table: &'static str,
        column: &'static str,
        row: String,
        reason: String,
    },
}

/// Reseals every `v1:` value, and with a `previous` key (the operator rotated
/// `BERTH_SECRET_KEY`) every value still sealed under it; returns how many were
/// moved.
pub async fn reseal(
    conn: &mut AsyncPgConnection,
    key: &SecretKey,
    previous: Option<&SecretKey>,
) -> Result<usize, ResealError> {
    let mut moved = 0;
    // Without a rotation only the old format needs reading: no full scan on
    // every start.
    let which = if previous.is_some() {
        "IS NOT NULL"
    } else {
        "LIKE 'v1:%'"
    };
    for c in &COLUMNS {
        // Table, column and key expressions are the constants above, never input.
        let rows: Vec<Sealed> = diesel::sql_query(format!(
            "SELECT {key} AS row_key, {col} AS value FROM {table} WHERE {col} {which}",
            key = c.row_key,
            col = c.column,
            table = c.table,
        ))
        .load(conn)
        .await
        .map_err(StoreError::from)?;
        for r in rows {
            let slot = Slot::new(c.table, c.column, &r.row_key);
            if key.open(slot, &r.value).is_ok() {
                continue;
            }
            let plain = key
                .open_unbound(&r.value)
                .or_else(|e| match previous {
                    Some(p) => p.open(slot, &r.value).or_else(|_| p.open_unbound(&r.value)),
                    None => Err(e),
                })
                .map_err(|e| ResealError::Unreadable {
                    table: c.table,
                    column: c.column,
                    row: r.row_key.clone(),
                    reason: e.to_string(),
                })?;
            let sealed = key.seal(slot, &plain);
            let n = diesel::sql_query(format!(
                "UPDATE {table} SET {col} = $1 WHERE {key} = $2 AND {col} = $3",
                key = c.row_key,
                col = c.column,
                table = c.table,
            ))
            .bind::<Text, _>(&sealed)
            .bind::<Text, _>(&r.row_key)
            .bind::<Text, _>(&r.value)
            .execute(conn)
            .await
            .map_err(StoreError::from)?;
            moved += n;
        }
    }
    if moved > 0 {
        tracing::info!(
            values = moved,
            "resealed secrets under the current key, bound to their rows"
        );
    }
    Ok(moved)
}
