//! Recording state transitions: a row per transition (with timestamp) in
//! the caller's transaction, and one structured log line per transition,
//! emitted once the transaction has committed.

use deadpool_postgres::GenericClient;
use serde_json::Value;

use crate::db::sql;
use uuid::Uuid;

use crate::error::DbError;
use crate::states::{StepState, TaskState};

/// A transition to log after commit.
#[derive(Debug, Clone)]
pub enum TransitionLog {
    Task {
        task_uuid: Uuid,
        from: Option<TaskState>,
        to: TaskState,
    },
    Step {
        task_uuid: Uuid,
        step_uuid: Uuid,
        step_name: String,
        from: StepState,
        to: StepState,
        attempt: i32,
    },
}

impl TransitionLog {
    pub fn emit(&self) {
        match self {
            TransitionLog::Task {
                task_uuid,
                from,
                to,
            } => tracing::info!(
                target: "tasker::transition",
                entity = "task",
                task_uuid = %task_uuid,
                from_state = from.map(|f| f.as_str()).unwrap_or(""),
                to_state = to.as_str(),
                "task transition"
            ),
            TransitionLog::Step {
                task_uuid,
                step_uuid,
                step_name,
                from,
                to,
                attempt,
            } => tracing::info!(
                target: "tasker::transition",
                entity = "step",
                task_uuid = %task_uuid,
                step_uuid = %step_uuid,
                step_name = %step_name,
                from_state = from.as_str(),
                to_state = to.as_str(),
                attempt = attempt,
                "step transition"
            ),
        }
    }
}

/// Collects transitions made inside one transaction.
#[derive(Debug, Default)]
pub struct Transitions {
    pub logs: Vec<TransitionLog>,
}

impl Transitions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Log everything collected (call after COMMIT).
    pub fn emit(self) {
        for l in &self.logs {
            l.emit();
        }
    }

    /// Move a task from `from` to `to` (checked), recording the transition.
    /// Fails if the row is not in `from` any more.
    pub async fn task<C: GenericClient>(
        &mut self,
        c: &C,
        task_uuid: Uuid,
        from: TaskState,
        to: TaskState,
        metadata: Value,
    ) -> Result<(), DbError> {
        from.check_transition(to)
            .map_err(|e| DbError::Other(e.to_string()))?;
        let n = sql::execute(c,
                "UPDATE tasker.tasks SET status = $3, updated_at = clock_timestamp(),
                        completed_at = CASE WHEN $3 IN ('complete', 'error', 'cancelled', 'resolved_manually')
                                            THEN clock_timestamp() ELSE completed_at END
                 WHERE task_uuid = $1 AND status = $2",
                &[&task_uuid, &from.as_str(), &to.as_str()],
            )
            .await?;
        if n != 1 {
            return Err(DbError::Other(format!(
                "task {task_uuid} is no longer {from} (wanted -> {to})"
            )));
        }
        self.record_task(c, task_uuid, Some(from), to, metadata)
            .await
    }

    /// Move a task along `path` (`path[0]` is its current state), checking
    /// every step of the way, with one UPDATE and one INSERT of all the
    /// transition rows.
    pub async fn task_path<C: GenericClient>(
        &mut self,
        c: &C,
        task_uuid: Uuid,
        path: &[TaskState],
        metadata: Value,
    ) -> Result<(), DbError> {
        let (Some(first), Some(last)) = (path.first(), path.last()) else {
            return Ok(());
        };
        if path.len() < 2 {
            return Ok(());
        }
        for w in path.windows(2) {
            w[0].check_transition(w[1])
                .map_err(|e| DbError::Other(e.to_string()))?;
        }
        let n = sql::execute(
            c,
            "UPDATE tasker.tasks SET status = $3, updated_at = clock_timestamp(),
                    completed_at = CASE WHEN $3 IN ('complete', 'error', 'cancelled', 'resolved_manually')
                                        THEN clock_timestamp() ELSE completed_at END
             WHERE task_uuid = $1 AND status = $2",
            &[&task_uuid, &first.as_str(), &last.as_str()],
        )
        .await?;
        if n != 1 {
            return Err(DbError::Other(format!(
                "task {task_uuid} is no longer {first} (wanted -> {last})"
            )));
        }
        let froms: Vec<&str> = path[..path.len() - 1].iter().map(|s| s.as_str()).collect();
        let tos: Vec<&str> = path[1..].iter().map(|s| s.as_str()).collect();
        sql::execute(
            c,
            "INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, metadata)
             SELECT $1, f, t, $4 FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS x(f, t, i)
             ORDER BY i",
            &[&task_uuid, &froms, &tos, &metadata],
        )
        .await?;
        for w in path.windows(2) {
            self.logs.push(TransitionLog::Task {
                task_uuid,
                from: Some(w[0]),
                to: w[1],
            });
        }
        Ok(())
    }

    /// Only insert the task transition row (the caller updated the row).
    pub async fn record_task<C: GenericClient>(
        &mut self,
        c: &C,
        task_uuid: Uuid,
        from: Option<TaskState>,
        to: TaskState,
        metadata: Value,
    ) -> Result<(), DbError> {
        sql::execute(
            c,
            "INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, metadata)
             VALUES ($1, $2, $3, $4)",
            &[
                &task_uuid,
                &from.map(|f| f.as_str()),
                &to.as_str(),
                &metadata,
            ],
        )
        .await?;
        self.logs.push(TransitionLog::Task {
            task_uuid,
            from,
            to,
        });
        Ok(())
    }

    /// Insert a step transition row (the caller updated the step row in the
    /// same transaction, after checking the transition is allowed).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_step<C: GenericClient>(
        &mut self,
        c: &C,
        task_uuid: Uuid,
        step_uuid: Uuid,
        step_name: &str,
        from: StepState,
        to: StepState,
        attempt: i32,
        metadata: Value,
    ) -> Result<(), DbError> {
        from.check_transition(to)
            .map_err(|e| DbError::Other(e.to_string()))?;
        sql::execute(
            c,
            "INSERT INTO tasker.workflow_step_transitions
                 (step_uuid, task_uuid, from_state, to_state, attempt, metadata)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &step_uuid,
                &task_uuid,
                &from.as_str(),
                &to.as_str(),
                &attempt,
                &metadata,
            ],
        )
        .await?;
        self.logs.push(TransitionLog::Step {
            task_uuid,
            step_uuid,
            step_name: step_name.to_string(),
            from,
            to,
            attempt,
        });
        Ok(())
    }
}
