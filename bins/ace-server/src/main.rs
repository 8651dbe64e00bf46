//! `ace-server`: the ACE HTTPS API server.
//!
//! Thin: parses arguments, loads `ace.yaml`, starts tracing, installs the
//! ring crypto provider, opens the task store (failing tasks a previous
//! run left unfinished), binds `server.listen_address:listen_port` and
//! hands over to [`ace_http::serve`]. `SIGHUP` reloads the client policy
//! from `ace.yaml`; `SIGTERM` and `SIGINT` stop it gracefully (exit 0).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ace_config::{AceConfig, ConfigSource, ServiceFile};
use ace_pki::PolicyHandle;
use ace_tasks::TaskStore;
use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// The ACE HTTPS API server (mutual TLS; the client certificate CN is the
/// PostgreSQL role tasks run as).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// ace.yaml to load (default: $ACE_CONFIG, else ./ace.yaml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// More logging: -v for debug, -vv for trace. RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.verbose);
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        warn!("a rustls crypto provider was already installed");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!("{error:#}");
            eprintln!("ace-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal, never into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn config_source(args: &Args) -> ConfigSource {
    match &args.config {
        Some(path) => ConfigSource::new().with_path(path),
        None => ConfigSource::new(),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let source = config_source(&args);
    let config = AceConfig::load(&source).context("loading ace.yaml")?;
    let service = ServiceFile::discover().context("finding pg_service.conf")?;
    let policy = Arc::new(
        PolicyHandle::load(&ace_http::policy_settings(&config)?)
            .context("loading the TLS policy")?,
    );
    let store = TaskStore::open(config.taskstore_path())
        .await
        .context("opening the task store")?;
    let interrupted = store.recover_interrupted().await?;
    if !interrupted.is_empty() {
        info!(
            count = interrupted.len(),
            "tasks left by a previous run recorded as interrupted"
        );
    }
    let address = format!(
        "{}:{}",
        config.server.listen_address, config.server.listen_port
    );
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("binding {address}"))?;

    // SIGHUP: reload ace.yaml and rebuild the client policy for new
    // connections; a reload that fails keeps the current policy.
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let reload_handle = Arc::clone(&policy);
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            info!("SIGHUP: reloading the client policy");
            match AceConfig::load(&source) {
                Ok(config) => {
                    if let Err(error) = ace_http::reload_policy(&reload_handle, &config) {
                        error!(%error, "reload failed; the current policy stays in force");
                    }
                }
                Err(error) => {
                    error!(%error, "ace.yaml does not load; the current policy stays in force");
                }
            }
        }
    });

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => info!("SIGTERM received"),
            _ = interrupt.recv() => info!("SIGINT received"),
        }
    };
    let server = ace_http::Server::new(config, service, policy, store);
    ace_http::serve(listener, server, shutdown).await?;
    Ok(())
}
