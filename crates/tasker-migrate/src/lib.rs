//! The migrator: applies `migrations/*.sql` in file-name order under a
//! PostgreSQL advisory lock, records each applied version with a checksum
//! (a changed, already-applied file is an error), then creates the PGMQ
//! queues: `orchestration_step_results` and `worker_<namespace>_queue` for
//! every namespace in the templates directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tasker_shared::db::describe_pg_error;
use tasker_shared::templates::{worker_queue_name, TemplateRegistry, RESULTS_QUEUE};

/// Arbitrary constant: "tasker migrations" advisory lock key.
pub const MIGRATION_LOCK_KEY: i64 = 0x7461_736b_6572_6d67;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: String,
    pub file_name: String,
    pub sql: String,
    pub checksum: String,
}

/// 64-bit FNV-1a as hex: enough to detect an edited migration.
pub fn checksum(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Read `dir/*.sql`, sorted by file name. The version is the part of the
/// name before the first `_` (e.g. `0003` for `0003_core_tables.sql`).
pub fn load_migrations(dir: &Path) -> Result<Vec<Migration>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read migrations directory {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for e in entries {
        let p = e
            .with_context(|| format!("cannot read migrations directory {}", dir.display()))?
            .path();
        if p.extension().and_then(|x| x.to_str()) == Some("sql") {
            paths.push(p);
        }
    }
    paths.sort();
    let mut out: Vec<Migration> = Vec::new();
    for p in paths {
        let file_name = p
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .with_context(|| format!("bad file name {}", p.display()))?;
        let version = file_name
            .split(['_', '.'])
            .next()
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .with_context(|| format!("migration {file_name} has no version prefix"))?;
        if let Some(prev) = out.iter().find(|m| m.version == version) {
            bail!(
                "migrations {} and {} share version {}",
                prev.file_name,
                file_name,
                version
            );
        }
        let sql = std::fs::read_to_string(&p)
            .with_context(|| format!("cannot read migration {}", p.display()))?;
        out.push(Migration {
            checksum: checksum(&sql),
            version,
            file_name,
            sql,
        });
    }
    if out.is_empty() {
        bail!("no *.sql migrations found in {}", dir.display());
    }
    Ok(out)
}

/// Queues every service needs, given the templates.
pub fn required_queues(templates: &TemplateRegistry) -> Vec<String> {
    let mut q = vec![RESULTS_QUEUE.to_string()];
    q.extend(
        templates
            .namespaces()
            .iter()
            .map(|ns| worker_queue_name(ns)),
    );
    q
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub applied: Vec<String>,
    pub skipped: Vec<String>,
    pub queues: Vec<String>,
}

/// Apply migrations and create queues over an open connection.
pub async fn run(
    client: &mut tokio_postgres::Client,
    migrations: &[Migration],
    queues: &[String],
) -> Result<Report> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot take the migration lock: {}", describe_pg_error(&e))
        })?;
    let result = run_locked(client, migrations, queues).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let report = result?;
    unlock.map_err(|e| {
        anyhow::anyhow!(
            "cannot release the migration lock: {}",
            describe_pg_error(&e)
        )
    })?;
    Ok(report)
}

async fn run_locked(
    client: &mut tokio_postgres::Client,
    migrations: &[Migration],
    queues: &[String],
) -> Result<Report> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS tasker;
             CREATE TABLE IF NOT EXISTS tasker.schema_migrations (
                 version    text PRIMARY KEY,
                 file_name  text NOT NULL,
                 checksum   text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create tasker.schema_migrations: {}",
                describe_pg_error(&e)
            )
        })?;

    let rows = client
        .query(
            "SELECT version, file_name, checksum FROM tasker.schema_migrations",
            &[],
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot read applied migrations: {}", describe_pg_error(&e))
        })?;
    let mut applied = std::collections::HashMap::new();
    for r in &rows {
        let v: String = r.try_get("version")?;
        let f: String = r.try_get("file_name")?;
        let c: String = r.try_get("checksum")?;
        applied.insert(v, (f, c));
    }

    let mut report = Report::default();
    for m in migrations {
        if let Some((file, sum)) = applied.get(&m.version) {
            if sum != &m.checksum {
                bail!(
                    "migration {} (version {}) was changed after it was applied as {} \
                     (checksum {} in the database, {} on disk); add a new migration instead",
                    m.file_name,
                    m.version,
                    file,
                    sum,
                    m.checksum
                );
            }
            report.skipped.push(m.file_name.clone());
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(&m.sql).await.map_err(|e| {
            anyhow::anyhow!(
                "migration {} failed: {}",
                m.file_name,
                describe_pg_error(&e)
            )
        })?;
        tx.execute(
            "INSERT INTO tasker.schema_migrations (version, file_name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.file_name, &m.checksum],
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot record migration {}: {}", m.file_name, describe_pg_error(&e)))?;
        tx.commit().await.map_err(|e| {
            anyhow::anyhow!(
                "migration {} failed at commit: {}",
                m.file_name,
                describe_pg_error(&e)
            )
        })?;
        tracing::info!(migration = %m.file_name, version = %m.version, "applied migration");
        report.applied.push(m.file_name.clone());
    }

    for q in queues {
        tasker_shared::pgmq::create_queue(&*client, q)
            .await
            .with_context(|| format!("cannot create queue {q}"))?;
        report.queues.push(q.clone());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_stable_and_sensitive() {
        assert_eq!(checksum("abc"), checksum("abc"));
        assert_ne!(checksum("abc"), checksum("abd"));
        assert_eq!(checksum("").len(), 16);
    }

    #[test]
    fn loads_shipped_migrations_in_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let ms = load_migrations(&dir).unwrap();
        assert!(ms.len() >= 3);
        let versions: Vec<_> = ms.iter().map(|m| m.version.clone()).collect();
        let mut sorted = versions.clone();
        sorted.sort();
        assert_eq!(versions, sorted);
        assert_eq!(ms[0].version, "0001");
    }

    #[test]
    fn required_queues_cover_namespaces() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/templates");
        let reg = TemplateRegistry::load_dir(&dir).unwrap();
        let q = required_queues(&reg);
        assert!(q.contains(&"orchestration_step_results".to_string()));
        assert!(q.contains(&"worker_linear_workflow_queue".to_string()));
    }

    #[test]
    fn missing_dir_is_an_error() {
        assert!(load_migrations(Path::new("/nonexistent/migrations")).is_err());
    }
}
