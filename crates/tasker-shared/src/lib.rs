//! Shared pieces of the Tasker services: configuration, database access,
//! PGMQ calls, messages, state machines, transitions and templates.

pub mod config;
pub mod dag;
pub mod db;
pub mod error;
pub mod logging;
pub mod messages;
pub mod pgmq;
pub mod runtime;
pub mod states;
pub mod templates;
pub mod testing;
pub mod transitions;

pub use config::{Config, Service};
pub use error::{ConfigError, DbError, TemplateError};
pub use states::{StepState, TaskState};
pub use templates::{TaskTemplate, TemplateRegistry};
