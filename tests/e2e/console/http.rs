//! The console's security at the HTTP level: no token, no page and no
//! action; a cookie alone is not enough for a POST (CSRF token and origin);
//! untrusted payloads come back escaped.

use super::*;

const FORM: &str = "content-type: application/x-www-form-urlencoded";

fn get(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n")
}

fn post(addr: SocketAddr, path: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{FORM}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The CSRF token from a page's hidden field.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("page has a CSRF field")
        + 19;
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

/// Without the token pages redirect to the login form and actions get 401; a wrong token at the login form is refused; a cookie-authenticated POST without the CSRF token, with a wrong one or from another origin is refused (submit; signal, cancel, start and replay too); with both it is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_token_csrf_and_same_origin() {
    let sys = System::builder().start().await;
    let addr = start_console(&sys).await;

    let (code, head, _) = exchange(addr, get(addr, "/console/agents", "")).await;
    assert_eq!(code, 303, "no token: redirect");
    assert!(
        head.to_lowercase().contains("location: /console/login"),
        "{head}"
    );
    let body = "in.message=hi";
    let (code, _, _) = exchange(addr, post(addr, "/console/submit/echo", "", body)).await;
    assert_eq!(code, 401, "no token: action refused");
    let bad = "Cookie: agentry_console=not-the-token\r\n";
    let (code, _, _) = exchange(addr, post(addr, "/console/submit/echo", bad, body)).await;
    assert_eq!(code, 401, "wrong cookie: action refused");
    let (code, _, _) = exchange(addr, post(addr, "/console/login", "", "token=wrong")).await;
    assert_eq!(code, 401, "wrong token at the login form");

    // The login form sets the cookie.
    let (code, head, _) = exchange(
        addr,
        post(addr, "/console/login", "", &format!("token={TOKEN}")),
    )
    .await;
    assert_eq!(code, 303, "{head}");
    assert!(head.contains(&format!("agentry_console={TOKEN}")), "{head}");
    assert!(
        head.contains("HttpOnly") && head.contains("SameSite=Strict"),
        "{head}"
    );

    let cookie = format!("Cookie: agentry_console={TOKEN}\r\n");
    let (code, _, page) = exchange(addr, get(addr, "/console/submit/echo", &cookie)).await;
    assert_eq!(code, 200);
    let csrf = csrf_of(&page);
    let (code, _, _) = exchange(addr, post(addr, "/console/submit/echo", &cookie, body)).await;
    assert_eq!(code, 403, "cookie without the CSRF token");
    // One character changed (a fixed replacement would match 1 in 16 tokens).
    let flipped = if csrf.starts_with('0') { '1' } else { '0' };
    let wrong = format!("{body}&csrf={flipped}{}", &csrf[1..]);
    let (code, _, _) = exchange(addr, post(addr, "/console/submit/echo", &cookie, &wrong)).await;
    assert_eq!(code, 403, "cookie with a wrong CSRF token");
    let good = format!("{body}&csrf={csrf}");
    let cross = format!("{cookie}Origin: http://evil.example\r\n");
    let (code, _, _) = exchange(addr, post(addr, "/console/submit/echo", &cross, &good)).await;
    assert_eq!(code, 403, "another origin");
    // Every other action: refused without the token, and with the cookie
    // alone (no CSRF token), before its handler runs.
    for (path, form) in [
        ("/console/runs/r-1/signal", "name=go&payload=%7B%7D"),
        ("/console/runs/r-1/cancel", "reason=x"),
        ("/console/runs/start", "workflow=echo_diamond&input=%7B%7D"),
        ("/console/dlq/1/replay", ""),
    ] {
        let (code, _, _) = exchange(addr, post(addr, path, "", form)).await;
        assert_eq!(code, 401, "{path} without the token");
        let (code, _, _) = exchange(addr, post(addr, path, &cookie, form)).await;
        assert_eq!(code, 403, "{path} with the cookie but no CSRF token");
    }
    let same = format!("{cookie}Origin: http://{addr}\r\n");
    let (code, head, _) = exchange(addr, post(addr, "/console/submit/echo", &same, &good)).await;
    assert_eq!(code, 303, "token, CSRF token and origin: accepted\n{head}");
    assert!(head.contains("/console/results/"), "{head}");
    sys.stop().await;
}

/// A `<script>` payload submitted with the bearer token is shown escaped on its result page (never as markup), and the form refuses input its schema rejects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_payload_is_shown_as_text() {
    let sys = System::builder()
        .engine(|_| {})
        .monitor()
        .echo(4)
        .start()
        .await;
    let addr = start_console(&sys).await;
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");

    let bad = "in.sleep_ms=-5";
    let (code, _, page) = exchange(addr, post(addr, "/console/submit/echo", &bearer, bad)).await;
    assert_eq!(code, 422, "schema violation refused before publishing");
    assert!(page.contains("does not match the schema"), "{page}");

    let body = "raw_input=%7B%22message%22%3A%22%3Cscript%3Ealert(1)%3C%2Fscript%3E%22%7D";
    let (code, head, _) = exchange(addr, post(addr, "/console/submit/echo", &bearer, body)).await;
    assert_eq!(code, 303, "{head}");
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .expect("redirect to the result page")
        .trim()
        .to_owned();
    let page = eventually_some(Duration::from_secs(20), "result page completed", || {
        let req = get(addr, &location, &bearer);
        async move {
            let (_, _, page) = exchange(addr, req).await;
            page.contains("id=\"result-status\">completed")
                .then_some(page)
        }
    })
    .await;
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        !page.contains("<script>alert"),
        "payload rendered as markup:\n{page}"
    );
    sys.stop().await;
}
