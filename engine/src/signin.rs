//! Signing in as the dashboard does it: the password (`accounts`), then, for
//! a user with two-factor sign-in on, a code under a short-lived challenge
//! (`twofactor`), each attempt written to the instance's audit log with the
//! address it came from (a failed one names the email tried, never the
//! password or code).

use crate::accounts::{self, AccountError, Caller};
use crate::audit::{self, Actor, Entry, Outcome};
use crate::error::{Classify, ErrorKind};
use crate::twofactor::{self, TwoFactorError};
use crate::Engine;

/// How a sign-in with a password ends: signed in, or waiting for a code under
/// a challenge token ([`sign_in_code`]).
#[derive(Debug)]
pub enum SignIn {
    Done(Caller),
    NeedsCode(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    TwoFactor(#[from] TwoFactorError),
}

impl Classify for SignInError {
    fn kind(&self) -> ErrorKind {
        match self {
            SignInError::Account(e) => e.kind(),
            SignInError::TwoFactor(e) => e.kind(),
        }
    }
}

fn entry(actor: Actor, outcome: Outcome, client: &str) -> Entry {
    Entry {
        org: None,
        actor,
        action: "sign-in".into(),
        target: None,
        outcome,
        status: None,
        client: Some(client.to_owned()),
    }
}

/// The password step.
pub async fn sign_in(engine: &Engine, email: &str, password: &str, client: &str) -> Result<SignIn, SignInError> {
    let verified = match accounts::check_password(engine, email, password, client).await {
        Ok(v) => v,
        Err(AccountError::InvalidCredentials) => {
            let tried = email.trim().to_ascii_lowercase();
            audit::record(engine, entry(Actor::Anonymous(tried), Outcome::Denied, client)).await;
            return Err(AccountError::InvalidCredentials.into());
        }
        Err(e) => return Err(e.into()),
    };
    if verified.second_factor {
        let challenge = twofactor::challenge(engine, verified.user, verified.org)
            .await
            .map_err(AccountError::from)?;
        return Ok(SignIn::NeedsCode(challenge));
    }
    let caller = accounts::open_session(engine, verified.user, verified.org).await?;
    audit::record(engine, entry(caller.actor(), Outcome::Ok, client)).await;
    Ok(SignIn::Done(caller))
}

/// The code step: a TOTP code or a recovery code for the challenge (wrong
/// ones counted per account); opens the session the password step chose.
pub async fn sign_in_code(engine: &Engine, challenge: &str, code: &str, client: &str) -> Result<Caller, SignInError> {
    match twofactor::finish(engine, challenge, code).await {
        Ok((user, org)) => {
            let caller = accounts::open_session(engine, user, org).await?;
            audit::record(engine, entry(caller.actor(), Outcome::Ok, client)).await;
            Ok(caller)
        }
        Err(e) => {
            audit::record(
                engine,
                entry(Actor::Anonymous("second factor".into()), Outcome::Denied, client),
            )
            .await;
            Err(e.into())
        }
    }
}
