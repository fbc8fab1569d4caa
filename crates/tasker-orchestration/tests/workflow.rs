//! DB-backed execution tests, orchestration and worker logic in-process:
//! `DATABASE_URL=postgres://... cargo test -- --include-ignored`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::{json, Value};
use tasker_orchestration::api::validate_create;
use tasker_orchestration::engine::{self, CreateOutcome, ResultDisposition};
use tasker_shared::pgmq;
use tasker_shared::templates::{worker_queue_name, RESULTS_QUEUE};
use tasker_shared::testing::TestDb;
use tasker_shared::TemplateRegistry;
use tasker_worker::consumer;
use uuid::Uuid;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Env {
    db: TestDb,
    pool: Pool,
    templates: TemplateRegistry,
}

async fn setup() -> Env {
    let db = TestDb::create().await.unwrap();
    let templates = TemplateRegistry::load_dir(&root().join("config/templates")).unwrap();
    let migrations = tasker_migrate::load_migrations(&root().join("migrations")).unwrap();
    let mut c = tasker_shared::db::connect_with_retry(&db.config, Duration::from_secs(5))
        .await
        .unwrap();
    tasker_migrate::run(
        &mut c,
        &migrations,
        &tasker_migrate::required_queues(&templates),
    )
    .await
    .unwrap();
    let pool = tasker_shared::db::make_pool(db.config.clone(), 4).unwrap();
    Env {
        db,
        pool,
        templates,
    }
}

async fn create(env: &Env, name: &str, ns: &str, context: Value) -> Uuid {
    let body = json!({"name": name, "namespace": ns, "version": "1.0.0", "context": context,
                      "initiator": "test", "source_system": "rust-tests", "reason": "test"});
    let (req, template) =
        validate_create(&env.templates, &serde_json::to_vec(&body).unwrap()).unwrap();
    match engine::create_task(&env.pool, template, &req)
        .await
        .unwrap()
    {
        CreateOutcome::Created(id) => id,
        other => panic!("unexpected {other:?}"),
    }
}

async fn create_linear(env: &Env, even_number: i64) -> Uuid {
    create(
        env,
        "mathematical_sequence",
        "linear_workflow",
        json!({ "even_number": even_number }),
    )
    .await
}

async fn status(pool: &Pool, id: Uuid) -> String {
    let c = pool.get().await.unwrap();
    c.query_one(
        "SELECT status FROM tasker.tasks WHERE task_uuid = $1",
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

async fn step_result(pool: &Pool, id: Uuid, step: &str) -> (String, Option<Value>) {
    let c = pool.get().await.unwrap();
    let r = c
        .query_one(
            "SELECT current_state, results FROM tasker.workflow_steps WHERE task_uuid = $1 AND name = $2",
            &[&id, &step],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// Run worker and orchestration steps until the task is final.
async fn drive(pool: &Pool, ns: &str, id: Uuid) -> String {
    let queue = worker_queue_name(ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut did = false;
        let c = pool.get().await.unwrap();
        let msgs = pgmq::read(&c, &queue, 30, 10).await.unwrap();
        drop(c);
        for qm in &msgs {
            consumer::process_message(pool, "test-worker", &queue, qm)
                .await
                .unwrap();
            did = true;
        }
        let c = pool.get().await.unwrap();
        let results = pgmq::read(&c, RESULTS_QUEUE, 30, 10).await.unwrap();
        drop(c);
        for qm in &results {
            engine::process_result(pool, qm).await.unwrap();
            did = true;
        }
        engine::process_due_retries(pool).await.unwrap();
        let s = status(pool, id).await;
        if s == "complete" || s == "error" {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "task stuck in {s}");
        if !did {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
#[ignore = "needs DATABASE_URL"]
async fn linear_workflow_completes_with_documented_result() {
    let env = setup().await;
    let id = create_linear(&env, 6).await;
    assert_eq!(drive(&env.pool, "linear_workflow", id).await, "complete");
    let (state, results) = step_result(&env.pool, id, "linear_step_4").await;
    assert_eq!(state, "complete");
    assert_eq!(results, Some(json!({"result": 2821109907456i64})));
    // every step went through the full path, all recorded
    let c = env.pool.get().await.unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM tasker.workflow_step_transitions WHERE task_uuid = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4 * 4);
    let last: String = c
        .query_one(
            "SELECT to_state FROM tasker.task_transitions WHERE task_uuid = $1 ORDER BY id DESC LIMIT 1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, "complete");
    drop(c);
    env.db.cleanup().await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL"]
async fn every_template_reaches_its_documented_result() {
    let env = setup().await;
    let templates: Vec<_> = env.templates.all().cloned().collect();
    for t in templates {
        let id = create(
            &env,
            &t.name,
            &t.namespace_name,
            t.expected_result.input.clone(),
        )
        .await;
        assert_eq!(
            drive(&env.pool, &t.namespace_name, id).await,
            "complete",
            "{}",
            t.name
        );
        let (_, results) = step_result(&env.pool, id, &t.expected_result.step).await;
        assert_eq!(
            results,
            Some(json!({"result": t.expected_result.result})),
            "{}",
            t.name
        );
    }
    env.db.cleanup().await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL"]
async fn duplicate_result_advances_nothing_twice() {
    let env = setup().await;
    let id = create_linear(&env, 2).await;
    let queue = worker_queue_name("linear_workflow");
    let c = env.pool.get().await.unwrap();
    let msgs = pgmq::read(&c, &queue, 30, 10).await.unwrap();
    assert_eq!(msgs.len(), 1);
    consumer::process_message(&env.pool, "w", &queue, &msgs[0])
        .await
        .unwrap();
    let results = pgmq::read(&c, RESULTS_QUEUE, 30, 10).await.unwrap();
    assert_eq!(results.len(), 1);
    // deliver the same result body a second time
    pgmq::send(&c, RESULTS_QUEUE, &results[0].message)
        .await
        .unwrap();
    assert_eq!(
        engine::process_result(&env.pool, &results[0])
            .await
            .unwrap(),
        ResultDisposition::Applied
    );
    let dup = pgmq::read(&c, RESULTS_QUEUE, 30, 10).await.unwrap();
    assert_eq!(dup.len(), 1);
    assert_eq!(
        engine::process_result(&env.pool, &dup[0]).await.unwrap(),
        ResultDisposition::Duplicate
    );
    // exactly one follow-up step enqueued, step 1 completed once
    let next = pgmq::read(&c, &queue, 30, 10).await.unwrap();
    assert_eq!(next.len(), 1);
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM tasker.workflow_step_transitions t
             JOIN tasker.workflow_steps s USING (step_uuid)
             WHERE s.task_uuid = $1 AND s.name = 'linear_step_1' AND t.to_state = 'complete'",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // the stale worker message for step 1 (if redelivered) is dropped too
    let stale = consumer::process_message(&env.pool, "w", &queue, &msgs[0])
        .await
        .unwrap();
    assert_eq!(stale, consumer::Processed::Stale);
    drop(c);
    env.db.cleanup().await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL"]
async fn message_reappears_after_visibility_timeout() {
    let env = setup().await;
    let id = create_linear(&env, 6).await;
    let queue = worker_queue_name("linear_workflow");
    let c = env.pool.get().await.unwrap();
    // a worker reads with a 1 s visibility timeout and dies
    let first = pgmq::read(&c, &queue, 1, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(pgmq::read(&c, &queue, 1, 1).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = pgmq::read(&c, &queue, 30, 1).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].msg_id, first[0].msg_id);
    assert_eq!(again[0].read_ct, 2);
    drop(c);
    // put it back so drive() picks it up
    let c = env.pool.get().await.unwrap();
    c.execute(
        "SELECT pgmq.set_vt($1::text, $2::bigint, 0::integer)",
        &[&queue, &again[0].msg_id],
    )
    .await
    .unwrap();
    drop(c);
    assert_eq!(drive(&env.pool, "linear_workflow", id).await, "complete");
    env.db.cleanup().await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL"]
async fn retries_complete_or_exhaust() {
    let env = setup().await;
    let ok = create(
        &env,
        "flaky_computation",
        "retry_workflow",
        json!({"even_number": 6, "fail_count": 2}),
    )
    .await;
    assert_eq!(drive(&env.pool, "retry_workflow", ok).await, "complete");
    let (_, r) = step_result(&env.pool, ok, "retry_finalize").await;
    assert_eq!(r, Some(json!({"result": 1296})));

    let bad = create(
        &env,
        "flaky_computation",
        "retry_workflow",
        json!({"even_number": 6, "fail_count": 3}),
    )
    .await;
    assert_eq!(drive(&env.pool, "retry_workflow", bad).await, "error");
    let (state, r) = step_result(&env.pool, bad, "flaky_step").await;
    assert_eq!(state, "error");
    let err = r.unwrap();
    assert_eq!(err["error"]["kind"], json!("transient"));
    assert_eq!(err["error"]["attempt"], json!(3));
    env.db.cleanup().await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL"]
async fn overflow_fails_without_retry() {
    let env = setup().await;
    let id = create_linear(&env, 16).await;
    assert_eq!(drive(&env.pool, "linear_workflow", id).await, "error");
    let c = env.pool.get().await.unwrap();
    let r = c
        .query_one(
            "SELECT current_state, attempts, results FROM tasker.workflow_steps
             WHERE task_uuid = $1 AND name = 'linear_step_4'",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "error");
    assert_eq!(r.get::<_, i32>(1), 1);
    assert_eq!(
        r.get::<_, Value>(2)["error"]["kind"],
        json!("arithmetic_overflow")
    );
    drop(c);
    env.db.cleanup().await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL"]
async fn idempotency_key_same_body_and_conflict() {
    let env = setup().await;
    let body = |n: i64| {
        json!({"name": "mathematical_sequence", "namespace": "linear_workflow", "version": "1.0.0",
               "context": {"even_number": n}, "initiator": "t", "source_system": "s", "reason": "r",
               "idempotency_key": "key-1"})
    };
    let (req, t) = validate_create(&env.templates, &serde_json::to_vec(&body(2)).unwrap()).unwrap();
    let CreateOutcome::Created(id) = engine::create_task(&env.pool, t, &req).await.unwrap() else {
        panic!("not created")
    };
    let (req2, t2) =
        validate_create(&env.templates, &serde_json::to_vec(&body(2)).unwrap()).unwrap();
    match engine::create_task(&env.pool, t2, &req2).await.unwrap() {
        CreateOutcome::Existing(x) => assert_eq!(x, id),
        other => panic!("{other:?}"),
    }
    let (req3, t3) =
        validate_create(&env.templates, &serde_json::to_vec(&body(4)).unwrap()).unwrap();
    assert!(matches!(
        engine::create_task(&env.pool, t3, &req3).await.unwrap(),
        CreateOutcome::Conflict(_)
    ));
    env.db.cleanup().await;
}

#[tokio::test]
#[ignore = "needs DATABASE_URL"]
async fn retries_of_finished_tasks_are_not_rescanned() {
    let env = setup().await;
    let id = create(
        &env,
        "flaky_computation",
        "retry_workflow",
        json!({"even_number": 6}),
    )
    .await;
    // A retry left behind in a task that already ended in error.
    let c = env.pool.get().await.unwrap();
    c.execute(
        "UPDATE tasker.workflow_steps SET current_state = 'waiting_for_retry',
                next_retry_at = now() - interval '1 second'
         WHERE task_uuid = $1 AND name = 'flaky_step'",
        &[&id],
    )
    .await
    .unwrap();
    c.execute(
        "UPDATE tasker.tasks SET status = 'error' WHERE task_uuid = $1",
        &[&id],
    )
    .await
    .unwrap();
    drop(c);
    let (advanced, next) = engine::process_due_retries(&env.pool).await.unwrap();
    assert_eq!(advanced, 0);
    assert_eq!(next, None, "no wake-up for a retry that can never run");
    env.db.cleanup().await;
}
