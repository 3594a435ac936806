//! Server functions for two-factor sign-in: the caller's status, enrolment
//! (a secret with its QR code, confirmed by a first code, which returns the
//! recovery codes once), turning it off, an organization's requirement, and
//! an instance administrator's reset of a user's.

use crate::error::AppError;
use crate::types::{TwoFactorEnrolment, TwoFactorStatus};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use {
    super::edge::{self, fail},
    engine::twofactor,
};

#[server(endpoint = "twofactor/status")]
pub async fn get_two_factor() -> Result<TwoFactorStatus, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let s = twofactor::status(&ctx.engine, &caller).await.map_err(fail)?;
    Ok(TwoFactorStatus {
        enabled: s.enabled,
        recovery_left: s.recovery_left,
        org_requires: s.org_requires,
    })
}

/// Starts enrolment: the secret to scan or type. Nothing changes for sign-in
/// until a code confirms it.
#[server(endpoint = "twofactor/begin")]
pub async fn begin_two_factor() -> Result<TwoFactorEnrolment, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let e = twofactor::begin(&ctx.engine, &caller).await.map_err(fail)?;
    Ok(TwoFactorEnrolment {
        secret: e.secret,
        uri: e.uri,
        qr_svg: e.qr_svg,
    })
}

/// Confirms enrolment with a code: two-factor sign-in is on, and the ten
/// recovery codes come back (shown once).
#[server(endpoint = "twofactor/confirm")]
pub async fn confirm_two_factor(code: String) -> Result<Vec<String>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    twofactor::confirm(&ctx.engine, &caller, &code).await.map_err(fail)
}

#[server(endpoint = "twofactor/disable")]
pub async fn disable_two_factor(code: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    twofactor::disable(&ctx.engine, &caller, &code).await.map_err(fail)
}

/// Requires two-factor sign-in of the organization's members (admins).
#[server(endpoint = "twofactor/require")]
pub async fn require_two_factor(required: Option<String>) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    twofactor::set_required(&ctx.engine, &caller, edge::checked(&required))
        .await
        .map_err(fail)
}

/// Turns a user's two-factor sign-in off and signs them out (instance administrators).
#[server(endpoint = "instance/reset_2fa")]
pub async fn reset_two_factor(user_id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    twofactor::reset(&ctx.engine, &caller, edge::id(&user_id)?)
        .await
        .map_err(fail)
}
