//! Task records as the API shows them: upstream's `GET tasks/{id}` shape.

use ace_tasks::{Task, TaskStatus};
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;

/// Renders `task` as upstream does: `task_id`, `task_type`, `status`,
/// `cluster`, then `schema`, `table`, `repset`, `started_at`,
/// `finished_at` (RFC 3339) and `time_taken` (seconds) when known, and
/// `task_context`. Ours in addition: `submitted_by`, `created_at` and
/// `has_report`.
///
/// `task_context` is what upstream shows: while the task waits or runs,
/// the request (`qualified_table`, `mode`, `nodes`, ...) and, when the
/// server knows it, `progress`; once finished, the result (`diff_summary`,
/// `diff_pairs`) and `error` when it failed or was cancelled.
pub(crate) fn task_json(task: &Task, progress: Option<(u64, u64)>) -> Value {
    let mut out = Map::new();
    out.insert("task_id".into(), json!(task.task_id));
    out.insert("task_type".into(), json!(task.task_type.as_str()));
    out.insert("status".into(), json!(task.status.as_str()));
    out.insert("cluster".into(), json!(task.cluster));
    for (key, value) in [
        ("schema", &task.schema),
        ("table", &task.table),
        ("repset", &task.repset),
    ] {
        if let Some(value) = value {
            out.insert(key.into(), json!(value));
        }
    }
    out.insert("submitted_by".into(), json!(task.submitted_by));
    if let Some(created) = rfc3339(Some(task.created_at)) {
        out.insert("created_at".into(), created);
    }
    if let Some(started) = rfc3339(task.started_at) {
        out.insert("started_at".into(), started);
    }
    if let Some(finished) = rfc3339(task.finished_at) {
        out.insert("finished_at".into(), finished);
    }
    if let Some(taken) = task.time_taken {
        out.insert("time_taken".into(), json!(taken.as_secs_f64()));
    }
    out.insert("has_report".into(), json!(task.report_path.is_some()));

    let context = &task.task_context;
    let mut shown = Map::new();
    match task.status {
        TaskStatus::Pending | TaskStatus::Running => {
            if let Value::Object(parameters) = &context.parameters {
                shown.extend(parameters.clone());
            }
            if let Some((done, total)) = progress {
                shown.insert(
                    "progress".into(),
                    json!({ "units_done": done, "units_total": total }),
                );
            }
        }
        TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled => {
            if let Some(Value::Object(summary)) = &context.summary {
                shown.extend(summary.clone());
            }
            if let Some(error) = &context.error {
                shown.insert("error".into(), json!(error));
            } else if task.status == TaskStatus::Cancelled {
                shown.insert("error".into(), json!("cancelled by request"));
            }
        }
    }
    out.insert("task_context".into(), Value::Object(shown));
    Value::Object(out)
}

fn rfc3339(at: Option<time::OffsetDateTime>) -> Option<Value> {
    at.and_then(|at| at.format(&Rfc3339).ok())
        .map(Value::String)
}
