//! An offline Open-Meteo: `GET /v1/search` (geocoding) and `GET /v1/forecast`
//! on one server, in Open-Meteo's JSON format, for tests and
//! `agentry up --offline`.
//!
//! Bundled places: Berlin, Paris, London, Tokyo, New York, San Francisco
//! (and Paris, Texas and London, Ontario for `countryCode`). Forecasts work
//! for any coordinates; weather is generated deterministically from the
//! place and the local hour, so two runs at the same (frozen) time agree.
//! `timezone=auto` resolves to the zone of the bundled city within about 2°
//! of the point (with its daylight-saving rule), else GMT.
//! Every response carries the header `x-agentry-fixture`, which the client
//! reports as `"fixture": true`. [`FixtureControl`] counts requests, logs
//! them and injects failures and delays.

mod cities;
mod control;
mod forecast;
mod geocoding;
mod synth;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use control::{FixtureControl, RecordedRequest};
pub use synth::Hour;

/// Response header that marks fixture answers.
pub const FIXTURE_HEADER: &str = "x-agentry-fixture";

/// Names of the bundled headline cities.
pub const BUNDLED_CITIES: [&str; 6] = [
    "Berlin",
    "Paris",
    "London",
    "Tokyo",
    "New York",
    "San Francisco",
];

/// The weather the fixture serves for the point at `latitude`,
/// `longitude` on `date` at local `hour` (0.0 to 24.0), metric: what a
/// client test compares the normalised output with.
pub fn weather_at(latitude: f64, longitude: f64, date: chrono::NaiveDate, hour: f64) -> Hour {
    synth::Site::at(latitude, longitude).0.at_time(date, hour)
}

/// Serves the fixture on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) -> io::Result<()> {
    serve_with(listener, shutdown, FixtureControl::new()).await
}

/// As [`serve`], steered by `control`.
pub async fn serve_with(
    listener: TcpListener,
    shutdown: CancellationToken,
    control: FixtureControl,
) -> io::Result<()> {
    let app = router(control, shutdown.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// The fixture's routes, for embedding in another server.
pub fn router(control: FixtureControl, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/v1/search", get(search))
        .route("/v1/forecast", get(forecast))
        .fallback(not_found)
        .with_state(AppState { control, shutdown })
}

/// A fixture running on `127.0.0.1:<free port>` in a background task; it
/// stops when dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    control: FixtureControl,
    shutdown: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Server {
    pub async fn start() -> io::Result<Self> {
        Self::start_with(FixtureControl::new()).await
    }

    pub async fn start_with(control: FixtureControl) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        // Owned by this handle: `stop` joins it, `Drop` cancels it. A serve
        // error ends the task with a warning; `stop` also returns it.
        let serving = serve_with(listener, shutdown.clone(), control.clone());
        let task = tokio::spawn(async move {
            let result = serving.await;
            if let Err(e) = &result {
                warn!(error = %e, "weather fixture stopped with an error");
            }
            result
        });
        Ok(Self {
            addr,
            control,
            shutdown,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: both base URLs of the weather client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn control(&self) -> &FixtureControl {
        &self.control
    }

    /// Stops serving and waits for in-flight requests to finish.
    pub async fn stop(mut self) -> io::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Clone)]
struct AppState {
    control: FixtureControl,
    shutdown: CancellationToken,
}

type Params = Vec<(String, String)>;

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn respond(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(FIXTURE_HEADER, HeaderValue::from_static("open-meteo"));
    response
}

/// Open-Meteo's error shape.
fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    respond(status, json!({"error": true, "reason": reason.into()}))
}

/// A request Open-Meteo would refuse with HTTP 400 and this reason.
#[derive(Debug)]
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

fn bad_request(reason: impl Into<String>) -> BadRequest {
    BadRequest(reason.into())
}

impl AppState {
    /// Counts the request and applies injected faults; `Some` is the answer
    /// to send instead of the real one.
    async fn admit(&self, path: &str, params: &Params) -> Option<Response> {
        let fault = self.control.admit(path, params);
        if let Some(delay) = fault.delay {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shutdown.cancelled() => {}
            }
        }
        let status = fault.fail_status?;
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        Some(error(
            status,
            format!("fixture: injected failure (HTTP {})", status.as_u16()),
        ))
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

async fn search(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    let started = Instant::now();
    if let Some(injected) = state.admit("/v1/search", &params).await {
        return injected;
    }
    match geocoding::body(&params, started) {
        Ok(body) => respond(StatusCode::OK, body),
        Err(bad) => bad.into_response(),
    }
}

async fn forecast(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    let started = Instant::now();
    if let Some(injected) = state.admit("/v1/forecast", &params).await {
        return injected;
    }
    match forecast::body(&state.control, &params, started) {
        Ok(body) => respond(StatusCode::OK, body),
        Err(bad) => bad.into_response(),
    }
}

fn elapsed_ms(started: Instant) -> Value {
    json!(started.elapsed().as_secs_f64() * 1000.0)
}
