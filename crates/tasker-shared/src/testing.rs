//! Support for DB-backed tests (`#[ignore]`d; run with `DATABASE_URL` set
//! and `cargo test -- --include-ignored`). Each test gets its own database,
//! so tests can run in parallel against one server.

use std::time::Duration;

use crate::db::{connect_with_retry, describe_pg_error};
use crate::error::DbError;

/// A throw-away database, dropped (best effort) by `cleanup`.
pub struct TestDb {
    pub name: String,
    pub config: tokio_postgres::Config,
    admin: tokio_postgres::Config,
}

impl TestDb {
    /// Create `tasker_test_<uuid>` on the server `DATABASE_URL` points at.
    pub async fn create() -> Result<Self, DbError> {
        let url = std::env::var("DATABASE_URL")
            .map_err(|_| DbError::Other("DB-backed tests need DATABASE_URL".into()))?;
        let admin: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| DbError::Other(e.to_string()))?;
        let name = format!("tasker_test_{}", uuid::Uuid::new_v4().simple());
        let client = connect_with_retry(&admin, Duration::from_secs(10)).await?;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| DbError::Postgres(describe_pg_error(&e)))?;
        let mut config = admin.clone();
        config.dbname(&name);
        Ok(TestDb {
            name,
            config,
            admin,
        })
    }

    pub async fn cleanup(self) {
        if let Ok(c) = connect_with_retry(&self.admin, Duration::from_secs(5)).await {
            let _ = c
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .await;
        }
    }
}
