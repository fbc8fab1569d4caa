//! DAG helpers: ordering and step readiness (pure functions).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::states::StepState;

/// Kahn's algorithm over (name, parents). Returns the names in a valid
/// order or `Err(name)` of a step that sits on a cycle.
pub fn topological_order(steps: &[(String, Vec<String>)]) -> Result<Vec<String>, String> {
    let mut indegree: HashMap<&str, usize> = HashMap::new();
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, parents) in steps {
        indegree.insert(name.as_str(), parents.len());
        for p in parents {
            children.entry(p.as_str()).or_default().push(name.as_str());
        }
    }
    let mut ready: Vec<&str> = steps
        .iter()
        .filter(|(_, p)| p.is_empty())
        .map(|(n, _)| n.as_str())
        .collect();
    let mut order = Vec::with_capacity(steps.len());
    while let Some(n) = ready.pop() {
        order.push(n.to_string());
        for c in children.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(d) = indegree.get_mut(c) {
                *d -= 1;
                if *d == 0 {
                    ready.push(c);
                }
            }
        }
    }
    if order.len() == steps.len() {
        Ok(order)
    } else {
        let done: HashSet<&str> = order.iter().map(String::as_str).collect();
        let stuck = steps
            .iter()
            .map(|(n, _)| n.as_str())
            .find(|n| !done.contains(n))
            .unwrap_or("?");
        Err(stuck.to_string())
    }
}

/// What readiness needs to know about one step.
#[derive(Debug, Clone)]
pub struct StepView {
    pub id: uuid::Uuid,
    pub state: StepState,
    pub parents: Vec<uuid::Uuid>,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// Whether all parents of `step` are complete.
pub fn dependencies_satisfied(step: &StepView, states: &HashMap<uuid::Uuid, StepState>) -> bool {
    step.parents
        .iter()
        .all(|p| matches!(states.get(p), Some(StepState::Complete)))
}

/// A step is ready when pending with its parents complete, or waiting for
/// a retry whose time has come.
pub fn is_ready(
    step: &StepView,
    states: &HashMap<uuid::Uuid, StepState>,
    now: DateTime<Utc>,
) -> bool {
    match step.state {
        StepState::Pending => dependencies_satisfied(step, states),
        StepState::WaitingForRetry => step.next_retry_at.is_none_or(|t| t <= now),
        _ => false,
    }
}

/// Summary of a task's steps, used to decide the task's next state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    pub total: usize,
    pub complete: usize,
    pub error: usize,
    pub in_flight: usize,
    pub waiting_for_retry: usize,
    pub pending: usize,
    pub ready: Vec<uuid::Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every step complete.
    Complete,
    /// A step failed for good and nothing is running any more.
    Error,
    /// A step failed for good; others are still running.
    BlockedByFailures,
    /// Ready steps to enqueue.
    EnqueueReady,
    /// Steps running; nothing new to start.
    InProcess,
    /// Only waiting for retries to come due.
    WaitingForRetry,
    /// Nothing ready, nothing running (should not happen for a valid DAG).
    WaitingForDependencies,
}

pub fn evaluate(steps: &[StepView], now: DateTime<Utc>) -> Evaluation {
    let states: HashMap<uuid::Uuid, StepState> = steps.iter().map(|s| (s.id, s.state)).collect();
    let mut ev = Evaluation {
        total: steps.len(),
        ..Evaluation::default()
    };
    for s in steps {
        match s.state {
            StepState::Complete | StepState::ResolvedManually => ev.complete += 1,
            StepState::Error | StepState::Cancelled => ev.error += 1,
            StepState::WaitingForRetry => ev.waiting_for_retry += 1,
            StepState::Pending => ev.pending += 1,
            st if st.is_in_flight() => ev.in_flight += 1,
            _ => {}
        }
        if is_ready(s, &states, now) {
            ev.ready.push(s.id);
        }
    }
    ev
}

impl Evaluation {
    pub fn outcome(&self) -> Outcome {
        if self.complete == self.total {
            Outcome::Complete
        } else if self.error > 0 {
            if self.in_flight > 0 {
                Outcome::BlockedByFailures
            } else {
                Outcome::Error
            }
        } else if !self.ready.is_empty() {
            Outcome::EnqueueReady
        } else if self.in_flight > 0 {
            Outcome::InProcess
        } else if self.waiting_for_retry > 0 {
            Outcome::WaitingForRetry
        } else {
            Outcome::WaitingForDependencies
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn s(names: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        names
            .iter()
            .map(|(n, p)| (n.to_string(), p.iter().map(|x| x.to_string()).collect()))
            .collect()
    }

    #[test]
    fn topo_orders_diamond_and_finds_cycle() {
        let d = s(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]);
        let o = topological_order(&d).unwrap();
        let pos = |x: &str| o.iter().position(|n| n == x).unwrap();
        assert!(pos("a") < pos("b") && pos("b") < pos("d") && pos("c") < pos("d"));
        let c = s(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("z", &[])]);
        assert!(topological_order(&c).is_err());
    }

    fn view(state: StepState, parents: &[Uuid]) -> StepView {
        StepView {
            id: Uuid::now_v7(),
            state,
            parents: parents.to_vec(),
            next_retry_at: None,
        }
    }

    #[test]
    fn readiness_follows_parents() {
        let now = Utc::now();
        let a = view(StepState::Complete, &[]);
        let b = view(StepState::InProgress, &[a.id]);
        let c = view(StepState::Pending, &[a.id]);
        let d = view(StepState::Pending, &[b.id, c.id]);
        let steps = vec![a, b, c.clone(), d];
        let ev = evaluate(&steps, now);
        assert_eq!(ev.ready, vec![c.id]);
        assert_eq!(ev.outcome(), Outcome::EnqueueReady);
        assert_eq!(ev.in_flight, 1);
        assert_eq!(ev.pending, 2);
    }

    #[test]
    fn retry_becomes_ready_when_due() {
        let now = Utc::now();
        let mut r = view(StepState::WaitingForRetry, &[]);
        r.next_retry_at = Some(now + chrono::Duration::milliseconds(50));
        let ev = evaluate(std::slice::from_ref(&r), now);
        assert!(ev.ready.is_empty());
        assert_eq!(ev.outcome(), Outcome::WaitingForRetry);
        let later = now + chrono::Duration::milliseconds(60);
        assert_eq!(evaluate(&[r], later).outcome(), Outcome::EnqueueReady);
    }

    #[test]
    fn outcomes() {
        let now = Utc::now();
        let a = view(StepState::Complete, &[]);
        let b = view(StepState::Complete, &[a.id]);
        assert_eq!(evaluate(&[a.clone(), b], now).outcome(), Outcome::Complete);
        let e = view(StepState::Error, &[a.id]);
        let f = view(StepState::Enqueued, &[a.id]);
        let g = view(StepState::Pending, &[e.id]);
        assert_eq!(
            evaluate(&[a.clone(), e.clone(), f, g.clone()], now).outcome(),
            Outcome::BlockedByFailures
        );
        assert_eq!(evaluate(&[a, e, g], now).outcome(), Outcome::Error);
    }
}
