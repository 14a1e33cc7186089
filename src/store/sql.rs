//! The one implementation of every store trait: [`SqlStore`], on SQLite (the embedded default) or
//! PostgreSQL (several replicas on one database), written once through sqlx's `Any` driver. The SQL is
//! the same on both (`$N` placeholders work on SQLite too); where the dialects differ, [`Dialect`] says so
//! in one place.

use std::sync::Once;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor, Transaction};

use super::StoreError;

/// Where the two databases differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// How a writing transaction begins. On SQLite `BEGIN IMMEDIATE` takes the write lock up front: a
    /// transaction that reads first and writes later would fail with SQLITE_BUSY_SNAPSHOT when another
    /// writer committed in between. PostgreSQL locks rows instead ([`Dialect::lock`]).
    fn begin(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// Appended to a `SELECT` in a transaction to lock the rows it reads until the commit. SQLite's
    /// transaction already holds the database's write lock.
    pub(super) fn lock(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Like [`Dialect::lock`], but concurrent claimers skip each other's rows instead of waiting: how
    /// replicas share one queue without taking the same item.
    pub(super) fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The larger of two values in one row (`MAX(a, b)` is an aggregate on PostgreSQL).
    pub(super) fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }
}

/// The service's database.
pub struct SqlStore {
    pub(super) pool: AnyPool,
    pub(super) dialect: Dialect,
    /// SQLite's [`PlanningHolds`](super::PlanningHolds): one replica, so locks in this process.
    pub(super) holds: super::holds::ProcessHolds,
}

/// SQLite settings for every connection: WAL so readers never block the writer; `synchronous=NORMAL`,
/// which in WAL mode survives a crash of the process (the durability "answer 202, then work" needs) and
/// loses at most the last transactions on a power cut; foreign keys enforced; writers wait up to 10 s.
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000";

impl SqlStore {
    /// Opens and migrates the database at `url`: `sqlite://PATH` (the file is created if missing) or
    /// `postgres://USER@HOST/DB` (PostgreSQL connection parameters such as `options` go in the query).
    pub async fn open(url: &str) -> Result<SqlStore, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        if url.starts_with("sqlite:") {
            let url = if url.contains("mode=") {
                url.to_string()
            } else {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            };
            let pool = AnyPoolOptions::new()
                .max_connections(4)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(SQLITE_PRAGMAS).await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Ok(SqlStore { pool, dialect: Dialect::Sqlite, holds: Default::default() })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new().max_connections(16).connect(url).await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Ok(SqlStore { pool, dialect: Dialect::Postgres, holds: Default::default() })
        } else {
            Err(StoreError::UnsupportedUrl(url.to_string()))
        }
    }

    /// Closes every connection and waits until they are closed. Dropping the store closes them in the
    /// background instead; whoever then touches the database's files from this process (an SQLite
    /// file's locks are per process, and closing any descriptor of it drops them) must close first.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A writing transaction, begun as [`Dialect`] says.
    pub(super) async fn begin(&self) -> Result<Transaction<'_, Any>, StoreError> {
        Ok(self.pool.begin_with(self.dialect.begin()).await?)
    }
}

/// `$first, $first+1, …` for `n` values.
pub(super) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}
