//! Configuration from the environment (see docs/contract.md).
//!
//! Parsing takes a lookup function so it can be unit-tested without touching
//! the process environment. Every error names the offending variable; the
//! binaries turn it into exit code 2.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;

/// Which service is reading its configuration (decides the default port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Orchestration,
    Worker,
    Migrate,
}

impl Service {
    /// The binary's name, as used in messages.
    pub fn binary_name(self) -> &'static str {
        match self {
            Service::Orchestration => "tasker-orchestration",
            Service::Worker => "tasker-worker",
            Service::Migrate => "tasker-migrate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskerEnv {
    Test,
    Development,
    Production,
}

impl TaskerEnv {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskerEnv::Test => "test",
            TaskerEnv::Development => "development",
            TaskerEnv::Production => "production",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub env: TaskerEnv,
    pub rust_log: String,
    pub log_format: LogFormat,
    pub bind_address: SocketAddr,
    pub template_dir: PathBuf,
    pub migrations_dir: PathBuf,
    /// `None` means "every namespace found in the templates".
    pub worker_namespaces: Option<Vec<String>>,
    pub worker_id: String,
    pub visibility_timeout: Duration,
    pub poll_interval: Duration,
    pub db_pool_size: usize,
    pub shutdown_timeout: Duration,
}

impl Config {
    /// Read the configuration from the process environment.
    pub fn from_env(service: Service) -> Result<Self, ConfigError> {
        Self::from_lookup(service, |k| std::env::var(k).ok())
    }

    /// Read the configuration through `lookup` (used by tests).
    pub fn from_lookup<F>(service: Service, lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());

        let database_url = get("DATABASE_URL").ok_or_else(|| ConfigError::Missing {
            var: "DATABASE_URL".into(),
        })?;
        // Validate the URL shape early so a typo is reported as a config error.
        database_url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| ConfigError::Invalid {
                var: "DATABASE_URL".into(),
                value: redact_url(&database_url),
                reason: e.to_string(),
            })?;

        let env = match get("TASKER_ENV").as_deref() {
            None => TaskerEnv::Development,
            Some("test") => TaskerEnv::Test,
            Some("development") => TaskerEnv::Development,
            Some("production") => TaskerEnv::Production,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "TASKER_ENV".into(),
                    value: other.into(),
                    reason: "expected one of test, development, production".into(),
                })
            }
        };

        let rust_log = get("RUST_LOG").unwrap_or_else(|| "info".to_string());
        if let Err(reason) = crate::logging::parse_filter(&rust_log) {
            return Err(ConfigError::Invalid {
                var: "RUST_LOG".into(),
                value: rust_log,
                reason,
            });
        }

        let log_format = match get("TASKER_LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "TASKER_LOG_FORMAT".into(),
                    value: other.into(),
                    reason: "expected json or pretty".into(),
                })
            }
        };

        let default_bind = match service {
            Service::Worker => "0.0.0.0:8081",
            Service::Orchestration | Service::Migrate => "0.0.0.0:8080",
        };
        let bind_raw = get("TASKER_BIND_ADDRESS").unwrap_or_else(|| default_bind.to_string());
        let bind_address = bind_raw
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::Invalid {
                var: "TASKER_BIND_ADDRESS".into(),
                value: bind_raw.clone(),
                reason: e.to_string(),
            })?;

        let template_dir = PathBuf::from(
            get("TASKER_TEMPLATE_DIR").unwrap_or_else(|| "config/templates".to_string()),
        );
        let migrations_dir =
            PathBuf::from(get("TASKER_MIGRATIONS_DIR").unwrap_or_else(|| "migrations".to_string()));

        let worker_namespaces = match get("TASKER_WORKER_NAMESPACES") {
            None => None,
            Some(raw) => {
                let list: Vec<String> = raw
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for ns in &list {
                    if !crate::templates::valid_identifier(ns) {
                        return Err(ConfigError::Invalid {
                            var: "TASKER_WORKER_NAMESPACES".into(),
                            value: raw.clone(),
                            reason: format!(
                                "namespace {ns:?} must match [a-z][a-z0-9_]* (at most 36 chars)"
                            ),
                        });
                    }
                }
                if list.is_empty() {
                    None
                } else {
                    Some(list)
                }
            }
        };

        let worker_id = get("TASKER_WORKER_ID").unwrap_or_else(default_worker_id);

        let visibility_timeout = Duration::from_secs(parse_num(
            &get,
            "TASKER_VISIBILITY_TIMEOUT_SECONDS",
            30,
            1,
            86_400,
        )?);
        let poll_interval =
            Duration::from_millis(parse_num(&get, "TASKER_POLL_INTERVAL_MS", 100, 1, 60_000)?);
        let db_pool_size = usize::try_from(parse_num(&get, "TASKER_DB_POOL_SIZE", 8, 1, 1024)?)
            .map_err(|e| ConfigError::Invalid {
                var: "TASKER_DB_POOL_SIZE".into(),
                value: String::new(),
                reason: e.to_string(),
            })?;
        let shutdown_timeout = Duration::from_secs(parse_num(
            &get,
            "TASKER_SHUTDOWN_TIMEOUT_SECONDS",
            5,
            1,
            3_600,
        )?);

        Ok(Config {
            database_url,
            env,
            rust_log,
            log_format,
            bind_address,
            template_dir,
            migrations_dir,
            worker_namespaces,
            worker_id,
            visibility_timeout,
            poll_interval,
            db_pool_size,
            shutdown_timeout,
        })
    }

    /// Only the bind address (for the `healthcheck` sub-command, which must
    /// not depend on the rest of the configuration).
    pub fn bind_address_from_env(service: Service) -> Result<SocketAddr, ConfigError> {
        let default_bind = match service {
            Service::Worker => "0.0.0.0:8081",
            Service::Orchestration | Service::Migrate => "0.0.0.0:8080",
        };
        let raw = std::env::var("TASKER_BIND_ADDRESS")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default_bind.to_string());
        raw.parse()
            .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                var: "TASKER_BIND_ADDRESS".into(),
                value: raw.clone(),
                reason: e.to_string(),
            })
    }

    /// The connection settings parsed from `DATABASE_URL`.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        self.database_url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| ConfigError::Invalid {
                var: "DATABASE_URL".into(),
                value: redact_url(&self.database_url),
                reason: e.to_string(),
            })
    }

    /// Visibility timeout in whole seconds, as PGMQ wants it.
    pub fn vt_seconds(&self) -> i32 {
        i32::try_from(self.visibility_timeout.as_secs()).unwrap_or(i32::MAX)
    }
}

fn parse_num<G>(get: &G, var: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError>
where
    G: Fn(&str) -> Option<String>,
{
    let Some(raw) = get(var) else {
        return Ok(default);
    };
    let n = raw
        .trim()
        .parse::<u64>()
        .map_err(|e| ConfigError::Invalid {
            var: var.into(),
            value: raw.clone(),
            reason: e.to_string(),
        })?;
    if n < min || n > max {
        return Err(ConfigError::Invalid {
            var: var.into(),
            value: raw,
            reason: format!("must be between {min} and {max}"),
        });
    }
    Ok(n)
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    format!("worker-{}-{}", host, std::process::id())
}

/// Hide the password part of a postgres URL for messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((creds, host)) = rest.split_once('@') {
            let user = creds.split(':').next().unwrap_or("");
            return format!("{scheme}://{user}:***@{host}");
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(service: Service, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(service, |k| map.get(k).cloned())
    }

    const URL: (&str, &str) = ("DATABASE_URL", "postgres://u:p@localhost:5432/tasker");

    #[test]
    fn defaults() {
        let c = cfg(Service::Orchestration, &[URL]).unwrap();
        assert_eq!(c.env, TaskerEnv::Development);
        assert_eq!(c.bind_address.port(), 8080);
        assert_eq!(c.visibility_timeout, Duration::from_secs(30));
        assert_eq!(c.poll_interval, Duration::from_millis(100));
        assert_eq!(c.db_pool_size, 8);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.worker_namespaces.is_none());
        let w = cfg(Service::Worker, &[URL]).unwrap();
        assert_eq!(w.bind_address.port(), 8081);
        assert!(w.worker_id.starts_with("worker-"));
    }

    #[test]
    fn missing_database_url_names_variable() {
        let e = cfg(Service::Worker, &[]).unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL"), "{e}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, val) in [
            ("TASKER_ENV", "staging"),
            ("TASKER_POLL_INTERVAL_MS", "fast"),
            ("TASKER_POLL_INTERVAL_MS", "0"),
            ("TASKER_VISIBILITY_TIMEOUT_SECONDS", "-1"),
            ("TASKER_DB_POOL_SIZE", "x"),
            ("TASKER_SHUTDOWN_TIMEOUT_SECONDS", "1.5"),
            ("TASKER_BIND_ADDRESS", "nowhere"),
            ("TASKER_LOG_FORMAT", "xml"),
            ("RUST_LOG", "info,tasker=loud"),
            ("TASKER_WORKER_NAMESPACES", "Bad-Name"),
            ("DATABASE_URL", "postgres://host:notaport/db"),
        ] {
            let e = cfg(Service::Orchestration, &[URL, (var, val)]).unwrap_err();
            assert!(e.to_string().contains(var), "{var}={val}: {e}");
        }
    }

    #[test]
    fn explicit_values() {
        let c = cfg(
            Service::Worker,
            &[
                URL,
                ("TASKER_ENV", "test"),
                (
                    "TASKER_WORKER_NAMESPACES",
                    "linear_workflow, diamond_workflow",
                ),
                ("TASKER_WORKER_ID", "w1"),
                ("TASKER_POLL_INTERVAL_MS", "25"),
                ("TASKER_BIND_ADDRESS", "127.0.0.1:9000"),
            ],
        )
        .unwrap();
        assert_eq!(c.env, TaskerEnv::Test);
        assert_eq!(
            c.worker_namespaces.as_deref(),
            Some(
                &[
                    "linear_workflow".to_string(),
                    "diamond_workflow".to_string()
                ][..]
            )
        );
        assert_eq!(c.worker_id, "w1");
        assert_eq!(c.poll_interval, Duration::from_millis(25));
        assert_eq!(c.bind_address.port(), 9000);
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact_url("postgres://user:secret@db:5432/x"),
            "postgres://user:***@db:5432/x"
        );
    }
}
