//! `ace-admin table-diff` and `ace-admin table-rerun`: the engine, run
//! locally as ACE's own database user.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ace_config::{AceConfig, Cluster, ConfigSource, NodeSelection, ServiceFile, resolve_cluster};
use ace_engine::{
    DiffFile, DiffReport, Progress, TableDiffOptions, parse_qualified_name, table_diff, table_rerun,
};
use ace_session::{ClusterSession, SessionSettings};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

/// Where ACE's configuration comes from (shared by the engine commands).
#[derive(Debug, Args)]
pub struct Sources {
    /// ace.yaml to use (else $ACE_CONFIG, else ./ace.yaml).
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// pg_service.conf to use (else $ACE_PGSERVICEFILE, $PGSERVICEFILE,
    /// ./pg_service.conf, ~/.pg_service.conf, /etc/pg_service.conf).
    #[arg(long, value_name = "PATH")]
    pub(crate) service_file: Option<PathBuf>,
    /// Database name, overriding the service file's dbname on every node.
    #[arg(short = 'd', long)]
    pub(crate) dbname: Option<String>,
    /// Nodes to compare: `all` or a comma list such as `n1,n3` (default
    /// all).
    #[arg(short = 'n', long)]
    pub(crate) nodes: Option<String>,
    /// Show no progress bar.
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The JSON diff file only.
    Json,
    /// The JSON diff file and an HTML rendering beside it.
    Html,
}

/// Compare a table across the nodes of a cluster.
///
/// Exit status: 0 when the tables match, 2 when they differ (a diff file is
/// written), 1 on any error.
#[derive(Debug, Args)]
#[command(override_usage = "ace-admin table-diff [OPTIONS] [CLUSTER] SCHEMA.TABLE")]
pub struct TableDiffArgs {
    /// `[CLUSTER] SCHEMA.TABLE`: the cluster (a section of pg_service.conf;
    /// default_cluster when omitted) and one table (a bare TABLE is
    /// public.TABLE; unquoted names fold to lower case, so quote mixed-case
    /// ones: '"My Schema"."Order Items"').
    #[arg(value_name = "TARGET", num_args = 1..=2, required = true)]
    targets: Vec<String>,
    #[command(flatten)]
    sources: Sources,
    /// Rows per hashed block (default table_diff.diff_block_size).
    #[arg(short = 'b', long)]
    block_size: Option<u64>,
    /// Allow a block size outside table_diff.min/max_diff_block_size.
    #[arg(short = 'B', long)]
    override_block_size: bool,
    /// Parallel scans per node as a multiple of the CPUs, in (0, 4].
    #[arg(short = 'c', long, allow_negative_numbers = true)]
    concurrency_factor: Option<f64>,
    /// Largest block compared row by row (default table_diff.compare_unit_size).
    #[arg(short = 'u', long)]
    compare_unit_size: Option<u64>,
    /// Most differing rows reported per node pair (0 = no limit).
    #[arg(long)]
    max_diff_rows: Option<u64>,
    /// Connections per node (0 = derived from the concurrency factor).
    #[arg(short = 'M', long)]
    max_connections: Option<u32>,
    /// Only rows matching this expression over the table's columns, e.g.
    /// "region = 'eu' AND id > 1000" (no subqueries or other functions).
    #[arg(short = 'F', long)]
    table_filter: Option<String>,
    /// Report format.
    #[arg(short = 'o', long, value_enum, default_value = "json")]
    output: Output,
    /// Where to write the diff file (created when missing).
    #[arg(long, default_value = ".")]
    output_dir: PathBuf,
}

/// Re-check the rows of a diff file and report those that still differ.
///
/// Exit status: 0 when every difference is resolved, 2 when some remain
/// (a rerun diff file is written), 1 on any error.
#[derive(Debug, Args)]
#[command(mut_arg("nodes", |arg| arg.help(
    "Nodes to re-check: `all` or a comma list such as `n1,n3` (default: the diff file's nodes)"
)))]
pub struct TableRerunArgs {
    /// Cluster name; default_cluster if omitted.
    #[arg(value_name = "CLUSTER")]
    cluster: Option<String>,
    /// The diff file from table-diff (this tool's or upstream ACE's).
    #[arg(short = 'f', long)]
    diff_file: PathBuf,
    #[command(flatten)]
    sources: Sources,
    /// Where to write the rerun diff file (created when missing).
    #[arg(long, default_value = ".")]
    output_dir: PathBuf,
}

/// Runs `ace-admin table-diff`.
///
/// # Errors
///
/// Configuration, connection and engine errors, each naming what is wrong.
pub fn run_table_diff(args: TableDiffArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.sources)?;
    let (cluster_name, table) = match args.targets.as_slice() {
        [table] => (None, table.as_str()),
        [cluster, table] => (Some(cluster.as_str()), table.as_str()),
        _ => bail!("expected [CLUSTER] SCHEMA.TABLE"),
    };
    let (schema, table) = parse_qualified_name(table)?;
    prepare_output_dir(&args.output_dir)?;
    let diff = &config.table_diff;
    let block_size = args.block_size.unwrap_or(diff.diff_block_size);
    diff.check_block_size(block_size, args.override_block_size, "--block-size")?;
    let mut options = TableDiffOptions::new(&schema, &table);
    options.block_size = block_size;
    options.concurrency_factor = args.concurrency_factor.unwrap_or(diff.concurrency_factor);
    options.compare_unit_size = args.compare_unit_size.unwrap_or(diff.compare_unit_size);
    options.max_diff_rows = args.max_diff_rows.unwrap_or(diff.max_diff_rows);
    options.table_filter = args.table_filter.clone();

    let mut settings = SessionSettings::from_config(&config);
    if let Some(max) = args.max_connections.filter(|m| *m > 0) {
        settings.max_connections = max;
    }
    let cluster = load_cluster(&config, &args.sources, cluster_name)?;
    let quiet = args.sources.quiet;
    runtime()?.block_on(async move {
        let sessions = connect(&cluster, &args.sources, &settings).await?;
        let progress = Progress::new();
        let bar = progress_bar(progress.clone(), quiet);
        let result = interruptible(table_diff(&sessions, &options, &progress)).await;
        finish_bar(bar).await;
        sessions.close().await;
        let report = result?;
        finish(&report, &args.output_dir, "diffs", args.output)
    })
}

/// Runs `ace-admin table-rerun`.
///
/// # Errors
///
/// Configuration, diff-file, connection and engine errors.
pub fn run_table_rerun(mut args: TableRerunArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.sources)?;
    let file = DiffFile::read(&args.diff_file)?;
    prepare_output_dir(&args.output_dir)?;
    let settings = SessionSettings::from_config(&config);
    if args.sources.nodes.is_none() {
        let mut nodes = file.summary.nodes.clone();
        if nodes.is_empty() {
            nodes = file.nodes();
        }
        args.sources.nodes = Some(nodes.join(","));
    }
    let cluster = load_cluster(&config, &args.sources, args.cluster.as_deref())?;
    let quiet = args.sources.quiet;
    runtime()?.block_on(async move {
        let sessions = connect(&cluster, &args.sources, &settings).await?;
        let progress = Progress::new();
        let bar = progress_bar(progress.clone(), quiet);
        let result = interruptible(table_rerun(&sessions, &file, None, &progress)).await;
        finish_bar(bar).await;
        sessions.close().await;
        let report = result?;
        if report.matches() {
            say!("All previously reported differences have been resolved.");
            return Ok(ExitCode::SUCCESS);
        }
        finish(&report, &args.output_dir, "rerun-diffs", Output::Json)
    })
}

pub(crate) fn load_config(sources: &Sources) -> anyhow::Result<AceConfig> {
    let mut source = ConfigSource::new();
    if let Some(path) = &sources.config {
        source = source.with_path(path);
    }
    Ok(AceConfig::load(&source)?)
}

pub(crate) fn load_cluster(
    config: &AceConfig,
    sources: &Sources,
    name: Option<&str>,
) -> anyhow::Result<Cluster> {
    let service = match &sources.service_file {
        Some(path) => ServiceFile::load(path)?,
        None => ServiceFile::discover()?,
    };
    let mut cluster = resolve_cluster(config, &service, name)?;
    let selection: NodeSelection = sources.nodes.as_deref().unwrap_or("all").parse()?;
    let selected: Vec<String> = cluster
        .select(&selection)?
        .into_iter()
        .map(|node| node.name.clone())
        .collect();
    cluster.nodes.retain(|node| selected.contains(&node.name));
    if let Some(dbname) = &sources.dbname {
        for node in &mut cluster.nodes {
            node.settings.dbname = Some(dbname.clone());
        }
    }
    Ok(cluster)
}

pub(crate) async fn connect(
    cluster: &Cluster,
    _sources: &Sources,
    settings: &SessionSettings,
) -> anyhow::Result<ClusterSession> {
    let nodes: Vec<_> = cluster.nodes.iter().collect();
    if nodes.len() < 2 {
        bail!(
            "cluster {} has {} selected node(s) ({}); ACE needs at least 2 different nodes to \
             compare or repair",
            cluster.name,
            nodes.len(),
            cluster.node_names().join(", ")
        );
    }
    ClusterSession::connect(&nodes, settings)
        .await
        .with_context(|| format!("connecting to cluster {}", cluster.name))
}

/// Runs `work` unless Ctrl-C comes first; then `work` is dropped (its
/// statements end with their connections) and the caller closes the
/// sessions, which removes their private relay directories.
pub(crate) async fn interruptible<T, E>(
    work: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: Into<anyhow::Error>,
{
    tokio::select! {
        result = work => result.map_err(Into::into),
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) fn progress_bar(
    progress: Arc<Progress>,
    quiet: bool,
) -> Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)> {
    if quiet {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} blocks",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let shown = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            let (done, total) = progress.get();
            shown.set_length(total);
            shown.set_position(done);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Some((bar, ticker))
}

pub(crate) async fn finish_bar(bar: Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)>) {
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
}

/// Creates the report directory before any work, so a bad one fails
/// first, not after the diff ran.
fn prepare_output_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "--output-dir {}: cannot use it as a directory",
            dir.display()
        )
    })
}

fn finish(report: &DiffReport, dir: &Path, kind: &str, output: Output) -> anyhow::Result<ExitCode> {
    say!("{}", report.human_summary().trim_end());
    if report.matches() {
        return Ok(ExitCode::SUCCESS);
    }
    let path = report.write_json(dir, kind)?;
    say!("Diff report written to {}", path.display());
    if output == Output::Html {
        let html = report.write_html(dir, kind)?;
        say!("HTML report written to {}", html.display());
    }
    Ok(ExitCode::from(2))
}
