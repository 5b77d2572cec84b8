//! Attack signatures (bundled `data/signatures.json`): regular
//! expressions over decoded request paths and payloads, and scanner
//! user-agent names.

use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;

use super::LogicError;
use super::parse;
use super::types::{Severity, ThreatKind};
use agentry_agent_kit::bad_data;

const SIGNATURES_JSON: &str = agentry_agent_kit::data_file!("signatures.json");

#[derive(Debug, Deserialize)]
struct SignatureSpec {
    id: String,
    kind: ThreatKind,
    severity: Severity,
    pattern: String,
    #[serde(default)]
    raw: bool,
    description: String,
}

#[derive(Debug, Deserialize)]
struct File {
    signatures: Vec<SignatureSpec>,
    scanner_agents: Vec<String>,
}

/// One compiled signature.
#[derive(Debug)]
pub struct Signature {
    pub id: String,
    pub kind: ThreatKind,
    pub severity: Severity,
    /// Matched against the raw (still encoded, lowercased) text instead of
    /// the decoded form.
    pub raw: bool,
    pub description: String,
    regex: Regex,
}

/// The bundled signature set.
#[derive(Debug)]
pub struct Signatures {
    pub signatures: Vec<Signature>,
    pub scanner_agents: Vec<String>,
}

impl Signatures {
    /// Signatures matching a request target or payload (case-insensitive).
    pub fn matching(&self, text: &str) -> Vec<&Signature> {
        let decoded = parse::normalise_for_matching(text);
        let raw = text.to_lowercase();
        self.signatures
            .iter()
            .filter(|s| s.regex.is_match(if s.raw { &raw } else { &decoded }))
            .collect()
    }

    /// The scanner name found in a user agent, if any.
    pub fn scanner_agent(&self, user_agent: &str) -> Option<&str> {
        let ua = user_agent.to_lowercase();
        self.scanner_agents.iter().map(String::as_str).find(|name| {
            ua.match_indices(*name).any(|(i, _)| {
                // Whole-word match: "dirb" must not fire on "dirbuster"'s prefix only.
                let before = ua[..i].chars().next_back();
                let after = ua[i + name.len()..].chars().next();
                !before.is_some_and(char::is_alphanumeric)
                    && !after.is_some_and(char::is_alphanumeric)
            })
        })
    }
}

/// The bundled signatures, compiled once.
pub fn bundled() -> Result<&'static Signatures, LogicError> {
    static S: OnceLock<Result<Signatures, LogicError>> = OnceLock::new();
    S.get_or_init(|| {
        let file: File =
            serde_json::from_str(SIGNATURES_JSON).map_err(|e| bad_data("signatures.json", e))?;
        let signatures = file
            .signatures
            .into_iter()
            .map(|s| {
                let regex = Regex::new(&format!("(?i){}", s.pattern))
                    .map_err(|e| bad_data(format!("signature {}", s.id), e))?;
                Ok(Signature {
                    id: s.id,
                    kind: s.kind,
                    severity: s.severity,
                    raw: s.raw,
                    description: s.description,
                    regex,
                })
            })
            .collect::<Result<Vec<_>, LogicError>>()?;
        Ok(Signatures {
            signatures,
            scanner_agents: file
                .scanner_agents
                .into_iter()
                .map(|a| a.to_lowercase())
                .collect(),
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<ThreatKind> {
        let mut k: Vec<ThreatKind> = bundled()
            .unwrap()
            .matching(text)
            .iter()
            .map(|s| s.kind)
            .collect();
        k.sort();
        k.dedup();
        k
    }

    /// Classic attack strings match their kind, also when encoded.
    #[test]
    fn attacks_match() {
        use ThreatKind::*;
        let cases: &[(&str, ThreatKind)] = &[
            ("/login?user=admin'%20OR%201=1--", SqlInjection),
            ("/item?id=1' or 'a'='a", SqlInjection),
            (
                "/p?id=-1+UNION+ALL+SELECT+username,password+FROM+users",
                SqlInjection,
            ),
            ("/p?id=1;DROP TABLE users", SqlInjection),
            ("/p?id=1 AND SLEEP(5)", SqlInjection),
            ("/q?s=%3Cscript%3Ealert(1)%3C/script%3E", Xss),
            ("/q?s=<img src=x onerror=alert(document.cookie)>", Xss),
            ("/redirect?to=JavaScript:alert(1)", Xss),
            ("/static/../../etc/passwd", PathTraversal),
            ("/files/%2e%2e/%2e%2e/secret", PathTraversal),
            ("/files/..%2f..%2fwin.ini", PathTraversal),
            ("/a/%252e%252e%252fboot", PathTraversal),
        ];
        for (text, kind) in cases {
            assert!(kinds(text).contains(kind), "{text}: {:?}", kinds(text));
        }
    }

    /// Ordinary requests match nothing.
    #[test]
    fn benign_requests_do_not_match() {
        for text in [
            "/",
            "/index.html",
            "/search?q=union+station+selection",
            "/products?id=42&sort=price",
            "/blog/2024/how-to-order-online",
            "/api/v1/users/17/orders?page=2",
            "/docs/script-writing-guide",
            "/search?q=rock+and+roll",
            "/files/report..final.pdf",
        ] {
            assert!(kinds(text).is_empty(), "{text}: {:?}", kinds(text));
        }
    }

    /// Scanner agents are recognised as whole words.
    #[test]
    fn scanner_agents_match() {
        let s = bundled().unwrap();
        assert_eq!(
            s.scanner_agent("sqlmap/1.7.2#stable (https://sqlmap.org)"),
            Some("sqlmap")
        );
        assert_eq!(
            s.scanner_agent("Mozilla/5.0 (compatible; Nmap Scripting Engine)"),
            Some("nmap")
        );
        assert_eq!(
            s.scanner_agent("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"),
            None
        );
        assert_eq!(s.scanner_agent("hydrangea-client/1.0"), None);
    }
}
