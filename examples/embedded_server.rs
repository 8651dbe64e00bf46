//! The ACE API server inside another tokio program.
//!
//! The host program owns the runtime, the listener and the shutdown: it
//! builds the server from `ace.yaml` and `pg_service.conf`, runs
//! [`ace::http::serve`] as one task among its own, reloads the client
//! policy (certificates, CRL, allowlist) on `SIGHUP`, and on Ctrl-C or
//! `SIGTERM` stops it gracefully. Here the host's own work is a task that
//! reports, once a minute, how many API tasks the shared task store holds.
//!
//! ```text
//! cargo run --example embedded_server -- [ACE_YAML [PG_SERVICE_CONF]]
//! ```
//!
//! Without arguments, `ACE_CONFIG` (else `./ace.yaml`) and the usual
//! service-file search apply. Against the demo's files (stop the demo's own
//! API server first, or change `server.listen_port`):
//!
//! ```text
//! cargo run --example embedded_server -- /tmp/ace-demo/ace.yaml /tmp/ace-demo/pg_service.conf
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ace::config::{AceConfig, ConfigSource, ServiceFile};
use ace::http::{Server, policy_settings, reload_policy, serve};
use ace::pki::PolicyHandle;
use ace::tasks::{Page, TaskFilter, TaskStore};
use tokio::signal::unix::{SignalKind, signal};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1).map(PathBuf::from);
    let source = match args.next() {
        Some(path) => ConfigSource::new().with_path(path),
        None => ConfigSource::new(),
    };
    let config = AceConfig::load(&source)?;
    let service = match args.next() {
        Some(path) => ServiceFile::load(path)?,
        None => ServiceFile::discover()?,
    };

    // The pieces `ace-server` builds: the client policy behind a handle
    // that can be swapped, and the task store (tasks an earlier run left
    // unfinished are recorded as interrupted).
    let policy = Arc::new(PolicyHandle::load(&policy_settings(&config)?)?);
    let store = TaskStore::open(config.taskstore_path()).await?;
    store.recover_interrupted().await?;
    let address = format!(
        "{}:{}",
        config.server.listen_address, config.server.listen_port
    );
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("ACE API on https://{}", listener.local_addr()?);

    // SIGHUP: reload ace.yaml and swap the client policy for new
    // connections (a failed reload keeps the one in force).
    let reload = Arc::clone(&policy);
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let outcome = AceConfig::load(&source)
                .map_err(Error::from)
                .and_then(|config| reload_policy(&reload, &config).map_err(Error::from));
            match outcome {
                Ok(_) => println!("client policy reloaded"),
                Err(error) => eprintln!("reload failed, policy unchanged: {error}"),
            }
        }
    });

    // The host program's own work, sharing the task store.
    let watched = store.clone();
    let host_work = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match watched
                .list(&TaskFilter::default(), Page::first(Page::DEFAULT_LIMIT))
                .await
            {
                Ok(tasks) => println!("{} recent API task(s) in the store", tasks.len()),
                Err(error) => eprintln!("task store: {error}"),
            }
        }
    });

    // Serve until Ctrl-C or SIGTERM; `serve` then finishes open requests
    // and records tasks still running as interrupted.
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        println!("stopping");
    };
    serve(
        listener,
        Server::new(config, service, policy, store),
        shutdown,
    )
    .await?;
    host_work.abort();
    Ok(())
}
