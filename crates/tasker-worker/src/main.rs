//! tasker-worker: queue consumer + health API (:8081).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tasker_shared::templates::{worker_queue_name, TemplateRegistry};
use tasker_shared::{Config, Service};
use tasker_worker::consumer::{self, WorkerSettings};
use tasker_worker::http::{self, HealthState};
use tokio::sync::Notify;

fn main() -> ExitCode {
    tasker_shared::runtime::service_main(Service::Worker, "/health/ready", run)
}

async fn run(config: Config) -> anyhow::Result<()> {
    let namespaces = match &config.worker_namespaces {
        Some(ns) => ns.clone(),
        None => TemplateRegistry::load_dir(&config.template_dir)
            .context("cannot load templates")?
            .namespaces(),
    };
    if namespaces.is_empty() {
        anyhow::bail!("no namespaces to work on (no templates and TASKER_WORKER_NAMESPACES unset)");
    }
    let queues: Vec<String> = namespaces.iter().map(|ns| worker_queue_name(ns)).collect();
    let pg = config.pg_config()?;
    let pool = tasker_shared::db::make_pool(pg.clone(), config.db_pool_size)?;
    let shutdown = tasker_shared::runtime::shutdown_signal();

    let notify = Arc::new(Notify::new());
    let channels = queues
        .iter()
        .map(|q| tasker_shared::db::insert_channel(q))
        .collect();
    let listener =
        tasker_shared::db::spawn_listener(pg, channels, notify.clone(), shutdown.clone());

    let settings = Arc::new(WorkerSettings {
        worker_id: config.worker_id.clone(),
        queues: queues.clone(),
        vt_seconds: config.vt_seconds(),
        poll_interval: config.poll_interval,
        concurrency: config.db_pool_size,
    });
    let listener_addr = tokio::net::TcpListener::bind(config.bind_address)
        .await
        .with_context(|| format!("cannot bind {}", config.bind_address))?;
    tracing::info!(
        worker_id = %config.worker_id, addr = %config.bind_address, queues = ?queues,
        env = config.env.as_str(), "worker started"
    );
    let app = http::router(Arc::new(HealthState {
        pool: pool.clone(),
        worker_id: config.worker_id.clone(),
        queues,
    }));
    let stop_serving = tasker_shared::runtime::shutdown_requested(shutdown.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener_addr, app)
            .with_graceful_shutdown(stop_serving)
            .await
    });

    let consumer = tokio::spawn(consumer::run(pool, settings, notify, shutdown.clone()));

    let drained = tasker_shared::runtime::drain_after_shutdown(
        shutdown.clone(),
        config.shutdown_timeout,
        async {
            let _ = consumer.await;
            let _ = server.await;
        },
    )
    .await;
    if !drained {
        tracing::warn!(
            "shutdown budget exceeded; in-flight steps will reappear after the visibility timeout"
        );
    }
    listener.abort();
    tracing::info!("worker stopped");
    Ok(())
}
