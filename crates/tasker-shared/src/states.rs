//! Task and step state machines (in the spirit of tasker-core).

use std::fmt;
use std::str::FromStr;

use crate::error::TransitionError;

macro_rules! string_enum {
    ($name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {:?}", stringify!($name), other)),
                }
            }
        }
    };
}

string_enum!(TaskState {
    Pending => "pending",
    Initializing => "initializing",
    EnqueuingSteps => "enqueuing_steps",
    StepsInProcess => "steps_in_process",
    EvaluatingResults => "evaluating_results",
    WaitingForDependencies => "waiting_for_dependencies",
    WaitingForRetry => "waiting_for_retry",
    BlockedByFailures => "blocked_by_failures",
    Complete => "complete",
    Error => "error",
    Cancelled => "cancelled",
    ResolvedManually => "resolved_manually",
});

string_enum!(StepState {
    Pending => "pending",
    Enqueued => "enqueued",
    InProgress => "in_progress",
    EnqueuedForOrchestration => "enqueued_for_orchestration",
    EnqueuedAsErrorForOrchestration => "enqueued_as_error_for_orchestration",
    WaitingForRetry => "waiting_for_retry",
    Complete => "complete",
    Error => "error",
    Cancelled => "cancelled",
    ResolvedManually => "resolved_manually",
});

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Complete | TaskState::Cancelled | TaskState::ResolvedManually
        )
    }

    /// Whether `self -> to` is an allowed transition.
    pub fn can_transition_to(self, to: TaskState) -> bool {
        use TaskState::*;
        if to == Cancelled {
            return !self.is_terminal() && self != Error;
        }
        match self {
            Pending => matches!(to, Initializing | Error),
            Initializing => matches!(to, EnqueuingSteps | Complete | Error),
            EnqueuingSteps => matches!(to, StepsInProcess | Error),
            StepsInProcess => matches!(to, EvaluatingResults),
            EvaluatingResults => matches!(
                to,
                EnqueuingSteps
                    | StepsInProcess
                    | WaitingForDependencies
                    | WaitingForRetry
                    | BlockedByFailures
                    | Complete
                    | Error
            ),
            WaitingForDependencies | WaitingForRetry => matches!(to, EvaluatingResults),
            BlockedByFailures => matches!(to, EvaluatingResults | Error | ResolvedManually),
            Error => matches!(to, ResolvedManually),
            Complete | Cancelled | ResolvedManually => false,
        }
    }

    pub fn check_transition(self, to: TaskState) -> Result<(), TransitionError> {
        if self.can_transition_to(to) {
            Ok(())
        } else {
            Err(TransitionError {
                kind: "task",
                from: self.to_string(),
                to: to.to_string(),
            })
        }
    }
}

impl StepState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepState::Complete | StepState::Cancelled | StepState::ResolvedManually
        )
    }

    /// States in which the step is owned by a queue or a worker.
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            StepState::Enqueued
                | StepState::InProgress
                | StepState::EnqueuedForOrchestration
                | StepState::EnqueuedAsErrorForOrchestration
        )
    }

    pub fn can_transition_to(self, to: StepState) -> bool {
        use StepState::*;
        if to == Cancelled {
            return !self.is_terminal() && self != Error;
        }
        match self {
            Pending => matches!(to, Enqueued),
            Enqueued => matches!(to, InProgress),
            InProgress => matches!(
                to,
                EnqueuedForOrchestration | EnqueuedAsErrorForOrchestration
            ),
            EnqueuedForOrchestration => matches!(to, Complete),
            EnqueuedAsErrorForOrchestration => matches!(to, WaitingForRetry | Error),
            WaitingForRetry => matches!(to, Enqueued),
            Error => matches!(to, ResolvedManually),
            Complete | Cancelled | ResolvedManually => false,
        }
    }

    pub fn check_transition(self, to: StepState) -> Result<(), TransitionError> {
        if self.can_transition_to(to) {
            Ok(())
        } else {
            Err(TransitionError {
                kind: "step",
                from: self.to_string(),
                to: to.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_names() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), *s);
        }
        for s in StepState::ALL {
            assert_eq!(s.as_str().parse::<StepState>().unwrap(), *s);
        }
        assert!("bogus".parse::<TaskState>().is_err());
        assert_eq!(TaskState::ALL.len(), 12);
        assert_eq!(StepState::ALL.len(), 10);
    }

    #[test]
    fn happy_task_path() {
        use TaskState::*;
        let path = [
            Pending,
            Initializing,
            EnqueuingSteps,
            StepsInProcess,
            EvaluatingResults,
            EnqueuingSteps,
            StepsInProcess,
            EvaluatingResults,
            Complete,
        ];
        for w in path.windows(2) {
            assert!(w[0].can_transition_to(w[1]), "{} -> {}", w[0], w[1]);
        }
    }

    #[test]
    fn happy_and_retry_step_paths() {
        use StepState::*;
        let ok = [
            Pending,
            Enqueued,
            InProgress,
            EnqueuedForOrchestration,
            Complete,
        ];
        let retry = [
            Pending,
            Enqueued,
            InProgress,
            EnqueuedAsErrorForOrchestration,
            WaitingForRetry,
            Enqueued,
            InProgress,
            EnqueuedAsErrorForOrchestration,
            Error,
            ResolvedManually,
        ];
        for path in [&ok[..], &retry[..]] {
            for w in path.windows(2) {
                assert!(w[0].can_transition_to(w[1]), "{} -> {}", w[0], w[1]);
            }
        }
    }

    #[test]
    fn forbidden_transitions() {
        assert!(!TaskState::Complete.can_transition_to(TaskState::Error));
        assert!(!TaskState::Complete.can_transition_to(TaskState::Cancelled));
        assert!(!TaskState::Pending.can_transition_to(TaskState::Complete));
        assert!(!TaskState::StepsInProcess.can_transition_to(TaskState::Complete));
        assert!(!StepState::Complete.can_transition_to(StepState::Enqueued));
        assert!(!StepState::Pending.can_transition_to(StepState::Complete));
        assert!(!StepState::Enqueued.can_transition_to(StepState::Complete));
        assert!(!StepState::EnqueuedForOrchestration.can_transition_to(StepState::Error));
        let e = StepState::Complete
            .check_transition(StepState::InProgress)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid step transition complete -> in_progress"
        );
    }

    #[test]
    fn cancel_from_active_states_only() {
        assert!(TaskState::StepsInProcess.can_transition_to(TaskState::Cancelled));
        assert!(!TaskState::Cancelled.can_transition_to(TaskState::Cancelled));
        assert!(StepState::InProgress.can_transition_to(StepState::Cancelled));
        assert!(!StepState::Complete.can_transition_to(StepState::Cancelled));
    }

    #[test]
    fn in_flight_states() {
        let in_flight: Vec<_> = StepState::ALL.iter().filter(|s| s.is_in_flight()).collect();
        assert_eq!(in_flight.len(), 4);
    }
}
