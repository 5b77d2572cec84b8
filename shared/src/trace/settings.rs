//! Export settings from the standard `OTEL_*` variables, read from a
//! map-like source (the process environment in production, a map in
//! tests).

use std::time::Duration;

use percent_encoding::percent_decode_str;

use super::batch::Limits;
use super::sampler::Sampler;

/// The OTLP transport (`OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf` (the default): `POST <endpoint>/v1/traces`.
    HttpProtobuf,
    /// `grpc`: the OTLP collector service, default port 4317.
    Grpc,
}

/// Export settings read from the `OTEL_*` environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub protocol: Protocol,
    /// The `/v1/traces` URL (HTTP) or the collector's address (gRPC).
    pub endpoint: String,
    /// One request's time limit (`OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`, ms; 10 s).
    pub timeout: Duration,
    /// `OTEL_EXPORTER_OTLP_HEADERS` and `..._TRACES_HEADERS` (which wins).
    pub headers: Vec<(String, String)>,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`, `..._MAX_EXPORT_BATCH_SIZE`, `..._SCHEDULE_DELAY`.
    pub limits: Limits,
    /// `OTEL_TRACES_SAMPLER` (an unknown one reads as the default).
    pub sampler: Sampler,
    /// The resource: `service.name` (`OTEL_SERVICE_NAME`, else the one in
    /// `OTEL_RESOURCE_ATTRIBUTES`, else the component's), `service.version`,
    /// `telemetry.sdk.*` and the rest of `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource: Vec<(String, String)>,
}

/// Why span export could not be set up (a warning at start; the spans are
/// then dropped and counted).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(
        "unsupported OTLP protocol {0:?} in OTEL_EXPORTER_OTLP_PROTOCOL (use http/protobuf or grpc)"
    )]
    Protocol(String),
    #[error("OTLP/HTTP endpoint {0:?} is not an http:// or https:// URL")]
    Endpoint(String),
    #[error("OTEL_EXPORTER_OTLP_HEADERS: {0:?} is not a valid header")]
    Header(String),
    #[error("TLS to the collector")]
    Tls(#[source] super::tls::TlsError),
    #[error("OTLP/gRPC endpoint")]
    Grpc(#[source] tonic::transport::Error),
    #[error("export thread")]
    Runtime(#[source] std::io::Error),
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Settings {
    /// Reads the settings from `var`. `None` when export is off: no
    /// endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT`),
    /// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
    pub fn from_vars(
        service: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TraceError> {
        let set = |k: &str| {
            var(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let traces_endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT");
        if traces_endpoint.is_none() && endpoint.is_none() {
            return Ok(None);
        }
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let protocol = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => return Err(TraceError::Protocol(other.to_owned())),
        };
        let endpoint = match (traces_endpoint, endpoint, protocol) {
            (Some(t), _, _) => t,
            (None, Some(e), Protocol::HttpProtobuf) => {
                format!("{}/v1/traces", e.trim_end_matches('/'))
            }
            (None, Some(e), Protocol::Grpc) => e,
            (None, None, _) => return Ok(None),
        };
        if protocol == Protocol::HttpProtobuf
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(TraceError::Endpoint(endpoint));
        }
        let timeout = set("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        let mut headers = pairs(set("OTEL_EXPORTER_OTLP_HEADERS").as_deref());
        for (k, v) in pairs(set("OTEL_EXPORTER_OTLP_TRACES_HEADERS").as_deref()) {
            headers.retain(|(old, _)| !old.eq_ignore_ascii_case(&k));
            headers.push((k, v));
        }
        Ok(Some(Self {
            protocol,
            endpoint,
            timeout,
            headers,
            limits: limits(&set),
            sampler: sampler(&set).unwrap_or_default(),
            resource: resource(service, &set),
        }))
    }

    /// What a process whose export is misconfigured still uses: its
    /// spans are sampled, queued and counted as dropped.
    pub(crate) fn fallback(service: &str, var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |k: &str| {
            var(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Self {
            protocol: Protocol::HttpProtobuf,
            endpoint: String::new(),
            timeout: DEFAULT_TIMEOUT,
            headers: Vec::new(),
            limits: limits(&set),
            sampler: sampler(&set).unwrap_or_default(),
            resource: resource(service, &set),
        }
    }
}

/// The sampler of `OTEL_TRACES_SAMPLER` / `..._ARG`.
pub(crate) fn sampler(
    set: &impl Fn(&str) -> Option<String>,
) -> Result<Sampler, super::sampler::UnknownSampler> {
    Sampler::from_env(
        set("OTEL_TRACES_SAMPLER").as_deref(),
        set("OTEL_TRACES_SAMPLER_ARG").as_deref(),
    )
}

fn limits(set: &impl Fn(&str) -> Option<String>) -> Limits {
    let num = |k: &str| {
        set(k)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
    };
    let d = Limits::default();
    Limits {
        max_queue: num("OTEL_BSP_MAX_QUEUE_SIZE").unwrap_or(d.max_queue),
        max_batch: num("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").unwrap_or(d.max_batch),
        delay: num("OTEL_BSP_SCHEDULE_DELAY")
            .map_or(d.delay, |ms| Duration::from_millis(ms as u64)),
    }
}

fn resource(service: &str, set: &impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let mut attrs = pairs(set("OTEL_RESOURCE_ATTRIBUTES").as_deref());
    let named = attrs
        .iter()
        .position(|(k, _)| k == "service.name")
        .map(|i| attrs.remove(i).1);
    let name = set("OTEL_SERVICE_NAME")
        .or(named)
        .unwrap_or_else(|| service.to_owned());
    let mut out = vec![("service.name".to_owned(), name)];
    if !attrs.iter().any(|(k, _)| k == "service.version") {
        out.push((
            "service.version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ));
    }
    for (k, v) in [
        ("telemetry.sdk.name", "agentry"),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ] {
        out.push((k.to_owned(), v.to_owned()));
    }
    out.extend(attrs);
    out
}

/// `key=value` pairs separated by commas, values percent-decoded (the
/// format of `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS`);
/// malformed entries are skipped.
fn pairs(list: Option<&str>) -> Vec<(String, String)> {
    let Some(list) = list else {
        return Vec::new();
    };
    list.split(',')
        .filter_map(|item| {
            let (k, v) = item.split_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            let v = percent_decode_str(v).decode_utf8().ok()?;
            (!k.is_empty()).then(|| (k.to_owned(), v.into_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<Settings>, TraceError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_vars("agentry-engine", |k| map.get(k).cloned())
    }

    const EP: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/");

    #[test]
    fn off_without_endpoint_or_when_disabled() {
        assert_eq!(settings(&[]).unwrap(), None);
        assert_eq!(
            settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]).unwrap(),
            None
        );
        assert_eq!(
            settings(&[EP, ("OTEL_SDK_DISABLED", "true")]).unwrap(),
            None
        );
        assert_eq!(
            settings(&[EP, ("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            None
        );
    }

    #[test]
    fn protocol_and_endpoint_follow_the_standard_variables() {
        let s = |vars: &[(&str, &str)]| settings(vars).unwrap().unwrap();
        let http = s(&[EP]);
        assert_eq!(http.protocol, Protocol::HttpProtobuf);
        assert_eq!(http.endpoint, "http://c:4318/v1/traces");
        let grpc = s(&[EP, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert_eq!(
            (grpc.protocol, grpc.endpoint.as_str()),
            (Protocol::Grpc, "http://c:4318/")
        );
        let t = s(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://c:4317/x"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);
        assert_eq!(t.endpoint, "https://c:4317/x");
        assert_eq!(
            s(&[
                EP,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ])
            .protocol,
            Protocol::Grpc
        );
        assert!(matches!(
            settings(&[EP, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
            Err(TraceError::Protocol(p)) if p == "http/json"
        ));
        assert!(matches!(
            settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318")]),
            Err(TraceError::Endpoint(_))
        ));
    }

    #[test]
    fn batching_timeout_headers_and_sampler() {
        let s = settings(&[
            EP,
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "junk"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=x%20y,bad"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "A=2"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            s.limits,
            Limits {
                max_queue: 64,
                max_batch: 512,
                delay: Duration::from_millis(100)
            }
        );
        assert_eq!(s.timeout, Duration::from_millis(2500));
        assert_eq!(
            s.headers,
            [("b".into(), "x y".into()), ("A".into(), "2".into())]
        );
        assert_eq!(s.sampler, Sampler::Ratio(0.5));
    }

    #[test]
    fn resource_names_the_service() {
        let res = |vars: &[(&str, &str)]| settings(vars).unwrap().unwrap().resource;
        let attr = |r: &[(String, String)], k: &str| {
            r.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
        };
        let r = res(&[EP]);
        assert_eq!(r[0], ("service.name".into(), "agentry-engine".into()));
        assert_eq!(
            attr(&r, "service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        let r = res(&[
            EP,
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=x,deployment.environment=prod",
            ),
        ]);
        assert_eq!(attr(&r, "service.name").as_deref(), Some("x"));
        assert_eq!(attr(&r, "deployment.environment").as_deref(), Some("prod"));
        let r = res(&[
            EP,
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=x"),
            ("OTEL_SERVICE_NAME", "y"),
        ]);
        assert_eq!(attr(&r, "service.name").as_deref(), Some("y"));
        assert_eq!(r.iter().filter(|(k, _)| k == "service.name").count(), 1);
    }
}
