//! `agentry mcp`: a Model Context Protocol server (the official Rust SDK,
//! `rmcp`) over stdio or Streamable HTTP. Its tools are the live
//! capabilities and the stored workflows (`catalog`); a call is an ordinary
//! agentry request (`call`). Design: docs/mcp.md.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentry::subject::Tenant;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, SubscriptionFilter,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, ServiceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Cli;

mod call;
pub mod catalog;

use catalog::Catalog;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// JSON-RPC over stdin/stdout (desktop clients start the process).
    Stdio,
    /// Streamable HTTP on --listen, path /mcp.
    Http,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How clients reach the server.
    #[arg(
        long,
        value_enum,
        default_value = "stdio",
        env = "AGENTRY_MCP_TRANSPORT"
    )]
    pub transport: Transport,
    /// Address of the Streamable HTTP endpoint (with --transport http).
    #[arg(long, default_value = "127.0.0.1:8765", env = "AGENTRY_MCP_LISTEN")]
    pub listen: SocketAddr,
    /// Host names the HTTP endpoint accepts in `Host` (DNS rebinding guard);
    /// loopback names are always accepted.
    #[arg(
        long = "allow-host",
        env = "AGENTRY_MCP_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub allow_hosts: Vec<String>,
    /// Tenant the requests are made as (agentry.requests.<tenant>); the
    /// production NATS user `mcp` may use only `mcp`.
    #[arg(long, default_value = "mcp", env = "AGENTRY_MCP_TENANT")]
    pub tenant: Tenant,
    /// How long one tool call waits for its result.
    #[arg(long, default_value = "5m", value_parser = agentry::config::parse_duration, env = "AGENTRY_MCP_CALL_TIMEOUT")]
    pub call_timeout: Duration,
}

/// State shared by every session.
struct Shared {
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    tenant: Tenant,
    timeout: Duration,
    catalog: watch::Receiver<Arc<Catalog>>,
    /// Sessions on protocol versions before 2026-07-28, which get
    /// `notifications/tools/list_changed` unsolicited.
    peers: Mutex<Vec<Peer<RoleServer>>>,
}

/// The handler of one MCP session.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(
            Implementation::new("agentry", env!("CARGO_PKG_VERSION")).with_title("agentry"),
        )
        .with_instructions(
            "Each tool is a live agentry capability or a stored workflow (workflow_<name>). \
             Calls are durable requests: retries and the dead-letter queue apply. The tool \
             list follows the agents that are running.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self.shared.catalog.borrow().tools();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let target = self.shared.catalog.borrow().target(&request.name).cloned();
        let Some(target) = target else {
            let live = self.shared.catalog.borrow().names().join(", ");
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "no tool {} (no live agent serves it, or no such workflow); tools now: {live}",
                request.name
            ))])
            .into());
        };
        let progress = context
            .meta
            .get_progress_token()
            .or_else(|| request.meta.as_ref().and_then(|m| m.get_progress_token()));
        let input = serde_json::Value::Object(request.arguments.unwrap_or_default());
        let s = &self.shared;
        let result = call::run(
            call::Call {
                nats: &s.nats,
                js: &s.js,
                tenant: &s.tenant,
                timeout: s.timeout,
                peer: &context.peer,
                progress,
                cancel: &context.ct,
            },
            &target,
            input,
        )
        .await;
        Ok(result.into())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if let Ok(mut peers) = self.shared.peers.lock() {
            peers.push(context.peer);
        }
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        (requested.tools_list_changed == Some(true))
            .then(|| SubscriptionFilter::builder().tools_list_changed().build())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut catalog = self.shared.catalog.clone();
        catalog.mark_unchanged();
        loop {
            tokio::select! {
                _ = context.cancelled() => return Ok(()),
                changed = catalog.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if let Err(e) = context.sink().notify_tool_list_changed().await {
                        tracing::debug!(error = %e, "subscription closed");
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Sends `notifications/tools/list_changed` to the legacy sessions on every
/// catalog change, forgetting sessions that are gone.
fn announce_changes(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut catalog = shared.catalog.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = catalog.changed() => if changed.is_err() { return },
            }
            let peers: Vec<Peer<RoleServer>> = match shared.peers.lock() {
                Ok(p) => p.clone(),
                Err(_) => return,
            };
            let mut gone = Vec::new();
            for (i, peer) in peers.iter().enumerate() {
                if peer.is_transport_closed() || peer.notify_tool_list_changed().await.is_err() {
                    gone.push(i);
                }
            }
            if !gone.is_empty()
                && let Ok(mut p) = shared.peers.lock()
            {
                let mut i = 0;
                p.retain(|_| {
                    let keep = !gone.contains(&i);
                    i += 1;
                    keep
                });
            }
        }
    });
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let cfg = cli.nats_config();
    let nats = agentry::connect::connect(&cfg, "agentry-mcp", None, &shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let js = async_nats::jetstream::new(nats.clone());
    let catalog = catalog::follow(&js, shutdown.clone()).await?;
    let shared = Arc::new(Shared {
        nats,
        js,
        tenant: args.tenant.clone(),
        timeout: args.call_timeout,
        catalog,
        peers: Mutex::new(Vec::new()),
    });
    announce_changes(shared.clone(), shutdown.clone());
    let server = Server { shared };
    let result = match args.transport {
        Transport::Stdio => serve_stdio(server).await,
        Transport::Http => serve_http(server, args, shutdown.clone()).await,
    };
    shutdown.cancel();
    result.map(|()| ExitCode::SUCCESS)
}

async fn serve_stdio(server: Server) -> anyhow::Result<()> {
    tracing::info!("MCP server on stdio");
    let running = server.serve(rmcp::transport::stdio()).await?;
    tokio::select! {
        r = running.waiting() => { r?; }
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

async fn serve_http(
    server: Server,
    args: &Args,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(args.allow_hosts.iter().cloned());
    let mut config = StreamableHttpServerConfig::default().with_allowed_hosts(hosts);
    config.cancellation_token = shutdown.child_token();
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "MCP server on Streamable HTTP, path /mcp");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = shutdown.cancelled() => {}
            }
        })
        .await?;
    Ok(())
}
