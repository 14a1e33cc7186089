//! The lifecycle of API tokens: create, list, revoke, rotate; each audited. The secret is shown once, at
//! creation or rotation; only its SHA-256 is stored. `honua token …` runs these on the database directly,
//! the API (`/api/v1/tokens`) for admins.

use sha2::{Digest, Sha256};

use crate::deployment::{Role, TokenInfo};
use crate::store::{ApiTokenHash, NewAudit, Store, StoreError};

/// SHA-256 of a token, hex: what the store keeps and looks tokens up by.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: `honua_` and 64 hex digits.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("honua_{}", hex::encode(bytes)))
}

/// Why a token could not be created, revoked or rotated, in words for the person who asked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("--role `{0}`: use viewer, approver, admin or agent")]
    Role(String),
    #[error("--role agent needs --environment: an agent token serves one environment")]
    AgentWithoutEnvironment,
    #[error("--environment is only for --role agent")]
    EnvironmentWithoutAgent,
    #[error("--name: give 1 to 100 characters")]
    Name,
    #[error("a token named `{0}` exists already (revoked ones keep their name); choose another --name")]
    Exists(String),
    #[error("no live token named `{0}`; see `honua token list`")]
    Unknown(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a token; returns its secret, which is shown once.
pub async fn create(
    store: &dyn Store,
    name: &str,
    role: &str,
    environment: Option<&str>,
    actor: &str,
    now: i64,
) -> Result<String, TokenError> {
    let role = Role::parse(role).ok_or_else(|| TokenError::Role(role.to_string()))?;
    match (role, environment) {
        (Role::Agent, None) => return Err(TokenError::AgentWithoutEnvironment),
        (Role::Agent, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(TokenError::EnvironmentWithoutAgent),
    }
    if name.trim().is_empty() || name.len() > 100 {
        return Err(TokenError::Name);
    }
    let token = new_token().map_err(|e| TokenError::Random(e.to_string()))?;
    let hash = token_hash(&token);
    if !store.create_token(name, &ApiTokenHash { role, environment, hash: &hash }, now).await? {
        return Err(TokenError::Exists(name.to_string()));
    }
    let message = format!("token `{name}` created with the {} role", role.as_str());
    audit(store, actor, "token.create", environment, message, now).await?;
    Ok(token)
}

pub async fn list(store: &dyn Store) -> Result<Vec<TokenInfo>, TokenError> {
    Ok(store.tokens().await?)
}

/// Revokes both secrets of `name` at once.
pub async fn revoke(store: &dyn Store, name: &str, actor: &str, now: i64) -> Result<(), TokenError> {
    if !store.revoke_token(name, now).await? {
        return Err(TokenError::Unknown(name.to_string()));
    }
    audit(store, actor, "token.revoke", None, format!("token `{name}` revoked"), now).await?;
    Ok(())
}

/// A new secret for `name`; the old one is accepted for `grace_ms` more, so whatever uses it can be
/// given the new one without a gap. Returns the new secret, which is shown once.
pub async fn rotate(store: &dyn Store, name: &str, grace_ms: i64, actor: &str, now: i64) -> Result<String, TokenError> {
    let token = new_token().map_err(|e| TokenError::Random(e.to_string()))?;
    if !store.rotate_token(name, &token_hash(&token), now + grace_ms.max(0)).await? {
        return Err(TokenError::Unknown(name.to_string()));
    }
    let until =
        chrono::DateTime::from_timestamp_millis(now + grace_ms.max(0)).map(|t| t.to_rfc3339()).unwrap_or_default();
    audit(
        store,
        actor,
        "token.rotate",
        None,
        format!("token `{name}` rotated; the previous secret works until {until}"),
        now,
    )
    .await?;
    Ok(token)
}

async fn audit(
    store: &dyn Store,
    actor: &str,
    action: &str,
    environment: Option<&str>,
    message: String,
    now: i64,
) -> Result<(), StoreError> {
    let entry = NewAudit {
        actor: actor.into(),
        action: action.into(),
        environment: environment.map(Into::into),
        message,
        ..NewAudit::default()
    };
    store.record_audit(&entry, now).await
}
