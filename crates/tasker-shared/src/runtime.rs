//! Process plumbing shared by the binaries: shutdown signals and the
//! `healthcheck` sub-command (a tiny HTTP GET against our own port).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, Service};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// A watch channel flipped to `true` on SIGTERM or SIGINT.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received, draining");
        let _ = tx.send(true);
    });
    rx
}

/// Resolves once `shutdown` flips to `true` (or its sender is gone): for graceful shutdowns.
pub async fn shutdown_requested(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|v| *v).await;
}

/// Kept from the shutdown budget for what follows the drain (closing pools, last log lines).
const SHUTDOWN_SLACK: Duration = Duration::from_millis(300);

/// Wait for `shutdown`, then give `drain` the shutdown budget, less a little slack, to finish.
/// Returns `false` when the budget ran out first (`drain` is then dropped).
pub async fn drain_after_shutdown<F>(
    shutdown: watch::Receiver<bool>,
    budget: Duration,
    drain: F,
) -> bool
where
    F: std::future::Future<Output = ()>,
{
    shutdown_requested(shutdown).await;
    tokio::time::timeout(budget.saturating_sub(SHUTDOWN_SLACK), drain)
        .await
        .is_ok()
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// GET `path` on 127.0.0.1 at `bind`'s port; true when the status is 200.
pub async fn http_probe(bind: SocketAddr, path: &str) -> bool {
    let addr = SocketAddr::new(
        if bind.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            bind.ip()
        },
        bind.port(),
    );
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let status_line = text.lines().next()?.to_string();
        Some(status_line.split_whitespace().nth(1) == Some("200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), fut).await,
        Ok(Some(true))
    )
}

/// Returns true when argv is exactly `<bin> healthcheck`.
pub fn is_healthcheck_invocation() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.len() == 1 && args[0] == "healthcheck"
}

/// The `main` of a long-running service: `<bin> healthcheck` probes `ready_path` on our own
/// bind address (exit 0 ready, 1 not); otherwise config from env (a bad value exits 2), logging,
/// a multi-threaded runtime, `run`, and an exit code that says how it ended.
pub fn service_main<F, Fut, E>(service: Service, ready_path: &str, run: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let name = service.binary_name();
    if is_healthcheck_invocation() {
        return healthcheck(service, ready_path);
    }
    let config = match Config::from_env(service) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    crate::logging::init(&config);
    let result = rt.block_on(run(config));
    // Do not wait for idle blocking threads (DNS lookups etc.) on exit.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "{name} failed");
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(service: Service, ready_path: &str) -> ExitCode {
    let Ok(addr) = Config::bind_address_from_env(service) else {
        return ExitCode::FAILURE;
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    if rt.block_on(http_probe(addr, ready_path)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_the_signal_then_reports_a_drain_within_budget() {
        let (tx, rx) = watch::channel(false);
        let drain = drain_after_shutdown(rx, Duration::from_secs(2), async {});
        tokio::pin!(drain);
        // nothing happens before the signal
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut drain)
            .await
            .is_err());
        tx.send(true).expect("receiver alive");
        assert!(drain.await);
    }

    #[tokio::test]
    async fn drain_over_budget_is_reported() {
        let (tx, rx) = watch::channel(false);
        tx.send(true).expect("receiver alive");
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert!(!drain_after_shutdown(rx, Duration::from_millis(400), slow).await);
    }
}
