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

/// A new RFC 9562 version-7 UUID (time-ordered), as used for task, step
/// and default correlation ids.
pub fn new_uuid_v7() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

#[cfg(test)]
mod uuid_v7_tests {
    use super::new_uuid_v7;

    #[test]
    fn layout_version_variant_timestamp() {
        let before = chrono::Utc::now().timestamp_millis();
        let u = new_uuid_v7();
        let after = chrono::Utc::now().timestamp_millis();
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        let b = u.as_bytes();
        assert_eq!(b[6] >> 4, 7, "version nibble");
        assert_eq!(b[8] >> 6, 0b10, "variant bits");
        let ts = b[..6]
            .iter()
            .fold(0i64, |acc, x| (acc << 8) | i64::from(*x));
        assert!(before <= ts && ts <= after, "{before} <= {ts} <= {after}");
    }

    #[test]
    fn ordered_within_a_process() {
        let v: Vec<_> = (0..10_000).map(|_| new_uuid_v7()).collect();
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }
}
