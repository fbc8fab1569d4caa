//! The Tasker orchestration service: HTTP API, task initialisation, step
//! enqueueing and result processing.

pub mod api;
pub mod engine;
pub mod models;
