//! Step handlers. Pure functions over the step message: all arithmetic is
//! checked; an overflow is a non-retryable `arithmetic_overflow` failure,
//! never a silently wrapped number.

use serde_json::Value;
use tasker_shared::messages::{StepFailure, StepMessage};

fn failure(kind: &str, retryable: bool, message: String) -> StepFailure {
    StepFailure {
        message,
        kind: kind.to_string(),
        retryable,
    }
}

fn as_i64(what: &str, v: &Value) -> Result<i64, StepFailure> {
    v.as_i64().ok_or_else(|| {
        failure(
            "invalid_input",
            false,
            format!("{what} must be a 64-bit integer, got {v}"),
        )
    })
}

/// The handler's inputs: the parents' results, or `context.even_number`
/// for a step without parents.
fn inputs(msg: &StepMessage) -> Result<Vec<i64>, StepFailure> {
    if msg.dependency_results.is_empty() {
        let v = msg.context.get("even_number").ok_or_else(|| {
            failure(
                "invalid_input",
                false,
                "context.even_number is missing".to_string(),
            )
        })?;
        return Ok(vec![as_i64("context.even_number", v)?]);
    }
    msg.dependency_results
        .iter()
        .map(|(name, v)| as_i64(&format!("result of {name}"), v))
        .collect()
}

fn overflow(op: &str, msg: &StepMessage) -> StepFailure {
    failure(
        "arithmetic_overflow",
        false,
        format!(
            "arithmetic overflow: {op} in step {} exceeds the 64-bit integer range",
            msg.step_name
        ),
    )
}

fn square(x: i64, msg: &StepMessage) -> Result<i64, StepFailure> {
    x.checked_mul(x)
        .ok_or_else(|| overflow(&format!("{x}^2"), msg))
}

fn single(msg: &StepMessage) -> Result<i64, StepFailure> {
    let v = inputs(msg)?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(failure(
            "invalid_input",
            false,
            format!(
                "handler {} expects exactly one input, got {}",
                msg.handler,
                v.len()
            ),
        )),
    }
}

/// Run the step's handler. `Ok` carries the step's result value.
pub fn run(msg: &StepMessage) -> Result<Value, StepFailure> {
    let n = match msg.handler.as_str() {
        "square" => square(single(msg)?, msg)?,
        "multiply" => inputs(msg)?
            .into_iter()
            .try_fold(1i64, |acc, x| acc.checked_mul(x))
            .ok_or_else(|| overflow("product", msg))?,
        "sum" => inputs(msg)?
            .into_iter()
            .try_fold(0i64, |acc, x| acc.checked_add(x))
            .ok_or_else(|| overflow("sum", msg))?,
        "flaky_square" => {
            let fail_count = match msg.context.get("fail_count") {
                None | Some(Value::Null) => 0,
                Some(v) => as_i64("context.fail_count", v)?,
            };
            if i64::from(msg.attempt) <= fail_count {
                return Err(failure(
                    "transient",
                    true,
                    format!(
                        "simulated transient failure on attempt {} (fail_count {})",
                        msg.attempt, fail_count
                    ),
                ));
            }
            square(single(msg)?, msg)?
        }
        other => {
            return Err(failure(
                "unknown_handler",
                false,
                format!("no handler named {other:?}"),
            ))
        }
    };
    Ok(Value::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;
    use uuid::Uuid;

    fn msg(handler: &str, context: Value, deps: &[(&str, Value)], attempt: i32) -> StepMessage {
        StepMessage {
            task_uuid: Uuid::now_v7(),
            step_uuid: Uuid::now_v7(),
            step_name: "s".into(),
            namespace: "ns".into(),
            handler: handler.into(),
            attempt,
            max_attempts: 3,
            context,
            dependency_results: deps
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn square_from_context_and_parent() {
        assert_eq!(
            run(&msg("square", json!({"even_number": 6}), &[], 1)).unwrap(),
            json!(36)
        );
        assert_eq!(
            run(&msg("square", json!({}), &[("p", json!(-36))], 1)).unwrap(),
            json!(1296)
        );
    }

    #[test]
    fn linear_chain_for_six() {
        let mut x = json!(6);
        for _ in 0..4 {
            x = run(&msg("square", json!({}), &[("p", x)], 1)).unwrap();
        }
        assert_eq!(x, json!(2821109907456i64));
    }

    #[test]
    fn multiply_and_sum() {
        let deps = [("a", json!(1296)), ("b", json!(1296))];
        assert_eq!(
            run(&msg("multiply", json!({}), &deps, 1)).unwrap(),
            json!(1679616)
        );
        assert_eq!(run(&msg("sum", json!({}), &deps, 1)).unwrap(), json!(2592));
    }

    #[test]
    fn overflow_is_a_non_retryable_error() {
        let e = run(&msg("square", json!({}), &[("p", json!(3037000500i64))], 1)).unwrap_err();
        assert_eq!(e.kind, "arithmetic_overflow");
        assert!(!e.retryable);
        let e = run(&msg(
            "sum",
            json!({}),
            &[("a", json!(i64::MAX)), ("b", json!(1))],
            1,
        ))
        .unwrap_err();
        assert_eq!(e.kind, "arithmetic_overflow");
        let e = run(&msg(
            "multiply",
            json!({}),
            &[("a", json!(i64::MAX)), ("b", json!(2))],
            1,
        ))
        .unwrap_err();
        assert_eq!(e.kind, "arithmetic_overflow");
        // 3037000499^2 still fits
        assert!(run(&msg("square", json!({}), &[("p", json!(3037000499i64))], 1)).is_ok());
    }

    #[test]
    fn linear_with_sixteen_overflows_at_step_four() {
        let mut x = json!(16);
        for i in 0..4 {
            match run(&msg("square", json!({}), &[("p", x.clone())], 1)) {
                Ok(v) => x = v,
                Err(e) => {
                    assert_eq!(i, 3);
                    assert_eq!(e.kind, "arithmetic_overflow");
                    return;
                }
            }
        }
        panic!("expected an overflow");
    }

    #[test]
    fn flaky_fails_first_attempts() {
        let ctx = json!({"even_number": 6, "fail_count": 2});
        for attempt in 1..=2 {
            let e = run(&msg("flaky_square", ctx.clone(), &[], attempt)).unwrap_err();
            assert!(e.retryable);
            assert_eq!(e.kind, "transient");
        }
        assert_eq!(run(&msg("flaky_square", ctx, &[], 3)).unwrap(), json!(36));
        assert_eq!(
            run(&msg("flaky_square", json!({"even_number": 4}), &[], 1)).unwrap(),
            json!(16)
        );
    }

    #[test]
    fn bad_inputs() {
        assert!(run(&msg("square", json!({}), &[], 1)).is_err());
        assert!(run(&msg("square", json!({"even_number": "6"}), &[], 1)).is_err());
        let two = [("a", json!(1)), ("b", json!(2))];
        assert_eq!(
            run(&msg("square", json!({}), &two, 1)).unwrap_err().kind,
            "invalid_input"
        );
        assert_eq!(
            run(&msg("cube", json!({"even_number": 2}), &[], 1))
                .unwrap_err()
                .kind,
            "unknown_handler"
        );
    }
}
