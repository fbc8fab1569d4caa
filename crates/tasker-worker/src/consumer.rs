//! The queue consumer: reads step messages from `worker_<ns>_queue` with a
//! visibility timeout, claims the step (enqueued -> in_progress), runs the
//! handler and, in one transaction, moves the step to
//! enqueued_for_orchestration (or ..._as_error_...), sends the result to
//! `orchestration_step_results` and deletes the step message.
//!
//! A worker that dies mid-step leaves the step in_progress and the message
//! invisible; once the visibility timeout passes the message is read again
//! and the same attempt is run again. Stale messages (the step moved on)
//! are deleted without effect.

use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::Pool;
use serde_json::json;
use tasker_shared::db::sql;
use tasker_shared::messages::{StepMessage, StepOutcome, StepResultMessage};
use tasker_shared::pgmq::{self, QueueMessage};
use tasker_shared::templates::RESULTS_QUEUE;
use tasker_shared::transitions::Transitions;
use tasker_shared::{DbError, StepState};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::handlers;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub worker_id: String,
    pub queues: Vec<String>,
    pub vt_seconds: i32,
    pub poll_interval: std::time::Duration,
    pub concurrency: usize,
}

/// What happened to one message (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    Completed,
    Failed,
    Stale,
    Invalid,
}

/// Lock the step's row for this transaction; its state and attempts, or None if unknown.
async fn lock_step(
    tx: &deadpool_postgres::Transaction<'_>,
    step_uuid: uuid::Uuid,
) -> Result<Option<(StepState, i32)>, DbError> {
    let row = sql::query_opt(
        tx,
        "SELECT current_state, attempts FROM tasker.workflow_steps
             WHERE step_uuid = $1 FOR UPDATE",
        &[&step_uuid],
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    let state: StepState = row
        .try_get::<_, String>("current_state")?
        .parse()
        .map_err(DbError::Other)?;
    Ok(Some((state, row.try_get("attempts")?)))
}

/// Handle one message from `queue` end to end.
pub async fn process_message(
    pool: &Pool,
    worker_id: &str,
    queue: &str,
    qm: &QueueMessage,
) -> Result<Processed, DbError> {
    let msg: StepMessage = match serde_json::from_value(qm.message.clone()) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(queue, msg_id = qm.msg_id, error = %e, "invalid step message, archiving");
            let c = pool.get().await?;
            pgmq::archive(&c, queue, qm.msg_id).await?;
            return Ok(Processed::Invalid);
        }
    };

    // 1. claim
    let mut client = pool.get().await?;
    {
        let tx = client.transaction().await?;
        let Some((state, attempts)) = lock_step(&tx, msg.step_uuid).await? else {
            tracing::warn!(step_uuid = %msg.step_uuid, "step message for an unknown step, archiving");
            pgmq::archive(&tx, queue, qm.msg_id).await?;
            tx.commit().await?;
            return Ok(Processed::Stale);
        };
        let mut tr = Transitions::new();
        match state {
            StepState::Enqueued if attempts.checked_add(1) == Some(msg.attempt) => {
                sql::execute(
                    &tx,
                    "UPDATE tasker.workflow_steps
                     SET current_state = 'in_progress', attempts = $2,
                         last_attempted_at = clock_timestamp(), updated_at = clock_timestamp()
                     WHERE step_uuid = $1",
                    &[&msg.step_uuid, &msg.attempt],
                )
                .await?;
                tr.record_step(
                    &tx,
                    msg.task_uuid,
                    msg.step_uuid,
                    &msg.step_name,
                    StepState::Enqueued,
                    StepState::InProgress,
                    msg.attempt,
                    json!({"worker_id": worker_id}),
                )
                .await?;
            }
            StepState::InProgress if attempts == msg.attempt => {
                tracing::warn!(
                    task_uuid = %msg.task_uuid, step_uuid = %msg.step_uuid, attempt = msg.attempt,
                    read_ct = qm.read_ct,
                    "step message seen again after its visibility timeout; running the attempt again"
                );
            }
            _ => {
                tracing::info!(
                    task_uuid = %msg.task_uuid, step_uuid = %msg.step_uuid,
                    state = %state, attempts, msg_attempt = msg.attempt,
                    "stale step message, deleting"
                );
                pgmq::delete(&tx, queue, qm.msg_id).await?;
                tx.commit().await?;
                return Ok(Processed::Stale);
            }
        }
        tx.commit().await?;
        tr.emit();
    }

    // 2. run
    let started = Instant::now();
    let outcome = match handlers::run(&msg) {
        Ok(result) => StepOutcome::Success { result },
        Err(error) => StepOutcome::Failure { error },
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

    // 3. hand the result to orchestration
    let tx = client.transaction().await?;
    let still_ours =
        lock_step(&tx, msg.step_uuid).await? == Some((StepState::InProgress, msg.attempt));
    if !still_ours {
        tracing::info!(step_uuid = %msg.step_uuid, "step finished elsewhere meanwhile, dropping result");
        pgmq::delete(&tx, queue, qm.msg_id).await?;
        tx.commit().await?;
        return Ok(Processed::Stale);
    }
    let (to, processed) = match &outcome {
        StepOutcome::Success { .. } => (StepState::EnqueuedForOrchestration, Processed::Completed),
        StepOutcome::Failure { .. } => (
            StepState::EnqueuedAsErrorForOrchestration,
            Processed::Failed,
        ),
    };
    sql::execute(
        &tx,
        "UPDATE tasker.workflow_steps SET current_state = $2, updated_at = clock_timestamp()
         WHERE step_uuid = $1",
        &[&msg.step_uuid, &to.as_str()],
    )
    .await?;
    let mut tr = Transitions::new();
    tr.record_step(
        &tx,
        msg.task_uuid,
        msg.step_uuid,
        &msg.step_name,
        StepState::InProgress,
        to,
        msg.attempt,
        json!({"worker_id": worker_id, "duration_ms": duration_ms}),
    )
    .await?;
    let result = StepResultMessage {
        task_uuid: msg.task_uuid,
        step_uuid: msg.step_uuid,
        step_name: msg.step_name.clone(),
        attempt: msg.attempt,
        worker_id: worker_id.to_string(),
        duration_ms,
        outcome,
    };
    let body = serde_json::to_value(&result).map_err(|e| DbError::Other(e.to_string()))?;
    pgmq::send(&tx, RESULTS_QUEUE, &body).await?;
    pgmq::delete(&tx, queue, qm.msg_id).await?;
    tx.commit().await?;
    tr.emit();
    Ok(processed)
}

/// Read and process messages until `shutdown` flips; then stop reading and
/// wait for in-flight steps (bounded by the caller's timeout).
pub async fn run(
    pool: Pool,
    settings: Arc<WorkerSettings>,
    notify: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let sem = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut inflight: JoinSet<()> = JoinSet::new();
    let mut next_queue = 0usize;
    loop {
        if *shutdown.borrow() {
            break;
        }
        while inflight.try_join_next().is_some() {}

        let mut got = 0usize;
        let mut read_failed = false;
        let n_queues = settings.queues.len();
        for i in 0..n_queues {
            let queue = &settings.queues[(next_queue + i) % n_queues];
            let free = sem.available_permits();
            if free == 0 {
                break;
            }
            let qty = i32::try_from(free).unwrap_or(i32::MAX);
            let msgs = match pool.get().await {
                Ok(c) => pgmq::read(&c, queue, settings.vt_seconds, qty).await,
                Err(e) => Err(DbError::from(e)),
            };
            let msgs = match msgs {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(queue = %queue, error = %e, "cannot read queue");
                    read_failed = true;
                    continue;
                }
            };
            for qm in msgs {
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    return;
                };
                got += 1;
                let pool = pool.clone();
                let settings = settings.clone();
                let queue = queue.clone();
                inflight.spawn(async move {
                    if let Err(e) = process_message(&pool, &settings.worker_id, &queue, &qm).await {
                        tracing::error!(queue = %queue, msg_id = qm.msg_id, error = %e,
                            "step message processing failed; it will be retried after the visibility timeout");
                    }
                    drop(permit);
                });
            }
        }
        next_queue = next_queue.wrapping_add(1);

        if read_failed && got == 0 {
            // Database trouble: back off instead of retrying every poll.
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        if got == 0 || sem.available_permits() == 0 {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(settings.poll_interval) => {}
                _ = shutdown.changed() => {}
                Some(_) = inflight.join_next(), if !inflight.is_empty() && sem.available_permits() == 0 => {}
            }
        }
    }
    tracing::info!(
        in_flight = inflight.len(),
        "worker draining in-flight steps"
    );
    while inflight.join_next().await.is_some() {}
    tracing::info!("worker drained");
}
