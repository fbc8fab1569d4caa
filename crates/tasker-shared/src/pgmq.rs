//! The few PGMQ calls the services use. They take any `GenericClient`, so
//! they run inside the caller's transaction: a state change and the message
//! that announces it commit together or not at all.

use deadpool_postgres::GenericClient;
use serde_json::Value;

use crate::db::sql;

use crate::error::DbError;

#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub msg_id: i64,
    pub read_ct: i32,
    pub message: Value,
}

pub async fn send<C: GenericClient>(c: &C, queue: &str, msg: &Value) -> Result<i64, DbError> {
    let row = sql::query_one(
        c,
        "SELECT * FROM pgmq.send($1::text, $2::jsonb, 0::integer) AS t(msg_id)",
        &[&queue, msg],
    )
    .await?;
    Ok(row.try_get::<_, i64>("msg_id")?)
}

pub async fn read<C: GenericClient>(
    c: &C,
    queue: &str,
    vt_seconds: i32,
    qty: i32,
) -> Result<Vec<QueueMessage>, DbError> {
    let rows = sql::query(
        c,
        "SELECT msg_id, read_ct, message FROM pgmq.read($1::text, $2::integer, $3::integer)",
        &[&queue, &vt_seconds, &qty],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(QueueMessage {
                msg_id: r.try_get("msg_id")?,
                read_ct: r.try_get("read_ct")?,
                message: r
                    .try_get::<_, Option<Value>>("message")?
                    .unwrap_or(Value::Null),
            })
        })
        .collect()
}

pub async fn delete<C: GenericClient>(c: &C, queue: &str, msg_id: i64) -> Result<bool, DbError> {
    let row = sql::query_one(
        c,
        "SELECT pgmq.delete($1::text, $2::bigint) AS deleted",
        &[&queue, &msg_id],
    )
    .await?;
    Ok(row.try_get::<_, bool>("deleted")?)
}

/// Move a message to the queue's archive (for messages we cannot process).
pub async fn archive<C: GenericClient>(c: &C, queue: &str, msg_id: i64) -> Result<bool, DbError> {
    let row = sql::query_one(
        c,
        "SELECT pgmq.archive($1::text, $2::bigint) AS archived",
        &[&queue, &msg_id],
    )
    .await?;
    Ok(row.try_get::<_, bool>("archived")?)
}

/// Create a queue (idempotent) and make PGMQ NOTIFY on every insert.
pub async fn create_queue<C: tokio_postgres::GenericClient>(
    c: &C,
    queue: &str,
) -> Result<(), DbError> {
    c.execute("SELECT pgmq.create($1::text)", &[&queue]).await?;
    c.execute(
        "SELECT pgmq.enable_notify_insert($1::text, 0::integer)",
        &[&queue],
    )
    .await?;
    Ok(())
}

/// Which of `queues` are missing.
pub async fn missing_queues<C: tokio_postgres::GenericClient>(
    c: &C,
    queues: &[String],
) -> Result<Vec<String>, DbError> {
    let rows = c
        .query("SELECT queue_name::text AS queue_name FROM pgmq.meta", &[])
        .await?;
    let existing: std::collections::HashSet<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<_, String>("queue_name").ok())
        .collect();
    Ok(queues
        .iter()
        .filter(|q| !existing.contains(*q))
        .cloned()
        .collect())
}
