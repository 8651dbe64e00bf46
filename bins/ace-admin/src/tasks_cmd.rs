//! `ace-admin tasks`: list, show and prune the records in the task store.
//!
//! The store is the one the server writes: `--db`, else `ACE_TASKS_DB`, else
//! `./ace_tasks.db`. These commands never create a store; a path that holds
//! none is an error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ace_tasks::{Page, Task, TaskFilter, TaskStatus, TaskStore, TaskType, Uuid, Viewer};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Inspect and clean up the task store.
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// The task store file [default: ./ace_tasks.db]. The server's
    /// `server.taskstore_path` is not read here: pass it with --db.
    #[arg(long, env = "ACE_TASKS_DB", value_name = "PATH", global = true)]
    db: Option<PathBuf>,

    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: TasksCommand,
}

#[derive(Debug, Subcommand)]
enum TasksCommand {
    /// List tasks, newest first.
    List(ListArgs),
    /// Show one task in full, with its context.
    Show {
        /// The task id.
        id: Uuid,
    },
    /// Remove finished tasks (COMPLETED, FAILED, CANCELLED) and their report
    /// files. Pending and running tasks are never removed.
    Prune {
        /// Only tasks that finished longer ago than this, e.g. 30d, 12h,
        /// "1week 2days".
        #[arg(long, value_name = "AGE", value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only tasks submitted by this client-certificate CN.
    #[arg(long, value_name = "CN")]
    owner: Option<String>,

    /// Only tasks in this status (pending, running, completed, failed,
    /// cancelled).
    #[arg(long)]
    status: Option<TaskStatus>,

    /// Only tasks of this type (table-diff, mtree-build, ...).
    #[arg(long = "type", value_name = "TYPE")]
    task_type: Option<TaskType>,

    /// Only tasks created within this age (e.g. 2h) or at or after this
    /// RFC 3339 time.
    #[arg(long, value_name = "AGE|TIME", value_parser = parse_since)]
    since: Option<OffsetDateTime>,

    /// At most this many tasks.
    #[arg(long, default_value_t = 50)]
    limit: u32,

    /// Skip this many tasks first.
    #[arg(long, default_value_t = 0)]
    offset: u32,
}

/// Runs a `tasks` subcommand to completion.
pub fn run(args: TasksArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: TasksArgs) -> anyhow::Result<ExitCode> {
    let path = ace_tasks::resolve_path(args.db.as_deref());
    let store = TaskStore::open_existing(&path).await?;
    let code = match args.command {
        TasksCommand::List(list) => {
            let filter = TaskFilter {
                owner: list.owner,
                status: list.status,
                task_type: list.task_type,
                since: list.since,
            };
            let page = Page {
                limit: list.limit,
                offset: list.offset,
            };
            let tasks = store.list(&filter, page).await?;
            if args.json {
                say!("{}", serde_json::to_string_pretty(&tasks)?);
            } else if tasks.is_empty() {
                say!("no tasks");
            } else {
                say!("{}", list_table(&tasks).trim_end());
            }
            ExitCode::SUCCESS
        }
        TasksCommand::Show { id } => {
            // An operator with the store file can read every record anyway.
            let task = store.get(id, &Viewer::admin("ace-admin")).await?;
            if args.json {
                say!("{}", serde_json::to_string_pretty(&task)?);
            } else {
                say!("{}", show_text(&task)?.trim_end());
            }
            ExitCode::SUCCESS
        }
        TasksCommand::Prune { older_than } => {
            let outcome = store.prune(older_than).await?;
            if args.json {
                let failures: Vec<_> = outcome
                    .failures
                    .iter()
                    .map(|error| serde_json::json!({ "error": error_chain(error) }))
                    .collect();
                let body = serde_json::json!({
                    "removed_tasks": outcome.removed_tasks,
                    "removed_reports": outcome.removed_reports,
                    "failures": failures,
                });
                say!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                say!(
                    "removed {} task(s) and {} report file(s)",
                    outcome.removed_tasks.len(),
                    outcome.removed_reports.len()
                );
            }
            for error in &outcome.failures {
                eprintln!("error: {}", error_chain(error));
            }
            if outcome.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    };
    store.close().await;
    Ok(code)
}

/// `error: cause: cause` in one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `--since`: an age counted back from now, or an RFC 3339 time.
fn parse_since(text: &str) -> Result<OffsetDateTime, String> {
    if let Ok(age) = humantime::parse_duration(text) {
        let age = time::Duration::try_from(age).map_err(|e| e.to_string())?;
        return OffsetDateTime::now_utc()
            .checked_sub(age)
            .ok_or_else(|| format!("{text} reaches back before the representable range"));
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("{text:?} is neither an age (like 2h or 7d) nor an RFC 3339 time"))
}

fn list_table(tasks: &[Task]) -> String {
    let headers = [
        "TASK ID", "TYPE", "STATUS", "CLUSTER", "TARGET", "OWNER", "CREATED", "TOOK",
    ];
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.task_id.to_string(),
                t.task_type.to_string(),
                t.status.to_string(),
                t.cluster.clone(),
                target(t),
                t.submitted_by.clone(),
                timestamp(t.created_at),
                t.time_taken.map(took).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&headers, &rows)
}

fn show_text(task: &Task) -> anyhow::Result<String> {
    let optional = |t: Option<OffsetDateTime>| t.map(timestamp).unwrap_or_else(|| "-".into());
    let fields = [
        ("task id", task.task_id.to_string()),
        ("type", task.task_type.to_string()),
        ("status", task.status.to_string()),
        ("cluster", task.cluster.clone()),
        ("target", target(task)),
        ("submitted by", task.submitted_by.clone()),
        ("role", task.role.clone()),
        ("created", timestamp(task.created_at)),
        ("started", optional(task.started_at)),
        ("finished", optional(task.finished_at)),
        (
            "time taken",
            task.time_taken.map(took).unwrap_or_else(|| "-".into()),
        ),
        (
            "report",
            task.report_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "-".into()),
        ),
    ];
    let mut out = String::new();
    for (name, value) in fields {
        out.push_str(&format!("{:<13} {value}\n", format!("{name}:")));
    }
    out.push_str("context:\n");
    out.push_str(&serde_json::to_string_pretty(&task.task_context)?);
    out.push('\n');
    Ok(out)
}

/// What the task works on: `schema.table`, the schema, or the repset.
fn target(task: &Task) -> String {
    match (&task.schema, &task.table, &task.repset) {
        (Some(schema), Some(table), _) => format!("{schema}.{table}"),
        (None, Some(table), _) => table.clone(),
        (Some(schema), None, _) => schema.clone(),
        (None, None, Some(repset)) => format!("repset {repset}"),
        (None, None, None) => "-".into(),
    }
}

fn timestamp(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// A duration to the millisecond, e.g. `2m 12s 500ms`.
fn took(d: Duration) -> String {
    let millis = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if millis.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(millis).to_string()
    }
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_an_age_or_a_time() {
        let two_hours_ago = parse_since("2h").unwrap();
        // Measured after parsing, so the age can only have grown.
        let age = OffsetDateTime::now_utc() - two_hours_ago;
        assert!(
            age >= time::Duration::hours(2)
                && age < time::Duration::hours(2) + time::Duration::minutes(1)
        );

        let fixed = parse_since("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(fixed.unix_timestamp(), 1_767_323_045);

        let err = parse_since("yesterday").unwrap_err();
        assert!(err.contains("neither an age"), "{err}");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["a".into(), "long value".into(), "x".into()],
            vec!["bbbb".into(), "v".into(), "y".into()],
        ];
        let text = table(&["H1", "H2", "H3"], &rows);
        assert_eq!(
            text,
            "H1    H2          H3\na     long value  x\nbbbb  v           y\n"
        );
    }

    #[test]
    fn durations_print_to_the_millisecond() {
        assert_eq!(took(Duration::from_micros(132_500_900)), "2m 12s 500ms");
        assert_eq!(took(Duration::from_micros(10)), "0s");
    }
}
