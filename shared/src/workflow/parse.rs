//! From text to [`Definition`]: detect JSON or YAML, validate against the
//! embedded JSON Schema (every violation, with its path), then deserialise.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;

use super::MAX_DEFINITION_BYTES;
use super::definition::Definition;
use super::error::{DefinitionError, DefinitionErrors, ErrorKind};

/// The workflow JSON Schema, as embedded in the binary.
pub const SCHEMA: &str = include_str!(workflow_schema_path!());

const ONE_KIND: &str = "a step needs exactly one of `capability`, `workflow`, `wait_for`";

/// Longest schema error message kept (instance values can be large).
const MAX_MESSAGE_LEN: usize = 300;

/// Why the embedded workflow schema cannot be used (a build defect).
#[derive(Debug, thiserror::Error)]
enum SchemaUnusable {
    #[error("not JSON")]
    Json(#[source] serde_json::Error),
    #[error("not a valid JSON Schema")]
    Schema(#[source] Box<jsonschema::ValidationError<'static>>),
}

fn validator() -> Result<&'static jsonschema::Validator, DefinitionErrors> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, SchemaUnusable>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema: serde_json::Value =
                serde_json::from_str(SCHEMA).map_err(SchemaUnusable::Json)?;
            jsonschema::draft202012::new(&schema).map_err(|e| SchemaUnusable::Schema(Box::new(e)))
        })
        .as_ref()
        .map_err(|e| {
            DefinitionErrors::one(
                "",
                ErrorKind::Schema,
                format!(
                    "embedded workflow schema is unusable: {}",
                    crate::error::Chain(e)
                ),
            )
        })
}

impl Definition {
    /// Reads a definition from YAML or JSON text (JSON if the first
    /// non-blank character is `{` and it parses as JSON), checks it against the workflow schema and
    /// deserialises it. Semantic checks are [`Definition::check`]'s job.
    pub fn parse(text: &str) -> Result<Definition, DefinitionErrors> {
        Self::from_value(parse_document(text)?)
    }

    /// [`Definition::parse`] for an already-parsed document.
    pub fn from_value(document: serde_json::Value) -> Result<Definition, DefinitionErrors> {
        validate_schema(&document)?;
        serde_json::from_value(document)
            .map_err(|e| DefinitionErrors::one("", ErrorKind::Model, e.to_string()))
    }
}

/// The document in `text`, JSON or YAML, as a JSON value.
pub(crate) fn parse_document(text: &str) -> Result<serde_json::Value, DefinitionErrors> {
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(DefinitionErrors::one(
            "",
            ErrorKind::TooLarge,
            format!(
                "definition is {} bytes, the limit is {MAX_DEFINITION_BYTES}",
                text.len()
            ),
        ));
    }
    if text.trim_start().starts_with('{') {
        // JSON, unless it is a YAML flow mapping (`{name: w, ...}`): then YAML
        // reads it, and a document neither reads reports the JSON error.
        serde_json::from_str(text).or_else(|json_error| {
            serde_yaml::from_str(text).map_err(|_| {
                DefinitionErrors::one("", ErrorKind::Syntax, format!("invalid JSON: {json_error}"))
            })
        })
    } else {
        serde_yaml::from_str(text)
            .map_err(|e| DefinitionErrors::one("", ErrorKind::Syntax, format!("invalid YAML: {e}")))
    }
}

/// Every schema violation of `document`.
pub(crate) fn validate_schema(document: &serde_json::Value) -> Result<(), DefinitionErrors> {
    let validator = validator()?;
    let errors: Vec<DefinitionError> = validator
        .iter_errors(document)
        .map(|error| {
            let path = pointer_to_path(error.instance_path.as_str());
            let message = match &error.kind {
                // The generic oneOf wording says nothing useful about steps.
                ValidationErrorKind::OneOfNotValid { .. }
                    if is_step_pointer(error.instance_path.as_str()) =>
                {
                    format!("step is not valid under any of the step kinds: {ONE_KIND}")
                }
                ValidationErrorKind::OneOfMultipleValid { .. }
                    if is_step_pointer(error.instance_path.as_str()) =>
                {
                    format!("step is valid under more than one of the step kinds: {ONE_KIND}")
                }
                _ if error.instance.is_object() || error.instance.is_array() => {
                    error.masked().to_string()
                }
                _ => error.to_string(),
            };
            DefinitionError::new(path, ErrorKind::Schema, truncate(message))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DefinitionErrors::new(errors))
    }
}

/// `/steps/<n>`: the pointer of a whole step.
fn is_step_pointer(pointer: &str) -> bool {
    pointer
        .strip_prefix("/steps/")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_LEN {
        let mut cut = MAX_MESSAGE_LEN;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// `/steps/3/when` -> `steps[3].when`; `/steps/0/input/a b` -> `steps[0].input["a b"]`.
pub(crate) fn pointer_to_path(pointer: &str) -> String {
    let mut path = String::new();
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            path.push('[');
            path.push_str(&segment);
            path.push(']');
        } else {
            path = super::error::field_path(&path, &segment);
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pointers become the dotted paths used everywhere else.
    #[test]
    fn pointer_paths() {
        assert_eq!(pointer_to_path(""), "");
        assert_eq!(pointer_to_path("/steps/3/when"), "steps[3].when");
        assert_eq!(pointer_to_path("/steps/0/needs/1"), "steps[0].needs[1]");
        assert_eq!(
            pointer_to_path("/steps/0/input/a~1b"),
            "steps[0].input[\"a/b\"]"
        );
        assert_eq!(pointer_to_path("/timeout"), "timeout");
    }

    /// The embedded schema compiles.
    #[test]
    fn schema_compiles() {
        assert!(validator().is_ok());
    }

    /// YAML and JSON spellings of one workflow give the same definition.
    #[test]
    fn yaml_and_json_agree() {
        let yaml = r#"
name: trip
version: 2
timeout: 2h
steps:
  - id: forecast
    capability: weather_forecast
    input: { city: "input.city", days: "3" }
    retry: { max_attempts: 3, initial: 1s, max: 30s, multiplier: 2.0, on: [retryable, timeout] }
  - id: plan
    capability: plan_tasks
    needs: [forecast]
    input: "{'forecast': steps.forecast.output}"
output: "steps.plan.output"
"#;
        let json = r#"{"name": "trip", "version": 2, "timeout": "2h", "steps": [
  {"id": "forecast", "capability": "weather_forecast", "input": {"city": "input.city", "days": "3"},
   "retry": {"max_attempts": 3, "initial": "1s", "max": "30s", "multiplier": 2.0, "on": ["retryable", "timeout"]}},
  {"id": "plan", "capability": "plan_tasks", "needs": ["forecast"], "input": "{'forecast': steps.forecast.output}"}],
  "output": "steps.plan.output"}"#;
        let a = Definition::parse(yaml).unwrap();
        let b = Definition::parse(json).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.timeout.as_millis(), 7_200_000);
        assert_eq!(a.steps.len(), 2);
        assert_eq!(a.steps[0].retry.as_ref().map(|r| r.max_attempts), Some(3));
        // The canonical JSON form parses back to the same definition.
        let canonical = serde_json::to_string(&a).unwrap();
        assert_eq!(Definition::parse(&canonical).unwrap(), a);
    }

    /// Text that is neither JSON nor YAML is a syntax error; JSON is detected by its brace.
    #[test]
    fn syntax_errors() {
        let errs = Definition::parse("{\"name\": ").unwrap_err();
        assert_eq!(errs.kinds(), [ErrorKind::Syntax]);
        assert!(errs.errors()[0].message.starts_with("invalid JSON"));
        let flow =
            Definition::parse("{name: w, version: 1, steps: [{id: a, capability: echo}]}").unwrap();
        assert_eq!(flow.key(), "w.1");
        let errs = Definition::parse("name: [unclosed").unwrap_err();
        assert_eq!(errs.kinds(), [ErrorKind::Syntax]);
        assert!(errs.errors()[0].message.starts_with("invalid YAML"));
    }

    /// Oversized text is refused before parsing.
    #[test]
    fn too_large() {
        let text = format!(
            "name: x\ndescription: '{}'\n",
            "a".repeat(MAX_DEFINITION_BYTES)
        );
        assert_eq!(
            Definition::parse(&text).unwrap_err().kinds(),
            [ErrorKind::TooLarge]
        );
    }

    /// Every schema violation is reported with its path.
    #[test]
    fn schema_errors_have_paths() {
        let yaml = r#"
name: Bad Name
version: 0
timeout: 10x
steps:
  - id: a
    capability: echo
    wait_for: { signal: s }
  - id: b
    capabilty: echo
  - id: c
    capability: echo
    input: { days: 3 }
    on_error: explode
"#;
        let errs = Definition::parse(yaml).unwrap_err();
        for path in [
            "name",
            "version",
            "timeout",
            "steps[0]",
            "steps[1]",
            "steps[2].input.days",
            "steps[2].on_error",
        ] {
            assert!(errs.has(ErrorKind::Schema, path), "{path}: {errs}");
        }
        let one_of = errs.errors().iter().find(|e| e.path == "steps[0]").unwrap();
        assert!(
            one_of.message.contains("exactly one of"),
            "{}",
            one_of.message
        );
    }

    /// `on` inside `retry` stays a string key (YAML 1.2 booleans only).
    #[test]
    fn yaml_on_key_is_a_string() {
        let def = Definition::parse(
            "name: w\nversion: 1\nsteps:\n  - id: a\n    capability: echo\n    retry: { on: [error] }\n",
        )
        .unwrap();
        let retry = def.steps[0].retry.clone().unwrap();
        assert_eq!(retry.on, [super::super::retry::RetryOn::Error]);
    }
}
