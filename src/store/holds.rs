//! Planning holds: while one replica fetches a repository's branch and plans its head, no other replica
//! plans that repository. Without it, a replica that fetched commit X could create X's deployments after
//! another replica fetched and planned the newer Y, and X would supersede Y: the environments would go
//! back by themselves. With it, fetch, plan and creation are one step per repository across replicas,
//! and whoever comes second fetches what the first saw or newer.
//!
//! On PostgreSQL a hold is a session advisory lock on a connection of its own: a replica that dies
//! holding it loses its connection, and the server lets go at once. SQLite is one replica's database
//! (the Helm chart and the README say so), so a hold there is a lock in this process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::Any;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::sql::{Bounded, Dialect, SqlStore};
use super::StoreError;

/// How long a plan waits for another replica's plan of the same repository before it gives up (its
/// job is retried later). A plan takes milliseconds to seconds; a first clone of a large repository
/// longer.
pub const HOLD_WAIT: Duration = Duration::from_secs(300);

#[async_trait]
pub trait PlanningHolds {
    /// Waits until no other replica plans `repository`, then holds it until the hold is released or
    /// dropped. [`StoreError::Held`] after [`HOLD_WAIT`].
    async fn hold_repository(&self, repository: &str) -> Result<RepositoryHold, StoreError>;
}

/// One repository held for planning. [`release`](Self::release) lets go; dropping it lets go as well (on
/// PostgreSQL by closing its connection).
#[must_use = "the repository is held only while this lives"]
pub struct RepositoryHold {
    inner: Inner,
}

enum Inner {
    Process {
        _held: OwnedMutexGuard<()>,
    },
    /// `None` once released.
    Postgres {
        conn: Option<PoolConnection<Any>>,
        repository: String,
        /// The store's statement limit.
        limit: Duration,
    },
}

impl RepositoryHold {
    pub async fn release(mut self) -> Result<(), StoreError> {
        let Inner::Postgres { conn, repository, limit } = &mut self.inner else { return Ok(()) };
        let Some(mut conn) = conn.take() else { return Ok(()) };
        let unlocked = sqlx::query_as::<_, (bool,)>(&format!("SELECT pg_advisory_unlock({ADVISORY_KEY})"))
            .bind(repository.as_str())
            .fetch_one(Bounded::new(&mut *conn, *limit))
            .await;
        match unlocked {
            // Back to the pool, holding nothing.
            Ok((true,)) => Ok(()),
            // Ending the session ends its advisory locks: a connection that may still hold one never goes
            // back to the pool. Closed in the background, within sqlx's own bound, as a silent
            // server would keep a polite close waiting.
            _ => {
                conn.close_on_drop();
                Ok(())
            }
        }
    }
}

impl Drop for RepositoryHold {
    /// A hold dropped without `release` (its task cancelled, an error on the way): the connection is
    /// closed rather than returned to the pool still holding the lock.
    fn drop(&mut self) {
        if let Inner::Postgres { conn: Some(conn), .. } = &mut self.inner {
            conn.close_on_drop();
        }
    }
}

/// The in-process holds of an SQLite store, one lock per repository.
#[derive(Default)]
pub(super) struct ProcessHolds(Mutex<HashMap<String, Arc<Mutex<()>>>>);

/// The advisory lock key of the repository bound as `$1`: a 64-bit hash, on the server, of a name no
/// other user of the database is likely to lock (advisory keys are shared by everything on one database),
/// with the schema in it (two services on two schemas of one database do not wait for each other).
/// `hashtextextended` is what hash partitioning stores rows by, so it stays the same across versions.
const ADVISORY_KEY: &str = "hashtextextended('honua-gitops/plan/' || current_schema() || '/' || $1, 0)";

#[async_trait]
impl PlanningHolds for SqlStore {
    async fn hold_repository(&self, repository: &str) -> Result<RepositoryHold, StoreError> {
        let held = || StoreError::Held { repository: repository.to_string(), waited: HOLD_WAIT };
        match self.dialect {
            Dialect::Sqlite => {
                let lock = self.holds.0.lock().await.entry(repository.to_string()).or_default().clone();
                let guard = tokio::time::timeout(HOLD_WAIT, lock.lock_owned()).await.map_err(|_| held())?;
                Ok(RepositoryHold { inner: Inner::Process { _held: guard } })
            }
            Dialect::Postgres => {
                let lock = format!("SELECT pg_try_advisory_lock({ADVISORY_KEY})");
                let deadline = tokio::time::Instant::now() + HOLD_WAIT;
                let mut conn = self.acquire().await?;
                // Polled with `pg_try_advisory_lock` rather than waited for in `pg_advisory_lock`: a
                // waiting statement cannot be given up on without cancelling it on the server.
                let mut pause = Duration::from_millis(20);
                loop {
                    let tried =
                        sqlx::query_as(&lock).bind(repository).fetch_one(Bounded::new(&mut *conn, self.limit)).await;
                    let (got,): (bool,) = match tried {
                        Ok(got) => got,
                        // Not back to the pool: it may not answer (its test there would wait as long), or
                        // hold the lock after all.
                        Err(e) => {
                            conn.close_on_drop();
                            return Err(e.into());
                        }
                    };
                    if got {
                        let (repository, limit) = (repository.to_string(), self.limit);
                        return Ok(RepositoryHold { inner: Inner::Postgres { conn: Some(conn), repository, limit } });
                    }
                    if tokio::time::Instant::now() + pause > deadline {
                        return Err(held());
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
        }
    }
}
