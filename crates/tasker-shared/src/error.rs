//! Error types of the shared crate.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("configuration error: {var} is required but not set")]
    Missing { var: String },
    #[error("configuration error: {var}={value:?} is invalid: {reason}")]
    Invalid {
        var: String,
        value: String,
        reason: String,
    },
}

#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse template {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid template {path}: {message}")]
    Invalid { path: String, message: String },
}

/// Errors talking to PostgreSQL / PGMQ, with the server's message kept.
#[derive(Debug, Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Postgres(String),
    #[error("connection pool error: {0}")]
    Pool(String),
    #[error("{0}")]
    Other(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::Postgres(crate::db::describe_pg_error(&e))
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(pg) => DbError::from(pg),
            other => DbError::Pool(other.to_string()),
        }
    }
}

/// Errors raised by state-machine checks.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {kind} transition {from} -> {to}")]
pub struct TransitionError {
    pub kind: &'static str,
    pub from: String,
    pub to: String,
}
