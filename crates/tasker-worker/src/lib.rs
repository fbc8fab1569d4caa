//! The Tasker worker: consumes step messages, runs handlers, reports results.

pub mod consumer;
pub mod handlers;
pub mod http;
