//! Task execution: creating tasks, enqueuing ready steps, recording step
//! results, retries and finalisation. Every mutation runs in a transaction
//! that holds the task row lock (`SELECT ... FOR UPDATE`), so concurrent
//! results of one task are applied one after the other, and queue messages
//! are sent in the same transaction as the state they announce.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::GenericClient;
use deadpool_postgres::Pool;
use serde_json::{json, Map, Value};
use tasker_shared::dag::{self, Outcome, StepView};
use tasker_shared::db::sql;
use tasker_shared::messages::{StepMessage, StepOutcome, StepResultMessage};
use tasker_shared::pgmq::{self, QueueMessage};
use tasker_shared::templates::{worker_queue_name, RetryPolicy, TaskTemplate, RESULTS_QUEUE};
use tasker_shared::transitions::Transitions;
use tasker_shared::{DbError, StepState, TaskState};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

/// A validated request to create a task.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub name: String,
    pub namespace: String,
    pub version: String,
    pub context: Map<String, Value>,
    pub initiator: String,
    pub source_system: String,
    pub reason: String,
    pub tags: Vec<String>,
    pub requested_at: chrono::DateTime<Utc>,
    pub correlation_id: Uuid,
    pub parent_correlation_id: Option<Uuid>,
    pub priority: i32,
    pub options: Option<Value>,
    pub idempotency_key: Option<String>,
    /// The request body as received, to compare idempotent retries.
    pub request_body: Value,
}

#[derive(Debug)]
pub enum CreateOutcome {
    Created(Uuid),
    /// Same idempotency key, same body: the existing task.
    Existing(Uuid),
    /// Same idempotency key, different body.
    Conflict(Uuid),
}

/// Is `e` a unique-constraint violation?
fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

async fn find_by_idempotency_key<C: GenericClient>(
    c: &C,
    key: &str,
    body: &Value,
) -> Result<Option<CreateOutcome>, DbError> {
    let row = sql::query_opt(
        c,
        "SELECT task_uuid, request_body FROM tasker.tasks WHERE idempotency_key = $1",
        &[&key],
    )
    .await?;
    Ok(match row {
        None => None,
        Some(r) => {
            let id: Uuid = r.try_get("task_uuid")?;
            let stored: Value = r.try_get("request_body")?;
            Some(if &stored == body {
                CreateOutcome::Existing(id)
            } else {
                CreateOutcome::Conflict(id)
            })
        }
    })
}

/// Create the task, its steps and edges, and enqueue the root steps, in one
/// transaction.
pub async fn create_task(
    pool: &Pool,
    template: &TaskTemplate,
    req: &NewTask,
) -> Result<CreateOutcome, DbError> {
    let mut client = pool.get().await?;
    if let Some(key) = &req.idempotency_key {
        if let Some(found) = find_by_idempotency_key(&client, key, &req.request_body).await? {
            return Ok(found);
        }
    }
    let task_uuid = tasker_shared::new_uuid_v7();
    let tx = client.transaction().await?;
    let mut tr = Transitions::new();
    let context = Value::Object(req.context.clone());
    let inserted = tx
        .execute(
            "INSERT INTO tasker.tasks (task_uuid, name, namespace, version, status, context,
                 initiator, source_system, reason, tags, requested_at, correlation_id,
                 parent_correlation_id, priority, options, idempotency_key, request_body)
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            &[
                &task_uuid,
                &req.name,
                &req.namespace,
                &req.version,
                &context,
                &req.initiator,
                &req.source_system,
                &req.reason,
                &req.tags,
                &req.requested_at,
                &req.correlation_id,
                &req.parent_correlation_id,
                &req.priority,
                &req.options,
                &req.idempotency_key,
                &req.request_body,
            ],
        )
        .await;
    if let Err(e) = inserted {
        if is_unique_violation(&e) {
            drop(tx);
            if let Some(key) = &req.idempotency_key {
                if let Some(found) =
                    find_by_idempotency_key(&client, key, &req.request_body).await?
                {
                    return Ok(found);
                }
            }
        }
        return Err(e.into());
    }
    tr.record_task(&tx, task_uuid, None, TaskState::Pending, json!({}))
        .await?;

    let mut ids: HashMap<&str, Uuid> = HashMap::new();
    for (pos, s) in template.steps.iter().enumerate() {
        let id = tasker_shared::new_uuid_v7();
        ids.insert(s.name.as_str(), id);
        let policy = template.step_retry(s);
        let policy_json =
            serde_json::to_value(&policy).map_err(|e| DbError::Other(e.to_string()))?;
        let position = i32::try_from(pos).unwrap_or(i32::MAX);
        sql::execute(
            &tx,
            "INSERT INTO tasker.workflow_steps (step_uuid, task_uuid, name, description, handler,
                 position, current_state, max_attempts, retryable, retry_policy)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9)",
            &[
                &id,
                &task_uuid,
                &s.name,
                &s.description,
                &s.handler,
                &position,
                &policy.max_attempts,
                &policy.retryable,
                &policy_json,
            ],
        )
        .await?;
    }
    for s in &template.steps {
        for d in &s.depends_on {
            let (Some(from), Some(to)) = (ids.get(d.as_str()), ids.get(s.name.as_str())) else {
                return Err(DbError::Other(format!(
                    "template edge {d} -> {} unresolved",
                    s.name
                )));
            };
            sql::execute(
                &tx,
                "INSERT INTO tasker.workflow_step_edges (task_uuid, from_step_uuid, to_step_uuid)
                 VALUES ($1, $2, $3)",
                &[&task_uuid, from, to],
            )
            .await?;
        }
    }
    let info = TaskInfo {
        task_uuid,
        namespace: req.namespace.clone(),
        context,
        status: TaskState::Pending,
    };
    advance(&tx, &info, &mut tr).await?;
    tx.commit().await?;
    tr.emit();
    Ok(CreateOutcome::Created(task_uuid))
}

/// What `advance` needs to know about the task.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    pub task_uuid: Uuid,
    pub namespace: String,
    pub context: Value,
    pub status: TaskState,
}

/// Lock the task row and read what `advance` needs.
async fn lock_task<C: GenericClient>(
    c: &C,
    task_uuid: Uuid,
    skip_locked: bool,
) -> Result<Option<TaskInfo>, DbError> {
    let sql = if skip_locked {
        "SELECT task_uuid, namespace, context, status FROM tasker.tasks
         WHERE task_uuid = $1 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT task_uuid, namespace, context, status FROM tasker.tasks
         WHERE task_uuid = $1 FOR UPDATE"
    };
    let Some(r) = sql::query_opt(c, sql, &[&task_uuid]).await? else {
        return Ok(None);
    };
    Ok(Some(TaskInfo {
        task_uuid: r.try_get("task_uuid")?,
        namespace: r.try_get("namespace")?,
        context: r.try_get("context")?,
        status: r
            .try_get::<_, String>("status")?
            .parse()
            .map_err(DbError::Other)?,
    }))
}

#[derive(Debug, Clone)]
struct StepRow {
    view: StepView,
    name: String,
    handler: String,
    attempts: i32,
    max_attempts: i32,
    results: Option<Value>,
}

async fn load_steps<C: GenericClient>(c: &C, task_uuid: Uuid) -> Result<Vec<StepRow>, DbError> {
    let rows = sql::query(
        c,
        "SELECT s.step_uuid, s.name, s.handler, s.current_state, s.attempts, s.max_attempts,
                    s.results, s.next_retry_at,
                    COALESCE(ARRAY(SELECT e.from_step_uuid FROM tasker.workflow_step_edges e
                                   WHERE e.to_step_uuid = s.step_uuid), '{}') AS parents
             FROM tasker.workflow_steps s WHERE s.task_uuid = $1 ORDER BY s.position",
        &[&task_uuid],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StepRow {
                view: StepView {
                    id: r.try_get("step_uuid")?,
                    state: r
                        .try_get::<_, String>("current_state")?
                        .parse()
                        .map_err(DbError::Other)?,
                    parents: r.try_get("parents")?,
                    next_retry_at: r.try_get("next_retry_at")?,
                },
                name: r.try_get("name")?,
                handler: r.try_get("handler")?,
                attempts: r.try_get("attempts")?,
                max_attempts: r.try_get("max_attempts")?,
                results: r.try_get("results")?,
            })
        })
        .collect()
}

/// Decide the task's next state from its steps and enqueue ready steps.
/// The caller holds the task row lock.
pub async fn advance<C: GenericClient>(
    c: &C,
    task: &TaskInfo,
    tr: &mut Transitions,
) -> Result<TaskState, DbError> {
    // The states the task passes through in this transaction, recorded at
    // the end with one UPDATE and one INSERT.
    let mut path = vec![task.status];
    match task.status {
        TaskState::Pending => path.push(TaskState::Initializing),
        TaskState::StepsInProcess
        | TaskState::WaitingForRetry
        | TaskState::WaitingForDependencies
        | TaskState::BlockedByFailures => path.push(TaskState::EvaluatingResults),
        // complete, error, cancelled, resolved_manually, or a state only
        // held inside a transaction: nothing to do.
        _ => return Ok(task.status),
    }
    let steps = load_steps(c, task.task_uuid).await?;
    let views: Vec<StepView> = steps.iter().map(|s| s.view.clone()).collect();
    let ev = dag::evaluate(&views, Utc::now());
    let outcome = ev.outcome();
    let target = match outcome {
        Outcome::Complete => TaskState::Complete,
        Outcome::Error => TaskState::Error,
        Outcome::BlockedByFailures => TaskState::BlockedByFailures,
        Outcome::EnqueueReady => TaskState::EnqueuingSteps,
        Outcome::InProcess => TaskState::StepsInProcess,
        Outcome::WaitingForRetry => TaskState::WaitingForRetry,
        Outcome::WaitingForDependencies => TaskState::WaitingForDependencies,
    };
    path.push(target);
    if outcome == Outcome::EnqueueReady {
        path.push(TaskState::StepsInProcess);
    }
    let meta = json!({
        "total_steps": ev.total, "completed_steps": ev.complete, "failed_steps": ev.error,
        "in_flight_steps": ev.in_flight, "enqueued_steps": ev.ready.len(),
    });
    tr.task_path(c, task.task_uuid, &path, meta).await?;
    if outcome == Outcome::EnqueueReady {
        let by_id: HashMap<Uuid, &StepRow> = steps.iter().map(|s| (s.view.id, s)).collect();
        let queue = worker_queue_name(&task.namespace);
        for id in &ev.ready {
            let Some(step) = by_id.get(id) else { continue };
            enqueue_step(c, task, step, &by_id, &queue, tr).await?;
        }
    }
    Ok(path.last().copied().unwrap_or(task.status))
}

async fn enqueue_step<C: GenericClient>(
    c: &C,
    task: &TaskInfo,
    step: &StepRow,
    by_id: &HashMap<Uuid, &StepRow>,
    queue: &str,
    tr: &mut Transitions,
) -> Result<(), DbError> {
    let from = step.view.state;
    let attempt = step
        .attempts
        .checked_add(1)
        .ok_or_else(|| DbError::Other("attempt counter overflow".into()))?;
    let mut deps = BTreeMap::new();
    for p in &step.view.parents {
        if let Some(parent) = by_id.get(p) {
            let v = parent
                .results
                .as_ref()
                .and_then(|r| r.get("result"))
                .cloned()
                .unwrap_or(Value::Null);
            deps.insert(parent.name.clone(), v);
        }
    }
    let msg = StepMessage {
        task_uuid: task.task_uuid,
        step_uuid: step.view.id,
        step_name: step.name.clone(),
        namespace: task.namespace.clone(),
        handler: step.handler.clone(),
        attempt,
        max_attempts: step.max_attempts,
        context: task.context.clone(),
        dependency_results: deps,
    };
    let n = sql::execute(
        c,
        "UPDATE tasker.workflow_steps SET current_state = 'enqueued', next_retry_at = NULL,
                    updated_at = clock_timestamp()
             WHERE step_uuid = $1 AND current_state = $2",
        &[&step.view.id, &from.as_str()],
    )
    .await?;
    if n != 1 {
        return Err(DbError::Other(format!(
            "step {} is no longer {from}",
            step.view.id
        )));
    }
    tr.record_step(
        c,
        task.task_uuid,
        step.view.id,
        &step.name,
        from,
        StepState::Enqueued,
        attempt,
        json!({"queue": queue}),
    )
    .await?;
    let body = serde_json::to_value(&msg).map_err(|e| DbError::Other(e.to_string()))?;
    pgmq::send(c, queue, &body).await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultDisposition {
    Applied,
    Duplicate,
    Invalid,
}

/// Record one step result message and move the task on.
pub async fn process_result(pool: &Pool, qm: &QueueMessage) -> Result<ResultDisposition, DbError> {
    let msg: StepResultMessage = match serde_json::from_value(qm.message.clone()) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(msg_id = qm.msg_id, error = %e, "invalid step result message, archiving");
            let c = pool.get().await?;
            pgmq::archive(&c, RESULTS_QUEUE, qm.msg_id).await?;
            return Ok(ResultDisposition::Invalid);
        }
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut tr = Transitions::new();
    let Some(task) = lock_task(&tx, msg.task_uuid, false).await? else {
        tracing::warn!(task_uuid = %msg.task_uuid, "result for an unknown task, archiving");
        pgmq::archive(&tx, RESULTS_QUEUE, qm.msg_id).await?;
        tx.commit().await?;
        return Ok(ResultDisposition::Invalid);
    };
    let row = sql::query_opt(
        &tx,
        "SELECT current_state, attempts, max_attempts, retryable, retry_policy
             FROM tasker.workflow_steps WHERE step_uuid = $1 AND task_uuid = $2 FOR UPDATE",
        &[&msg.step_uuid, &msg.task_uuid],
    )
    .await?;
    let Some(row) = row else {
        tracing::warn!(step_uuid = %msg.step_uuid, "result for an unknown step, archiving");
        pgmq::archive(&tx, RESULTS_QUEUE, qm.msg_id).await?;
        tx.commit().await?;
        return Ok(ResultDisposition::Invalid);
    };
    let state: StepState = row
        .try_get::<_, String>("current_state")?
        .parse()
        .map_err(DbError::Other)?;
    let attempts: i32 = row.try_get("attempts")?;
    let max_attempts: i32 = row.try_get("max_attempts")?;
    let step_retryable: bool = row.try_get("retryable")?;
    let policy: RetryPolicy =
        serde_json::from_value(row.try_get::<_, Value>("retry_policy")?).unwrap_or_default();

    let expected_state = match msg.outcome {
        StepOutcome::Success { .. } => StepState::EnqueuedForOrchestration,
        StepOutcome::Failure { .. } => StepState::EnqueuedAsErrorForOrchestration,
    };
    if state != expected_state || attempts != msg.attempt {
        tracing::info!(
            task_uuid = %msg.task_uuid, step_uuid = %msg.step_uuid, step_name = %msg.step_name,
            state = %state, attempts, msg_attempt = msg.attempt,
            "duplicate or stale step result ignored"
        );
        pgmq::delete(&tx, RESULTS_QUEUE, qm.msg_id).await?;
        tx.commit().await?;
        return Ok(ResultDisposition::Duplicate);
    }

    match &msg.outcome {
        StepOutcome::Success { result } => {
            let results = json!({"result": result});
            sql::execute(
                &tx,
                "UPDATE tasker.workflow_steps SET current_state = 'complete', results = $2,
                        completed_at = clock_timestamp(), updated_at = clock_timestamp()
                 WHERE step_uuid = $1",
                &[&msg.step_uuid, &results],
            )
            .await?;
            tr.record_step(
                &tx,
                msg.task_uuid,
                msg.step_uuid,
                &msg.step_name,
                state,
                StepState::Complete,
                attempts,
                json!({"worker_id": msg.worker_id, "duration_ms": msg.duration_ms}),
            )
            .await?;
        }
        StepOutcome::Failure { error } => {
            let retry = error.retryable && step_retryable && attempts < max_attempts;
            let err_json = json!({
                "message": error.message, "kind": error.kind, "retryable": error.retryable,
                "attempt": attempts, "max_attempts": max_attempts,
            });
            let results = json!({"error": err_json});
            let (to, delay_ms) = if retry {
                (
                    StepState::WaitingForRetry,
                    Some(policy.backoff_ms(attempts)),
                )
            } else {
                (StepState::Error, None)
            };
            sql::execute(&tx,
                "UPDATE tasker.workflow_steps SET current_state = $2, results = $3, last_error = $4,
                        last_failure_at = clock_timestamp(), updated_at = clock_timestamp(),
                        next_retry_at = CASE WHEN $5::bigint IS NULL THEN NULL
                            ELSE clock_timestamp() + make_interval(secs => ($5::bigint / 1000.0)::double precision) END
                 WHERE step_uuid = $1",
                &[&msg.step_uuid, &to.as_str(), &results, &err_json, &delay_ms],
            )
            .await?;
            tr.record_step(
                &tx,
                msg.task_uuid,
                msg.step_uuid,
                &msg.step_name,
                state,
                to,
                attempts,
                json!({"error": err_json, "backoff_ms": delay_ms}),
            )
            .await?;
        }
    }
    advance(&tx, &task, &mut tr).await?;
    pgmq::delete(&tx, RESULTS_QUEUE, qm.msg_id).await?;
    tx.commit().await?;
    tr.emit();
    Ok(ResultDisposition::Applied)
}

/// Re-enqueue steps whose retry time has come. Only tasks that can still
/// make progress count: a retry left behind in a task that has failed (or
/// is blocked by a failure) would otherwise be found again on every pass. Returns how many tasks were
/// advanced and when the next retry is due (if any).
pub async fn process_due_retries(
    pool: &Pool,
) -> Result<(usize, Option<chrono::DateTime<Utc>>), DbError> {
    let client = pool.get().await?;
    let rows = sql::query(
        &client,
        "SELECT DISTINCT s.task_uuid FROM tasker.workflow_steps s
             JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
             WHERE s.current_state = 'waiting_for_retry' AND s.next_retry_at <= clock_timestamp()
               AND t.status IN ('steps_in_process', 'waiting_for_retry', 'waiting_for_dependencies')
             LIMIT 100",
        &[],
    )
    .await?;
    drop(client);
    let mut advanced = 0;
    for r in rows {
        let task_uuid: Uuid = r.try_get("task_uuid")?;
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let mut tr = Transitions::new();
        let Some(task) = lock_task(&tx, task_uuid, true).await? else {
            continue; // busy: another transaction is advancing it
        };
        advance(&tx, &task, &mut tr).await?;
        tx.commit().await?;
        tr.emit();
        advanced += 1;
    }
    let client = pool.get().await?;
    let next: Option<chrono::DateTime<Utc>> = sql::query_one(
        &client,
        "SELECT min(s.next_retry_at) AS next FROM tasker.workflow_steps s
             JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
             WHERE s.current_state = 'waiting_for_retry'
               AND t.status IN ('steps_in_process', 'waiting_for_retry', 'waiting_for_dependencies')",
        &[],
    )
    .await?
    .try_get("next")?;
    Ok((advanced, next))
}

/// Pause after a failed queue read (e.g. the database is down).
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Settings of the result-processing loop.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub vt_seconds: i32,
    pub poll_interval: Duration,
    pub batch_size: i32,
}

/// Process step results and due retries until shutdown. Wakes on NOTIFY,
/// on the poll interval, or when the next retry is due.
pub async fn run(
    pool: Pool,
    settings: LoopSettings,
    notify: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        let msgs = match pool.get().await {
            Ok(c) => pgmq::read(&c, RESULTS_QUEUE, settings.vt_seconds, settings.batch_size).await,
            Err(e) => Err(DbError::from(e)),
        };
        let got = match msgs {
            Ok(msgs) => {
                let n = msgs.len();
                let futs = msgs.iter().map(|qm| {
                    let pool = &pool;
                    async move {
                        if let Err(e) = process_result(pool, qm).await {
                            tracing::error!(msg_id = qm.msg_id, error = %e,
                                "processing a step result failed; it will be retried after the visibility timeout");
                        }
                    }
                });
                futures_util::future::join_all(futs).await;
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the step results queue");
                // Database trouble: back off instead of retrying every poll.
                tokio::select! {
                    _ = tokio::time::sleep(ERROR_BACKOFF) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        let mut wait = settings.poll_interval;
        match process_due_retries(&pool).await {
            Ok((_, Some(next))) => {
                let until = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                wait = wait.min(until.max(Duration::from_millis(1)));
            }
            Ok((_, None)) => {}
            Err(e) => tracing::warn!(error = %e, "cannot process due retries"),
        }
        if got == 0 {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    tracing::info!("result processing stopped");
}
