//! The web console: server-rendered pages over NATS (KV watches, direct
//! gets) with live updates by server-sent events, mounted under
//! [`ROOT`] on the HTTP address of `agentry up`, or served alone by
//! `agentry console` against any NATS URL. Static assets are embedded.
//! Design and security notes: docs/console.md.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use async_nats::jetstream;
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

mod agents;
pub mod auth;
mod dag;
mod dlq;
mod events;
mod html;
mod queues;
mod runs;
mod submit;

/// Path every console page lives under.
pub const ROOT: &str = "/console";
/// Environment variable that fixes the token instead of a random one.
pub const TOKEN_ENV: &str = "AGENTRY_CONSOLE_TOKEN";

/// Shared state of the console's handlers.
#[derive(Clone)]
pub struct Console {
    js: jetstream::Context,
    auth: auth::Auth,
    /// The latest sample of the task queues (see [`queues::sampler`]).
    queues: tokio::sync::watch::Receiver<std::sync::Arc<queues::Snapshot>>,
}

impl Console {
    /// A console over `nats`; starts its queue sampler, so it must be
    /// called inside a Tokio runtime.
    pub fn new(nats: async_nats::Client, token: String) -> Self {
        let js = jetstream::new(nats.clone());
        Self {
            queues: queues::sampler(js.clone()),
            js,
            auth: auth::Auth::new(token),
        }
    }
}

/// The token from [`TOKEN_ENV`], or a fresh random one.
pub fn token_from_env() -> String {
    std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(auth::random_token)
}

/// Every console route, rooted at [`ROOT`], ready to merge into a router.
pub fn router(console: Console) -> Router {
    let guarded = Router::new()
        .route(
            "/",
            get(|| async { Redirect::to(&format!("{ROOT}/agents")) }),
        )
        .route("/agents", get(agents::page))
        .route("/agents/events", get(agents::events))
        .route("/queues", get(queues::page))
        .route("/queues/events", get(queues::events))
        .route("/submit", get(submit::index))
        .route("/submit/{capability}", get(submit::form).post(submit::post))
        .route("/results/{id}", get(submit::result))
        .route("/dlq", get(dlq::list))
        .route("/dlq/{seq}", get(dlq::show))
        .route("/dlq/{seq}/replay", axum::routing::post(dlq::replay))
        .route("/runs", get(runs::list))
        .route("/runs/start", axum::routing::post(runs::start))
        .route("/runs/{key}", get(runs::show))
        .route("/runs/{key}/signal", axum::routing::post(runs::signal))
        .route("/runs/{key}/cancel", axum::routing::post(runs::cancel))
        .route_layer(axum::middleware::from_fn_with_state(
            console.clone(),
            auth::require,
        ));
    let open = Router::new()
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/static/console.js", get(script))
        .route("/static/console.css", get(style));
    Router::new().nest(ROOT, guarded.merge(open).with_state(console))
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/console.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/console.css"),
    )
}

/// Serves the console alone on `addr` until `shutdown` (what `agentry
/// console` runs; tests call it in-process). Returns the bound address.
pub async fn spawn(
    console: Console,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(console).route("/", get(|| async { Redirect::to(ROOT) }));
    // Lives until shutdown; a listener failure is logged and ends the console only.
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "console server failed");
        }
    });
    Ok(local)
}

/// `agentry console`: serve the console for the system at `--nats-url`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve on (loopback unless you mean otherwise).
    #[arg(long, default_value = "127.0.0.1:9465")]
    pub listen: SocketAddr,
}

pub async fn run(cli: &crate::Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let shutdown = agentry::shutdown::on_signals();
    let nats = agentry::connect::connect(&cli.nats_config(), "agentry-console", None, &shutdown)
        .await
        .context("connecting to NATS")?;
    let token = token_from_env();
    let bound = spawn(
        Console::new(nats, token.clone()),
        args.listen,
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("binding --listen {}", args.listen))?;
    print_banner(bound, &token);
    shutdown.cancelled().await;
    Ok(ExitCode::SUCCESS)
}

/// The lines `up` and `console` print: where the console is and its token.
pub fn print_banner(bound: SocketAddr, token: &str) {
    println!("console       http://{bound}{ROOT}  token {token}");
    if !bound.ip().is_loopback() {
        eprintln!("warning: the console listens on {bound}, beyond this machine");
    }
}

/// Used by the handlers: the registry and other stores may be missing
/// while a system starts; pages say so instead of failing.
pub(crate) fn unavailable(what: &str, err: &dyn std::fmt::Display) -> String {
    format!(
        "<p class=\"error\">{} unavailable: {}</p>",
        html::esc(what),
        html::esc(&err.to_string())
    )
}
