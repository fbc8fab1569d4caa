//! PostgreSQL connections: the pool, bounded connect retries and the
//! LISTEN connection that turns PGMQ insert notifications into wake-ups.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio::sync::{watch, Notify};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::error::DbError;

/// Human-readable description of a postgres error, keeping the server's
/// message, detail, hint and position (tokio-postgres' Display hides them).
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(d) = db.detail() {
            s.push_str(&format!("; detail: {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        if let Some(tokio_postgres::error::ErrorPosition::Original(p)) = db.position() {
            s.push_str(&format!("; at character {p}"));
        }
        s
    } else {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(inner) = src {
            s.push_str(&format!(": {inner}"));
            src = inner.source();
        }
        s
    }
}

/// Build a pool. Connections are opened lazily.
pub fn make_pool(pg: tokio_postgres::Config, size: usize) -> Result<Pool, DbError> {
    let mgr = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// Wait until `SELECT 1` succeeds through the pool, at most `timeout`.
pub async fn wait_for_database(pool: &Pool, timeout: Duration) -> Result<(), DbError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let attempt = async {
            let c = pool.get().await?;
            c.simple_query("SELECT 1").await?;
            Ok::<(), DbError>(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(DbError::Other(format!(
                    "database not reachable after {}s: {e}",
                    timeout.as_secs()
                )))
            }
            Err(e) => {
                tracing::warn!(error = %e, "database not reachable yet, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Open one connection (retrying for at most `timeout`), driving it in a
/// background task. Used by the migrator and by tests.
pub async fn connect_with_retry(
    pg: &tokio_postgres::Config,
    timeout: Duration,
) -> Result<tokio_postgres::Client, DbError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match pg.connect(NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "postgres connection closed");
                    }
                });
                return Ok(client);
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(DbError::Other(format!(
                    "database not reachable after {}s: {}",
                    timeout.as_secs(),
                    describe_pg_error(&e)
                )))
            }
            Err(e) => {
                tracing::warn!(error = %describe_pg_error(&e), "database not reachable yet, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The NOTIFY channel PGMQ uses for inserts into `queue`
/// (`pgmq.enable_notify_insert`).
pub fn insert_channel(queue: &str) -> String {
    format!("pgmq.q_{queue}.INSERT")
}

/// Keep a LISTEN connection open on `channels`; every notification (and
/// every reconnect) wakes `notify`. Reconnects after errors until shutdown.
pub fn spawn_listener(
    pg: tokio_postgres::Config,
    channels: Vec<String>,
    notify: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match pg.connect(NoTls).await {
                Ok((client, mut conn)) => {
                    let n = notify.clone();
                    let mut driver = tokio::spawn(async move {
                        let mut stream =
                            futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                        while let Some(msg) = stream.next().await {
                            match msg {
                                Ok(AsyncMessage::Notification(_)) => n.notify_one(),
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "listener connection error");
                                    break;
                                }
                            }
                        }
                    });
                    let sql: String = channels
                        .iter()
                        .map(|c| format!("LISTEN \"{}\";", c.replace('"', "")))
                        .collect();
                    match client.batch_execute(&sql).await {
                        Ok(()) => {
                            tracing::debug!(channels = ?channels, "listening for queue inserts");
                            // Messages may have arrived while we were not listening.
                            notify.notify_one();
                            tokio::select! {
                                _ = &mut driver => {}
                                _ = shutdown.changed() => { driver.abort(); return; }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %describe_pg_error(&e), "LISTEN failed");
                            driver.abort();
                        }
                    }
                    drop(client);
                }
                Err(e) => {
                    tracing::warn!(error = %describe_pg_error(&e), "listener cannot connect");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// Queries through the connection's prepared-statement cache: one round
/// trip per statement instead of two (parse + execute) on the hot paths.
pub mod sql {
    use deadpool_postgres::GenericClient;
    use tokio_postgres::types::ToSql;
    use tokio_postgres::Row;

    use crate::error::DbError;

    pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

    pub async fn query<C: GenericClient>(
        c: &C,
        sql: &str,
        p: Params<'_>,
    ) -> Result<Vec<Row>, DbError> {
        let st = c.prepare_cached(sql).await?;
        Ok(c.query(&st, p).await?)
    }

    pub async fn query_one<C: GenericClient>(
        c: &C,
        sql: &str,
        p: Params<'_>,
    ) -> Result<Row, DbError> {
        let st = c.prepare_cached(sql).await?;
        Ok(c.query_one(&st, p).await?)
    }

    pub async fn query_opt<C: GenericClient>(
        c: &C,
        sql: &str,
        p: Params<'_>,
    ) -> Result<Option<Row>, DbError> {
        let st = c.prepare_cached(sql).await?;
        Ok(c.query_opt(&st, p).await?)
    }

    pub async fn execute<C: GenericClient>(
        c: &C,
        sql: &str,
        p: Params<'_>,
    ) -> Result<u64, DbError> {
        let st = c.prepare_cached(sql).await?;
        Ok(c.execute(&st, p).await?)
    }
}
