//! `agentry up`: the whole system in one process tree.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentry::http::Observer;
use agentry::topology::{self, Settings, Topology};
use anyhow::Context as _;

use crate::Cli;
use crate::context::{self, Context};
use crate::nats_child::{self, NatsServer};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port for the private nats-server (default: a free one).
    #[arg(long)]
    pub nats_port: Option<u16>,
    /// State directory (server store, logs, context).
    #[arg(long, default_value = context::DIR)]
    pub dir: PathBuf,
    /// Address serving /health, /ready and /metrics for every component.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub http_addr: String,
    /// Agent kinds to run (`all`, or a comma-separated list).
    #[arg(long, default_value = "all")]
    pub agents: String,
    /// Serve the weather agent from a bundled local fixture instead of Open-Meteo.
    #[arg(long)]
    pub offline: bool,
    /// Redis URL for rate limiting, memory and caches (optional).
    #[arg(id = "up_redis_url", long = "redis-url", env = "AGENTRY_REDIS_URL")]
    pub redis_url: Option<String>,
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten, next_help_heading = "Built-in agents")]
    pub builtin: agentry_agent::Settings,
}

/// How long each shutdown stage (agents; engine and monitor) may take.
const STAGE_GRACE: Duration = Duration::from_secs(45);

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let shutdown = agentry::shutdown::on_signals();
    // Runs while the server starts; its answer is printed before "ready".
    let weather_check = (!args.offline && runs(&args.agents, "weather")).then(|| {
        let cfg = args.builtin.weather_config();
        tokio::spawn(async move {
            let urls = [
                cfg.forecast_base_url.as_str(),
                cfg.geocoding_base_url.as_str(),
            ];
            crate::weather_dns::unresolved(&urls, Duration::from_secs(3)).await
        })
    });
    let mut nats_cfg = cli.nats.clone();
    let mut server: Option<NatsServer> = None;
    if nats_cfg.url.is_none() {
        let bin = nats_child::find_binary()?;
        let dir = args.dir.join("nats");
        let s = tokio::task::spawn_blocking({
            let dir = dir.clone();
            let port = args.nats_port;
            move || {
                NatsServer::start_with(
                    bin,
                    nats_child::Options {
                        port,
                        dir,
                        ..Default::default()
                    },
                )
            }
        })
        .await??;
        println!(
            "nats-server   {} (store {}, log {})",
            s.url,
            s.dir.join("jetstream").display(),
            s.log.display()
        );
        nats_cfg.url = Some(s.url.clone());
        server = Some(s);
    }
    let url = nats_cfg.resolved_url();
    let client = agentry::connect::connect(&nats_cfg, "agentry-up", None, &shutdown)
        .await
        .context("connecting to NATS")?;
    let js = async_nats::jetstream::new(client.clone());
    let report = topology::ensure(&js, &Topology::new(&args.settings)).await?;
    crate::setup::print_report(&report, false);
    crate::workflow::print_examples(crate::workflow::load_examples(&js).await);

    let obs = Observer::new();
    obs.add_nats("nats", client.clone());
    let http: std::net::SocketAddr = args.http_addr.parse().context("--http-addr")?;
    let console_token = crate::console::token_from_env();
    let console = crate::console::router(crate::console::Console::new(
        client.clone(),
        console_token.clone(),
    ));
    let bound = obs
        .clone()
        .spawn_with(http, console, shutdown.clone())
        .await
        .context("binding --http-addr")?;
    context::write(
        &args.dir,
        &Context {
            nats_url: url.clone(),
            http_addr: Some(bound.to_string()),
            monitoring_url: server.as_ref().and_then(|s| s.monitoring_url.clone()),
            pid: Some(std::process::id()),
        },
    )?;

    let fixture = if args.offline {
        let f = agentry_weather_fixture::Server::start()
            .await
            .context("starting the weather fixture")?;
        println!(
            "weather       OFFLINE: bundled Open-Meteo fixture at {} (results say \"fixture\": true)",
            f.base_url()
        );
        Some(f)
    } else {
        None
    };
    let fixture_url = fixture.as_ref().map(|f| f.base_url());
    if runs(&args.agents, "assistant") {
        match args.builtin.assistant_config() {
            Some(cfg) => println!(
                "assistant     LLM {} (model {})",
                cfg.base_url,
                cfg.model
                    .as_deref()
                    .unwrap_or("per task: AGENTRY_LLM_MODEL is not set")
            ),
            None => println!(
                "assistant     off: AGENTRY_LLM_BASE_URL is not set (any OpenAI-compatible endpoint)"
            ),
        }
    }
    let running =
        crate::components::start(&obs, &nats_cfg, args, &shutdown, fixture_url.as_deref()).await?;
    if let Some(check) = weather_check
        && let Ok(bad) = check.await
        && !bad.is_empty()
    {
        eprintln!("{}", crate::weather_dns::warning(&bad));
    }

    println!("http          http://{bound}/health  /ready  /metrics");
    crate::console::print_banner(bound, &console_token);
    println!(
        "context       {} (other agentry commands use it)",
        context::path(&args.dir).display()
    );
    println!("try           agentry submit echo --input '{{\"message\":\"hello\"}}'");
    println!("ready; Ctrl-C stops everything");

    shutdown.cancelled().await;
    // Ordered: agents drain, then engine and monitor, then our own
    // connection, and the server last, so nothing sees it go away.
    let stopped = running.stop(STAGE_GRACE).await;
    if !stopped.agents {
        eprintln!("warning: agents did not stop within {STAGE_GRACE:?}");
    }
    if !stopped.core {
        eprintln!("warning: engine or monitor did not stop within {STAGE_GRACE:?}");
    }
    let drained = stopped.agents && stopped.core;
    drop(obs);
    // Closes the connection even while the HTTP observer still holds a clone.
    client.drain().await.ok();
    let closing = Instant::now();
    while client.connection_state() == async_nats::connection::State::Connected
        && closing.elapsed() < Duration::from_secs(2)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(client);
    context::remove(&args.dir);
    if let Some(f) = fixture {
        f.stop().await.ok();
    }
    if let Some(mut s) = server {
        println!("stopping      nats-server");
        tokio::task::spawn_blocking(move || s.stop()).await.ok();
    }
    println!("stopped");
    Ok(if drained {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Whether the agent list includes `kind`.
fn runs(agents: &str, kind: &str) -> bool {
    agentry_agent::select(agents).is_ok_and(|kinds| kinds.iter().any(|k| k == kind))
}
