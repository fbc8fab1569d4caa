//! tasker-migrate: apply migrations and create queues, then exit.
//! Exit codes: 0 done, 1 failure (message on stderr), 2 bad configuration.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tasker_shared::templates::TemplateRegistry;
use tasker_shared::{Config, Service};

fn main() -> ExitCode {
    if tasker_shared::runtime::is_healthcheck_invocation() {
        // The migrator runs to completion; there is nothing to probe.
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env(Service::Migrate) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tasker-migrate: {e}");
            return ExitCode::from(2);
        }
    };
    tasker_shared::logging::init(&config);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tasker-migrate: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "migration failed");
            eprintln!("tasker-migrate: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let migrations = tasker_migrate::load_migrations(&config.migrations_dir)?;
    let templates = TemplateRegistry::load_dir(&config.template_dir)
        .with_context(|| "cannot load templates (needed for the queue names)")?;
    let queues = tasker_migrate::required_queues(&templates);
    let pg = config.pg_config()?;
    let mut client = tasker_shared::db::connect_with_retry(&pg, Duration::from_secs(15)).await?;
    let report = tasker_migrate::run(&mut client, &migrations, &queues).await?;
    tracing::info!(
        applied = ?report.applied,
        already_applied = report.skipped.len(),
        queues = ?report.queues,
        "migrations complete"
    );
    Ok(())
}
