//! The exporters' transport to the collector: TLS from the standard
//! variables and the HTTP client of the OTLP/HTTP exporter.
//!
//! `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE` names a PEM file of the CA(s)
//! that sign the collector's certificate (it then replaces the built-in
//! webpki roots); `..._CLIENT_CERTIFICATE` and `..._CLIENT_KEY` name the
//! PEM certificate chain and key this component presents (mutual TLS).
//! The files are read once, at start. They apply to `https://` endpoints
//! (OTLP/HTTP) and to `https://` or `grpcs://` ones (OTLP/gRPC); a plain
//! `http://` endpoint is plaintext (h2c for gRPC).
//!
//! OTLP/HTTP goes through a blocking `reqwest` client (rustls, ring) that
//! runs on the export thread, so it never touches the component's Tokio
//! runtime.

use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Why the TLS files or the HTTP client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {var}={}", path.display())]
    Read {
        var: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{set} is set but {missing} is not (mutual TLS needs both)")]
    HalfIdentity {
        set: &'static str,
        missing: &'static str,
    },
    #[error("OTLP/HTTP client (check the PEM files)")]
    Client(#[source] reqwest::Error),
}

/// The PEM contents named by the TLS variables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates the collector's certificate must chain to.
    pub ca: Option<Vec<u8>>,
    /// This component's certificate chain and key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

const CA: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
];
const CERT: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
];
const KEY: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
];

impl TlsFiles {
    /// Reads the files the variables name (the traces-specific variable
    /// first); a named file that cannot be read, or a client certificate
    /// without its key, is an error.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, TlsError> {
        let read = |names: [&'static str; 2]| -> Result<Option<(&'static str, Vec<u8>)>, TlsError> {
            let Some((name, path)) = names.iter().find_map(|n| {
                var(n)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (*n, PathBuf::from(v.trim())))
            }) else {
                return Ok(None);
            };
            std::fs::read(&path)
                .map(|pem| Some((name, pem)))
                .map_err(|source| TlsError::Read {
                    var: name,
                    path,
                    source,
                })
        };
        let ca = read(CA)?.map(|(_, pem)| pem);
        let identity = match (read(CERT)?, read(KEY)?) {
            (Some((_, cert)), Some((_, key))) => Some((cert, key)),
            (None, None) => None,
            (Some((set, _)), None) => {
                return Err(TlsError::HalfIdentity {
                    set,
                    missing: KEY[1],
                });
            }
            (None, Some((set, _))) => {
                return Err(TlsError::HalfIdentity {
                    set,
                    missing: CERT[1],
                });
            }
        };
        Ok(Self { ca, identity })
    }

    /// The gRPC channel's TLS: the CA file, else the webpki roots; the
    /// client identity when given. The host name comes from the endpoint.
    pub(crate) fn grpc(&self) -> ClientTlsConfig {
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
            None => tls.with_webpki_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        tls
    }

    /// The OTLP/HTTP client with these files and the request `timeout`.
    /// A blocking client: build (and drop) it off the Tokio runtime, on
    /// the export thread.
    pub(crate) fn http(&self, timeout: Duration) -> Result<reqwest::blocking::Client, TlsError> {
        let mut b = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .use_rustls_tls();
        if let Some(ca) = &self.ca {
            b = b.tls_built_in_root_certs(false);
            for cert in reqwest::Certificate::from_pem_bundle(ca).map_err(TlsError::Client)? {
                b = b.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &self.identity {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            b = b.identity(reqwest::Identity::from_pem(&pem).map_err(TlsError::Client)?);
        }
        b.build().map_err(TlsError::Client)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn files(vars: &[(&str, &str)]) -> Result<TlsFiles, TlsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TlsFiles::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_the_named_files_traces_variable_first() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
        std::fs::write(&a, "A").unwrap();
        std::fs::write(&b, "B").unwrap();
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        assert_eq!(files(&[]).unwrap(), TlsFiles::default());
        let f = files(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", a),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", b),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", a),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", b),
        ])
        .unwrap();
        assert_eq!(f.ca.as_deref(), Some(&b"B"[..]));
        assert_eq!(f.identity, Some((b"A".to_vec(), b"B".to_vec())));
    }

    #[test]
    fn a_missing_file_or_half_an_identity_is_an_error() {
        assert!(matches!(
            files(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem")]),
            Err(TlsError::Read {
                var: "OTEL_EXPORTER_OTLP_CERTIFICATE",
                ..
            })
        ));
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("c.pem");
        std::fs::write(&a, "C").unwrap();
        assert!(matches!(
            files(&[("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", a.to_str().unwrap())]),
            Err(TlsError::HalfIdentity {
                missing: "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                ..
            })
        ));
    }
}
