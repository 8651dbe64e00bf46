//! The routes under `/api/v1` and their handlers.

use std::sync::Arc;

use ace_config::resolve_cluster;
use ace_engine::{DiffFile, TableDiffOptions};
use ace_pki::Identity;
use ace_session::SessionError;
use ace_tasks::{NewTask, Page, TaskFilter, TaskStatus, TaskType, Uuid, Viewer};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::request::{
    TableDiffRequest, TableRepairRequest, TableRerunRequest, confine, decode, node_selection,
};
use crate::server::{Job, Shared, submit};
use crate::view::task_json;

/// The API's base path.
pub const BASE_PATH: &str = "/api/v1";

/// Every route: its path under [`BASE_PATH`] (OpenAPI template syntax) and
/// the methods it answers. Routing, the `Allow` header of a 405 and the
/// OpenAPI test all read this table.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/table-diff", &["POST"]),
    ("/table-rerun", &["POST"]),
    ("/table-repair", &["POST"]),
    ("/schema-diff", &["POST"]),
    ("/repset-diff", &["POST"]),
    ("/tasks", &["GET"]),
    ("/tasks/{task_id}", &["GET", "DELETE"]),
    ("/tasks/{task_id}/report", &["GET"]),
    ("/openapi.json", &["GET"]),
];

/// The OpenAPI 3 document served at `GET /api/v1/openapi.json`.
pub fn openapi() -> Value {
    serde_json::from_str(include_str!("../openapi.json")).unwrap_or(Value::Null)
}

/// A handler's answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    /// The task the request created or read, for the request log.
    pub task_id: Option<Uuid>,
    /// The `Allow` header of a 405.
    pub allow: Option<String>,
}

impl Reply {
    fn json(status: StatusCode, value: &Value, task_id: Option<Uuid>) -> Self {
        Reply {
            status,
            body: Bytes::from(value.to_string()),
            task_id,
            allow: None,
        }
    }

    /// `{"error": "..."}` with the error's status (and `Allow` for 405).
    pub fn error(error: &Error, task_id: Option<Uuid>) -> Self {
        let allow = match error {
            Error::MethodNotAllowed { allow, .. } => Some(allow.clone()),
            _ => None,
        };
        Reply {
            allow,
            ..Reply::json(
                error.status(),
                &json!({ "error": error.public_message() }),
                task_id,
            )
        }
    }
}

/// Which handler a request goes to.
enum Endpoint {
    TableDiff,
    TableRerun,
    TableRepair,
    SchemaDiff,
    RepsetDiff,
    ListTasks,
    Task(String),
    CancelTask(String),
    Report(String),
    OpenApi,
}

/// Maps method and path to an endpoint: 404 for an unknown path, 405 (with
/// the allowed methods) for a known path and another method.
fn route(method: &Method, path: &str) -> Result<Endpoint> {
    let no_route = || Error::NoRoute {
        path: path.to_owned(),
    };
    let rest = path.strip_prefix(BASE_PATH).ok_or_else(no_route)?;
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    if !rest.starts_with('/') {
        return Err(no_route());
    }
    let (template, id) = match segments.as_slice() {
        ["table-diff"] => ("/table-diff", None),
        ["table-rerun"] => ("/table-rerun", None),
        ["table-repair"] => ("/table-repair", None),
        ["schema-diff"] => ("/schema-diff", None),
        ["repset-diff"] => ("/repset-diff", None),
        ["tasks"] => ("/tasks", None),
        ["tasks", id] if !id.is_empty() => ("/tasks/{task_id}", Some((*id).to_owned())),
        ["tasks", id, "report"] if !id.is_empty() => {
            ("/tasks/{task_id}/report", Some((*id).to_owned()))
        }
        ["openapi.json"] => ("/openapi.json", None),
        _ => return Err(no_route()),
    };
    let endpoint = match (method, template, id) {
        (&Method::POST, "/table-diff", _) => Endpoint::TableDiff,
        (&Method::POST, "/table-rerun", _) => Endpoint::TableRerun,
        (&Method::POST, "/table-repair", _) => Endpoint::TableRepair,
        (&Method::POST, "/schema-diff", _) => Endpoint::SchemaDiff,
        (&Method::POST, "/repset-diff", _) => Endpoint::RepsetDiff,
        (&Method::GET, "/tasks", _) => Endpoint::ListTasks,
        (&Method::GET, "/tasks/{task_id}", Some(id)) => Endpoint::Task(id),
        (&Method::DELETE, "/tasks/{task_id}", Some(id)) => Endpoint::CancelTask(id),
        (&Method::GET, "/tasks/{task_id}/report", Some(id)) => Endpoint::Report(id),
        (&Method::GET, "/openapi.json", _) => Endpoint::OpenApi,
        _ => {
            let allow = ROUTES
                .iter()
                .find(|(route, _)| *route == template)
                .map(|(_, methods)| methods.join(", "))
                .unwrap_or_default();
            return Err(Error::MethodNotAllowed {
                method: method.to_string(),
                path: path.to_owned(),
                allow,
            });
        }
    };
    Ok(endpoint)
}

/// Routes and answers one request of `caller`.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    caller: &Identity,
    request: hyper::Request<Incoming>,
) -> Reply {
    let (parts, body) = request.into_parts();
    let endpoint = match route(&parts.method, parts.uri.path()) {
        Ok(endpoint) => endpoint,
        Err(error) => return Reply::error(&error, None),
    };
    let viewer = if caller.is_admin {
        Viewer::admin(&caller.cn)
    } else {
        Viewer::owner(&caller.cn)
    };
    let outcome = match endpoint {
        Endpoint::TableDiff => match read_json(shared, &parts.headers, body).await {
            Ok(body) => table_diff(shared, caller, &body).await,
            Err(error) => Err((error, None)),
        },
        Endpoint::TableRerun => match read_json(shared, &parts.headers, body).await {
            Ok(body) => table_rerun(shared, caller, &body).await,
            Err(error) => Err((error, None)),
        },
        Endpoint::TableRepair => match read_json(shared, &parts.headers, body).await {
            Ok(body) => table_repair(shared, caller, &body).await,
            Err(error) => Err((error, None)),
        },
        Endpoint::SchemaDiff => match read_json(shared, &parts.headers, body).await {
            Ok(body) => crate::sets::schema_diff(shared, caller, &body).await,
            Err(error) => Err((error, None)),
        },
        Endpoint::RepsetDiff => match read_json(shared, &parts.headers, body).await {
            Ok(body) => crate::sets::repset_diff(shared, caller, &body).await,
            Err(error) => Err((error, None)),
        },
        Endpoint::ListTasks => list_tasks(shared, &viewer, parts.uri.query()).await,
        Endpoint::Task(id) => with_id(&id, |id| get_task(shared, &viewer, id)).await,
        Endpoint::CancelTask(id) => with_id(&id, |id| cancel_task(shared, &viewer, id)).await,
        Endpoint::Report(id) => with_id(&id, |id| report(shared, &viewer, id)).await,
        Endpoint::OpenApi => Ok(Reply::json(StatusCode::OK, &openapi(), None)),
    };
    match outcome {
        Ok(reply) => reply,
        Err((error, task_id)) => {
            if error.status().is_server_error() {
                tracing::error!(cn = %caller.cn, %error, "request failed");
            }
            Reply::error(&error, task_id)
        }
    }
}

/// A handler's reply, or the error with the task it concerns.
pub(crate) type Outcome = std::result::Result<Reply, (Error, Option<Uuid>)>;

async fn with_id<F, Fut>(text: &str, handler: F) -> Outcome
where
    F: FnOnce(Uuid) -> Fut,
    Fut: Future<Output = Result<Reply>>,
{
    let id = match Uuid::parse_str(text) {
        Ok(id) => id,
        Err(_) => {
            return Err((
                Error::InvalidField {
                    field: "task_id",
                    reason: format!("{text:?} is not a task id (UUID)"),
                },
                None,
            ));
        }
    };
    handler(id).await.map_err(|error| (error, Some(id)))
}

/// Reads a JSON body: `Content-Type: application/json` (415 otherwise), at
/// most `max_body_bytes` (413; a larger body is drained first, up to eight
/// times the limit, so the client reads the answer), within
/// `body_read_timeout` (408).
async fn read_json(shared: &Shared, headers: &HeaderMap, mut body: Incoming) -> Result<Bytes> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Error::UnsupportedMediaType {
            found: content_type.to_owned(),
        });
    }
    let limit = shared.limits.max_body_bytes;
    let drain_cap = limit.saturating_mul(8);
    let read = async {
        let mut buffer = Vec::new();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                // The client went away mid-body; nobody reads the answer.
                return Err(Error::InvalidJson {
                    message: "request body ended early".into(),
                });
            };
            if let Ok(data) = frame.into_data() {
                total = total.saturating_add(data.len());
                if total <= limit {
                    buffer.extend_from_slice(&data);
                } else if total > drain_cap {
                    break;
                }
            }
        }
        if total > limit {
            return Err(Error::BodyTooLarge { limit });
        }
        Ok(Bytes::from(buffer))
    };
    let timeout = shared.limits.body_read_timeout;
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Error::BodyTimeout {
            seconds: timeout.as_secs(),
        })?
}

/// `POST table-diff`: validate, resolve, check the caller's role and the
/// table on every node, record the task, queue it, answer 202.
async fn table_diff(shared: &Arc<Shared>, caller: &Identity, body: &[u8]) -> Outcome {
    let plain = |error: Error| (error, None);
    let request: TableDiffRequest = decode(body).map_err(plain)?;
    let valid = request.validate(&shared.config).map_err(plain)?;
    let cluster = resolve_cluster(&shared.config, &shared.service, request.cluster.as_deref())
        .map_err(|e| plain(e.into()))?;
    let selection = node_selection(&request.nodes).map_err(plain)?;
    let nodes = cluster.select(&selection).map_err(|e| plain(e.into()))?;
    if nodes.len() < 2 {
        return Err(plain(Error::InvalidField {
            field: "nodes",
            reason: format!("table-diff compares 2 or more nodes, got {}", nodes.len()),
        }));
    }
    let sessions = shared
        .sessions(&cluster, &nodes, request.dbname.as_deref())
        .await
        .map_err(plain)?;
    // As the caller: the role exists and ACE may assume it, the table is
    // there, alike and readable on every node, and the filter fits it.
    let table = ace_engine::preflight(&sessions, &valid.schema, &valid.table, Some(&caller.role))
        .await
        .map_err(|e| plain(e.into()))?;
    if let Some(filter) = &valid.table_filter {
        ace_engine::filter::Filter::parse(filter, &table.column_names())
            .map_err(|e| plain(e.into()))?;
    }

    let node_names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut parameters = json!({
        "qualified_table": format!("{}.{}", valid.schema, valid.table),
        "mode": "diff",
        "nodes": node_names,
        "block_size": valid.block_size,
        "concurrency_factor": valid.concurrency_factor,
        "compare_unit_size": valid.compare_unit_size,
        "max_diff_rows": valid.max_diff_rows,
    });
    if let Some(filter) = &valid.table_filter {
        parameters["table_filter"] = json!(filter);
    }
    if let Some(dbname) = &request.dbname {
        parameters["dbname"] = json!(dbname);
    }
    let mut new = NewTask::new(TaskType::TableDiff, &cluster.name, &caller.cn)
        .with_table(&valid.schema, &valid.table)
        .with_parameters(parameters);
    new.role = caller.role.clone();

    let mut options = TableDiffOptions::new(&valid.schema, &valid.table);
    options.block_size = valid.block_size;
    options.concurrency_factor = valid.concurrency_factor;
    options.compare_unit_size = valid.compare_unit_size;
    options.max_diff_rows = valid.max_diff_rows;
    options.table_filter = valid.table_filter;
    options.role = Some(caller.role.clone());
    enqueue(
        shared,
        new,
        Job::Diff {
            sessions,
            options: Box::new(options),
        },
    )
    .await
}

/// `POST table-rerun`: the diff file must lie inside `server.data_dir`.
async fn table_rerun(shared: &Arc<Shared>, caller: &Identity, body: &[u8]) -> Outcome {
    let plain = |error: Error| (error, None);
    let request: TableRerunRequest = decode(body).map_err(plain)?;
    let path = confine("diff_file", &request.diff_file, &shared.data_dir).map_err(plain)?;
    let file = DiffFile::read(&path).map_err(|e| plain(e.into()))?;
    let cluster = resolve_cluster(&shared.config, &shared.service, request.cluster.as_deref())
        .map_err(|e| plain(e.into()))?;
    let selection = node_selection(&request.nodes).map_err(plain)?;
    let nodes = cluster.select(&selection).map_err(|e| plain(e.into()))?;
    let sessions = shared
        .sessions(&cluster, &nodes, request.dbname.as_deref())
        .await
        .map_err(plain)?;
    let schema = file.summary.schema.clone();
    let table = file.summary.table.clone();
    ace_engine::preflight(&sessions, &schema, &table, Some(&caller.role))
        .await
        .map_err(|e| plain(e.into()))?;

    let node_names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let parameters = json!({
        "qualified_table": format!("{schema}.{table}"),
        "mode": "rerun",
        "nodes": node_names,
        "diff_file": request.diff_file,
    });
    let mut new = NewTask::new(TaskType::TableRerun, &cluster.name, &caller.cn)
        .with_table(&schema, &table)
        .with_parameters(parameters);
    new.role = caller.role.clone();
    enqueue(
        shared,
        new,
        Job::Rerun {
            sessions,
            file: Box::new(file),
            role: caller.role.clone(),
        },
    )
    .await
}

/// `POST table-repair`: the diff file must lie inside `server.data_dir`
/// and be of the table named. Before the task is recorded, as the caller:
/// the role on every node, the table alike and readable everywhere, and
/// the privileges the mode writes with (INSERT, UPDATE, DELETE as needed)
/// on every node that may be written; a missing one is 403 and nothing is
/// recorded or written.
async fn table_repair(shared: &Arc<Shared>, caller: &Identity, body: &[u8]) -> Outcome {
    let plain = |error: Error| (error, None);
    let request: TableRepairRequest = decode(body).map_err(plain)?;
    let mut options = request.options(&caller.role).map_err(plain)?;
    let mode = options.mode().map_err(|e| plain(e.into()))?;
    let path = confine("diff_file", &request.diff_file, &shared.data_dir).map_err(plain)?;
    let file = DiffFile::read(&path).map_err(|e| plain(e.into()))?;
    if file.summary.schema != options.schema || file.summary.table != options.table {
        return Err(plain(Error::InvalidField {
            field: "table",
            reason: format!(
                "the diff file is of {}.{}, not of {}.{}",
                file.summary.schema, file.summary.table, options.schema, options.table
            ),
        }));
    }
    let cluster = resolve_cluster(&shared.config, &shared.service, request.cluster.as_deref())
        .map_err(|e| plain(e.into()))?;
    let selection = node_selection(&request.nodes).map_err(plain)?;
    let nodes = cluster.select(&selection).map_err(|e| plain(e.into()))?;
    if nodes.len() < 2 {
        return Err(plain(Error::InvalidField {
            field: "nodes",
            reason: format!("table-repair needs 2 or more nodes, got {}", nodes.len()),
        }));
    }
    let sessions = shared
        .sessions(&cluster, &nodes, request.dbname.as_deref())
        .await
        .map_err(plain)?;
    ace_engine::preflight(
        &sessions,
        &options.schema,
        &options.table,
        Some(&caller.role),
    )
    .await
    .map_err(|e| plain(e.into()))?;
    let source = match &mode {
        ace_engine::RepairMode::SourceOfTruth { node, .. } => Some(node.as_str()),
        _ => None,
    };
    for node in sessions.nodes() {
        if Some(node.name()) == source {
            continue;
        }
        node.check_table_privileges(
            Some(&caller.role),
            &options.schema,
            &options.table,
            mode.privileges(),
        )
        .await
        .map_err(|e: SessionError| plain(e.into()))?;
    }
    options.cluster_name = cluster.name.clone();

    let node_names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut parameters = json!({
        "qualified_table": format!("{}.{}", options.schema, options.table),
        "mode": "repair",
        "repair_mode": mode.name(),
        "nodes": node_names,
        "diff_file": request.diff_file,
        "dry_run": options.dry_run,
        "fire_triggers": options.fire_triggers,
        "generate_report": options.generate_report,
        "allow_stale": options.allow_stale,
    });
    if let Some(source) = source {
        parameters["source_of_truth"] = json!(source);
    }
    if let Some(dbname) = &request.dbname {
        parameters["dbname"] = json!(dbname);
    }
    let mut new = NewTask::new(TaskType::TableRepair, &cluster.name, &caller.cn)
        .with_table(&options.schema, &options.table)
        .with_parameters(parameters);
    new.role = caller.role.clone();
    enqueue(
        shared,
        new,
        Job::Repair {
            sessions,
            file: Box::new(file),
            options: Box::new(options),
        },
    )
    .await
}

/// Records `new` as PENDING, queues `job`, and answers upstream's 202.
pub(crate) async fn enqueue(shared: &Arc<Shared>, new: NewTask, job: Job) -> Outcome {
    if shared.runner.is_stopping() {
        return Err((Error::ShuttingDown, None));
    }
    let task = shared
        .store
        .create(new)
        .await
        .map_err(|e| (e.into(), None))?;
    let id = task.task_id;
    if let Err(error) = submit(shared, id, job) {
        // Stopping began between the check and the submission.
        let _ = shared.store.fail(id, ace_tasks::INTERRUPTED_ERROR).await;
        return Err((error, Some(id)));
    }
    Ok(Reply::json(
        StatusCode::ACCEPTED,
        &json!({ "task_id": id, "status": "QUEUED" }),
        Some(id),
    ))
}

async fn get_task(shared: &Shared, viewer: &Viewer, id: Uuid) -> Result<Reply> {
    if let Some(answer) = shared.finished.get(id, viewer) {
        return Ok(Reply::json(StatusCode::OK, &answer, Some(id)));
    }
    let task = shared.store.get(id, viewer).await?;
    let answer = task_json(&task, shared.runner.progress(id));
    if task.status.is_finished() {
        shared
            .finished
            .put(id, &task.submitted_by, std::sync::Arc::new(answer.clone()));
    }
    Ok(Reply::json(StatusCode::OK, &answer, Some(id)))
}

/// `GET tasks?status=&limit=&offset=`: the caller's tasks (every task for
/// an admin CN), newest first.
async fn list_tasks(shared: &Shared, viewer: &Viewer, query: Option<&str>) -> Outcome {
    let plain = |error: Error| (error, None);
    let mut filter = TaskFilter::visible_to(viewer);
    let mut page = Page::default();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = |field: &'static str| {
            value.parse::<u32>().map_err(|_| Error::InvalidField {
                field,
                reason: format!("{value:?} is not a whole number"),
            })
        };
        match key {
            "status" => {
                filter.status = Some(value.parse::<TaskStatus>().map_err(|e| {
                    plain(Error::InvalidField {
                        field: "status",
                        reason: e.to_string(),
                    })
                })?);
            }
            "limit" => page.limit = number("limit").map_err(plain)?.clamp(1, 1000),
            "offset" => page.offset = number("offset").map_err(plain)?,
            other => {
                return Err(plain(Error::InvalidField {
                    field: "query",
                    reason: format!("unknown parameter {other:?} (known: status, limit, offset)"),
                }));
            }
        }
    }
    let tasks = shared
        .store
        .list(&filter, page)
        .await
        .map_err(|e| plain(e.into()))?;
    let tasks: Vec<Value> = tasks
        .iter()
        .map(|task| task_json(task, shared.runner.progress(task.task_id)))
        .collect();
    Ok(Reply::json(
        StatusCode::OK,
        &json!({ "tasks": tasks }),
        None,
    ))
}

/// `DELETE tasks/{id}`: stops the work and records CANCELLED. A finished
/// task is 409.
async fn cancel_task(shared: &Shared, viewer: &Viewer, id: Uuid) -> Result<Reply> {
    // Someone else's task is 404, exactly as for a read.
    shared.store.get(id, viewer).await?;
    let task = shared.store.cancel(id).await?;
    shared.runner.cancel(id);
    Ok(Reply::json(
        StatusCode::OK,
        &task_json(&task, None),
        Some(id),
    ))
}

/// `GET tasks/{id}/report`: the JSON report the task wrote.
async fn report(shared: &Shared, viewer: &Viewer, id: Uuid) -> Result<Reply> {
    let task = shared.store.get(id, viewer).await?;
    let path = task.report_path.ok_or(Error::NoReport { id })?;
    // The store only holds paths this server wrote, but read only inside
    // the data directory all the same.
    let inside = path
        .canonicalize()
        .is_ok_and(|p| p.starts_with(&shared.data_dir));
    if !inside {
        return Err(Error::NoReport { id });
    }
    let body = tokio::fs::read(&path).await.map_err(|source| Error::Io {
        context: "cannot read the report",
        path,
        source,
    })?;
    Ok(Reply {
        status: StatusCode::OK,
        body: Bytes::from(body),
        task_id: Some(id),
        allow: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        assert!(matches!(
            route(&Method::POST, "/api/v1/table-diff"),
            Ok(Endpoint::TableDiff)
        ));
        assert!(matches!(
            route(&Method::POST, "/api/v1/table-repair"),
            Ok(Endpoint::TableRepair)
        ));
        assert!(matches!(
            route(&Method::DELETE, "/api/v1/tasks/x"),
            Ok(Endpoint::CancelTask(id)) if id == "x"
        ));
        for path in [
            "/api/v1/nope",
            "/api/v2/tasks",
            "/api/v1",
            "/api/v1tasks",
            "/",
        ] {
            let error = route(&Method::GET, path).err().unwrap();
            assert_eq!(error.status(), StatusCode::NOT_FOUND, "{path}");
        }
        match route(&Method::GET, "/api/v1/table-diff") {
            Err(Error::MethodNotAllowed { allow, .. }) => assert_eq!(allow, "POST"),
            _ => panic!("expected 405"),
        }
        match route(&Method::PUT, "/api/v1/tasks/abc") {
            Err(Error::MethodNotAllowed { allow, .. }) => assert_eq!(allow, "GET, DELETE"),
            _ => panic!("expected 405"),
        }
    }

    #[test]
    fn openapi_parses() {
        assert!(openapi()["paths"].is_object());
    }
}
