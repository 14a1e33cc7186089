//! API tokens, stored as SHA-256 only, and the service's own keys.

use async_trait::async_trait;

use super::sql::SqlStore;
use super::StoreError;
use crate::deployment::{ApiToken, Role, TokenInfo};

/// How precisely "last used" is kept: a token used again within a minute is not written again, so
/// authenticating stays a read.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// A token to store: its role, environment and SHA-256.
#[derive(Debug, Clone)]
pub struct ApiTokenHash<'a> {
    pub role: Role,
    pub environment: Option<&'a str>,
    pub hash: &'a str,
}

#[derive(sqlx::FromRow)]
pub(super) struct TokenRow {
    name: String,
    role: String,
    environment: Option<String>,
    last_used_at: Option<i64>,
}

impl TokenRow {
    pub(super) fn into_token(self) -> Option<ApiToken> {
        Some(ApiToken {
            name: self.name,
            role: Role::parse(&self.role)?,
            environment: self.environment.map(Into::into),
        })
    }
}

#[derive(sqlx::FromRow)]
struct TokenInfoRow {
    name: String,
    role: String,
    environment: Option<String>,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    previous_expires_at: Option<i64>,
}

impl TokenInfoRow {
    fn into_info(self) -> Option<TokenInfo> {
        Some(TokenInfo {
            name: self.name,
            role: Role::parse(&self.role)?,
            environment: self.environment.map(Into::into),
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
            previous_valid_until: self.previous_expires_at,
        })
    }
}

/// API tokens (stored as SHA-256 only) and the service's own keys.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a token's hash; `false` if the name is taken.
    async fn create_token(&self, name: &str, token: &ApiTokenHash<'_>, now: i64) -> Result<bool, StoreError>;

    /// The live token whose secret hashes to `hash` (the current secret, or the previous one of a
    /// rotation within its grace period), noting its use at `now`.
    async fn token(&self, hash: &str, now: i64) -> Result<Option<ApiToken>, StoreError>;

    /// Every token, revoked ones included, by name.
    async fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError>;

    /// Revokes `name` (both its secrets); `false` if there is no live token of that name.
    async fn revoke_token(&self, name: &str, now: i64) -> Result<bool, StoreError>;

    /// Gives `name` a new secret (`hash`); the old one stays valid until `grace_until`. `false` if there
    /// is no live token of that name.
    async fn rotate_token(&self, name: &str, hash: &str, grace_until: i64) -> Result<bool, StoreError>;

    /// The secret stored under `name`, storing `candidate` first if there is none (the first replica to
    /// start wins; every replica then signs with the same key).
    async fn service_key(&self, name: &str, candidate: &[u8], now: i64) -> Result<Vec<u8>, StoreError>;
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn create_token(&self, name: &str, t: &ApiTokenHash<'_>, now: i64) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (name, role, environment, token_hash, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(t.role.as_str())
        .bind(t.environment)
        .bind(t.hash)
        .bind(now)
        .execute(self.db())
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn token(&self, hash: &str, now: i64) -> Result<Option<ApiToken>, StoreError> {
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT name, role, environment, last_used_at FROM api_tokens WHERE revoked_at IS NULL \
             AND (token_hash = $1 OR (previous_hash = $1 AND previous_expires_at > $2))",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(self.db())
        .await?;
        let Some(row) = row else { return Ok(None) };
        if row.last_used_at.is_none_or(|at| at < now - LAST_USED_RESOLUTION_MS) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE name = $2")
                .bind(now)
                .bind(&row.name)
                .execute(self.db())
                .await?;
        }
        Ok(row.into_token())
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows: Vec<TokenInfoRow> = sqlx::query_as(
            "SELECT name, role, environment, created_at, last_used_at, revoked_at, previous_expires_at FROM api_tokens ORDER BY name",
        )
        .fetch_all(self.db())
        .await?;
        Ok(rows.into_iter().filter_map(TokenInfoRow::into_info).collect())
    }

    async fn revoke_token(&self, name: &str, now: i64) -> Result<bool, StoreError> {
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1, previous_hash = NULL, previous_expires_at = NULL \
             WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(name)
        .execute(self.db())
        .await?;
        Ok(revoked.rows_affected() == 1)
    }

    async fn rotate_token(&self, name: &str, hash: &str, grace_until: i64) -> Result<bool, StoreError> {
        let rotated = sqlx::query(
            "UPDATE api_tokens SET previous_hash = token_hash, previous_expires_at = $1, token_hash = $2 \
             WHERE name = $3 AND revoked_at IS NULL",
        )
        .bind(grace_until)
        .bind(hash)
        .bind(name)
        .execute(self.db())
        .await?;
        Ok(rotated.rows_affected() == 1)
    }

    async fn service_key(&self, name: &str, candidate: &[u8], now: i64) -> Result<Vec<u8>, StoreError> {
        sqlx::query("INSERT INTO service_keys (name, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(candidate)
            .bind(now)
            .execute(self.db())
            .await?;
        let (secret,): (Vec<u8>,) =
            sqlx::query_as("SELECT secret FROM service_keys WHERE name = $1").bind(name).fetch_one(self.db()).await?;
        Ok(secret)
    }
}
