//! Scratch databases the benchmarks create by name, from any template.

use super::*;

/// Names of every database the benchmarks create themselves ([`ScratchDatabase`]):
/// `cti_bench_{pid}_…`, so that concurrent runs keep apart and a dead run's leftovers are known.
const SCRATCH_PREFIX: &str = "cti_bench_";

async fn admin() -> anyhow::Result<AsyncPgConnection> {
    let url = db::testing::server_url();
    AsyncPgConnection::establish(&url)
        .await
        .with_context(|| format!("cannot connect to the benchmark Postgres at {url}"))
}

/// A database created by name on the test server (`TEST_DATABASE_URL`), dropped with the
/// value. Unlike `TestDatabase` it can be created from any template, e.g. a seeded one.
#[derive(Debug)]
pub struct ScratchDatabase {
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// `CREATE DATABASE cti_bench_{pid}_{suffix} {options}`.
    pub async fn create(suffix: &str, options: &str) -> anyhow::Result<ScratchDatabase> {
        let name = format!("{SCRATCH_PREFIX}{}_{suffix}", std::process::id());
        diesel::sql_query(format!("CREATE DATABASE {name} {options}"))
            .execute(&mut admin().await?)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        let server = db::testing::server_url();
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        Ok(ScratchDatabase {
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// A copy of this database (`CREATE DATABASE … TEMPLATE`, copying its files: faster than
    /// the WAL-logged default for gigabytes). Nobody may be connected to this one meanwhile.
    pub async fn clone_as(&self, suffix: &str) -> anyhow::Result<ScratchDatabase> {
        Self::create(
            suffix,
            &format!("TEMPLATE {} STRATEGY FILE_COPY", self.name),
        )
        .await
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn connect(&self) -> anyhow::Result<AsyncPgConnection> {
        AsyncPgConnection::establish(&self.url)
            .await
            .with_context(|| format!("cannot connect to {}", self.name))
    }

    /// Its size on disk, bytes.
    pub async fn size(&self) -> anyhow::Result<u64> {
        #[derive(diesel::QueryableByName)]
        struct Size {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            bytes: i64,
        }
        let size: Size = diesel::sql_query("SELECT pg_database_size($1) AS bytes")
            .bind::<diesel::sql_types::Text, _>(&self.name)
            .get_result(&mut admin().await?)
            .await?;
        Ok(u64::try_from(size.bytes)?)
    }

    /// Drops the scratch databases of processes that no longer run: what aborted runs left.
    pub async fn sweep() -> anyhow::Result<Vec<String>> {
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            datname: String,
        }
        let mut conn = admin().await?;
        let names: Vec<Name> =
            diesel::sql_query("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
                .bind::<diesel::sql_types::Text, _>(SCRATCH_PREFIX)
                .load(&mut conn)
                .await?;
        let mut dropped = Vec::with_capacity(names.len());
        for Name { datname } in names {
            let owner = datname[SCRATCH_PREFIX.len()..]
                .split_once('_')
                .and_then(|(pid, _)| pid.parse::<u32>().ok());
            let Some(owner) = owner else { continue };
            if std::path::Path::new(&format!("/proc/{owner}")).exists() {
                continue;
            }
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
            dropped.push(datname);
        }
        Ok(dropped)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside the runtime, which cannot block on async work: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin().await.ok()?)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: database {} was not dropped", self.name);
        }
    }
}
