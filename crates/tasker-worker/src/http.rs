//! The worker's health API on :8081: `/health`, `/health/live`, `/health/ready`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use deadpool_postgres::Pool;
use serde_json::{json, Value};

pub struct HealthState {
    pub pool: Pool,
    pub worker_id: String,
    pub queues: Vec<String>,
}

pub fn router(state: Arc<HealthState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn health(State(s): State<Arc<HealthState>>) -> Json<Value> {
    Json(json!({"status": "healthy", "timestamp": now(), "worker_id": s.worker_id}))
}

async fn live(State(s): State<Arc<HealthState>>) -> Json<Value> {
    Json(json!({"status": "alive", "timestamp": now(), "worker_id": s.worker_id}))
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": {"code": "NOT_FOUND", "message": "no such route"}})),
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"error": {"code": "METHOD_NOT_ALLOWED", "message": "method not allowed on this route"}})),
    )
        .into_response()
}

/// Ready when the database answers and the worker's queues exist.
pub async fn readiness_checks(pool: &Pool, queues: &[String]) -> (bool, Value) {
    let t0 = Instant::now();
    let db = match pool.get().await {
        Ok(c) => match c.simple_query("SELECT 1").await {
            Ok(_) => Ok(c),
            Err(e) => Err(tasker_shared::db::describe_pg_error(&e)),
        },
        Err(e) => Err(e.to_string()),
    };
    let db_ms = t0.elapsed().as_millis() as u64;
    let (db_ok, db_check, client) = match db {
        Ok(c) => (
            true,
            json!({"status": "healthy", "duration_ms": db_ms, "message": "database reachable"}),
            Some(c),
        ),
        Err(e) => (
            false,
            json!({"status": "unhealthy", "duration_ms": db_ms, "message": e}),
            None,
        ),
    };
    let t1 = Instant::now();
    let (q_ok, q_msg) = match client {
        None => (false, "database unreachable".to_string()),
        Some(c) => match tasker_shared::pgmq::missing_queues(&**c, queues).await {
            Ok(missing) if missing.is_empty() => (true, format!("{} queues present", queues.len())),
            Ok(missing) => (false, format!("missing queues: {}", missing.join(", "))),
            Err(e) => (false, e.to_string()),
        },
    };
    let q_check = json!({
        "status": if q_ok { "healthy" } else { "unhealthy" },
        "duration_ms": t1.elapsed().as_millis() as u64,
        "message": q_msg,
    });
    (
        db_ok && q_ok,
        json!({"database": db_check, "queues": q_check}),
    )
}

async fn ready(State(s): State<Arc<HealthState>>) -> Response {
    let (ok, checks) = match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        readiness_checks(&s.pool, &s.queues),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => (
            false,
            json!({"database": {"status": "unhealthy", "duration_ms": 2000,
                                "message": "no answer from the database in time"}}),
        ),
    };
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "timestamp": now(),
        "worker_id": s.worker_id,
        "checks": checks,
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}
