//! Submit page: pick a capability, fill a form generated from its input
//! schema (`schemas/capabilities/<cap>.input.json`), publish the request
//! (`agentry.requests`), then watch its result page until the result is
//! stored in AGENTRY_RESULTS.

use std::collections::BTreeSet;

use agentry::client;
use agentry::event::Mode;
use agentry::id::{Capability, RequestId};
use agentry::registry::Registry;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Map, Value};

use super::auth::csrf_input;
use super::html::{esc, json_pre, page};
use super::{Console, ROOT};

/// Form field holding a whole JSON input (overrides the generated fields).
const RAW_FIELD: &str = "raw_input";
/// Prefix of the generated fields' names (`in.<property>`).
const FIELD_PREFIX: &str = "in.";

/// Capabilities with an input schema, and those live agents serve.
async fn capabilities(c: &Console) -> BTreeSet<String> {
    let mut caps: BTreeSet<String> = agentry::schema::global()
        .paths()
        .into_iter()
        .filter_map(|p| p.strip_prefix("capabilities/")?.strip_suffix(".input.json"))
        .map(str::to_owned)
        .collect();
    if let Ok(reg) = Registry::open(&c.js).await
        && let Ok(list) = reg.list().await
    {
        caps.extend(list.into_iter().flat_map(|r| r.capabilities));
    }
    caps
}

pub async fn index(State(c): State<Console>) -> Response {
    let items: String = capabilities(&c)
        .await
        .iter()
        .map(|cap| {
            format!(
                "<li><a href=\"{ROOT}/submit/{p}\" data-capability=\"{p}\">{p}</a></li>",
                p = esc(cap)
            )
        })
        .collect();
    page(
        "Submit",
        &format!("<ul class=\"capabilities\">{items}</ul>"),
    )
}

fn input_schema(cap: &Capability) -> Option<&'static Value> {
    agentry::schema::global().document(&format!("capabilities/{cap}.input.json"))
}

pub async fn form(State(c): State<Console>, Path(cap): Path<String>) -> Response {
    match Capability::new(cap) {
        Ok(cap) => page(&format!("Submit {cap}"), &form_body(&c, &cap, None)),
        Err(e) => bad_request(&e.to_string()),
    }
}

fn bad_request(msg: &str) -> Response {
    let mut r = page(
        "Bad request",
        &format!("<p class=\"error\">{}</p>", esc(msg)),
    );
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

/// The form: one field per schema property, typed by the schema, and a
/// raw JSON area for anything the fields cannot say.
fn form_body(c: &Console, cap: &Capability, error: Option<&str>) -> String {
    let mut fields = String::new();
    let schema = input_schema(cap);
    let required: BTreeSet<&str> = schema
        .and_then(|s| s["required"].as_array())
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = schema.and_then(|s| s["properties"].as_object()) {
        for (name, prop) in props {
            fields.push_str(&field(name, prop, required.contains(name.as_str())));
        }
    }
    let err = error
        .map(|e| format!("<p class=\"error\" id=\"submit-error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let about = schema
        .and_then(|s| s["description"].as_str())
        .map(|d| format!("<p class=\"about\">{}</p>", esc(d)))
        .unwrap_or_default();
    format!(
        "{about}{err}<form method=\"post\" action=\"{ROOT}/submit/{cap}\" class=\"submit\">{csrf}\
         {fields}<label>Raw JSON input (instead of the fields) \
         <textarea name=\"{RAW_FIELD}\" id=\"raw_input\" rows=\"4\"></textarea></label>\
         <button type=\"submit\" id=\"submit\">Submit</button></form>",
        cap = esc(cap.as_str()),
        csrf = csrf_input(&c.auth),
    )
}

/// One input for a schema property.
fn field(name: &str, prop: &Value, required: bool) -> String {
    let id = esc(&format!("{FIELD_PREFIX}{name}"));
    let label = format!("{}{}", esc(name), if required { " *" } else { "" });
    let help = prop["description"]
        .as_str()
        .map(|d| format!("<small>{}</small>", esc(d)))
        .unwrap_or_default();
    let control = if let Some(options) = prop["enum"].as_array() {
        let opts: String = options
            .iter()
            .map(|o| {
                let v = o.as_str().map_or_else(|| o.to_string(), str::to_owned);
                format!("<option value=\"{v}\">{v}</option>", v = esc(&v))
            })
            .collect();
        format!("<select name=\"{id}\" id=\"{id}\"><option value=\"\"></option>{opts}</select>")
    } else {
        match prop["type"].as_str() {
            Some("string") => format!("<input type=\"text\" name=\"{id}\" id=\"{id}\">"),
            Some("integer") => {
                format!("<input type=\"number\" step=\"1\" name=\"{id}\" id=\"{id}\">")
            }
            Some("number") => {
                format!("<input type=\"number\" step=\"any\" name=\"{id}\" id=\"{id}\">")
            }
            Some("boolean") => format!(
                "<select name=\"{id}\" id=\"{id}\"><option value=\"\"></option>\
                 <option>true</option><option>false</option></select>"
            ),
            // objects, arrays and untyped values: JSON, or text taken as a string
            _ => format!("<textarea name=\"{id}\" id=\"{id}\" rows=\"2\"></textarea>"),
        }
    };
    format!("<label>{label} {control} {help}</label>")
}

/// Why a posted form is not a task input.
#[derive(Debug, thiserror::Error)]
enum FormError {
    #[error("raw JSON input")]
    RawJson(#[source] serde_json::Error),
    #[error("{field}: not an integer: {text}")]
    NotInteger { field: String, text: String },
    #[error("{field}: not a number: {text}")]
    NotNumber { field: String, text: String },
    #[error("input does not match the schema")]
    Schema(#[source] agentry::schema::SchemaError),
}

/// The input object from the posted form: the raw JSON when given, else
/// each non-empty generated field converted by its schema type.
fn input_from_form(schema: Option<&Value>, form: &[(String, String)]) -> Result<Value, FormError> {
    if let Some((_, raw)) = form
        .iter()
        .find(|(k, v)| k == RAW_FIELD && !v.trim().is_empty())
    {
        return serde_json::from_str(raw).map_err(FormError::RawJson);
    }
    let mut input = Map::new();
    for (key, text) in form {
        let Some(name) = key.strip_prefix(FIELD_PREFIX) else {
            continue;
        };
        if text.is_empty() {
            continue;
        }
        let prop = schema
            .map(|s| &s["properties"][name])
            .unwrap_or(&Value::Null);
        let value =
            match prop["type"].as_str() {
                Some("string") => Value::String(text.clone()),
                Some("integer") => text.trim().parse::<i64>().map(Value::from).map_err(|_| {
                    FormError::NotInteger {
                        field: name.to_owned(),
                        text: text.clone(),
                    }
                })?,
                Some("number") => text
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                    .ok_or_else(|| FormError::NotNumber {
                        field: name.to_owned(),
                        text: text.clone(),
                    })?,
                Some("boolean") => Value::Bool(text == "true"),
                _ => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
            };
        input.insert(name.to_owned(), value);
    }
    Ok(Value::Object(input))
}

pub async fn post(
    State(c): State<Console>,
    Path(cap): Path<String>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> Response {
    let cap = match Capability::new(cap) {
        Ok(cap) => cap,
        Err(e) => return bad_request(&e.to_string()),
    };
    let schema = input_schema(&cap);
    let input = input_from_form(schema, &form).and_then(|input| {
        match agentry::schema::global().capability_input(cap.as_str()) {
            Some(v) => agentry::schema::check(v, &input)
                .map(|()| input)
                .map_err(FormError::Schema),
            None => Ok(input),
        }
    });
    let input = match input {
        Ok(i) => i,
        Err(e) => {
            let e = agentry::error::chain(&e);
            let mut r = page(&format!("Submit {cap}"), &form_body(&c, &cap, Some(&e)));
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return r;
        }
    };
    let id = RequestId::generate();
    let event = client::task_request(&id, "/console", cap.as_str(), input, None);
    match client::publish_request(&c.js, &event, Mode::Binary).await {
        Ok(()) => Redirect::to(&format!("{ROOT}/results/{id}")).into_response(),
        Err(e) => {
            let mut r = page(
                &format!("Submit {cap}"),
                &form_body(&c, &cap, Some(&format!("not submitted: {e}"))),
            );
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r
        }
    }
}

/// A request's result, or a page that reloads itself until it is stored.
pub async fn result(State(c): State<Console>, Path(id): Path<String>) -> Response {
    let id = match RequestId::new(id) {
        Ok(id) => id,
        Err(e) => return bad_request(&e.to_string()),
    };
    match client::fetch_result(&c.js, &id).await {
        Some(o) => {
            let status = if o.is_success() {
                "completed"
            } else {
                "failed"
            };
            page(
                &format!("Result {id}"),
                &format!(
                    "<p>request <code>{id}</code>: <span class=\"status-{status}\" id=\"result-status\">{status}</span> \
                     (<code>{ty}</code>)</p><div id=\"result\">{data}</div>",
                    id = esc(id.as_str()),
                    ty = esc(&o.ty),
                    data = json_pre(&o.data),
                ),
            )
        }
        None => page(
            &format!("Result {id}"),
            &format!(
                "<p>request <code>{}</code>: <span id=\"result-status\" data-reload=\"1000\">waiting</span> \
                 for its result…</p>",
                esc(id.as_str())
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn fields_are_typed_by_the_schema() {
        let schema = json!({"properties": {
            "message": {}, "sleep_ms": {"type": "integer"}, "fail": {"type": "string", "enum": ["none"]},
            "ratio": {"type": "number"}, "flag": {"type": "boolean"}}});
        let input = input_from_form(
            Some(&schema),
            &form(&[
                ("csrf", "x"),
                ("in.message", "hello"),
                ("in.sleep_ms", "5"),
                ("in.fail", ""),
                ("in.ratio", "0.5"),
                ("in.flag", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(
            input,
            json!({"message": "hello", "sleep_ms": 5, "ratio": 0.5, "flag": true})
        );
    }

    #[test]
    fn untyped_json_is_parsed_and_bad_numbers_refused() {
        let schema = json!({"properties": {"message": {}, "n": {"type": "integer"}}});
        let input = input_from_form(Some(&schema), &form(&[("in.message", "{\"a\":1}")])).unwrap();
        assert_eq!(input, json!({"message": {"a": 1}}));
        assert!(input_from_form(Some(&schema), &form(&[("in.n", "five")])).is_err());
    }

    #[test]
    fn raw_json_wins_over_fields() {
        let input = input_from_form(
            None,
            &form(&[
                ("in.message", "a"),
                (RAW_FIELD, "{\"message\": \"<script>\"}"),
            ]),
        )
        .unwrap();
        assert_eq!(input, json!({"message": "<script>"}));
        assert!(input_from_form(None, &form(&[(RAW_FIELD, "{nope")])).is_err());
    }

    #[test]
    fn generated_fields_escape_schema_text() {
        let f = field("x\"><script>", &json!({"description": "<b>"}), true);
        assert!(!f.contains("<script>") && !f.contains("<b>"), "{f}");
    }
}
