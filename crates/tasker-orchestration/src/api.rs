//! The orchestration HTTP API (:8080). Request bodies, paths and queries are
//! parsed by hand so every client error is a 400 in the error shape
//! `{"error": {"code", "message"}}` (axum's default rejections are 415/422
//! with plain text).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use deadpool_postgres::Pool;
use serde_json::{json, Value};
use tasker_shared::templates::TemplateRegistry;
use tasker_shared::{DbError, TaskState};
use utoipa::OpenApi;
use uuid::Uuid;

use crate::engine::{self, CreateOutcome, NewTask};
use crate::models::*;

pub struct AppState {
    pub pool: Pool,
    pub templates: Arc<TemplateRegistry>,
    /// Queues that must exist for `/ready`.
    pub queues: Vec<String>,
}

pub type Shared = Arc<AppState>;

/// An API error: HTTP status plus the JSON error body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST",
            message: m.into(),
        }
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "NOT_FOUND",
            message: m.into(),
        }
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            code: "CONFLICT",
            message: m.into(),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        tracing::error!(error = %e, "database error while serving a request");
        let (status, code) = match e {
            DbError::Pool(_) => (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        };
        Self {
            status,
            code,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/v1/tasks", get(list_tasks).post(create_task))
        .route("/v1/tasks/{task_uuid}", get(get_task))
        .route("/v1/tasks/{task_uuid}/workflow_steps", get(list_steps))
        .route(
            "/v1/tasks/{task_uuid}/workflow_steps/{step_uuid}",
            get(get_step),
        )
        .route("/v1/templates", get(list_templates))
        .route(
            "/v1/templates/{namespace}/{name}/{version}",
            get(get_template),
        )
        .route("/api-docs/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "METHOD_NOT_ALLOWED",
        message: "method not allowed on this route".into(),
    }
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request(format!("invalid path: {}", e.body_text()))
}

fn parse_uuid(what: &str, s: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::bad_request(format!("{what} {s:?} is not a valid UUID")))
}

// ---------------------------------------------------------------- health

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = HealthResponse)))]
async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "healthy".into(),
        timestamp: Utc::now(),
    })
}

#[utoipa::path(get, path = "/live", tag = "health",
    responses((status = 200, body = HealthResponse)))]
async fn live() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "alive".into(),
        timestamp: Utc::now(),
    })
}

/// A readiness probe answers within this time, ready or not.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready when the database answers and every queue exists.
pub async fn readiness(state: &AppState) -> (bool, HashMap<String, CheckResult>) {
    let mut checks = HashMap::new();
    let t0 = Instant::now();
    let client = match state.pool.get().await {
        Ok(c) => match c.simple_query("SELECT 1").await {
            Ok(_) => Ok(c),
            Err(e) => Err(tasker_shared::db::describe_pg_error(&e)),
        },
        Err(e) => Err(e.to_string()),
    };
    let db_ms = t0.elapsed().as_millis() as u64;
    let db_ok = client.is_ok();
    checks.insert(
        "database".to_string(),
        CheckResult {
            status: if db_ok { "healthy" } else { "unhealthy" }.into(),
            duration_ms: db_ms,
            message: match &client {
                Ok(_) => "database reachable".into(),
                Err(e) => e.clone(),
            },
        },
    );
    let t1 = Instant::now();
    let (q_ok, q_msg) = match &client {
        Err(_) => (false, "database unreachable".to_string()),
        Ok(c) => match tasker_shared::pgmq::missing_queues(&***c, &state.queues).await {
            Ok(m) if m.is_empty() => (true, format!("{} queues present", state.queues.len())),
            Ok(m) => (false, format!("missing queues: {}", m.join(", "))),
            Err(e) => (false, e.to_string()),
        },
    };
    checks.insert(
        "queues".to_string(),
        CheckResult {
            status: if q_ok { "healthy" } else { "unhealthy" }.into(),
            duration_ms: t1.elapsed().as_millis() as u64,
            message: q_msg,
        },
    );
    checks.insert(
        "templates".to_string(),
        CheckResult {
            status: "healthy".into(),
            duration_ms: 0,
            message: format!("{} templates loaded", state.templates.len()),
        },
    );
    (db_ok && q_ok, checks)
}

#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = ReadinessResponse), (status = 503, body = ReadinessResponse)))]
async fn ready(State(s): State<Shared>) -> Response {
    let (ok, checks) = match tokio::time::timeout(READY_TIMEOUT, readiness(&s)).await {
        Ok(r) => r,
        Err(_) => {
            let mut checks = HashMap::new();
            checks.insert(
                "database".to_string(),
                CheckResult {
                    status: "unhealthy".into(),
                    duration_ms: READY_TIMEOUT.as_millis() as u64,
                    message: "no answer from the database in time".into(),
                },
            );
            (false, checks)
        }
    };
    let body = ReadinessResponse {
        status: if ok { "ready" } else { "not_ready" }.into(),
        timestamp: Utc::now(),
        checks,
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

// ---------------------------------------------------------------- tasks

/// Turn a request body into a validated `NewTask` (400 on any problem;
/// 404 for an unknown template).
pub fn validate_create<'a>(
    templates: &'a TemplateRegistry,
    body: &[u8],
) -> ApiResult<(NewTask, &'a tasker_shared::TaskTemplate)> {
    let raw: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
    if !raw.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let mut req: CreateTaskRequest = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid task request: {e}")))?;
    for (field, v) in [
        ("name", &req.name),
        ("namespace", &req.namespace),
        ("version", &req.version),
        ("initiator", &req.initiator),
        ("source_system", &req.source_system),
        ("reason", &req.reason),
    ] {
        if v.trim().is_empty() {
            return Err(ApiError::bad_request(format!("{field} must not be empty")));
        }
    }
    if let Some(at) = &req.requested_at {
        use chrono::Datelike;
        if !(-4000..=100_000).contains(&at.year()) {
            return Err(ApiError::bad_request("requested_at is out of range"));
        }
    }
    if let Some(k) = &req.idempotency_key {
        if k.is_empty() || k.len() > 255 {
            return Err(ApiError::bad_request(
                "idempotency_key must be 1 to 255 characters",
            ));
        }
    }
    let template = templates
        .get(&req.namespace, &req.name, &req.version)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no template {}/{} version {}",
                req.namespace, req.name, req.version
            ))
        })?;
    let fingerprint = idempotency_fingerprint(&req);
    // PostgreSQL text and jsonb cannot hold NUL: reject it in anything we store.
    if contains_nul(&fingerprint) {
        return Err(ApiError::bad_request(
            "strings must not contain NUL (U+0000) characters",
        ));
    }
    template.normalize_context(&mut req.context);
    template
        .validate_context(&req.context)
        .map_err(|m| ApiError::bad_request(format!("invalid context: {m}")))?;
    let task = NewTask {
        name: req.name,
        namespace: req.namespace,
        version: req.version,
        context: req.context,
        initiator: req.initiator,
        source_system: req.source_system,
        reason: req.reason,
        tags: req.tags.unwrap_or_default(),
        requested_at: req.requested_at.unwrap_or_else(Utc::now),
        correlation_id: req
            .correlation_id
            .unwrap_or_else(tasker_shared::new_uuid_v7),
        parent_correlation_id: req.parent_correlation_id,
        priority: req.priority.unwrap_or(0),
        options: req.options.map(Value::Object),
        idempotency_key: req.idempotency_key,
        request_body: fingerprint,
    };
    Ok((task, template))
}

/// PostgreSQL text and jsonb cannot hold NUL characters: reject them up
/// front (anywhere, keys included) instead of failing in the database.
pub fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(contains_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// The part of a request that must match for an idempotent retry: every
/// field we know except `requested_at`, which a client naturally re-stamps
/// when it retries (unknown fields are ignored, as everywhere).
pub fn idempotency_fingerprint(req: &CreateTaskRequest) -> Value {
    json!({
        "name": req.name, "namespace": req.namespace, "version": req.version,
        "context": req.context, "initiator": req.initiator,
        "source_system": req.source_system, "reason": req.reason, "tags": req.tags,
        "correlation_id": req.correlation_id, "idempotency_key": req.idempotency_key,
        "priority": req.priority, "options": req.options,
        "parent_correlation_id": req.parent_correlation_id,
    })
}

async fn load_one(pool: &Pool, id: Uuid) -> ApiResult<TaskResponse> {
    let c = pool.get().await.map_err(DbError::from)?;
    models_load(&c, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {id} not found")))
}

async fn models_load(c: &deadpool_postgres::Object, id: Uuid) -> ApiResult<Option<TaskResponse>> {
    Ok(load_tasks(c, &[id]).await?.into_iter().next())
}

#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", request_body = CreateTaskRequest,
    responses(
        (status = 201, description = "task created", body = TaskResponse),
        (status = 200, description = "same idempotency_key and body: the existing task", body = TaskResponse),
        (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse)))]
async fn create_task(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(|e| ApiError {
        status: e.status(),
        code: if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "PAYLOAD_TOO_LARGE"
        } else {
            "BAD_REQUEST"
        },
        message: e.body_text(),
    })?;
    let (req, template) = validate_create(&s.templates, &body)?;
    match engine::create_task(&s.pool, template, &req).await? {
        CreateOutcome::Created(id) => {
            let t = load_one(&s.pool, id).await?;
            tracing::info!(task_uuid = %id, namespace = %t.namespace, name = %t.name, "task created");
            Ok((StatusCode::CREATED, Json(t)).into_response())
        }
        CreateOutcome::Existing(id) => {
            let t = load_one(&s.pool, id).await?;
            Ok((StatusCode::OK, Json(t)).into_response())
        }
        CreateOutcome::Conflict(id) => Err(ApiError::conflict(format!(
            "idempotency_key already used by task {id} with a different request"
        ))),
    }
}

#[utoipa::path(get, path = "/v1/tasks/{task_uuid}", tag = "tasks",
    params(("task_uuid" = Uuid, Path)),
    responses((status = 200, body = TaskResponse), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse)))]
async fn get_task(
    State(s): State<Shared>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<TaskResponse>> {
    let Path(id) = path.map_err(path_error)?;
    let id = parse_uuid("task_uuid", &id)?;
    Ok(Json(load_one(&s.pool, id).await?))
}

#[utoipa::path(get, path = "/v1/tasks/{task_uuid}/workflow_steps", tag = "tasks",
    params(("task_uuid" = Uuid, Path)),
    responses((status = 200, body = Vec<StepResponse>), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse)))]
async fn list_steps(
    State(s): State<Shared>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Vec<StepResponse>>> {
    let Path(id) = path.map_err(path_error)?;
    let id = parse_uuid("task_uuid", &id)?;
    Ok(Json(load_one(&s.pool, id).await?.steps))
}

#[utoipa::path(get, path = "/v1/tasks/{task_uuid}/workflow_steps/{step_uuid}", tag = "tasks",
    params(("task_uuid" = Uuid, Path), ("step_uuid" = Uuid, Path)),
    responses((status = 200, body = StepResponse), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse)))]
async fn get_step(
    State(s): State<Shared>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<StepResponse>> {
    let Path((id, step)) = path.map_err(path_error)?;
    let id = parse_uuid("task_uuid", &id)?;
    let step = parse_uuid("step_uuid", &step)?;
    load_one(&s.pool, id)
        .await?
        .steps
        .into_iter()
        .find(|x| x.step_uuid == step)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("step {step} not found in task {id}")))
}

/// Parsed `GET /v1/tasks` query.
#[derive(Debug, Default, PartialEq)]
pub struct ListQuery {
    pub page: i64,
    pub per_page: i64,
    pub namespace: Option<String>,
    pub status: Option<String>,
    pub initiator: Option<String>,
    pub source_system: Option<String>,
}

pub fn parse_list_query(raw: Option<&str>) -> ApiResult<ListQuery> {
    let mut q = ListQuery {
        page: 1,
        per_page: 25,
        ..ListQuery::default()
    };
    let pairs: Vec<(String, String)> = match raw {
        None | Some("") => Vec::new(),
        Some(r) => serde_urlencoded_pairs(r)?,
    };
    if pairs
        .iter()
        .any(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(ApiError::bad_request(
            "query parameters must not contain NUL characters",
        ));
    }
    for (k, v) in pairs {
        match k.as_str() {
            "page" => {
                q.page = v.parse().ok().filter(|p: &i64| *p >= 1).ok_or_else(|| {
                    ApiError::bad_request(format!("page must be an integer >= 1, got {v:?}"))
                })?
            }
            "per_page" => {
                q.per_page = v
                    .parse()
                    .ok()
                    .filter(|p: &i64| (1..=100).contains(p))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "per_page must be an integer from 1 to 100, got {v:?}"
                        ))
                    })?
            }
            "namespace" => q.namespace = Some(v),
            "status" => {
                if v.parse::<TaskState>().is_err() {
                    return Err(ApiError::bad_request(format!("unknown status {v:?}")));
                }
                q.status = Some(v)
            }
            "initiator" => q.initiator = Some(v),
            "source_system" => q.source_system = Some(v),
            _ => {} // unknown parameters are ignored
        }
    }
    Ok(q)
}

/// Minimal `application/x-www-form-urlencoded` decoding of a query string.
fn serde_urlencoded_pairs(raw: &str) -> ApiResult<Vec<(String, String)>> {
    fn decode(s: &str) -> ApiResult<String> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| {
                            ApiError::bad_request("malformed percent-encoding in query")
                        })?;
                    out.push(hex);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| ApiError::bad_request("query is not UTF-8"))
    }
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

#[utoipa::path(get, path = "/v1/tasks", tag = "tasks",
    params(
        ("page" = Option<i64>, Query, minimum = 1, description = "1-based page (default 1)"),
        ("per_page" = Option<i64>, Query, minimum = 1, maximum = 100, description = "page size (default 25)"),
        ("namespace" = Option<String>, Query, pattern = r"^[^\x00]*$"),
        ("status" = Option<TaskStatus>, Query),
        ("initiator" = Option<String>, Query, pattern = r"^[^\x00]*$"),
        ("source_system" = Option<String>, Query, pattern = r"^[^\x00]*$")),
    responses((status = 200, body = TaskListResponse), (status = 400, body = ErrorResponse)))]
async fn list_tasks(
    State(s): State<Shared>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<TaskListResponse>> {
    let q = parse_list_query(raw.as_deref())?;
    let mut where_sql = Vec::new();
    let mut params: Vec<String> = Vec::new();
    for (col, v) in [
        ("namespace", &q.namespace),
        ("status", &q.status),
        ("initiator", &q.initiator),
        ("source_system", &q.source_system),
    ] {
        if let Some(v) = v {
            params.push(v.clone());
            where_sql.push(format!("{col} = ${}", params.len()));
        }
    }
    let where_clause = if where_sql.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", where_sql.join(" AND "))
    };
    let c = s.pool.get().await.map_err(DbError::from)?;
    let p: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|x| x as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let total: i64 = c
        .query_one(
            &format!("SELECT count(*) AS n FROM tasker.tasks {where_clause}"),
            &p,
        )
        .await
        .map_err(DbError::from)?
        .try_get("n")
        .map_err(DbError::from)?;
    let offset = (q.page - 1).saturating_mul(q.per_page);
    let rows = c
        .query(
            &format!(
                "SELECT task_uuid FROM tasker.tasks {where_clause}
                 ORDER BY created_at DESC, task_uuid DESC LIMIT {} OFFSET {}",
                q.per_page, offset
            ),
            &p,
        )
        .await
        .map_err(DbError::from)?;
    let ids: Vec<Uuid> = rows
        .iter()
        .map(|r| r.try_get("task_uuid"))
        .collect::<Result<_, _>>()
        .map_err(DbError::from)?;
    let tasks = load_tasks(&c, &ids).await?;
    let total_pages = if total == 0 {
        0
    } else {
        (total + q.per_page - 1) / q.per_page
    };
    Ok(Json(TaskListResponse {
        tasks,
        pagination: Pagination {
            page: q.page,
            per_page: q.per_page,
            total_count: total,
            total_pages,
            has_next: q.page < total_pages,
            has_previous: q.page > 1,
        },
    }))
}

// ---------------------------------------------------------------- templates

#[utoipa::path(get, path = "/v1/templates", tag = "templates",
    responses((status = 200, body = TemplateListResponse)))]
async fn list_templates(State(s): State<Shared>) -> Json<TemplateListResponse> {
    let namespaces = s
        .templates
        .namespace_summaries()
        .into_iter()
        .map(|(name, description, n)| NamespaceSummary {
            name,
            description,
            template_count: n as i64,
        })
        .collect();
    let templates: Vec<TemplateSummary> = s
        .templates
        .all()
        .map(|t| TemplateSummary {
            name: t.name.clone(),
            namespace: t.namespace_name.clone(),
            version: t.version.clone(),
            description: t.description.clone(),
            step_count: t.steps.len() as i64,
        })
        .collect();
    Json(TemplateListResponse {
        namespaces,
        total_count: templates.len() as i64,
        templates,
    })
}

#[utoipa::path(get, path = "/v1/templates/{namespace}/{name}/{version}", tag = "templates",
    params(("namespace" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = TemplateDetail), (status = 404, body = ErrorResponse)))]
async fn get_template(
    State(s): State<Shared>,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> ApiResult<Json<TemplateDetail>> {
    let Path((ns, name, version)) = path.map_err(path_error)?;
    let t = s
        .templates
        .get(&ns, &name, &version)
        .ok_or_else(|| ApiError::not_found(format!("no template {ns}/{name} version {version}")))?;
    let steps = t
        .steps
        .iter()
        .map(|st| {
            let p = t.step_retry(st);
            StepDefinition {
                name: st.name.clone(),
                description: st.description.clone(),
                default_retryable: p.retryable,
                default_max_attempts: p.max_attempts,
                handler: st.handler.clone(),
                depends_on: st.depends_on.clone(),
            }
        })
        .collect();
    Ok(Json(TemplateDetail {
        name: t.name.clone(),
        namespace: t.namespace_name.clone(),
        version: t.version.clone(),
        description: t.description.clone(),
        configuration: json!({
            "input": t.input,
            "retry": t.retry,
            "expected_result": t.expected_result,
        }),
        steps,
    }))
}

// ---------------------------------------------------------------- OpenAPI

#[derive(OpenApi)]
#[openapi(
    info(title = "Tasker orchestration API", description = "Tasks, workflow steps, templates and health"),
    paths(health, live, ready, create_task, list_tasks, get_task, list_steps, get_step,
          list_templates, get_template, openapi_json),
    components(schemas(CreateTaskRequest, TaskStatus, TaskResponse, StepResponse, TaskListResponse, Pagination,
        TemplateListResponse, NamespaceSummary, TemplateSummary, TemplateDetail, StepDefinition,
        ErrorResponse, ErrorBody, HealthResponse, ReadinessResponse, CheckResult)),
    tags((name = "tasks"), (name = "templates"), (name = "health"))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/api-docs/openapi.json", tag = "health",
    responses((status = 200, description = "this document")))]
async fn openapi_json(State(s): State<Shared>) -> Response {
    let mut doc = match serde_json::to_value(ApiDoc::openapi()) {
        Ok(v) => v,
        Err(e) => {
            return ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "INTERNAL_ERROR",
                message: e.to_string(),
            }
            .into_response()
        }
    };
    if let Some(ctx) = doc.pointer_mut("/components/schemas/CreateTaskRequest/properties/context") {
        *ctx = context_schema(&s.templates);
    }
    if let Some(opts) = doc.pointer_mut("/components/schemas/CreateTaskRequest/properties/options")
    {
        *opts = json!({"type": ["object", "null"],
            "propertyNames": {"pattern": NO_NUL}, "additionalProperties": {"$ref": JSON_REF}});
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("JsonValue".to_string(), json_value_schema());
    }
    Json(doc).into_response()
}

const NO_NUL: &str = "^[^\\x00]*$";
const JSON_REF: &str = "#/components/schemas/JsonValue";

/// Any JSON value without NUL characters (PostgreSQL's jsonb cannot store
/// them), as a recursive schema.
fn json_value_schema() -> Value {
    json!({
        "description": "any JSON value whose strings and keys contain no NUL character",
        "anyOf": [
            {"type": "null"}, {"type": "boolean"}, {"type": "number"},
            {"type": "string", "pattern": NO_NUL},
            {"type": "array", "items": {"$ref": JSON_REF}},
            {"type": "object", "propertyNames": {"pattern": NO_NUL},
             "additionalProperties": {"$ref": JSON_REF}},
        ]
    })
}

/// The JSON schema of a task's `context`, from the input rules of the loaded
/// templates: a field is listed when every template that has it gives it the
/// same rule, and required when every template requires it.
pub fn context_schema(templates: &TemplateRegistry) -> Value {
    use std::collections::BTreeMap;
    use tasker_shared::templates::InputRule;
    let all: Vec<_> = templates.all().collect();
    let mut rules: BTreeMap<String, Option<InputRule>> = BTreeMap::new();
    for t in &all {
        for (name, spec) in &t.input {
            let e = rules.entry(name.clone()).or_insert(Some(spec.rule));
            if *e != Some(spec.rule) {
                *e = None;
            }
        }
    }
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for (name, rule) in rules {
        let Some(rule) = rule else { continue };
        props.insert(
            name.clone(),
            match rule {
                InputRule::EvenInteger => json!({"type": "integer", "multipleOf": 2,
                    "minimum": i64::MIN, "maximum": i64::MAX,
                    "description": "an even 64-bit integer"}),
                InputRule::NonNegativeInteger => json!({"type": "integer", "minimum": 0,
                    "maximum": i64::MAX, "description": "a non-negative 64-bit integer"}),
            },
        );
        let everywhere = !all.is_empty()
            && all
                .iter()
                .all(|t| t.input.get(&name).is_some_and(|spec| spec.required));
        if everywhere {
            required.push(Value::String(name));
        }
    }
    json!({
        "type": "object",
        "description": "The task's input, checked against the template's input rules \
                        (see GET /v1/templates/{namespace}/{name}/{version})",
        "properties": props,
        "required": required,
        "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": {"$ref": JSON_REF},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path as FsPath;

    fn templates() -> TemplateRegistry {
        let dir = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../../config/templates");
        TemplateRegistry::load_dir(&dir).unwrap()
    }

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn base() -> Value {
        json!({"name": "mathematical_sequence", "namespace": "linear_workflow", "version": "1.0.0",
               "context": {"even_number": 6}, "initiator": "t", "source_system": "s", "reason": "r"})
    }

    #[test]
    fn valid_request_gets_defaults() {
        let reg = templates();
        let (t, tpl) = validate_create(&reg, &body(base())).unwrap();
        assert_eq!(tpl.steps.len(), 4);
        assert!(t.tags.is_empty());
        assert_eq!(t.correlation_id.get_version_num(), 7);
        assert_eq!(t.priority, 0);
    }

    #[test]
    fn client_errors() {
        let reg = templates();
        let code = |b: &[u8]| validate_create(&reg, b).unwrap_err().status;
        assert_eq!(code(b"{not json"), StatusCode::BAD_REQUEST);
        assert_eq!(code(b"[]"), StatusCode::BAD_REQUEST);
        let mut v = base();
        v.as_object_mut().unwrap().remove("initiator");
        let e = validate_create(&reg, &body(v)).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("initiator"), "{}", e.message);
        let mut v = base();
        v["context"] = json!({"even_number": 7});
        assert_eq!(code(&body(v)), StatusCode::BAD_REQUEST);
        let mut v = base();
        v["context"] = json!([1]);
        assert_eq!(code(&body(v)), StatusCode::BAD_REQUEST);
        let mut v = base();
        v["correlation_id"] = json!("nope");
        assert_eq!(code(&body(v)), StatusCode::BAD_REQUEST);
        let mut v = base();
        v["name"] = json!("unknown");
        assert_eq!(code(&body(v)), StatusCode::NOT_FOUND);
    }

    #[test]
    fn idempotency_ignores_requested_at() {
        let reg = templates();
        let mut a = base();
        a["requested_at"] = json!("2026-01-01T00:00:00Z");
        let mut b = base();
        b["requested_at"] = json!("2026-01-01T00:00:05+00:00");
        let (ta, _) = validate_create(&reg, &body(a)).unwrap();
        let (tb, _) = validate_create(&reg, &body(b)).unwrap();
        assert_eq!(ta.request_body, tb.request_body);
        let mut c = base();
        c["context"] = json!({"even_number": 8});
        let (tc, _) = validate_create(&reg, &body(c)).unwrap();
        assert_ne!(ta.request_body, tc.request_body);
    }

    #[test]
    fn nul_characters_and_odd_dates_are_client_errors() {
        let reg = templates();
        for (field, v) in [
            ("initiator", json!("a\0b")),
            ("tags", json!(["ok", "x\0"])),
            ("context", json!({"even_number": 2, "k\0": 1})),
            ("requested_at", json!("2026-02-30T00:00:00Z")),
            ("priority", json!(1u64 << 40)),
        ] {
            let mut b = base();
            b[field] = v;
            let e = validate_create(&reg, &body(b)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{field}");
        }
        assert!(parse_list_query(Some("initiator=a%00b")).is_err());
    }

    #[test]
    fn list_query_parsing() {
        let q = parse_list_query(Some(
            "page=2&per_page=10&namespace=linear_workflow&status=complete",
        ))
        .unwrap();
        assert_eq!(q.page, 2);
        assert_eq!(q.per_page, 10);
        assert_eq!(q.namespace.as_deref(), Some("linear_workflow"));
        assert_eq!(q.status.as_deref(), Some("complete"));
        assert_eq!(parse_list_query(None).unwrap().per_page, 25);
        assert!(parse_list_query(Some("page=0")).is_err());
        assert!(parse_list_query(Some("per_page=1000")).is_err());
        assert!(parse_list_query(Some("status=bogus")).is_err());
        let q = parse_list_query(Some("initiator=a%20b+c")).unwrap();
        assert_eq!(q.initiator.as_deref(), Some("a b c"));
    }

    #[test]
    fn context_schema_from_templates() {
        let c = context_schema(&templates());
        assert_eq!(c["required"], json!(["even_number"]));
        assert_eq!(c["properties"]["even_number"]["multipleOf"], json!(2));
        assert_eq!(c["properties"]["fail_count"]["minimum"], json!(0));
    }

    #[test]
    fn openapi_document_lists_paths() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for p in [
            "/v1/tasks",
            "/v1/tasks/{task_uuid}",
            "/v1/templates",
            "/ready",
        ] {
            assert!(doc["paths"].get(p).is_some(), "{p}");
        }
        assert!(doc["components"]["schemas"].get("TaskResponse").is_some());
    }
}
