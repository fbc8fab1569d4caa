//! DB-backed migrator tests: `DATABASE_URL=postgres://... cargo test -- --include-ignored`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tasker_migrate::{load_migrations, required_queues, run, Migration};
use tasker_shared::db::connect_with_retry;
use tasker_shared::testing::TestDb;
use tasker_shared::TemplateRegistry;
use tokio_postgres::Client;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn setup() -> (Vec<Migration>, Vec<String>) {
    let migrations = load_migrations(&root().join("migrations")).unwrap();
    let templates = TemplateRegistry::load_dir(&root().join("config/templates")).unwrap();
    (migrations, required_queues(&templates))
}

/// A new, empty database, a connection to it, and what the migrator would apply.
async fn fresh_db() -> (TestDb, Client, Vec<Migration>, Vec<String>) {
    let db = TestDb::create().await.unwrap();
    let (migrations, queues) = setup();
    let c = connect_with_retry(&db.config, Duration::from_secs(5))
        .await
        .unwrap();
    (db, c, migrations, queues)
}

#[tokio::test]
#[ignore = "needs DATABASE_URL"]
async fn migrate_twice_is_idempotent_and_creates_queues() {
    let (db, mut c, migrations, queues) = fresh_db().await;
    let first = run(&mut c, &migrations, &queues).await.unwrap();
    assert_eq!(first.applied.len(), migrations.len());
    let second = run(&mut c, &migrations, &queues).await.unwrap();
    assert!(second.applied.is_empty());
    assert_eq!(second.skipped.len(), migrations.len());
    let missing = tasker_shared::pgmq::missing_queues(&c, &queues)
        .await
        .unwrap();
    assert!(missing.is_empty(), "{missing:?}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM tasker.schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, migrations.len());
    drop(c);
    db.cleanup().await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL"]
async fn concurrent_migrators_serialise_on_the_lock() {
    let db = TestDb::create().await.unwrap();
    let (migrations, queues) = setup();
    let mut handles = Vec::new();
    for _ in 0..3 {
        let cfg = db.config.clone();
        let (m, q) = (migrations.clone(), queues.clone());
        handles.push(tokio::spawn(async move {
            let mut c = connect_with_retry(&cfg, Duration::from_secs(5))
                .await
                .unwrap();
            run(&mut c, &m, &q).await.map(|r| r.applied.len())
        }));
    }
    let mut applied = 0;
    for h in handles {
        applied += h.await.unwrap().unwrap();
    }
    assert_eq!(applied, migrations.len());
    db.cleanup().await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL"]
async fn changed_migration_and_bad_sql_are_errors() {
    let (db, mut c, migrations, queues) = fresh_db().await;
    run(&mut c, &migrations, &queues).await.unwrap();

    let mut changed = migrations.clone();
    changed[2].sql.push_str("\n-- edited");
    changed[2].checksum = tasker_migrate::checksum(&changed[2].sql);
    let e = run(&mut c, &changed, &queues)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&changed[2].file_name) && e.contains("changed"),
        "{e}"
    );

    let mut bad = migrations.clone();
    let sql = "CREATE TABLE broken (;".to_string();
    bad.push(Migration {
        version: "9999".into(),
        file_name: "9999_broken.sql".into(),
        checksum: tasker_migrate::checksum(&sql),
        sql,
    });
    let e = format!("{:#}", run(&mut c, &bad, &queues).await.unwrap_err());
    assert!(
        e.contains("9999_broken.sql") && e.contains("syntax error"),
        "{e}"
    );
    drop(c);
    db.cleanup().await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL"]
async fn uuid_generate_v7_layout_and_monotonic() {
    let (db, mut c, migrations, queues) = fresh_db().await;
    run(&mut c, &migrations, &queues).await.unwrap();
    let rows = c
        .query(
            "SELECT uuid_generate_v7() AS u, (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms
             FROM generate_series(1, 5000)",
            &[],
        )
        .await
        .unwrap();
    let mut prev: Option<uuid::Uuid> = None;
    for r in rows {
        let u: uuid::Uuid = r.get("u");
        let ms: i64 = r.get("ms");
        assert_eq!(u.get_version_num(), 7, "{u}");
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{u}");
        let b = u.as_bytes();
        let ts = b[..6]
            .iter()
            .fold(0i64, |acc, x| (acc << 8) | i64::from(*x));
        assert!((ts - ms).abs() < 5_000, "timestamp {ts} vs clock {ms}");
        if let Some(p) = prev {
            assert!(u > p, "not monotonic: {p} then {u}");
        }
        prev = Some(u);
    }
    drop(c);
    db.cleanup().await;
}
