//! Message bodies on the PGMQ queues.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// orchestration → `worker_<namespace>_queue`: run one attempt of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMessage {
    pub task_uuid: Uuid,
    pub step_uuid: Uuid,
    pub step_name: String,
    pub namespace: String,
    pub handler: String,
    /// 1-based attempt number this message asks for.
    pub attempt: i32,
    pub max_attempts: i32,
    /// The task's context (its input).
    pub context: Value,
    /// Result of every parent step, by step name.
    #[serde(default)]
    pub dependency_results: BTreeMap<String, Value>,
}

/// Why a step attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    pub message: String,
    /// Machine-readable kind, e.g. `arithmetic_overflow`, `transient`.
    pub kind: String,
    pub retryable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepOutcome {
    Success { result: Value },
    Failure { error: StepFailure },
}

/// worker → `orchestration_step_results`: the outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResultMessage {
    pub task_uuid: Uuid,
    pub step_uuid: Uuid,
    pub step_name: String,
    pub attempt: i32,
    pub worker_id: String,
    pub duration_ms: u64,
    pub outcome: StepOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_message_round_trip() {
        let m = StepResultMessage {
            task_uuid: Uuid::now_v7(),
            step_uuid: Uuid::now_v7(),
            step_name: "s".into(),
            attempt: 1,
            worker_id: "w".into(),
            duration_ms: 1,
            outcome: StepOutcome::Failure {
                error: StepFailure {
                    message: "boom".into(),
                    kind: "transient".into(),
                    retryable: true,
                },
            },
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["outcome"]["status"], json!("failure"));
        let back: StepResultMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }
}
