//! `ace-admin schema-diff` and `ace-admin repset-diff`: many tables at
//! once, run locally as ACE's own database user.

use std::path::PathBuf;
use std::process::ExitCode;

use ace_config::AceConfig;
use ace_engine::{Progress, SetDiffOptions, SkipList, parse_identifier, repset_diff, schema_diff};
use ace_session::SessionSettings;
use anyhow::{Context, bail};
use clap::Args;

use crate::engine_cmd::{
    Output, Sources, connect, finish_bar, interruptible, load_cluster, load_config, progress_bar,
    runtime,
};

/// Tuning and output shared by schema-diff and repset-diff.
#[derive(Debug, Args)]
pub struct SetTuning {
    /// Tables to leave out, as a comma list: `t1` (any schema) or
    /// `schema.t1`; quote mixed-case names ('"Big Table",sales."T2"').
    #[arg(short = 'T', long, value_name = "LIST")]
    skip_tables: Option<String>,
    /// A file naming tables to leave out, one `table` or `schema.table` per
    /// line (blank lines and lines starting with # are ignored).
    #[arg(long, value_name = "PATH")]
    skip_file: Option<PathBuf>,
    /// Rows per hashed block (default table_diff.diff_block_size).
    #[arg(short = 'b', long)]
    block_size: Option<u64>,
    /// Allow a block size outside table_diff.min/max_diff_block_size.
    #[arg(short = 'B', long)]
    override_block_size: bool,
    /// Parallel scans per node as a multiple of the CPUs, in (0, 4].
    #[arg(short = 'c', long)]
    concurrency_factor: Option<f64>,
    /// Largest block compared row by row (default table_diff.compare_unit_size).
    #[arg(short = 'u', long)]
    compare_unit_size: Option<u64>,
    /// Most differing rows reported per node pair and table (0 = no limit).
    #[arg(long)]
    max_diff_rows: Option<u64>,
    /// Connections per node (0 = derived from the concurrency factor).
    #[arg(short = 'M', long)]
    max_connections: Option<u32>,
    /// Report format (html writes an HTML page beside each JSON file).
    #[arg(short = 'o', long, value_enum, default_value = "json")]
    output: Output,
    /// Where to write the report and the tables' diff files.
    #[arg(long, default_value = ".")]
    output_dir: PathBuf,
}

/// Compare the objects of a schema across nodes (tables, columns,
/// constraints, indexes, views, functions, sequences, triggers), then
/// table-diff every table present on all nodes.
///
/// Each differing table gets its own diff file; the whole result goes to
/// `<schema>_schema-diff-<timestamp>.json`. Skipped tables (skip list) are
/// left out entirely; views and foreign tables are listed, not diffed.
/// Exit status: 0 when everything matches, 2 when something differs, 1
/// when a table could not be compared (no primary key, columns that
/// disagree, no privilege) or on any error.
#[derive(Debug, Args)]
#[command(override_usage = "ace-admin schema-diff [OPTIONS] [CLUSTER] SCHEMA")]
pub struct SchemaDiffArgs {
    /// `[CLUSTER] SCHEMA`: the cluster (default_cluster when omitted) and
    /// the schema (unquoted names fold to lower case; quote mixed-case
    /// ones: '"My-Schema"').
    #[arg(value_name = "TARGET", num_args = 1..=2, required = true)]
    targets: Vec<String>,
    /// Compare definitions only; read no rows.
    #[arg(long)]
    ddl_only: bool,
    #[command(flatten)]
    tuning: SetTuning,
    #[command(flatten)]
    sources: Sources,
}

/// Table-diff every table of a replication set: Spock's set of that name
/// where the spock extension is installed, else the publication of that
/// name.
///
/// Nodes that lack the set, and tables that are members on some nodes
/// only, are reported. The result goes to
/// `<repset>_repset-diff-<timestamp>.json`, each differing table's rows to
/// its own diff file. Exit status: 0 when everything matches, 2 when
/// something differs, 1 when a table could not be compared or on any
/// error.
#[derive(Debug, Args)]
#[command(override_usage = "ace-admin repset-diff [OPTIONS] [CLUSTER] REPSET")]
pub struct RepsetDiffArgs {
    /// `[CLUSTER] REPSET`: the cluster (default_cluster when omitted) and
    /// the replication set or publication (read as an identifier: quote
    /// mixed-case names).
    #[arg(value_name = "TARGET", num_args = 1..=2, required = true)]
    targets: Vec<String>,
    #[command(flatten)]
    tuning: SetTuning,
    #[command(flatten)]
    sources: Sources,
}

/// Runs `ace-admin schema-diff`.
///
/// # Errors
///
/// Configuration, skip-list, connection and engine errors.
pub fn run_schema_diff(args: SchemaDiffArgs) -> anyhow::Result<ExitCode> {
    let (cluster, schema) = split_targets(&args.targets, "SCHEMA")?;
    let schema = parse_identifier(schema, "schema")?;
    run(
        &args.sources,
        &args.tuning,
        cluster,
        args.ddl_only,
        Target::Schema(schema),
    )
}

/// Runs `ace-admin repset-diff`.
///
/// # Errors
///
/// Configuration, skip-list, connection and engine errors.
pub fn run_repset_diff(args: RepsetDiffArgs) -> anyhow::Result<ExitCode> {
    let (cluster, repset) = split_targets(&args.targets, "REPSET")?;
    let repset = parse_identifier(repset, "repset")?;
    run(
        &args.sources,
        &args.tuning,
        cluster,
        false,
        Target::Repset(repset),
    )
}

fn split_targets<'a>(
    targets: &'a [String],
    what: &str,
) -> anyhow::Result<(Option<&'a str>, &'a str)> {
    match targets {
        [name] => Ok((None, name.as_str())),
        [cluster, name] => Ok((Some(cluster.as_str()), name.as_str())),
        _ => bail!("expected [CLUSTER] {what}"),
    }
}

fn set_options(
    config: &AceConfig,
    tuning: &SetTuning,
    ddl_only: bool,
) -> anyhow::Result<SetDiffOptions> {
    let diff = &config.table_diff;
    let block_size = tuning.block_size.unwrap_or(diff.diff_block_size);
    diff.check_block_size(block_size, tuning.override_block_size, "--block-size")?;
    let mut skip = SkipList::default();
    if let Some(list) = &tuning.skip_tables {
        skip.add_list(list)?;
    }
    if let Some(path) = &tuning.skip_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --skip-file {}", path.display()))?;
        skip.add_file_text(&text)
            .with_context(|| format!("in --skip-file {}", path.display()))?;
    }
    Ok(SetDiffOptions {
        block_size,
        concurrency_factor: tuning.concurrency_factor.unwrap_or(diff.concurrency_factor),
        compare_unit_size: tuning.compare_unit_size.unwrap_or(diff.compare_unit_size),
        max_diff_rows: tuning.max_diff_rows.unwrap_or(diff.max_diff_rows),
        ddl_only,
        skip,
        role: None,
    })
}

/// What to compare.
enum Target {
    Schema(String),
    Repset(String),
}

fn run(
    sources: &Sources,
    tuning: &SetTuning,
    cluster_name: Option<&str>,
    ddl_only: bool,
    target: Target,
) -> anyhow::Result<ExitCode> {
    let config = load_config(sources)?;
    let options = set_options(&config, tuning, ddl_only)?;
    let mut settings = SessionSettings::from_config(&config);
    if let Some(max) = tuning.max_connections.filter(|m| *m > 0) {
        settings.max_connections = max;
    }
    let cluster = load_cluster(&config, sources, cluster_name)?;
    runtime()?.block_on(async move {
        let sessions = connect(&cluster, sources, &settings).await?;
        let progress = Progress::new();
        let bar = progress_bar(progress.clone(), sources.quiet);
        let result = match &target {
            Target::Schema(schema) => {
                interruptible(schema_diff(&sessions, schema, &options, &progress)).await
            }
            Target::Repset(repset) => {
                interruptible(repset_diff(&sessions, repset, &options, &progress)).await
            }
        };
        finish_bar(bar).await;
        sessions.close().await;
        let mut report = result?;
        say!("{}", report.human_summary().trim_end());
        let dir = &tuning.output_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = report.write(dir, tuning.output == Output::Html)?;
        for table in &report.differing {
            if let Some(file) = &table.diff_file {
                say!("Diff report for {} written to {file}", table.table);
            }
        }
        say!("Report written to {}", path.display());
        Ok(match report.result() {
            "identical" => ExitCode::SUCCESS,
            "differences" => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        })
    })
}
