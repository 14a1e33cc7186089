//! API tokens, stored as SHA-256 only, and the service's own keys.

use async_trait::async_trait;

use super::sql::SqlStore;
use super::StoreError;
use crate::deployment::{ApiToken, Role};

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
}

impl TokenRow {
    pub(super) fn into_token(self) -> Option<ApiToken> {
        Some(ApiToken { name: self.name, role: Role::parse(&self.role)?, environment: self.environment })
    }
}

/// API tokens (stored as SHA-256 only) and the service's own keys.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a token's hash; `false` if the name is taken.
    async fn create_token(&self, name: &str, token: &ApiTokenHash<'_>, now: i64) -> Result<bool, StoreError>;

    async fn token(&self, hash: &str) -> Result<Option<ApiToken>, StoreError>;

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
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn token(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT name, role, environment FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|r| r.into_token()))
    }

    async fn service_key(&self, name: &str, candidate: &[u8], now: i64) -> Result<Vec<u8>, StoreError> {
        sqlx::query("INSERT INTO service_keys (name, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(candidate)
            .bind(now)
            .execute(&self.pool)
            .await?;
        let (secret,): (Vec<u8>,) =
            sqlx::query_as("SELECT secret FROM service_keys WHERE name = $1").bind(name).fetch_one(&self.pool).await?;
        Ok(secret)
    }
}
