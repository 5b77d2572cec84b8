//! Configuration shared by every binary: flags with `AGENTRY_*` environment
//! fallbacks (clap `env`), validated once at start-up. Component configs
//! embed these with `#[command(flatten)]`; tests build them as plain values.

use std::net::SocketAddr;
use std::path::PathBuf;

/// How to reach NATS.
#[derive(Debug, Clone, clap::Args)]
pub struct Nats {
    /// NATS server URL(s), comma-separated (`NATS_URL` is honoured too).
    #[arg(id = "nats_url", long = "nats-url", env = "AGENTRY_NATS_URL")]
    pub url: Option<String>,
    /// Credentials file (JWT + nkey seed).
    #[arg(long = "nats-creds", env = "AGENTRY_NATS_CREDS")]
    pub creds: Option<PathBuf>,
    /// User name for user/password auth.
    #[arg(long = "nats-user", env = "AGENTRY_NATS_USER")]
    pub user: Option<String>,
    /// Password for user/password auth.
    #[arg(
        long = "nats-password",
        env = "AGENTRY_NATS_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Token auth.
    #[arg(
        long = "nats-token",
        env = "AGENTRY_NATS_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// NKey seed (`SU...`) for nkey auth.
    #[arg(long = "nats-nkey", env = "AGENTRY_NATS_NKEY", hide_env_values = true)]
    pub nkey: Option<String>,
    /// CA certificate (PEM) used to verify the server.
    #[arg(long = "nats-tls-ca", env = "AGENTRY_NATS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long = "nats-tls-cert", env = "AGENTRY_NATS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long = "nats-tls-key", env = "AGENTRY_NATS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Require TLS even when the URL says nats://.
    #[arg(
        long = "nats-tls-required",
        env = "AGENTRY_NATS_TLS_REQUIRED",
        default_value_t = false
    )]
    pub tls_required: bool,
    /// Inbox prefix for replies (each role has its own under auth).
    #[arg(long = "nats-inbox-prefix", env = "AGENTRY_NATS_INBOX_PREFIX")]
    pub inbox_prefix: Option<String>,
}

pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

impl Nats {
    /// A config for `url` with no auth (tests, `agentry up`).
    pub fn plain(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            creds: None,
            user: None,
            password: None,
            token: None,
            nkey: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            inbox_prefix: None,
        }
    }

    /// The URL to use: flag/env, then `NATS_URL`, then the default.
    pub fn resolved_url(&self) -> String {
        self.url
            .clone()
            .or_else(|| std::env::var("NATS_URL").ok())
            .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned())
    }

    /// Checks combinations that cannot work, before anything connects.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let methods = [
            self.creds.is_some(),
            self.user.is_some(),
            self.token.is_some(),
            self.nkey.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if methods > 1 {
            return Err(ConfigError::AuthMethods);
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(ConfigError::Pair {
                first: "--nats-user",
                second: "--nats-password",
            });
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Pair {
                first: "--nats-tls-cert",
                second: "--nats-tls-key",
            });
        }
        for p in [&self.creds, &self.tls_ca, &self.tls_cert, &self.tls_key]
            .into_iter()
            .flatten()
        {
            if !p.exists() {
                return Err(ConfigError::FileNotFound(p.clone()));
            }
        }
        Ok(())
    }

    /// A printable copy with secrets redacted (`--print-config`).
    pub fn redacted(&self) -> Self {
        let hide = |s: &Option<String>| s.as_ref().map(|_| "<redacted>".to_owned());
        Self {
            password: hide(&self.password),
            token: hide(&self.token),
            nkey: hide(&self.nkey),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// HTTP endpoint and logging.
#[derive(Debug, Clone, clap::Args)]
pub struct Observe {
    /// Address of the /health, /ready and /metrics server (`off` disables it).
    #[arg(
        long = "http-addr",
        env = "AGENTRY_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: String,
    /// Log format.
    #[arg(long = "log-format", env = "AGENTRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How long a loop may stay busy with one item before `/health` fails
    /// (the process is wedged). Longer than the slowest handler at full load.
    #[arg(
        long = "stall-after",
        env = "AGENTRY_STALL_AFTER",
        default_value = "5m"
    )]
    pub stall_after: String,
}

impl Observe {
    pub fn stall_after(&self) -> Result<std::time::Duration, ConfigError> {
        parse_duration(&self.stall_after)
    }

    pub fn http_socket(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.http_addr == "off" || self.http_addr.is_empty() {
            return Ok(None);
        }
        self.http_addr
            .parse()
            .map(Some)
            .map_err(|source| ConfigError::HttpAddr {
                value: self.http_addr.clone(),
                source,
            })
    }
}

/// Optional Redis.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct Redis {
    /// Redis URL (rate limiting, conversation memory, caches). Optional.
    #[arg(id = "redis_url", long = "redis-url", env = "AGENTRY_REDIS_URL")]
    pub url: Option<String>,
}

/// A setting that cannot work, found before anything connects.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "invalid configuration: choose one NATS auth method: creds, user/password, token or nkey"
    )]
    AuthMethods,
    #[error("invalid configuration: {first} and {second} go together")]
    Pair {
        first: &'static str,
        second: &'static str,
    },
    #[error("invalid configuration: file not found: {}", .0.display())]
    FileNotFound(std::path::PathBuf),
    #[error("invalid configuration: AGENTRY_HTTP_ADDR {value:?} is not a socket address")]
    HttpAddr {
        value: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("bad duration {input:?}: expected a number and a unit (ms, s, m, h or d)")]
    Duration { input: String },
}

/// Parses a duration like `250ms`, `30s`, `5m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, ConfigError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let bad = || ConfigError::Duration {
        input: s.to_owned(),
    };
    // A number too large for u64 is as bad as no number at all.
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => n,
        "s" | "" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        _ => return Err(bad()),
    };
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("2h").unwrap().as_secs(), 7200);
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn auth_combinations() {
        let mut n = Nats::plain("nats://x:1");
        assert!(n.validate().is_ok());
        n.user = Some("u".into());
        assert!(n.validate().is_err());
        n.password = Some("p".into());
        assert!(n.validate().is_ok());
        n.token = Some("t".into());
        assert!(n.validate().is_err());
        assert_eq!(n.redacted().password.as_deref(), Some("<redacted>"));
    }
}
