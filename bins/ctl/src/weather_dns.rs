//! `agentry up` without `--offline`: do the weather API hosts resolve? On a
//! machine without internet the weather agent would otherwise spend its
//! retries on every request before failing, with nothing said at start.

use std::time::Duration;

/// The `host:port` a base URL connects to (`https://h` -> `h:443`).
pub fn authority(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let auth = rest.split(['/', '?', '#']).next()?;
    let auth = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    if auth.is_empty() {
        return None;
    }
    let has_port = match auth.rfind(']') {
        Some(close) => auth[close..].contains(':'),
        None => auth.contains(':'),
    };
    if has_port {
        return Some(auth.to_owned());
    }
    let port = if scheme.eq_ignore_ascii_case("http") {
        80
    } else {
        443
    };
    Some(format!("{auth}:{port}"))
}

/// The hosts among `urls` that do not resolve within `limit` (deduplicated,
/// in order). An unparsable URL counts as not resolving.
pub async fn unresolved(urls: &[&str], limit: Duration) -> Vec<String> {
    let mut bad: Vec<String> = Vec::new();
    for url in urls {
        let Some(auth) = authority(url) else {
            bad.push((*url).to_owned());
            continue;
        };
        let host = auth
            .rsplit_once(':')
            .map_or(auth.as_str(), |(h, _)| h)
            .to_owned();
        if bad.contains(&host) {
            continue;
        }
        let ok = match tokio::time::timeout(limit, tokio::net::lookup_host(auth.as_str())).await {
            Ok(Ok(mut addrs)) => addrs.next().is_some(),
            _ => false,
        };
        if !ok {
            bad.push(host);
        }
    }
    bad
}

/// The one line `up` prints when weather hosts do not resolve.
pub fn warning(hosts: &[String]) -> String {
    let verb = if hosts.len() == 1 { "does" } else { "do" };
    format!(
        "warning: weather: {} {verb} not resolve (no internet or DNS?), so weather requests will fail; \
         `agentry up --offline` (`make up ARGS=--offline`) serves a bundled fixture instead",
        hosts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_adds_the_scheme_port() {
        assert_eq!(
            authority("https://api.open-meteo.com").as_deref(),
            Some("api.open-meteo.com:443")
        );
        assert_eq!(
            authority("http://127.0.0.1:8080/x").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(authority("http://[::1]/").as_deref(), Some("[::1]:80"));
        assert_eq!(authority("not a url"), None);
    }

    #[tokio::test]
    async fn reserved_names_do_not_resolve_and_loopback_does() {
        let bad = unresolved(
            &["https://weather.invalid", "http://127.0.0.1:1"],
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(bad, vec!["weather.invalid".to_owned()]);
    }
}
