//! Secrets hygiene: no credentials in tracked files.

use super::*;

/// A credential pattern and where it applies.
struct SecretRule {
    name: &'static str,
    pattern: regex::Regex,
    /// Only files for which this returns true.
    applies: fn(&str) -> bool,
}

fn any_file(_: &str) -> bool {
    true
}

/// Configuration and manifests: where a literal credential value would ship.
fn config_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    [
        ".yaml",
        ".yml",
        ".conf",
        ".toml",
        ".json",
        ".env",
        ".ini",
        ".properties",
        ".cfg",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
        || name.starts_with("Dockerfile")
        || name == ".env"
}

fn secret_rules() -> Vec<SecretRule> {
    let rule = |name, pattern: &str, applies| SecretRule {
        name,
        pattern: regex::Regex::new(pattern).unwrap(),
        applies,
    };
    vec![
        rule(
            "private key block",
            r"-----BEGIN ((RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY( BLOCK)?-----",
            any_file,
        ),
        rule(
            "NATS credentials file",
            r"-----BEGIN NATS USER JWT-{5}",
            any_file,
        ),
        rule("NATS nkey seed", r"\bS[UAO][A-Z2-7]{56}\b", any_file),
        rule(
            "AWS access key id",
            r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
            any_file,
        ),
        rule(
            "AWS secret access key",
            r"(?i)aws_secret_access_key\s*[=:]\s*[A-Za-z0-9/+]{40}",
            any_file,
        ),
        rule(
            "GitHub token",
            r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b",
            any_file,
        ),
        rule("Slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}", any_file),
        rule("Google API key", r"\bAIza[0-9A-Za-z_-]{35}\b", any_file),
        rule(
            "Stripe live key",
            r"\b[sr]k_live_[0-9A-Za-z]{24,}\b",
            any_file,
        ),
        rule(
            "JSON web token",
            r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
            any_file,
        ),
        rule(
            "credential URL",
            r"\b(nats|tls|redis|rediss|https?|amqp|postgres(ql)?)://[^\s:/@${}<>]+:[^\s@/${}<>]+@",
            any_file,
        ),
        // key: value / key = value with a literal value (not $VAR, ${VAR}, ${{ .. }}, {{ .. }}, <placeholder>).
        rule(
            "literal credential in configuration",
            r#"(?i)(^|[\s{,"'])(password|passwd|pass|secret|token|auth_token|api_?key|nkey|seed)["']?\s*[:=]\s*["']?[^\s"'$<{}\[\],#|>&*][^\s"',}]*"#,
            config_file,
        ),
        rule(
            "literal credential in an environment variable",
            r#"(?i)\b[A-Z0-9_]*(PASSWORD|SECRET|TOKEN|NKEY|API_KEY|_PW_[A-Z0-9_]+)\s*=\s*["']?[^\s"'$]"#,
            config_file,
        ),
    ]
}

/// Literal values that look like credentials and are not: each with its reason.
const NOT_SECRETS: &[(&str, &str)] = &[(
    "not-the-password",
    "nats/permissions.matrix.json: the wrong password that must be refused",
)];

/// Findings of `rules` in `text` (from file `path`): "path:line: rule".
fn scan_secrets(rules: &[SecretRule], path: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        for r in rules.iter().filter(|r| (r.applies)(path)) {
            let hit = r
                .pattern
                .find_iter(line)
                .any(|m| !NOT_SECRETS.iter().any(|(v, _)| m.as_str().contains(v)));
            if hit {
                out.push(format!("{path}:{}: {}", n + 1, r.name));
            }
        }
        // Kubernetes env: `- name: X_PASSWORD` followed by a literal `value:`.
        let name_line = line.trim_start().trim_start_matches("- ");
        if config_file(path)
            && let Some(var) = name_line.strip_prefix("name:")
            && ["PASSWORD", "SECRET", "TOKEN", "NKEY"]
                .iter()
                .any(|k| var.to_uppercase().contains(k))
            && let Some((_, next)) = lines.peek()
            && let Some(v) = next.trim_start().strip_prefix("value:")
        {
            let v = v.trim().trim_matches(['"', '\'']);
            if !v.is_empty() && !v.starts_with('$') {
                out.push(format!(
                    "{path}:{}: literal credential in a Kubernetes env value",
                    n + 2
                ));
            }
        }
    }
    out
}

/// The scanner finds each kind of credential and lets env references through (samples built at run time so this file holds none).
#[test]
fn secret_scanner_recognises_credentials() {
    let rules = secret_rules();
    let key_block = format!("-----BEGIN {} KEY-----", ["EC", "PRIVATE"].join(" "));
    let seed = format!("SU{}", "A".repeat(56));
    let aws = format!("AKIA{}", "Q".repeat(16));
    let gh = format!("ghp_{}", "a1".repeat(18));
    let jwt = format!("eyJ{0}.eyJ{0}.{0}", "abcdefghijkl");
    let bad: Vec<(&str, String)> = vec![
        ("certs/key.pem", key_block),
        ("nats/x.conf", format!("seed: {seed}")),
        ("src/lib.rs", format!("let k = \"{aws}\";")),
        ("ci.yml", format!("token: {gh}")),
        ("docs.md", format!("Authorization: Bearer {jwt}")),
        (
            "deploy/secret.yaml",
            "stringData: {password: hunter2}".into(),
        ),
        (
            "nats/users.conf",
            "  { user: bob, password: s3cr3t }".into(),
        ),
        ("config.toml", "api_key = \"abc123\"".into()),
        ("Dockerfile", "ENV AGENTRY_NATS_PASSWORD=letmein".into()),
        (
            "deploy/app.yaml",
            "        - name: AGENTRY_NATS_TOKEN\n          value: \"abc\"".into(),
        ),
        (
            "README.md",
            format!("connect to nats://admin:{}@host:4222", "pw1"),
        ),
    ];
    for (path, text) in &bad {
        assert!(
            !scan_secrets(&rules, path, text).is_empty(),
            "not flagged: {path}: {text}"
        );
    }
    let good: Vec<(&str, &str)> = vec![
        (
            "nats/accounts.conf",
            "        password: $AGENTRY_PW_CLIENT_ACME",
        ),
        (
            ".github/workflows/cd.yml",
            "          password: ${{ secrets.GITHUB_TOKEN }}",
        ),
        (
            "deploy/base/engine.yaml",
            "          secret:\n            secretName: agentry-nats-engine",
        ),
        (
            "deploy/app.yaml",
            "        - name: AGENTRY_NATS_PASSWORD\n          valueFrom: {secretKeyRef: {name: x, key: password}}",
        ),
        ("values.yaml", "password: <set-me>"),
        ("helm.yaml", "token: {{ .Values.token }}"),
        ("src/config.rs", "n.password = Some(\"p\".into());"),
        ("nats/tls.conf", "  key_file: $AGENTRY_NATS_SERVER_KEY"),
    ];
    for (path, text) in &good {
        let found = scan_secrets(&rules, path, text);
        assert!(
            found.is_empty(),
            "false positive: {path}: {text}: {found:?}"
        );
    }
}

/// No tracked file holds a credential: private keys, NATS seeds or creds, cloud and API tokens, credential URLs, literal passwords in configuration or manifests.
#[test]
fn repository_has_no_secrets() {
    let root = repo_root();
    let out = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["ls-files", "-z"])
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git ls-files: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = secret_rules();
    let mut findings = Vec::new();
    let mut scanned = 0;
    for path in out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let path = String::from_utf8_lossy(path).into_owned();
        let Ok(bytes) = std::fs::read(root.join(&path)) else {
            continue; // deleted in the work tree
        };
        if bytes.len() > 4 * 1024 * 1024 || bytes.contains(&0) {
            continue; // binary
        }
        scanned += 1;
        findings.extend(scan_secrets(
            &rules,
            &path,
            &String::from_utf8_lossy(&bytes),
        ));
    }
    assert!(scanned > 100, "only {scanned} files scanned");
    assert!(
        findings.is_empty(),
        "credentials in tracked files:\n{}",
        findings.join("\n")
    );
}
