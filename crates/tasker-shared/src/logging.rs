//! tracing setup: JSON lines by default, `pretty` for humans. `RUST_LOG`
//! takes `level` and `target=level` lists (e.g. `info,tasker=debug`).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{Config, LogFormat};

/// Parse a `RUST_LOG` value.
pub fn parse_filter(s: &str) -> Result<Targets, String> {
    s.parse::<Targets>().map_err(|e| e.to_string())
}

pub fn init(config: &Config) {
    let filter = parse_filter(&config.rust_log)
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Pretty => tracing_subscriber::registry()
            .with(layer.with_ansi(false).with_filter(filter))
            .try_init(),
    };
    // Already initialised (tests): fine.
    let _ = result;
}

#[cfg(test)]
mod tests {
    use super::parse_filter;

    #[test]
    fn rust_log_forms() {
        for ok in [
            "info",
            "debug",
            "info,tasker=debug",
            "tasker_worker=trace,warn",
            "off",
        ] {
            assert!(parse_filter(ok).is_ok(), "{ok}");
        }
        assert!(parse_filter("info,tasker=loud").is_err());
    }
}
