//! `ace-admin table-repair`: repair a table from a diff file, locally, as
//! ACE's own database user.

use std::path::PathBuf;
use std::process::ExitCode;

use ace_engine::{DiffFile, Progress, TableRepairOptions, parse_qualified_name, table_repair};
use ace_session::SessionSettings;
use anyhow::{Context, bail};
use clap::Args;

use crate::engine_cmd::{Sources, connect, load_cluster, load_config, runtime};

/// Repair a table from a diff file: from a source of truth, insert-only or
/// upsert-only, both ways (--bidirectional), or by filling NULLs
/// (--fix-nulls).
///
/// Each target node is repaired in one transaction; rows are re-read from
/// their source at repair time, and a row that changed on the target since
/// the diff is skipped and listed as stale (unless --allow-stale). Exit
/// status: 0 when every target was repaired (or a dry run), 1 on any error
/// or when a node's repair was rolled back.
#[derive(Debug, Args)]
#[command(
    override_usage = "ace-admin table-repair [OPTIONS] --diff-file <DIFF_FILE> [CLUSTER] SCHEMA.TABLE"
)]
pub struct TableRepairArgs {
    /// `[CLUSTER] SCHEMA.TABLE`: the cluster (default_cluster when omitted)
    /// and the table the diff file is about (a bare TABLE is public.TABLE).
    #[arg(value_name = "TARGET", num_args = 1..=2, required = true)]
    targets: Vec<String>,
    /// The diff file from table-diff (this tool's or upstream ACE's).
    #[arg(short = 'f', long)]
    diff_file: PathBuf,
    /// The node whose rows win; required unless --bidirectional or
    /// --fix-nulls.
    #[arg(
        short = 'r',
        long,
        conflicts_with_all = ["bidirectional", "fix_nulls"]
    )]
    source_of_truth: Option<String>,
    /// Work out and report the plan; change nothing (writes a dry-run
    /// report).
    #[arg(short = 'y', long)]
    dry_run: bool,
    /// Only insert rows missing on the targets; never update or delete.
    #[arg(short = 'i', long, conflicts_with_all = ["upsert_only", "fix_nulls"])]
    insert_only: bool,
    /// Insert and update; never delete.
    #[arg(short = 'P', long, conflicts_with_all = ["bidirectional", "fix_nulls"])]
    upsert_only: bool,
    /// Insert each node's rows its peers lack, both ways (no source of truth).
    #[arg(short = 'Z', long, conflicts_with = "fix_nulls")]
    bidirectional: bool,
    /// Fill NULL columns from a peer that has a value, both ways (no source
    /// of truth).
    #[arg(short = 'X', long)]
    fix_nulls: bool,
    /// Let triggers fire on the targets (default: session_replication_role
    /// = replica, so they do not).
    #[arg(short = 't', long)]
    fire_triggers: bool,
    /// Write a JSON report of every row touched, before and after, under
    /// OUTPUT_DIR/reports/<date>/.
    #[arg(short = 'g', long)]
    generate_report: bool,
    /// Also write rows whose target version changed since the diff.
    #[arg(long)]
    allow_stale: bool,
    /// Where reports go.
    #[arg(long, default_value = ".")]
    output_dir: PathBuf,
    /// Configuration, nodes and database (`-q` prints only failures and
    /// the report path).
    #[command(flatten)]
    sources: Sources,
}

/// Runs `ace-admin table-repair`.
///
/// # Errors
///
/// Configuration, diff-file, option, connection and engine errors, each
/// naming what is wrong; a node whose repair was rolled back.
pub fn run(args: TableRepairArgs) -> anyhow::Result<ExitCode> {
    let (cluster_name, table) = match args.targets.as_slice() {
        [table] => (None, table.as_str()),
        [cluster, table] => (Some(cluster.as_str()), table.as_str()),
        _ => bail!("expected [CLUSTER] SCHEMA.TABLE"),
    };
    let (schema, table) = parse_qualified_name(table)?;
    let mut options = TableRepairOptions::new(&schema, &table);
    options.source_of_truth = args.source_of_truth.clone();
    options.dry_run = args.dry_run;
    options.insert_only = args.insert_only;
    options.upsert_only = args.upsert_only;
    options.bidirectional = args.bidirectional;
    options.fix_nulls = args.fix_nulls;
    options.fire_triggers = args.fire_triggers;
    options.generate_report = args.generate_report;
    options.allow_stale = args.allow_stale;
    options.dbname = args.sources.dbname.clone();
    // Incompatible or missing options fail before any connection.
    options.mode()?;

    let config = load_config(&args.sources)?;
    let file = DiffFile::read(&args.diff_file)?;
    let cluster = load_cluster(&config, &args.sources, cluster_name)?;
    options.cluster_name = cluster.name.clone();
    let settings = SessionSettings::from_config(&config);

    runtime()?.block_on(async move {
        let sessions = connect(&cluster, &args.sources, &settings).await?;
        let result = table_repair(&sessions, &file, &options, &Progress::new()).await;
        sessions.close().await;
        let report = result?;
        if !args.sources.quiet {
            say!("{}", report.human_summary().trim_end());
        }
        if args.generate_report || args.dry_run {
            std::fs::create_dir_all(&args.output_dir)
                .with_context(|| format!("creating {}", args.output_dir.display()))?;
            let path = report.write_json(&args.output_dir)?;
            say!("Repair report written to {}", path.display());
        }
        report.check()?;
        Ok(ExitCode::SUCCESS)
    })
}
