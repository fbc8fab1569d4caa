//! Task templates: YAML files in `config/templates/`, one template per file.
//!
//! A template names its steps, their handlers and dependencies (a DAG), the
//! retry policy and the input rules for the task context. Loading validates
//! all of it, so a bad template fails at startup with its file name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TemplateError;

/// Handlers the worker knows (see `tasker-worker/src/handlers.rs`).
pub const KNOWN_HANDLERS: &[&str] = &["square", "multiply", "sum", "flaky_square"];

/// `[a-z][a-z0-9_]*`, at most 36 chars, so that `worker_<ns>_queue` fits
/// PGMQ (47 chars) and its NOTIFY channel name (63 bytes).
pub fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= 36
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputRule {
    /// A JSON integer (no fraction) that is even.
    EvenInteger,
    /// A JSON integer >= 0.
    NonNegativeInteger,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub rule: InputRule,
    #[serde(default = "default_true")]
    pub required: bool,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "default_true")]
    pub retryable: bool,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: i32,
    /// Delay before the first retry, in milliseconds.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: i64,
    /// Each further retry waits this many times longer.
    #[serde(default = "default_backoff_multiplier")]
    pub backoff_multiplier: i64,
    /// Upper bound of a single delay, in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retryable: true,
            max_attempts: default_max_attempts(),
            backoff_base_ms: default_backoff_base_ms(),
            backoff_multiplier: default_backoff_multiplier(),
            backoff_max_ms: default_backoff_max_ms(),
        }
    }
}

impl RetryPolicy {
    /// Delay before retrying after the `attempt`-th failure (1-based), in ms.
    /// Saturates instead of overflowing, bounded by `backoff_max_ms`.
    pub fn backoff_ms(&self, attempt: i32) -> i64 {
        let exp = u32::try_from(attempt.saturating_sub(1).max(0)).unwrap_or(0);
        let factor = self.backoff_multiplier.max(1).saturating_pow(exp);
        self.backoff_base_ms
            .max(0)
            .saturating_mul(factor)
            .min(self.backoff_max_ms.max(0))
    }
}

fn default_true() -> bool {
    true
}
fn default_max_attempts() -> i32 {
    3
}
fn default_backoff_base_ms() -> i64 {
    100
}
fn default_backoff_multiplier() -> i64 {
    2
}
fn default_backoff_max_ms() -> i64 {
    30_000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTemplate {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub handler: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Overrides the template's `retry` policy for this step.
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
}

/// What a template promises for a documented input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedResult {
    pub formula: String,
    pub input: Value,
    pub step: String,
    pub result: Value,
    #[serde(default)]
    pub notes: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTemplate {
    pub name: String,
    pub namespace_name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub namespace_description: Option<String>,
    #[serde(default)]
    pub input: BTreeMap<String, InputSpec>,
    #[serde(default)]
    pub retry: RetryPolicy,
    pub expected_result: ExpectedResult,
    pub steps: Vec<StepTemplate>,
}

impl TaskTemplate {
    pub fn key(&self) -> (String, String, String) {
        (
            self.namespace_name.clone(),
            self.name.clone(),
            self.version.clone(),
        )
    }

    pub fn step_retry(&self, step: &StepTemplate) -> RetryPolicy {
        step.retry.clone().unwrap_or_else(|| self.retry.clone())
    }

    pub fn step(&self, name: &str) -> Option<&StepTemplate> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Structural checks: identifiers, handlers, dependencies, no cycle.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_identifier(&self.namespace_name) {
            return Err(format!(
                "namespace_name {:?} must match [a-z][a-z0-9_]* (at most 36 chars)",
                self.namespace_name
            ));
        }
        if self.name.trim().is_empty() || self.version.trim().is_empty() {
            return Err("name and version must not be empty".into());
        }
        if self.steps.is_empty() {
            return Err("a template needs at least one step".into());
        }
        let mut names = HashSet::new();
        for s in &self.steps {
            if s.name.trim().is_empty() {
                return Err("a step has an empty name".into());
            }
            if !names.insert(s.name.as_str()) {
                return Err(format!("duplicate step name {:?}", s.name));
            }
            if !KNOWN_HANDLERS.contains(&s.handler.as_str()) {
                return Err(format!(
                    "step {:?}: unknown handler {:?} (known: {})",
                    s.name,
                    s.handler,
                    KNOWN_HANDLERS.join(", ")
                ));
            }
            let policy = self.step_retry(s);
            if policy.max_attempts < 1 {
                return Err(format!("step {:?}: max_attempts must be >= 1", s.name));
            }
            if policy.backoff_base_ms < 0 || policy.backoff_max_ms < 0 {
                return Err(format!("step {:?}: backoff must be >= 0 ms", s.name));
            }
        }
        for s in &self.steps {
            let mut seen = HashSet::new();
            for d in &s.depends_on {
                if !names.contains(d.as_str()) {
                    return Err(format!("step {:?} depends on unknown step {:?}", s.name, d));
                }
                if d == &s.name {
                    return Err(format!("step {:?} depends on itself", s.name));
                }
                if !seen.insert(d) {
                    return Err(format!("step {:?} lists {:?} twice", s.name, d));
                }
            }
        }
        crate::dag::topological_order(
            &self
                .steps
                .iter()
                .map(|s| (s.name.clone(), s.depends_on.clone()))
                .collect::<Vec<_>>(),
        )
        .map_err(|cycle| format!("dependency cycle through step {cycle:?}"))?;
        if self.step(&self.expected_result.step).is_none() {
            return Err(format!(
                "expected_result.step {:?} is not a step",
                self.expected_result.step
            ));
        }
        Ok(())
    }

    /// Rewrite integral floats (`6.0`) of the template's input fields as
    /// integers, so handlers see plain integers.
    pub fn normalize_context(&self, context: &mut serde_json::Map<String, Value>) {
        for name in self.input.keys() {
            if let Some(v) = context.get_mut(name) {
                if v.is_f64() {
                    if let Some(i) = integral(v) {
                        *v = Value::from(i);
                    }
                }
            }
        }
    }

    /// Check a task context against the template's input rules.
    pub fn validate_context(&self, context: &serde_json::Map<String, Value>) -> Result<(), String> {
        for (name, spec) in &self.input {
            match context.get(name) {
                None | Some(Value::Null) => {
                    if spec.required {
                        return Err(format!("context.{name} is required"));
                    }
                }
                Some(v) => check_rule(name, spec.rule, v)?,
            }
        }
        Ok(())
    }
}

/// The value as an `i64` if it is a JSON integer, or a number with a zero
/// fraction (JSON Schema counts `6.0` as an integer) inside the i64 range.
pub fn integral(v: &Value) -> Option<i64> {
    let Value::Number(n) = v else { return None };
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= i64::MIN as f64 && *f < -(i64::MIN as f64))
            .map(|f| f as i64)
    })
}

fn check_rule(name: &str, rule: InputRule, v: &Value) -> Result<(), String> {
    let int = integral(v);
    match rule {
        InputRule::EvenInteger => match int {
            Some(i) if i % 2 == 0 => Ok(()),
            Some(i) => Err(format!("context.{name} must be an even integer, got {i}")),
            None => Err(format!(
                "context.{name} must be an even integer (64-bit), got {v}"
            )),
        },
        InputRule::NonNegativeInteger => match int {
            Some(i) if i >= 0 => Ok(()),
            _ => Err(format!(
                "context.{name} must be a non-negative integer, got {v}"
            )),
        },
    }
}

/// All templates, keyed by (namespace, name, version).
#[derive(Debug, Clone, Default)]
pub struct TemplateRegistry {
    templates: BTreeMap<(String, String, String), TaskTemplate>,
}

impl TemplateRegistry {
    /// Load every `*.yaml` / `*.yml` file in `dir` (sorted by file name).
    pub fn load_dir(dir: &Path) -> Result<Self, TemplateError> {
        let read = std::fs::read_dir(dir).map_err(|e| TemplateError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let mut paths = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| TemplateError::Io {
                path: dir.display().to_string(),
                source: e,
            })?;
            let p = entry.path();
            if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml") | Some("yml")
            ) {
                paths.push(p);
            }
        }
        paths.sort();
        let mut reg = TemplateRegistry::default();
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|e| TemplateError::Io {
                path: p.display().to_string(),
                source: e,
            })?;
            let t = Self::parse(&text, &p.display().to_string())?;
            reg.insert(t, &p.display().to_string())?;
        }
        Ok(reg)
    }

    /// Parse and validate one template document.
    pub fn parse(text: &str, path: &str) -> Result<TaskTemplate, TemplateError> {
        let t: TaskTemplate = serde_yaml_ng::from_str(text).map_err(|e| TemplateError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        t.validate().map_err(|message| TemplateError::Invalid {
            path: path.to_string(),
            message,
        })?;
        Ok(t)
    }

    pub fn insert(&mut self, t: TaskTemplate, path: &str) -> Result<(), TemplateError> {
        let key = t.key();
        if self.templates.contains_key(&key) {
            return Err(TemplateError::Invalid {
                path: path.to_string(),
                message: format!(
                    "duplicate template {}/{} {}",
                    t.namespace_name, t.name, t.version
                ),
            });
        }
        self.templates.insert(key, t);
        Ok(())
    }

    pub fn get(&self, namespace: &str, name: &str, version: &str) -> Option<&TaskTemplate> {
        self.templates
            .get(&(namespace.to_string(), name.to_string(), version.to_string()))
    }

    pub fn all(&self) -> impl Iterator<Item = &TaskTemplate> {
        self.templates.values()
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Namespaces, sorted, each once.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self.templates.keys().map(|(ns, _, _)| ns.clone()).collect();
        v.dedup();
        v
    }

    /// Per namespace: (description, template count).
    pub fn namespace_summaries(&self) -> Vec<(String, String, usize)> {
        let mut map: BTreeMap<String, (String, usize)> = BTreeMap::new();
        for t in self.templates.values() {
            let e = map
                .entry(t.namespace_name.clone())
                .or_insert_with(|| (String::new(), 0));
            if e.0.is_empty() {
                if let Some(d) = &t.namespace_description {
                    e.0 = d.clone();
                }
            }
            e.1 += 1;
        }
        map.into_iter().map(|(k, (d, c))| (k, d, c)).collect()
    }
}

/// Queue a namespace's steps go to.
pub fn worker_queue_name(namespace: &str) -> String {
    format!("worker_{namespace}_queue")
}

/// Queue for step results.
pub const RESULTS_QUEUE: &str = "orchestration_step_results";

/// Map from step name to the names of its parents.
pub fn parents_map(t: &TaskTemplate) -> HashMap<String, Vec<String>> {
    t.steps
        .iter()
        .map(|s| (s.name.clone(), s.depends_on.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LINEAR: &str = r#"
name: mathematical_sequence
namespace_name: linear_workflow
version: 1.0.0
description: squares four times
input:
  even_number: {rule: even_integer}
expected_result:
  formula: "n^16"
  input: {even_number: 6}
  step: s2
  result: 1296
steps:
  - {name: s1, handler: square}
  - {name: s2, handler: square, depends_on: [s1]}
"#;

    #[test]
    fn parses_and_validates() {
        let t = TemplateRegistry::parse(LINEAR, "x.yaml").unwrap();
        assert_eq!(t.steps.len(), 2);
        assert_eq!(t.retry.max_attempts, 3);
        assert!(t.input["even_number"].required);
    }

    #[test]
    fn rejects_bad_templates() {
        let cases = [
            (
                LINEAR.replace("depends_on: [s1]", "depends_on: [nope]"),
                "unknown step",
            ),
            (
                LINEAR.replace(
                    "handler: square}\n  - {name: s2",
                    "handler: square, depends_on: [s2]}\n  - {name: s2",
                ),
                "cycle",
            ),
            (
                LINEAR.replace("name: s2, handler: square", "name: s1, handler: square"),
                "duplicate",
            ),
            (
                LINEAR.replace("handler: square}", "handler: cube}"),
                "unknown handler",
            ),
            (
                LINEAR.replace("linear_workflow", "Linear-Workflow"),
                "namespace_name",
            ),
            (
                LINEAR.replace("step: s2", "step: s9"),
                "expected_result.step",
            ),
            (
                LINEAR.replace("description: squares", "descripton: squares"),
                "unknown field",
            ),
        ];
        for (text, needle) in cases {
            let e = TemplateRegistry::parse(&text, "bad.yaml")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(needle) && e.contains("bad.yaml"),
                "{needle}: {e}"
            );
        }
    }

    #[test]
    fn context_rules() {
        let t = TemplateRegistry::parse(LINEAR, "x.yaml").unwrap();
        let ok = |v: Value| t.validate_context(v.as_object().unwrap());
        assert!(ok(json!({"even_number": 6})).is_ok());
        assert!(ok(json!({"even_number": -4})).is_ok());
        assert!(ok(json!({"even_number": 7})).is_err());
        assert!(ok(json!({"even_number": 6.0})).is_ok());
        assert!(ok(json!({"even_number": 6.5})).is_err());
        assert!(ok(json!({"even_number": 1e300})).is_err());
        assert!(ok(json!({"even_number": "6"})).is_err());
        assert!(ok(json!({})).is_err());
        assert!(ok(json!({"even_number": 18446744073709551614u64})).is_err());
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let p = RetryPolicy {
            backoff_base_ms: 10,
            backoff_multiplier: 3,
            backoff_max_ms: 100,
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff_ms(1), 10);
        assert_eq!(p.backoff_ms(2), 30);
        assert_eq!(p.backoff_ms(3), 90);
        assert_eq!(p.backoff_ms(4), 100);
        assert_eq!(p.backoff_ms(1000), 100);
    }

    #[test]
    fn identifiers() {
        assert!(valid_identifier("linear_workflow"));
        assert!(!valid_identifier("1abc"));
        assert!(!valid_identifier(""));
        assert!(!valid_identifier("a-b"));
        assert_eq!(worker_queue_name("ns"), "worker_ns_queue");
    }

    #[test]
    fn shipped_templates_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/templates");
        let reg = TemplateRegistry::load_dir(&dir).unwrap();
        assert!(reg.len() >= 5, "found {}", reg.len());
        let lin = reg
            .get("linear_workflow", "mathematical_sequence", "1.0.0")
            .unwrap();
        assert_eq!(lin.steps.len(), 4);
        assert_eq!(lin.expected_result.result, json!(2821109907456i64));
        for t in reg.all() {
            assert!(t.input.contains_key("even_number"), "{}", t.name);
        }
    }
}
