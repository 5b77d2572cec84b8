//! A small OTLP trace receiver for tests: `POST /v1/traces` with an
//! `ExportTraceServiceRequest` in protobuf (what the components' exporter
//! sends with `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`), and the OTLP
//! gRPC `TraceService` on a second port (`grpc`), decoded with
//! `opentelemetry-proto` and kept in memory for assertions.
//! [`OtlpReceiver::start_tls`] serves both over TLS and asks for a client
//! certificate of the same CA (mutual TLS; certificates of
//! [`crate::Certs`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;
use tokio_util::sync::CancellationToken;

/// One received span, flattened for assertions (ids as lower-case hex).
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// `service.name` of the exporting process's resource.
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP `SpanKind` (1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    pub attributes: HashMap<String, String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// OTLP status code (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    /// OTLP `Span.flags`: bit 0x100 says whether the parent's remoteness
    /// is known, bit 0x200 that the parent is remote (in another process).
    pub flags: u32,
}

impl ReceivedSpan {
    /// `Some(true)` when the exporter marked the parent remote, `Some(false)`
    /// local, `None` when it did not say.
    pub fn remote_parent(&self) -> Option<bool> {
        (self.flags & 0x100 != 0).then_some(self.flags & 0x200 != 0)
    }
}

impl ReceivedSpan {
    /// The attribute `key` as text (`""` when absent).
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map(String::as_str).unwrap_or("")
    }
}

#[derive(Clone, Default)]
struct Store {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    requests: Arc<Mutex<usize>>,
}

/// The receiver; stops when dropped.
pub struct OtlpReceiver {
    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://127.0.0.1:<port>`).
    pub endpoint: String,
    /// The same with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`.
    pub grpc_endpoint: String,
    store: Store,
    stop: CancellationToken,
}

impl OtlpReceiver {
    /// Binds a free loopback port and serves until dropped.
    pub async fn start() -> Self {
        Self::serve(None).await
    }

    /// The same over TLS (`https://` endpoints): the server certificate
    /// `server.pem` of the CA in `dir` (`nats/certs/gen-dev-certs.sh`,
    /// SAN 127.0.0.1), and clients must present a certificate of that CA.
    pub async fn start_tls(dir: &Path) -> Self {
        Self::serve(Some(dir)).await
    }

    async fn serve(tls: Option<&Path>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind OTLP receiver");
        let addr = listener.local_addr().expect("receiver address");
        let store = Store::default();
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(store.clone());
        let stop = CancellationToken::new();
        let s = stop.clone();
        match tls {
            None => {
                tokio::spawn(async move {
                    // Serving stops with the test; an error here shows up as missing spans.
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move { s.cancelled().await })
                        .await;
                });
            }
            Some(dir) => {
                let acceptor = tls_acceptor(dir);
                tokio::spawn(serve_tls(listener, acceptor, app, s));
            }
        }
        let grpc_addr: std::net::SocketAddr = format!("127.0.0.1:{}", crate::free_port())
            .parse()
            .expect("loopback address");
        let (s, grpc) = (stop.clone(), GrpcSink(store.clone()));
        let mut server = tonic::transport::Server::builder();
        if let Some(dir) = tls {
            let read = |f: &str| std::fs::read(dir.join(f)).expect("certificate file");
            let config = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(
                    read("server.pem"),
                    read("server-key.pem"),
                ))
                .client_ca_root(tonic::transport::Certificate::from_pem(read("ca.pem")));
            server = server.tls_config(config).expect("gRPC TLS config");
        }
        tokio::spawn(async move {
            let _ = server
                .add_service(TraceServiceServer::new(grpc))
                .serve_with_shutdown(grpc_addr, async move { s.cancelled().await })
                .await;
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        Self {
            endpoint: format!("{scheme}://{addr}"),
            grpc_endpoint: format!("{scheme}://{grpc_addr}"),
            store,
            stop,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store
            .spans
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The spans of trace `trace_id` (hex).
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }

    /// How many export requests arrived.
    pub fn requests(&self) -> usize {
        self.store.requests.lock().map(|n| *n).unwrap_or(0)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The OTLP/gRPC side: the collector's `TraceService`.
struct GrpcSink(Store);

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        keep(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn export(State(store): State<Store>, body: Bytes) -> impl IntoResponse {
    let req = match ExportTraceServiceRequest::decode(body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    keep(&store, req);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// Flattens and stores the spans of one export request.
fn keep(store: &Store, req: ExportTraceServiceRequest) {
    let mut received = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    flags: s.flags,
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                kv.value.as_ref().map(text).unwrap_or_default(),
                            )
                        })
                        .collect(),
                    start_unix_nano: s.start_time_unix_nano,
                    end_unix_nano: s.end_time_unix_nano,
                    status_code: s.status.map(|st| st.code).unwrap_or(0),
                });
            }
        }
    }
    if let Ok(mut spans) = store.spans.lock() {
        spans.extend(received);
    }
    if let Ok(mut n) = store.requests.lock() {
        *n += 1;
    }
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The HTTP side's TLS: `server.pem` of the CA in `dir`, client
/// certificates of that CA required.
fn tls_acceptor(dir: &Path) -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use tokio_rustls::rustls::{self, RootCertStore, server::WebPkiClientVerifier};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<_> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .expect("server.pem")
        .collect::<Result<_, _>>()
        .expect("server certificate");
    let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).expect("server key");
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("ca.pem") {
        roots.add(ca.expect("CA certificate")).expect("CA accepted");
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("client verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .expect("server TLS config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Serves `app` over TLS until `stop`; a failed handshake drops that connection.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    stop: CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    loop {
        let tcp = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
