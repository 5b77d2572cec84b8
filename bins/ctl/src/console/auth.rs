//! Who may use the console: the token `agentry up` (or `agentry console`)
//! prints, presented as a cookie set by the login form or as an
//! `Authorization: Bearer` header. Every POST made with the cookie must also
//! come from the console's own origin (`Origin` equals `Host`) and carry the
//! per-process CSRF token of the page it was sent from.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::{Console, ROOT, html};

/// Name of the session cookie (its value is the token).
pub const COOKIE: &str = "agentry_console";
/// Name of the hidden form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Largest form body the console reads.
const MAX_FORM: usize = 1 << 20;

/// The token and the CSRF token of one console process.
#[derive(Clone)]
pub struct Auth {
    token: String,
    csrf: String,
}

/// How a request proved it holds the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Cookie,
    Bearer,
}

impl Auth {
    pub fn new(token: String) -> Self {
        Self {
            token,
            csrf: random_token(),
        }
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `candidate` is the token (constant time in its content).
    pub fn is_token(&self, candidate: &str) -> bool {
        ct_eq(candidate.as_bytes(), self.token.as_bytes())
    }

    fn via(&self, headers: &HeaderMap) -> Option<Via> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|t| self.is_token(t)) {
            return Some(Via::Bearer);
        }
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v);
        cookie.filter(|t| self.is_token(t)).map(|_| Via::Cookie)
    }
}

/// A fresh random token (256 bits, hex).
pub fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a browser request comes from the page's own origin: `Origin`
/// (sent by browsers on every POST) names the `Host` it was sent to. A
/// request without `Origin` passes only when `Sec-Fetch-Site` does not say
/// it is cross-site.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        Some(Ok(origin)) => host.is_some_and(|h| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(h)
        }),
        Some(Err(_)) => false,
        None => headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|s| s == "same-origin" || s == "none"),
    }
}

/// Middleware on every console route but login and static assets: no
/// token, no page (GETs go to the login form, other methods get 401);
/// cookie-authenticated POSTs need the same origin and the CSRF token.
pub async fn require(State(console): State<Console>, req: Request, next: Next) -> Response {
    let auth = &console.auth;
    let Some(via) = auth.via(req.headers()) else {
        return if req.method() == Method::GET || req.method() == Method::HEAD {
            Redirect::to(&format!("{ROOT}/login")).into_response()
        } else {
            (StatusCode::UNAUTHORIZED, "console token required\n").into_response()
        };
    };
    if req.method() != Method::POST || via == Via::Bearer {
        return next.run(req).await;
    }
    if !same_origin(req.headers()) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response();
    }
    // The body is read here (bounded) to check the CSRF field, then handed on.
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORM).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "form too large\n").into_response(),
    };
    let token_ok = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .is_some_and(|(_, v)| ct_eq(v.as_bytes(), auth.csrf.as_bytes()));
    if !token_ok {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The hidden CSRF field for a form.
pub fn csrf_input(auth: &Auth) -> String {
    format!(
        "<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">",
        html::esc(auth.csrf())
    )
}

pub async fn login_form() -> Response {
    html::page("Log in", &login_body(None))
}

fn login_body(error: Option<&str>) -> String {
    let err = error
        .map(|e| format!("<p class=\"error\">{}</p>", html::esc(e)))
        .unwrap_or_default();
    format!(
        "{err}<form method=\"post\" action=\"{ROOT}/login\" class=\"login\">\
         <label>Token (printed by <code>agentry up</code> / <code>agentry console</code>) \
         <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\" required></label> \
         <button type=\"submit\" id=\"login\">Log in</button></form>"
    )
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login(
    State(console): State<Console>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response();
    }
    if !console.auth.is_token(&form.token) {
        let mut resp = html::page("Log in", &login_body(Some("wrong token")));
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        return resp;
    }
    let cookie = format!(
        "{COOKIE}={}; Path={ROOT}; HttpOnly; SameSite=Strict",
        console.auth.token
    );
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to(&format!("{ROOT}/agents")),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn token_by_cookie_or_bearer() {
        let a = Auth::new("t0k".into());
        assert_eq!(
            a.via(&headers(&[("cookie", "x=1; agentry_console=t0k")])),
            Some(Via::Cookie)
        );
        assert_eq!(
            a.via(&headers(&[("authorization", "Bearer t0k")])),
            Some(Via::Bearer)
        );
        assert_eq!(a.via(&headers(&[("cookie", "agentry_console=t0")])), None);
        assert_eq!(a.via(&headers(&[("authorization", "Bearer t0kk")])), None);
        assert_eq!(a.via(&HeaderMap::new()), None);
    }

    #[test]
    fn origin_must_match_host() {
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:9464"),
            ("origin", "http://127.0.0.1:9464")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:9464"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:9464"),
            ("origin", "null")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:9464"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(same_origin(&headers(&[("host", "127.0.0.1:9464")])));
    }
}
