//! A table-diff from another Rust program, through the `ace` crate.
//!
//! It loads `ace.yaml` and `pg_service.conf` the way `ace-admin` does,
//! connects to every node of a cluster with ACE's own credentials, compares
//! one table and prints the summary; when the nodes differ it writes the
//! diff file (upstream's format) into the working directory.
//!
//! ```text
//! cargo run --example table_diff -- [--config ACE_YAML] [--service-file PG_SERVICE_CONF] \
//!     [CLUSTER] SCHEMA.TABLE
//! ```
//!
//! Without the options, `ACE_CONFIG` (else `./ace.yaml`) and the usual
//! service-file search (`ACE_PGSERVICEFILE`, `PGSERVICEFILE`,
//! `./pg_service.conf`, ...) apply; without CLUSTER, `default_cluster`.
//! Against the demo:
//!
//! ```text
//! cargo run -p ace-admin -- demo --keep --dir /tmp/ace-demo
//! cargo run --example table_diff -- --config /tmp/ace-demo/ace.yaml \
//!     --service-file /tmp/ace-demo/pg_service.conf demo public.accounts
//! /tmp/ace-demo/stop.sh
//! ```
//!
//! Exit status: 0 when the table matches on every node, 2 when it differs,
//! 1 on an error.

use std::path::PathBuf;
use std::process::ExitCode;

use ace::config::{AceConfig, ConfigSource, ServiceFile, resolve_cluster};
use ace::engine::{Progress, TableDiffOptions, parse_qualified_name, table_diff};
use ace::session::{ClusterSession, SessionSettings};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the command line named.
struct Args {
    config: Option<PathBuf>,
    service_file: Option<PathBuf>,
    cluster: Option<String>,
    table: String,
}

const USAGE: &str = "usage: table_diff [--config ACE_YAML] [--service-file PG_SERVICE_CONF] \
                     [CLUSTER] SCHEMA.TABLE";

/// The arguments, or `None` for `--help`.
fn parse_args() -> Result<Option<Args>, Error> {
    let usage = USAGE;
    let mut config = None;
    let mut service_file = None;
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(args.next().ok_or(usage)?)),
            "--service-file" => service_file = Some(PathBuf::from(args.next().ok_or(usage)?)),
            "-h" | "--help" => return Ok(None),
            _ => positional.push(arg),
        }
    }
    let (cluster, table) = match positional.as_slice() {
        [table] => (None, table.clone()),
        [cluster, table] => (Some(cluster.clone()), table.clone()),
        _ => return Err(usage.into()),
    };
    Ok(Some(Args {
        config,
        service_file,
        cluster,
        table,
    }))
}

async fn run(args: Args) -> Result<bool, Error> {
    // The same sources, in the same order, as ace-admin and ace-server.
    let mut source = ConfigSource::new();
    if let Some(path) = &args.config {
        source = source.with_path(path);
    }
    let config = AceConfig::load(&source)?;
    let service = match &args.service_file {
        Some(path) => ServiceFile::load(path)?,
        None => ServiceFile::discover()?,
    };
    let cluster = resolve_cluster(&config, &service, args.cluster.as_deref())?;

    // ACE's own credentials (password or its client certificate), with the
    // session settings pinned so equal rows hash equally on every node.
    let nodes: Vec<_> = cluster.nodes.iter().collect();
    let sessions = ClusterSession::connect(&nodes, &SessionSettings::from_config(&config)).await?;

    let (schema, table) = parse_qualified_name(&args.table)?;
    let mut options = TableDiffOptions::new(&schema, &table);
    options.block_size = config.table_diff.diff_block_size;
    options.compare_unit_size = config.table_diff.compare_unit_size;
    options.concurrency_factor = config.table_diff.concurrency_factor;
    options.max_diff_rows = config.table_diff.max_diff_rows;

    let progress = Progress::new();
    let result = table_diff(&sessions, &options, &progress).await;
    sessions.close().await;
    let report = result?;

    print!("{}", report.human_summary());
    if report.matches() {
        return Ok(true);
    }
    let path = report.write_json(&std::env::current_dir()?, "diffs")?;
    println!("diff file: {}", path.display());
    Ok(false)
}

#[tokio::main]
async fn main() -> ExitCode {
    // One TLS crypto provider per process (ACE uses ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome = match parse_args() {
        Ok(Some(args)) => run(args).await,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(error) => {
            eprintln!("table_diff: {error}");
            ExitCode::FAILURE
        }
    }
}
