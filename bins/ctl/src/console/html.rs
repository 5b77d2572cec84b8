//! Server-rendered HTML: one escaping function every dynamic value goes
//! through, and the page frame. Payloads shown here are untrusted.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// `s` with the five HTML-significant characters escaped; safe in text and
/// in double- or single-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value pretty-printed and escaped, for a `<pre>`.
pub fn json_pre(v: &serde_json::Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    format!("<pre class=\"json\">{}</pre>", esc(&text))
}

/// The navigation entries: (path under the console root, label).
const NAV: &[(&str, &str)] = &[
    ("agents", "Agents"),
    ("queues", "Queues"),
    ("runs", "Runs"),
    ("submit", "Submit"),
    ("dlq", "DLQ"),
];

/// A full page: `title` is escaped here, `body` must already be HTML built
/// from escaped values.
pub fn page(title: &str, body: &str) -> Response {
    let nav: String = NAV
        .iter()
        .map(|(path, label)| format!("<a href=\"{}/{path}\">{label}</a>", super::ROOT))
        .collect::<Vec<_>>()
        .join(" ");
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title} · agentry console</title>\
         <link rel=\"stylesheet\" href=\"{root}/static/console.css\">\
         <script src=\"{root}/static/console.js\" defer></script></head>\
         <body><header><strong>agentry</strong> <nav>{nav}</nav></header>\
         <main><h1>{title}</h1>\n{body}\n</main></body></html>",
        title = esc(title),
        root = super::ROOT,
    );
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(html),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(esc("plain"), "plain");
    }

    #[test]
    fn json_is_escaped_inside_pre() {
        let v = serde_json::json!({"message": "<script>x</script>"});
        let out = json_pre(&v);
        assert!(!out.contains("<script>"), "{out}");
        assert!(out.contains("&lt;script&gt;"));
    }
}
