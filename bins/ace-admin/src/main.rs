//! `ace-admin`: the ACE command-line tool.
//!
//! A thin binary: it parses arguments, starts tracing, installs the rustls
//! crypto provider once, and hands each subcommand to the library crate that
//! owns the work. Errors become a message on stderr and a non-zero exit code.

#![forbid(unsafe_code)]

/// `println!` for command output, except that a failed write (a reader
/// that went away, `| head`; a full disk) does not panic: the command goes
/// on, writes its files and exits with its own status.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

mod config_cmd;
mod demo_cmd;
mod doctor_cmd;
mod engine_cmd;
mod pki_cmd;
mod repair_cmd;
mod set_cmd;
mod tasks_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ACE: find, repair and verify drift between PostgreSQL nodes.
#[derive(Debug, Parser)]
#[command(name = "ace-admin", version, about, long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

/// Every subcommand; each lives in its own module.
#[derive(Debug, Subcommand)]
enum Command {
    /// Write and check ace.yaml (config init, config check).
    Config(config_cmd::ConfigArgs),
    /// Write and inspect pg_service.conf clusters (cluster init, list, show).
    Cluster(config_cmd::ClusterArgs),
    /// Make a CA, issue, revoke and inspect certificates, write CRLs.
    Pki(pki_cmd::PkiArgs),
    /// Walk the whole chain (config, server cert and names, a client cert
    /// against the client policy, every node, the CN's role, expiry) and
    /// say line by line what holds and what is broken.
    ///
    /// Each line is OK, WARN (for example, expires within 30 days), FAIL,
    /// or SKIP (nothing to check, or an earlier link is broken). Exit
    /// status: 0 when no line is FAIL, 1 otherwise.
    Doctor(doctor_cmd::DoctorArgs),
    /// List, show and prune task records.
    Tasks(tasks_cmd::TasksArgs),
    /// Compare a table across nodes and write a diff file.
    TableDiff(engine_cmd::TableDiffArgs),
    /// Re-check the rows of a diff file.
    TableRerun(engine_cmd::TableRerunArgs),
    /// Repair a table from a diff file (source of truth, insert/upsert-only,
    /// bidirectional, fix-nulls; dry run and report).
    TableRepair(repair_cmd::TableRepairArgs),
    /// Compare a schema's objects across nodes, then table-diff its tables.
    ///
    /// Exit status: 0 when everything matches, 2 when something differs, 1
    /// when a table could not be compared or on any error.
    SchemaDiff(set_cmd::SchemaDiffArgs),
    /// Table-diff every table of a replication set (Spock's, or the
    /// publication of that name).
    ///
    /// Exit status: 0 when everything matches, 2 when something differs, 1
    /// when a table could not be compared or on any error.
    RepsetDiff(set_cmd::RepsetDiffArgs),
    /// Run the whole chain on this machine: certificates, PostgreSQL nodes
    /// with client-certificate authentication, drift, the API server, and
    /// a diff, repair and check as api_user over mutual TLS.
    Demo(demo_cmd::DemoArgs),
}

fn main() -> ExitCode {
    // Usage errors exit 1 like every other error: 2 means "differences
    // found" for the diff commands.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing(cli.verbose);
    // One crypto provider for the whole process; see deny.toml.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Config(args) => config_cmd::run_config(args),
        Command::Cluster(args) => config_cmd::run_cluster(args),
        Command::Pki(args) => pki_cmd::run(args),
        Command::Doctor(args) => doctor_cmd::run(args),
        Command::Tasks(args) => tasks_cmd::run(args),
        Command::TableDiff(args) => engine_cmd::run_table_diff(args),
        Command::TableRerun(args) => engine_cmd::run_table_rerun(args),
        Command::TableRepair(args) => repair_cmd::run(args),
        Command::SchemaDiff(args) => set_cmd::run_schema_diff(args),
        Command::RepsetDiff(args) => set_cmd::run_repset_diff(args),
        Command::Demo(args) => demo_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause only when the text
/// before does not already say it (many errors quote their source).
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Writes a line of command output; see `say!`. After a failed write,
/// output is dropped; a failure other than a closed pipe is reported once
/// on stderr.
fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    static FAILED: AtomicBool = AtomicBool::new(false);
    if FAILED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(error) = written {
        FAILED.store(true, Ordering::Relaxed);
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("warning: cannot write to standard output: {error}");
        }
    }
}

fn init_tracing(verbose: u8) {
    // sqlx warns about connections it recycles after an error the command
    // already reports.
    let default = match verbose {
        0 => "warn,sqlx=error",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ACE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal, never into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
