//! `POST schema-diff` and `POST repset-diff`: request bodies (upstream's
//! field names), their validation, the handlers, and how the task's
//! outcome is recorded.
//!
//! Before the task is recorded: the body decodes (unknown fields refused),
//! the values are in range, a `skip_file` lies inside `server.data_dir`
//! and parses, the cluster and nodes resolve, and ACE may assume the
//! caller's role on every node. The work then runs as that role. A run in
//! which some table could not be compared ends FAILED, naming each such
//! table and why; the report is still written.

use std::path::Path;
use std::sync::Arc;

use ace_config::{AceConfig, resolve_cluster};
use ace_engine::{EngineError, Progress, SetDiffOptions, SetDiffReport, SkipList};
use ace_pki::Identity;
use ace_session::ClusterSession;
use ace_tasks::{NewTask, TaskType, Uuid};
use serde::Deserialize;
use serde_json::json;
use tracing::{debug, info};

use crate::api::{Outcome, enqueue};
use crate::error::{Error, Result};
use crate::request::{confine, decode, node_selection};
use crate::server::{Job, Shared};

/// `POST /api/v1/schema-diff`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaDiffRequest {
    /// Cluster; `default_cluster` when absent.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The schema, read as an identifier (quote mixed-case names:
    /// `"\"My-Schema\""`). Required.
    pub schema: String,
    /// Compare definitions only; read no rows.
    #[serde(default)]
    pub ddl_only: bool,
    /// Everything schema-diff and repset-diff share.
    #[serde(flatten)]
    pub common: SetRequest,
}

/// `POST /api/v1/repset-diff`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepsetDiffRequest {
    /// Cluster; `default_cluster` when absent.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The replication set (Spock's) or publication, read as an
    /// identifier. Required.
    pub repset: String,
    /// Everything schema-diff and repset-diff share.
    #[serde(flatten)]
    pub common: SetRequest,
}

/// The fields schema-diff and repset-diff share.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct SetRequest {
    /// Database, overriding the service file's `dbname`.
    #[serde(default)]
    pub dbname: Option<String>,
    /// Node names; absent or empty means every node.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Tables to leave out, as upstream's comma list: `t1` or `schema.t1`.
    #[serde(default)]
    pub skip_tables: Option<String>,
    /// A file inside `server.data_dir` naming tables to leave out, one per
    /// line.
    #[serde(default)]
    pub skip_file: Option<String>,
    /// Rows per block; `table_diff.diff_block_size` when absent.
    #[serde(default)]
    pub block_size: Option<u64>,
    /// Parallelism as a multiple of the CPU count, in (0, 4].
    #[serde(default)]
    pub concurrency_factor: Option<f64>,
    /// Largest block compared row by row.
    #[serde(default)]
    pub compare_unit_size: Option<u64>,
    /// Most differing rows per node pair and table (0 = no limit).
    #[serde(default)]
    pub max_diff_rows: Option<u64>,
    /// `json` (the default) or `html` (an HTML page beside each JSON file).
    #[serde(default)]
    pub output: Option<String>,
    /// Allow a block size outside the configured limits.
    #[serde(default)]
    pub override_block_size: bool,
    /// Accepted for upstream compatibility; changes nothing.
    #[serde(default)]
    pub quiet: bool,
}

impl SetRequest {
    /// The engine's options (without the role) and whether HTML is asked
    /// for, defaults from `config.table_diff`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidField`] naming the field, [`Error::Config`] for a
    /// block size outside the limits, [`Error::PathRefused`] for a
    /// `skip_file` outside `data_dir`, [`Error::Engine`] (400) for a skip
    /// entry that is not a table name.
    pub(crate) fn options(
        &self,
        config: &AceConfig,
        data_dir: &Path,
        ddl_only: bool,
    ) -> Result<(SetDiffOptions, bool)> {
        let td = &config.table_diff;
        let block_size = self.block_size.unwrap_or(td.diff_block_size);
        td.check_block_size(block_size, self.override_block_size, "request field")?;
        let concurrency_factor = self.concurrency_factor.unwrap_or(td.concurrency_factor);
        if !(concurrency_factor > 0.0 && concurrency_factor <= 4.0) {
            return Err(Error::InvalidField {
                field: "concurrency_factor",
                reason: format!("{concurrency_factor} is outside (0, 4]"),
            });
        }
        let compare_unit_size = self.compare_unit_size.unwrap_or(td.compare_unit_size);
        if compare_unit_size == 0 {
            return Err(Error::InvalidField {
                field: "compare_unit_size",
                reason: "must be at least 1".into(),
            });
        }
        let html = match self.output.as_deref().map(str::trim) {
            None | Some("" | "json") => false,
            Some("html") => true,
            Some(other) => {
                return Err(Error::InvalidField {
                    field: "output",
                    reason: format!("{other:?} is not json or html"),
                });
            }
        };
        let mut skip = SkipList::default();
        if let Some(list) = &self.skip_tables {
            skip.add_list(list)?;
        }
        if let Some(file) = self.skip_file.as_deref().filter(|f| !f.trim().is_empty()) {
            let path = confine("skip_file", file, data_dir)?;
            let text = std::fs::read_to_string(&path).map_err(|_| Error::PathRefused {
                field: "skip_file",
                reason: format!("{file:?} is not a readable text file"),
            })?;
            skip.add_file_text(&text)?;
        }
        Ok((
            SetDiffOptions {
                block_size,
                concurrency_factor,
                compare_unit_size,
                max_diff_rows: self.max_diff_rows.unwrap_or(td.max_diff_rows),
                ddl_only,
                skip,
                role: None,
            },
            html,
        ))
    }
}

/// A schema or a replication set, by its stored name.
#[derive(Debug, Clone)]
pub(crate) enum SetTarget {
    Schema(String),
    Repset(String),
}

/// `POST schema-diff`.
pub(crate) async fn schema_diff(shared: &Arc<Shared>, caller: &Identity, body: &[u8]) -> Outcome {
    let request: SchemaDiffRequest = decode(body).map_err(|e| (e, None))?;
    let schema = required("schema", &request.schema).map_err(|e| (e, None))?;
    let schema = ace_engine::parse_identifier(schema, "schema").map_err(|e| (e.into(), None))?;
    submit_set(
        shared,
        caller,
        request.cluster.as_deref(),
        &request.common,
        SetTarget::Schema(schema),
        request.ddl_only,
    )
    .await
}

/// `POST repset-diff`.
pub(crate) async fn repset_diff(shared: &Arc<Shared>, caller: &Identity, body: &[u8]) -> Outcome {
    let request: RepsetDiffRequest = decode(body).map_err(|e| (e, None))?;
    let repset = required("repset", &request.repset).map_err(|e| (e, None))?;
    let repset = ace_engine::parse_identifier(repset, "repset").map_err(|e| (e.into(), None))?;
    submit_set(
        shared,
        caller,
        request.cluster.as_deref(),
        &request.common,
        SetTarget::Repset(repset),
        false,
    )
    .await
}

fn required<'a>(field: &'static str, value: &'a str) -> Result<&'a str> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::InvalidField {
            field,
            reason: format!("{field} is required"),
        });
    }
    Ok(value)
}

async fn submit_set(
    shared: &Arc<Shared>,
    caller: &Identity,
    cluster: Option<&str>,
    request: &SetRequest,
    target: SetTarget,
    ddl_only: bool,
) -> Outcome {
    let plain = |error: Error| (error, None);
    let (mut options, html) = request
        .options(&shared.config, &shared.data_dir, ddl_only)
        .map_err(plain)?;
    let cluster =
        resolve_cluster(&shared.config, &shared.service, cluster).map_err(|e| plain(e.into()))?;
    let selection = node_selection(&request.nodes).map_err(plain)?;
    let nodes = cluster.select(&selection).map_err(|e| plain(e.into()))?;
    if nodes.len() < 2 {
        return Err(plain(Error::InvalidField {
            field: "nodes",
            reason: format!("comparing needs 2 or more nodes, got {}", nodes.len()),
        }));
    }
    let sessions = shared
        .sessions(&cluster, &nodes, request.dbname.as_deref())
        .await
        .map_err(plain)?;
    // As the caller: the role exists and ACE may assume it on every node.
    sessions
        .check_role(&caller.role)
        .await
        .map_err(|e| plain(e.into()))?;
    options.role = Some(caller.role.clone());

    let node_names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut parameters = json!({
        "nodes": node_names,
        "block_size": options.block_size,
        "concurrency_factor": options.concurrency_factor,
        "compare_unit_size": options.compare_unit_size,
        "max_diff_rows": options.max_diff_rows,
        "output": if html { "html" } else { "json" },
    });
    if let Some(list) = &request.skip_tables {
        parameters["skip_tables"] = json!(list);
    }
    if let Some(file) = &request.skip_file {
        parameters["skip_file"] = json!(file);
    }
    if let Some(dbname) = &request.dbname {
        parameters["dbname"] = json!(dbname);
    }
    let mut new = match &target {
        SetTarget::Schema(schema) => {
            parameters["schema"] = json!(schema);
            parameters["ddl_only"] = json!(ddl_only);
            let mut new = NewTask::new(TaskType::SchemaDiff, &cluster.name, &caller.cn);
            new.schema = Some(schema.clone());
            new
        }
        SetTarget::Repset(repset) => {
            parameters["repset"] = json!(repset);
            let mut new = NewTask::new(TaskType::RepsetDiff, &cluster.name, &caller.cn);
            new.repset = Some(repset.clone());
            new
        }
    };
    new = new.with_parameters(parameters);
    new.role = caller.role.clone();
    enqueue(
        shared,
        new,
        Job::Set {
            sessions,
            target,
            options: Box::new(options),
            html,
        },
    )
    .await
}

/// Runs a schema-diff or repset-diff task and records its outcome:
/// COMPLETED with the report (`task_context` holds the whole JSON report)
/// when every table was compared, FAILED naming the tables that were not
/// (their report is written all the same), CANCELLED, or FAILED with the
/// error.
pub(crate) async fn run_set(
    shared: &Shared,
    id: Uuid,
    sessions: &ClusterSession,
    target: &SetTarget,
    options: &SetDiffOptions,
    html: bool,
    progress: &Progress,
) {
    let result = match target {
        SetTarget::Schema(schema) => {
            ace_engine::schema_diff(sessions, schema, options, progress).await
        }
        SetTarget::Repset(repset) => {
            ace_engine::repset_diff(sessions, repset, options, progress).await
        }
    };
    let written = result.and_then(|mut report: SetDiffReport| {
        let path = report.write(&shared.data_dir, html)?;
        Ok((report, path))
    });
    let store = &shared.store;
    let recorded = match written {
        Ok((report, path)) if report.failed() => {
            let tables: Vec<String> = report
                .failed
                .iter()
                .map(|t| format!("{}: {}", t.table, t.reason))
                .collect();
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let error = format!(
                "{} table(s) could not be compared: {}; report {file}",
                tables.len(),
                tables.join("; ")
            );
            info!(task.id = %id, failed = report.failed.len(), "task failed");
            store.fail(id, &error).await
        }
        Ok((report, path)) => {
            info!(task.id = %id, report = %path.display(), "task completed");
            store.complete(id, &report.to_json(), Some(&path)).await
        }
        Err(EngineError::Cancelled) => {
            info!(task.id = %id, "task cancelled");
            store.cancel(id).await
        }
        Err(error) => {
            info!(task.id = %id, %error, "task failed");
            store.fail(id, &error.to_string()).await
        }
    };
    if let Err(error) = recorded {
        // Cancelled or interrupted meanwhile: the first final status stands.
        debug!(task.id = %id, %error, "task outcome not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_upstream_and_checked() {
        let config = AceConfig::default();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().canonicalize().unwrap();
        std::fs::write(data.join("skip.txt"), "\"Big\".t2\n").unwrap();
        let request: SchemaDiffRequest = decode(
            br#"{"schema":"\"My-Schema\"","skip_tables":"t1","skip_file":"skip.txt",
                "ddl_only":true,"output":"html","block_size":500,"quiet":true}"#,
        )
        .unwrap();
        let (options, html) = request.common.options(&config, &data, true).unwrap();
        assert!(html && options.ddl_only);
        assert_eq!(options.block_size, 500);
        assert!(options.skip.matching("x", "t1").is_some());
        assert!(options.skip.matching("Big", "t2").is_some());

        let error = decode::<RepsetDiffRequest>(br#"{"repset":"r","ddl_only":true}"#).unwrap_err();
        assert!(error.to_string().contains("ddl_only"), "{error}");
        let error = decode::<SchemaDiffRequest>(br#"{"schema":"s","skip_table":"t"}"#).unwrap_err();
        assert!(error.to_string().contains("skip_table"), "{error}");
        let error = decode::<SchemaDiffRequest>(br#"{"nodes":[]}"#).unwrap_err();
        assert!(error.to_string().contains("schema"), "{error}");

        for (body, field) in [
            (r#"{"output":"csv"}"#, "output"),
            (r#"{"skip_file":"../etc/passwd"}"#, "skip_file"),
            (r#"{"skip_tables":"a.b.c"}"#, "skip_tables"),
            (r#"{"concurrency_factor":5}"#, "concurrency_factor"),
            (r#"{"block_size":0}"#, "block_size"),
        ] {
            let request: SetRequest = decode(body.as_bytes()).unwrap();
            let error = request.options(&config, &data, false).unwrap_err();
            assert_eq!(error.status(), http::StatusCode::BAD_REQUEST, "{body}");
            assert!(error.to_string().contains(field), "{body}: {error}");
        }
    }
}
