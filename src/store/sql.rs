//! The one implementation of every store trait: [`SqlStore`], on SQLite (the embedded default) or
//! PostgreSQL (several replicas on one database), written once through sqlx's `Any` driver. The SQL is
//! the same on both (`$N` placeholders work on SQLite too); where the dialects differ, [`Dialect`] says so
//! in one place.

use std::sync::Once;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use sqlx::any::{AnyPoolOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::{PoolConnection, PoolConnectionMetadata};
use sqlx::{Any, AnyConnection, AnyPool, Describe, Either, Execute, Executor};

use super::StoreError;

/// How long one statement may take by default before it is given up (see [`SqlStore::open_with`]).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

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
    pool: AnyPool,
    pub(super) dialect: Dialect,
    /// How long a statement, a transaction's begin or end, or waiting for a connection may take.
    pub(super) limit: Duration,
    /// SQLite's [`PlanningHolds`](super::PlanningHolds): one replica, so locks in this process.
    pub(super) holds: super::holds::ProcessHolds,
}

/// SQLite settings for every connection: WAL so readers never block the writer; `synchronous=NORMAL`,
/// which in WAL mode survives a crash of the process (the durability "answer 202, then work" needs) and
/// loses at most the last transactions on a power cut; foreign keys enforced; writers wait up to 10 s.
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000";

/// PostgreSQL settings for every session: the server probes a connection idle for 30 s (three probes 10 s
/// apart) instead of after the operating system's two hours. A session whose client vanished without its
/// close reaching the server (a partition, a crashed host) then ends within about a minute, and with it
/// any planning hold (advisory lock) it held. Any user may set these for their own session.
const POSTGRES_SESSION: &str =
    "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3";

impl SqlStore {
    /// Opens and migrates the database at `url`: `sqlite://PATH` (the file is created if missing) or
    /// `postgres://USER@HOST/DB` (PostgreSQL connection parameters such as `options` go in the query).
    /// Statements are given up after [`STATEMENT_TIMEOUT`].
    pub async fn open(url: &str) -> Result<SqlStore, StoreError> {
        SqlStore::open_with(url, STATEMENT_TIMEOUT).await
    }

    /// As [`SqlStore::open`], every statement (and every wait for a connection) given up after `limit`
    /// with an I/O time-out error that names `HONUA_DATABASE_TIMEOUT`.
    ///
    /// Why a client-side limit: a PostgreSQL that goes silent (its host powered off, a partition, a
    /// failover that moves the name to another address) answers nothing and resets nothing, and the
    /// operating system gives up on such a connection only after its TCP retransmissions, about 15
    /// minutes on Linux. sqlx sets no socket timeout, and PostgreSQL's own `statement_timeout` is
    /// enforced by the server that no longer answers.
    pub async fn open_with(url: &str, limit: Duration) -> Result<SqlStore, StoreError> {
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
                .acquire_timeout(limit)
                .after_connect(run_on_connect(SQLITE_PRAGMAS))
                .connect(&url)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Ok(SqlStore { pool, dialect: Dialect::Sqlite, limit, holds: Default::default() })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(limit)
                .after_connect(run_on_connect(POSTGRES_SESSION))
                .connect(url)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Ok(SqlStore { pool, dialect: Dialect::Postgres, limit, holds: Default::default() })
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

    /// The pool, every statement on it bounded.
    pub(super) fn db(&self) -> Bounded<&AnyPool> {
        Bounded { inner: &self.pool, limit: self.limit }
    }

    /// A connection of the pool's own, for a session that spans statements (an advisory lock).
    pub(super) async fn acquire(&self) -> Result<PoolConnection<Any>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    /// A writing transaction, begun as [`Dialect`] says.
    pub(super) async fn begin(&self) -> Result<Tx, StoreError> {
        let mut conn = self.pool.acquire().await?;
        if let Err(e) = Bounded::new(&mut *conn, self.limit).execute(self.dialect.begin()).await {
            conn.close_on_drop();
            return Err(e.into());
        }
        Ok(Tx { conn: Some(conn), limit: self.limit })
    }
}

/// A transaction on a connection of its own, its statements, commit and rollback bounded like the
/// pool's. Dropped without either (an early return, an error, a statement given up), it is rolled back
/// in the background within the limit, and its connection closed if the rollback does not answer.
pub(super) struct Tx {
    /// `None` once committed or rolled back.
    conn: Option<PoolConnection<Any>>,
    limit: Duration,
}

impl Tx {
    /// The transaction's connection, for one statement.
    pub(super) fn db(&mut self) -> Bounded<&mut AnyConnection> {
        let conn = self.conn.as_mut().expect("a transaction is used until it ends");
        Bounded { inner: &mut **conn, limit: self.limit }
    }

    pub(super) async fn commit(self) -> Result<(), StoreError> {
        self.end("COMMIT").await
    }

    pub(super) async fn rollback(self) -> Result<(), StoreError> {
        self.end("ROLLBACK").await
    }

    async fn end(mut self, statement: &'static str) -> Result<(), StoreError> {
        let limit = self.limit;
        let mut conn = self.conn.take().expect("a transaction ends once");
        match Bounded::new(&mut *conn, limit).execute(statement).await {
            Ok(_) => Ok(()),
            // Failed or given up (then whether it took, only the server knows): the session ends, and
            // with it whatever is left of the transaction.
            Err(e) => {
                conn.close_on_drop();
                Err(e.into())
            }
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        let limit = self.limit;
        tokio::spawn(async move {
            if Bounded::new(&mut *conn, limit).execute("ROLLBACK").await.is_err() {
                conn.close_on_drop();
            }
        });
    }
}

/// Runs `settings` on every new connection of a pool.
fn run_on_connect(
    settings: &'static str,
) -> impl for<'c> Fn(&'c mut AnyConnection, PoolConnectionMetadata) -> BoxFuture<'c, Result<(), sqlx::Error>>
       + Send
       + Sync
       + 'static {
    move |conn, _| Box::pin(async move { conn.execute(settings).await.map(drop) })
}

/// The error of a statement given up after `limit`: an I/O time-out, like a lost connection's, so it
/// takes the same way (a request answers 5xx, a job is retried).
pub(super) fn timed_out(limit: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "no answer within {}s, the statement was given up: check that the database is reachable \
             (the limit is HONUA_DATABASE_TIMEOUT)",
            limit.as_secs_f64()
        ),
    ))
}

async fn bounded<T>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| Err(timed_out(limit)))
}

/// An executor (the pool, or one connection) whose every statement must answer within `limit`.
/// Dropping a statement's future on the limit is how it is given up, and its connection is then never
/// used again: on the pool the statement's connection is closed at once; a connection of its own
/// (a transaction's, a hold's) is closed by its owner. Returned to the pool instead, it would be tested
/// with a ping that waits for the TCP timeouts, holding its place in the pool meanwhile.
#[derive(Debug)]
pub(super) struct Bounded<E> {
    inner: E,
    limit: Duration,
}

impl<E> Bounded<E> {
    pub(super) fn new(inner: E, limit: Duration) -> Bounded<E> {
        Bounded { inner, limit }
    }
}

impl<'c> Executor<'c> for Bounded<&'c mut AnyConnection> {
    type Database = Any;

    /// The whole result is read within the limit, then handed on: the store's statements return a
    /// handful of rows, and a deadline on the whole is what bounds a silent server.
    fn fetch_many<'e, 'q: 'e, Q>(self, query: Q) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Any>,
    {
        let limit = self.limit;
        let all = tokio::time::timeout(limit, self.inner.fetch_many(query).collect::<Vec<_>>());
        stream::once(all)
            .flat_map(move |read| stream::iter(read.unwrap_or_else(|_| vec![Err(timed_out(limit))])))
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, Q>(self, query: Q) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Any>,
    {
        Box::pin(bounded(self.limit, self.inner.fetch_optional(query)))
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(bounded(self.limit, self.inner.prepare_with(sql, parameters)))
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(bounded(self.limit, self.inner.describe(sql)))
    }
}

/// On the pool: a connection is taken (within the pool's acquire time-out, the same limit), the
/// statement runs on it bounded, and a connection whose statement was given up is closed.
impl<'c> Executor<'c> for Bounded<&'c AnyPool> {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, Q>(self, query: Q) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Any>,
    {
        let (pool, limit) = (self.inner, self.limit);
        let all = async move {
            let mut conn = match pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => return vec![Err(e)],
            };
            let read = tokio::time::timeout(limit, conn.fetch_many(query).collect::<Vec<_>>()).await;
            read.unwrap_or_else(|_| {
                conn.close_on_drop();
                vec![Err(timed_out(limit))]
            })
        };
        stream::once(all).flat_map(stream::iter).boxed()
    }

    fn fetch_optional<'e, 'q: 'e, Q>(self, query: Q) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Any>,
    {
        let (pool, limit) = (self.inner, self.limit);
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            let read = tokio::time::timeout(limit, conn.fetch_optional(query)).await;
            read.unwrap_or_else(|_| {
                conn.close_on_drop();
                Err(timed_out(limit))
            })
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(bounded(self.limit, self.inner.prepare_with(sql, parameters)))
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(bounded(self.limit, self.inner.describe(sql)))
    }
}

/// `$first, $first+1, …` for `n` values.
pub(super) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}
