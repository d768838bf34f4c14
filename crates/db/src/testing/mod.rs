//! Per-test databases: each test gets a fresh database cloned from a migrated template, dropped
//! when the test ends, so tests run in parallel and never see each other's rows.
//!
//! The template `cti_tpl_<hash of the migrations>` is built once (under an advisory lock, so
//! parallel test processes cooperate) and reused until the migrations change. The server is
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).

pub mod fixtures;

use std::hash::{Hash, Hasher};
use std::path::Path;

use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::OnceCell;

const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const TEMPLATE_LOCK_KEY: i64 = 0x6374_692d_7465_6d70;

/// The maintenance database URL of the test server.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned())
}

fn url_for(database: &str) -> String {
    let server = server_url();
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    format!("{base}/{database}")
}

async fn admin() -> AsyncPgConnection {
    AsyncPgConnection::establish(&server_url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to the test Postgres at {}: {e}",
                server_url()
            )
        })
}

async fn execute(conn: &mut AsyncPgConnection, sql: &str) -> diesel::QueryResult<usize> {
    diesel::sql_query(sql).execute(conn).await
}

/// A hash of every file under `migrations/`, so an edited migration gets a new template.
fn migrations_fingerprint() -> u64 {
    fn visit(dir: &Path, hasher: &mut std::collections::hash_map::DefaultHasher) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for path in entries {
            path.file_name().hash(hasher);
            if path.is_dir() {
                visit(&path, hasher);
            } else if let Ok(bytes) = std::fs::read(&path) {
                bytes.hash(hasher);
            }
        }
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    visit(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations"),
        &mut hasher,
    );
    hasher.finish()
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("cti_tpl_{:016x}", migrations_fingerprint());
            let mut conn = admin().await;
            diesel::sql_query("SELECT pg_advisory_lock($1)")
                .bind::<BigInt, _>(TEMPLATE_LOCK_KEY)
                .execute(&mut conn)
                .await
                .expect("template lock");
            let exists = diesel::sql_query(format!(
                "SELECT 1 FROM pg_database WHERE datname = '{name}'"
            ))
            .execute(&mut conn)
            .await
            .expect("pg_database is readable")
                > 0;
            if !exists {
                let building = format!("{name}_building");
                execute(
                    &mut conn,
                    &format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
                )
                .await
                .expect("drop a half-built template");
                execute(&mut conn, &format!("CREATE DATABASE {building}"))
                    .await
                    .expect("create the template");
                crate::migrations::run_migrations(&url_for(&building))
                    .await
                    .expect("migrations apply to an empty database");
                execute(
                    &mut conn,
                    &format!("ALTER DATABASE {building} RENAME TO {name}"),
                )
                .await
                .expect("publish the template");
            }
            diesel::sql_query("SELECT pg_advisory_unlock($1)")
                .bind::<BigInt, _>(TEMPLATE_LOCK_KEY)
                .execute(&mut conn)
                .await
                .expect("template unlock");
            name
        })
        .await
}

/// A database that lives as long as this value.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// A fresh, fully migrated database.
    pub async fn migrated() -> TestDatabase {
        let template = template().await;
        Self::create(&format!("TEMPLATE {template}")).await
    }

    /// A fresh database with no tables at all (for migration tests).
    pub async fn empty() -> TestDatabase {
        Self::create("").await
    }

    async fn create(options: &str) -> TestDatabase {
        let name = format!("cti_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin().await;
        execute(&mut conn, &format!("CREATE DATABASE {name} {options}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        TestDatabase {
            url: url_for(&name),
            name,
        }
    }

    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new connection to it.
    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .expect("test database accepts connections")
    }

    /// Inserts a bare app named `name` (no API key, no Dialpad account), for tests that queue
    /// events for a tenant directly; returns its id.
    pub async fn insert_app(&self, name: &str) -> uuid::Uuid {
        let app_id = uuid::Uuid::new_v4();
        diesel::sql_query(
            "INSERT INTO apps (id, name, legacy_webhook_secret) \
             VALUES ($1, $2, 'unused-secret-0123456789')",
        )
        .bind::<diesel::sql_types::Uuid, _>(app_id)
        .bind::<diesel::sql_types::Text, _>(name)
        .execute(&mut self.connect().await)
        .await
        .expect("app inserted");
        app_id
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on async work: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&server_url()).await.ok()?;
                execute(
                    &mut conn,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}
