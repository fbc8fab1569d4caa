//! tasker-orchestration: the HTTP API (:8080) and the step-result loop.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tasker_orchestration::api::{self, AppState};
use tasker_orchestration::engine::{self, LoopSettings};
use tasker_shared::templates::{worker_queue_name, TemplateRegistry, RESULTS_QUEUE};
use tasker_shared::{Config, Service};
use tokio::sync::Notify;

fn main() -> ExitCode {
    tasker_shared::runtime::service_main(Service::Orchestration, "/ready", run)
}

async fn run(config: Config) -> anyhow::Result<()> {
    let templates = Arc::new(
        TemplateRegistry::load_dir(&config.template_dir).context("cannot load templates")?,
    );
    let mut queues = vec![RESULTS_QUEUE.to_string()];
    queues.extend(
        templates
            .namespaces()
            .iter()
            .map(|ns| worker_queue_name(ns)),
    );
    let pg = config.pg_config()?;
    let pool = tasker_shared::db::make_pool(pg.clone(), config.db_pool_size)?;
    let shutdown = tasker_shared::runtime::shutdown_signal();
    // The result loop has a pool of its own: API traffic (clients polling task status) must
    // never starve the loop that moves workflows forward.
    let loop_pool_size = (config.db_pool_size / 2).max(2);
    let loop_pool = tasker_shared::db::make_pool(pg.clone(), loop_pool_size)?;

    let notify = Arc::new(Notify::new());
    let listener = tasker_shared::db::spawn_listener(
        pg,
        vec![tasker_shared::db::insert_channel(RESULTS_QUEUE)],
        notify.clone(),
        shutdown.clone(),
    );
    let settings = LoopSettings {
        vt_seconds: config.vt_seconds(),
        poll_interval: config.poll_interval,
        batch_size: i32::try_from(loop_pool_size).unwrap_or(4),
    };
    let results_loop = tokio::spawn(engine::run(loop_pool, settings, notify, shutdown.clone()));

    let tcp = tokio::net::TcpListener::bind(config.bind_address)
        .await
        .with_context(|| format!("cannot bind {}", config.bind_address))?;
    tracing::info!(
        addr = %config.bind_address, templates = templates.len(), env = config.env.as_str(),
        "orchestration started"
    );
    let app = api::router(Arc::new(AppState {
        pool,
        templates,
        queues,
    }));
    let stop_serving = tasker_shared::runtime::shutdown_requested(shutdown.clone());
    let server = tokio::spawn(async move {
        axum::serve(tcp, app)
            .with_graceful_shutdown(stop_serving)
            .await
    });

    let drained = tasker_shared::runtime::drain_after_shutdown(
        shutdown.clone(),
        config.shutdown_timeout,
        async {
            let _ = results_loop.await;
            let _ = server.await;
        },
    )
    .await;
    if !drained {
        tracing::warn!("shutdown budget exceeded; unprocessed results stay queued");
    }
    listener.abort();
    tracing::info!("orchestration stopped");
    Ok(())
}
