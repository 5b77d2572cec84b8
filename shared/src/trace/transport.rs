//! Sending an encoded `ExportTraceServiceRequest` to the collector, on the
//! export thread: OTLP/HTTP (`POST .../v1/traces`, protobuf, through the
//! blocking client of [`super::tls`]) or OTLP/gRPC (tonic, the request's
//! bytes passed through as the message, on a single-threaded runtime the
//! thread owns, so the component's runtime does no export work).

use std::time::Duration;

use bytes::{Buf, BufMut};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::settings::{Protocol, Settings, TraceError};
use super::tls::TlsFiles;

/// The gRPC method of the OTLP trace service.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Why one export request failed (its spans are dropped and counted).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error("OTLP/HTTP request")]
    Http(#[source] reqwest::Error),
    #[error("the collector answered HTTP {0}")]
    Status(u16),
    #[error("OTLP/gRPC connection")]
    Channel(#[source] tonic::transport::Error),
    #[error("OTLP/gRPC export")]
    Grpc(#[source] tonic::Status),
    #[error("span export is misconfigured")]
    Unavailable,
}

/// Where and how batches go.
pub(crate) enum Transport {
    Http {
        client: reqwest::blocking::Client,
        url: String,
        headers: HeaderMap,
    },
    Grpc(Box<Grpc>),
    /// Misconfigured (warned at start): every batch is dropped and counted.
    Unavailable,
}

pub(crate) struct Grpc {
    runtime: tokio::runtime::Runtime,
    client: tonic::client::Grpc<Channel>,
    metadata: MetadataMap,
}

impl Transport {
    /// Builds the transport of `settings` with the TLS `files`. Runs on the
    /// export thread: the blocking HTTP client must not be built on a
    /// Tokio worker, and the gRPC channel lives on the thread's runtime.
    pub(crate) fn new(settings: &Settings, files: &TlsFiles) -> Result<Self, TraceError> {
        match settings.protocol {
            Protocol::HttpProtobuf => {
                let mut headers = HeaderMap::new();
                for (k, v) in &settings.headers {
                    let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) else {
                        return Err(TraceError::Header(k.clone()));
                    };
                    headers.insert(k, v);
                }
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                Ok(Transport::Http {
                    client: files.http(settings.timeout).map_err(TraceError::Tls)?,
                    url: settings.endpoint.clone(),
                    headers,
                })
            }
            Protocol::Grpc => {
                let mut metadata = MetadataMap::new();
                for (k, v) in &settings.headers {
                    let (Ok(key), Ok(value)) = (
                        MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()),
                        MetadataValue::try_from(v.as_str()),
                    ) else {
                        return Err(TraceError::Header(k.clone()));
                    };
                    metadata.insert(key, value);
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(TraceError::Runtime)?;
                // `grpcs://` is TLS too (tonic knows only `https://`).
                let endpoint = settings.endpoint.trim();
                let (uri, secure) = match endpoint.strip_prefix("grpcs://") {
                    Some(rest) => (format!("https://{rest}"), true),
                    None => (endpoint.to_owned(), endpoint.starts_with("https://")),
                };
                let mut ep = Endpoint::from_shared(uri)
                    .map_err(TraceError::Grpc)?
                    .timeout(settings.timeout)
                    .connect_timeout(settings.timeout.min(Duration::from_secs(5)));
                if secure {
                    ep = ep.tls_config(files.grpc()).map_err(TraceError::Grpc)?;
                }
                let channel = {
                    let _rt = runtime.enter();
                    ep.connect_lazy()
                };
                Ok(Transport::Grpc(Box::new(Grpc {
                    runtime,
                    client: tonic::client::Grpc::new(channel),
                    metadata,
                })))
            }
        }
    }

    /// Sends one encoded request.
    pub(crate) fn send(&mut self, body: Vec<u8>) -> Result<(), ExportError> {
        match self {
            Transport::Http {
                client,
                url,
                headers,
            } => {
                let resp = client
                    .post(url.as_str())
                    .headers(headers.clone())
                    .body(body)
                    .send()
                    .map_err(ExportError::Http)?;
                let status = resp.status();
                // Read the (small) answer so the connection is kept.
                let _ = resp.bytes();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(ExportError::Status(status.as_u16()))
                }
            }
            Transport::Grpc(g) => {
                let Grpc {
                    runtime,
                    client,
                    metadata,
                } = &mut **g;
                runtime.block_on(async {
                    client.ready().await.map_err(ExportError::Channel)?;
                    let mut req = tonic::Request::new(body);
                    *req.metadata_mut() = metadata.clone();
                    client
                        .unary(req, PathAndQuery::from_static(EXPORT_PATH), Raw)
                        .await
                        .map(|_| ())
                        .map_err(ExportError::Grpc)
                })
            }
            Transport::Unavailable => Err(ExportError::Unavailable),
        }
    }
}

/// The gRPC codec of an already encoded request: its bytes go out as the
/// message; the answer (an `ExportTraceServiceResponse`) is skipped.
#[derive(Clone, Copy, Debug, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}
