//! Test databases: a SQLite file in a temporary directory, and PostgreSQL (when
//! `HONUA_TEST_DATABASE_URL` is set) in a schema of its own per test, dropped afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use honua_gitops::store::{SqlStore, Store};
use sqlx::Connection;

pub struct TestDb {
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the database URL and the schema to drop after the test.
    schema: Option<(String, String)>,
}

impl TestDb {
    /// Drops the test's schema. A service the test started may still be finishing a query on it (its
    /// tasks hold their own handles to the store), and PostgreSQL can then report a deadlock between the
    /// DROP and that query: it is tried again, and a schema that still cannot be dropped is left with a
    /// notice. Teardown never fails the test it follows.
    pub async fn cleanup(self) {
        if let Some((url, schema)) = self.schema {
            drop(self.store);
            let mut last = String::new();
            for attempt in 0..5u64 {
                match sqlx::PgConnection::connect(&url).await {
                    Ok(mut conn) => {
                        match sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut conn).await {
                            Ok(_) => return,
                            Err(e) => last = e.to_string(),
                        }
                    }
                    Err(e) => last = e.to_string(),
                }
                tokio::time::sleep(std::time::Duration::from_millis(100 * (attempt + 1))).await;
            }
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "notice: test schema {schema} left in place: {last}");
        }
    }
}

impl TestDb {
    /// PostgreSQL: the database URL (without the schema) and the test's schema.
    pub fn postgres_schema(&self) -> Option<(&str, &str)> {
        self.schema.as_ref().map(|(url, schema)| (url.as_str(), schema.as_str()))
    }
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("honua.db").display());
    TestDb { store: Arc::new(SqlStore::open(&url).await.unwrap()), _dir: Some(dir), schema: None }
}

/// A PostgreSQL store in a fresh schema, or `None` (with a notice) when no test database is configured.
pub async fn postgres() -> Option<TestDb> {
    postgres_through(None, honua_gitops::store::STATEMENT_TIMEOUT).await
}

/// As [`postgres`], the store connecting through `port` on loopback (a fault proxy) instead, its
/// statements given up after `limit`.
pub async fn postgres_through(port: Option<u16>, limit: std::time::Duration) -> Option<TestDb> {
    let Ok(url) = std::env::var("HONUA_TEST_DATABASE_URL") else {
        // Written to the stderr handle, not with eprintln!, so the test harness does not swallow it.
        static NOTICE: std::sync::Once = std::sync::Once::new();
        NOTICE.call_once(|| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "notice: HONUA_TEST_DATABASE_URL is not set; the PostgreSQL store suite is skipped"
            );
        });
        return None;
    };
    static N: AtomicUsize = AtomicUsize::new(0);
    let schema = format!(
        "honua_test_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        chrono::Utc::now().timestamp_micros()
    );
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("HONUA_TEST_DATABASE_URL is reachable");
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.unwrap();
    // The schema as the connection's search path (PostgreSQL's `options` parameter), and the host and
    // port of the fault proxy when there is one.
    let mut store_url = url::Url::parse(&url).expect("HONUA_TEST_DATABASE_URL is a URL");
    store_url.query_pairs_mut().append_pair("options", &format!("-c search_path={schema}"));
    if let Some(port) = port {
        store_url.set_host(Some("127.0.0.1")).unwrap();
        store_url.set_port(Some(port)).unwrap();
    }
    let store = Arc::new(SqlStore::open_with(store_url.as_str(), limit).await.unwrap());
    Some(TestDb { store, _dir: None, schema: Some((url, schema)) })
}
