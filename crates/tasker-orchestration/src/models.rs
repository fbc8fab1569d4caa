//! API shapes (wire-compatible field names with tasker-core's orchestration
//! API) and loading them from the database.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasker_shared::dag::{self, StepView};
use tasker_shared::db::sql;
use tasker_shared::{DbError, StepState};
use utoipa::ToSchema;
use uuid::Uuid;

/// Body of `POST /v1/tasks`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateTaskRequest {
    #[schema(min_length = 1, pattern = r"^[^\x00]*\S[^\x00]*$")]
    pub name: String,
    #[schema(min_length = 1, pattern = r"^[^\x00]*\S[^\x00]*$")]
    pub namespace: String,
    #[schema(min_length = 1, pattern = r"^[^\x00]*\S[^\x00]*$")]
    pub version: String,
    /// The task's input; checked against the template's input rules.
    #[schema(value_type = Object)]
    pub context: serde_json::Map<String, Value>,
    #[schema(min_length = 1, pattern = r"^[^\x00]*\S[^\x00]*$")]
    pub initiator: String,
    #[schema(min_length = 1, pattern = r"^[^\x00]*\S[^\x00]*$")]
    pub source_system: String,
    #[schema(min_length = 1, pattern = r"^[^\x00]*\S[^\x00]*$")]
    pub reason: String,
    #[serde(default)]
    #[schema(inline, value_type = Option<Vec<TagString>>)]
    pub tags: Option<Vec<String>>,
    /// RFC 3339 (e.g. `2026-11-25T12:00:00Z`); default now. Days 29-31 are
    /// accepted too where the month has them.
    #[serde(default)]
    #[schema(
        pattern = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
    )]
    pub requested_at: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub correlation_id: Option<Uuid>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]*$")]
    pub idempotency_key: Option<String>,
    #[serde(default, deserialize_with = "int_like_i32")]
    pub priority: Option<i32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub parent_correlation_id: Option<Uuid>,
}

/// An optional i32 that also accepts integral floats (`5.0`), as JSON
/// Schema's `integer` does.
fn int_like_i32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let v: Option<Value> = Option::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => tasker_shared::templates::integral(&v)
            .and_then(|i| i32::try_from(i).ok())
            .map(Some)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("priority must be a 32-bit integer, got {v}"))
            }),
    }
}

/// A tag: any string without NUL characters.
#[derive(ToSchema)]
#[schema(pattern = r"^[^\x00]*$")]
pub struct TagString(#[allow(dead_code)] String);

/// Task states, for the `status` filter of `GET /v1/tasks`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Initializing,
    EnqueuingSteps,
    StepsInProcess,
    EvaluatingResults,
    WaitingForDependencies,
    WaitingForRetry,
    BlockedByFailures,
    Complete,
    Error,
    Cancelled,
    ResolvedManually,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepResponse {
    pub step_uuid: Uuid,
    pub task_uuid: Uuid,
    pub name: String,
    pub current_state: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub last_attempted_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub dependencies_satisfied: bool,
    pub retry_eligible: bool,
    pub ready_for_execution: bool,
    pub total_parents: i32,
    pub completed_parents: i32,
    pub attempts: i32,
    pub max_attempts: i32,
    /// `{"result": <value>}` on success, `{"error": {...}}` after a failure.
    #[schema(value_type = Option<Object>)]
    pub results: Option<Value>,
    /// The last failure, kept after a successful retry.
    #[schema(value_type = Option<Object>)]
    pub last_error: Option<Value>,
    pub handler: String,
    pub retryable: bool,
    pub position: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskResponse {
    pub task_uuid: Uuid,
    pub name: String,
    pub namespace: String,
    pub version: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(value_type = Object)]
    pub context: Value,
    pub initiator: String,
    pub source_system: String,
    pub reason: String,
    pub correlation_id: Uuid,
    pub parent_correlation_id: Option<Uuid>,
    pub priority: i32,
    pub tags: Vec<String>,
    pub requested_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    pub total_steps: i64,
    pub pending_steps: i64,
    pub in_progress_steps: i64,
    pub completed_steps: i64,
    pub failed_steps: i64,
    pub ready_steps: i64,
    /// has_ready_steps | processing | blocked_by_failures | all_complete | waiting_for_dependencies
    pub execution_status: String,
    /// execute_ready_steps | wait_for_completion | handle_failures | finalize_task | wait_for_dependencies
    pub recommended_action: String,
    pub completion_percentage: f64,
    /// healthy | recovering | blocked | unknown
    pub health_status: String,
    pub steps: Vec<StepResponse>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pagination {
    pub page: i64,
    pub per_page: i64,
    pub total_count: i64,
    pub total_pages: i64,
    pub has_next: bool,
    pub has_previous: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskListResponse {
    pub tasks: Vec<TaskResponse>,
    pub pagination: Pagination,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NamespaceSummary {
    pub name: String,
    pub description: String,
    pub template_count: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateSummary {
    pub name: String,
    pub namespace: String,
    pub version: String,
    pub description: String,
    pub step_count: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateListResponse {
    pub namespaces: Vec<NamespaceSummary>,
    pub templates: Vec<TemplateSummary>,
    pub total_count: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepDefinition {
    pub name: String,
    pub description: String,
    pub default_retryable: bool,
    pub default_max_attempts: i32,
    pub handler: String,
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateDetail {
    pub name: String,
    pub namespace: String,
    pub version: String,
    pub description: String,
    /// Input rules, retry policy and the documented expected result.
    #[schema(value_type = Object)]
    pub configuration: Value,
    pub steps: Vec<StepDefinition>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// BAD_REQUEST | NOT_FOUND | CONFLICT | METHOD_NOT_ALLOWED | INTERNAL_ERROR | SERVICE_UNAVAILABLE
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    pub status: String,
    pub timestamp: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckResult {
    pub status: String,
    pub duration_ms: u64,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadinessResponse {
    pub status: String,
    pub timestamp: DateTime<Utc>,
    pub checks: HashMap<String, CheckResult>,
}

const TASK_COLUMNS: &str = "task_uuid, name, namespace, version, status, created_at, updated_at,
    completed_at, context, initiator, source_system, reason, correlation_id,
    parent_correlation_id, priority, tags, requested_at, idempotency_key";

/// Load full task views (with steps) for `ids`, in the order given.
pub async fn load_tasks<C: GenericClient>(
    c: &C,
    ids: &[Uuid],
) -> Result<Vec<TaskResponse>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids_vec: Vec<Uuid> = ids.to_vec();
    let task_rows = sql::query(
        c,
        &format!("SELECT {TASK_COLUMNS} FROM tasker.tasks WHERE task_uuid = ANY($1)"),
        &[&ids_vec],
    )
    .await?;
    let step_rows = sql::query(
        c,
        "SELECT s.*, COALESCE(ARRAY(SELECT e.from_step_uuid FROM tasker.workflow_step_edges e
                                        WHERE e.to_step_uuid = s.step_uuid), '{}') AS parents
             FROM tasker.workflow_steps s WHERE s.task_uuid = ANY($1)
             ORDER BY s.task_uuid, s.position",
        &[&ids_vec],
    )
    .await?;
    let mut steps_by_task: HashMap<Uuid, Vec<tokio_postgres::Row>> = HashMap::new();
    for r in step_rows {
        steps_by_task
            .entry(r.try_get("task_uuid")?)
            .or_default()
            .push(r);
    }
    let mut by_id: HashMap<Uuid, TaskResponse> = HashMap::new();
    let now = Utc::now();
    for r in task_rows {
        let task_uuid: Uuid = r.try_get("task_uuid")?;
        let rows = steps_by_task.remove(&task_uuid).unwrap_or_default();
        let steps = build_steps(&rows, now)?;
        by_id.insert(task_uuid, build_task(&r, steps, now)?);
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

fn parse_state(s: &str) -> Result<StepState, DbError> {
    s.parse().map_err(DbError::Other)
}

fn build_steps(
    rows: &[tokio_postgres::Row],
    now: DateTime<Utc>,
) -> Result<Vec<StepResponse>, DbError> {
    let mut views = Vec::with_capacity(rows.len());
    for r in rows {
        views.push(StepView {
            id: r.try_get("step_uuid")?,
            state: parse_state(&r.try_get::<_, String>("current_state")?)?,
            parents: r.try_get("parents")?,
            next_retry_at: r.try_get("next_retry_at")?,
        });
    }
    let states: HashMap<Uuid, StepState> = views.iter().map(|v| (v.id, v.state)).collect();
    let mut out = Vec::with_capacity(rows.len());
    for (r, v) in rows.iter().zip(views.iter()) {
        let attempts: i32 = r.try_get("attempts")?;
        let max_attempts: i32 = r.try_get("max_attempts")?;
        let retryable: bool = r.try_get("retryable")?;
        let completed_parents = v
            .parents
            .iter()
            .filter(|p| states.get(p) == Some(&StepState::Complete))
            .count();
        out.push(StepResponse {
            step_uuid: v.id,
            task_uuid: r.try_get("task_uuid")?,
            name: r.try_get("name")?,
            current_state: v.state.to_string(),
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            completed_at: r.try_get("completed_at")?,
            last_attempted_at: r.try_get("last_attempted_at")?,
            last_failure_at: r.try_get("last_failure_at")?,
            next_retry_at: r.try_get("next_retry_at")?,
            dependencies_satisfied: dag::dependencies_satisfied(v, &states),
            retry_eligible: retryable && attempts < max_attempts,
            ready_for_execution: dag::is_ready(v, &states, now),
            total_parents: i32::try_from(v.parents.len()).unwrap_or(i32::MAX),
            completed_parents: i32::try_from(completed_parents).unwrap_or(i32::MAX),
            attempts,
            max_attempts,
            results: r.try_get("results")?,
            last_error: r.try_get("last_error")?,
            handler: r.try_get("handler")?,
            retryable,
            position: r.try_get("position")?,
        });
    }
    Ok(out)
}

fn build_task(
    r: &tokio_postgres::Row,
    steps: Vec<StepResponse>,
    now: DateTime<Utc>,
) -> Result<TaskResponse, DbError> {
    let count = |pred: &dyn Fn(StepState) -> bool| -> i64 {
        steps
            .iter()
            .filter(|s| {
                s.current_state
                    .parse::<StepState>()
                    .map(pred)
                    .unwrap_or(false)
            })
            .count() as i64
    };
    let total = steps.len() as i64;
    let completed = count(&|s| matches!(s, StepState::Complete | StepState::ResolvedManually));
    let failed = count(&|s| matches!(s, StepState::Error | StepState::Cancelled));
    let in_progress = count(&|s| s.is_in_flight());
    let pending = count(&|s| matches!(s, StepState::Pending | StepState::WaitingForRetry));
    let waiting_retry = count(&|s| s == StepState::WaitingForRetry);
    let ready = steps.iter().filter(|s| s.ready_for_execution).count() as i64;
    let _ = now;
    let execution_status = if failed > 0 {
        "blocked_by_failures"
    } else if total > 0 && completed == total {
        "all_complete"
    } else if ready > 0 {
        "has_ready_steps"
    } else if in_progress > 0 {
        "processing"
    } else {
        "waiting_for_dependencies"
    };
    let recommended_action = match execution_status {
        "blocked_by_failures" => "handle_failures",
        "all_complete" => "finalize_task",
        "has_ready_steps" => "execute_ready_steps",
        "processing" => "wait_for_completion",
        _ => "wait_for_dependencies",
    };
    let health_status = if failed > 0 {
        "blocked"
    } else if waiting_retry > 0 {
        "recovering"
    } else {
        "healthy"
    };
    let completion_percentage = if total == 0 {
        0.0
    } else {
        ((completed as f64) * 10000.0 / (total as f64)).round() / 100.0
    };
    Ok(TaskResponse {
        task_uuid: r.try_get("task_uuid")?,
        name: r.try_get("name")?,
        namespace: r.try_get("namespace")?,
        version: r.try_get("version")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        completed_at: r.try_get("completed_at")?,
        context: r.try_get("context")?,
        initiator: r.try_get("initiator")?,
        source_system: r.try_get("source_system")?,
        reason: r.try_get("reason")?,
        correlation_id: r.try_get("correlation_id")?,
        parent_correlation_id: r.try_get("parent_correlation_id")?,
        priority: r.try_get("priority")?,
        tags: r.try_get("tags")?,
        requested_at: r.try_get("requested_at")?,
        idempotency_key: r.try_get("idempotency_key")?,
        total_steps: total,
        pending_steps: pending,
        in_progress_steps: in_progress,
        completed_steps: completed,
        failed_steps: failed,
        ready_steps: ready,
        execution_status: execution_status.to_string(),
        recommended_action: recommended_action.to_string(),
        completion_percentage,
        health_status: health_status.to_string(),
        steps,
    })
}
