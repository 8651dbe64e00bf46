//! table-repair: make the nodes of a diff file agree again.
//!
//! A repair reads a diff file (this tool's or upstream ACE's), works out for
//! every target node which rows to insert, update, delete or fill, and
//! writes them. What it promises:
//!
//! - **Modes** (upstream's): with a `source_of_truth`, every other node of
//!   a pair with it gets the source's rows (insert or update) and loses the
//!   rows the source lacks; `insert_only` only inserts missing rows,
//!   `upsert_only` inserts and updates but never deletes. Without a source
//!   of truth, `bidirectional` inserts each node's rows that its peer lacks,
//!   both ways, and `fix_nulls` fills a column that is NULL on one node from
//!   a peer where it is not, both ways. Nothing else is ever written.
//! - **Fresh values**: the rows written are re-read from the source node at
//!   repair time by primary key, never copied from the file. Before writing,
//!   each target row is read again (and locked when it may be updated or
//!   deleted): a row that no longer matches the file's version is *stale*
//!   and skipped, unless `allow_stale`; a row that already matches its
//!   source is left alone.
//! - **One transaction per target node**: a failure rolls that node back
//!   whole; the other nodes still commit, and the report says which nodes
//!   were repaired and which were not.
//! - **Exact values**: rows are read as PostgreSQL text (`col::text`, with
//!   the sessions' pinned settings: UTC, ISO dates, full float digits, hex
//!   bytea) and written back as bound text cast to the column's type
//!   (`$n::text[]` unnested, then `::<type>`), so bigint, numeric,
//!   timestamps, bytea, arrays and json round-trip unchanged. Generated
//!   columns are never written; identity columns are written with
//!   `OVERRIDING SYSTEM VALUE`.
//! - **Batched**: one statement per batch of [`WRITE_BATCH`] rows (a
//!   multi-row `INSERT ... SELECT FROM unnest(...)`, `UPDATE ... FROM
//!   unnest(...)`, `DELETE ... WHERE (key) IN (SELECT ... unnest(...))`),
//!   not one per row. Inserts and updates are separate statements, so a
//!   trigger fires for exactly the action the report lists.
//!   Measured on two testkit nodes (release build, 6-column rows with
//!   numeric, timestamptz, text[] and jsonb): 100k missing rows inserted in
//!   about 4.0 s, 100k changed rows updated in about 6.4 s, each from the
//!   diff file to commit (`repair_100k_rows_timing` in the tests).
//! - **As the caller**: every read and write runs in a role-scoped
//!   transaction of `ace-session` as the caller's role; the privileges the
//!   mode needs are checked on every target node before anything is
//!   written. Unless `fire_triggers`, ACE's own user sets
//!   `session_replication_role = replica` before the role switch, so
//!   triggers (and foreign-key triggers) do not fire, as in upstream.
//!
//! # Limitations
//!
//! - A column that is `GENERATED ALWAYS AS IDENTITY` and not part of the
//!   primary key cannot be updated by PostgreSQL; a row that needs it
//!   updated fails that node's repair (rolled back) with PostgreSQL's
//!   message.
//! - Upstream's `repair_plan`, `recovery_mode` and `preserve_origin` are not
//!   implemented.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ace_session::{ClusterSession, NodeSession, RoleTx, Scope, quote_ident};
use futures::future::{join_all, try_join_all};
use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::diff::{Progress, preflight};
use crate::error::{EngineError, Result};
use crate::report::{DiffFile, RowValues, typed_value, value_text};
use crate::table::{Column, TableInfo};

/// Rows per write statement.
pub const WRITE_BATCH: usize = 1000;

/// Keys per read statement.
const READ_BATCH: usize = 5000;

/// A primary key as PostgreSQL prints it (one string per key column).
pub type RepairKey = Vec<String>;

/// What to repair and how; field names follow upstream ACE.
#[derive(Debug, Clone, Default)]
pub struct TableRepairOptions {
    /// Schema of the table.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// The node whose rows win. Required unless `bidirectional` or
    /// `fix_nulls`, which refuse it.
    pub source_of_truth: Option<String>,
    /// Work out and report the plan; write nothing.
    pub dry_run: bool,
    /// Only insert rows missing on a target.
    pub insert_only: bool,
    /// Insert and update; never delete.
    pub upsert_only: bool,
    /// Insert-only in both directions of every pair, without a source of
    /// truth.
    pub bidirectional: bool,
    /// Fill NULL columns from a peer that has a value, both ways, without
    /// a source of truth.
    pub fix_nulls: bool,
    /// Let triggers fire on the targets (otherwise the repair runs with
    /// `session_replication_role = replica`).
    pub fire_triggers: bool,
    /// Put every row touched (before and after) in the report's JSON.
    pub generate_report: bool,
    /// Write rows whose target version changed since the diff was taken
    /// (otherwise they are skipped and listed as stale).
    pub allow_stale: bool,
    /// The role the work runs as (an API caller's CN); `None` is ACE's user.
    pub role: Option<String>,
    /// The cluster's name, for the report.
    pub cluster_name: String,
    /// The database, when the caller chose one, for the report.
    pub dbname: Option<String>,
}

impl TableRepairOptions {
    /// Options for `schema.table` with every mode off.
    pub fn new(schema: &str, table: &str) -> Self {
        TableRepairOptions {
            schema: schema.to_owned(),
            table: table.to_owned(),
            ..TableRepairOptions::default()
        }
    }

    /// Checks that the options make one mode, and returns it.
    ///
    /// # Errors
    ///
    /// [`EngineError::Options`] naming both options of an incompatible pair
    /// (upstream's pairs, plus a source of truth with a mode that has
    /// none), or a missing source of truth.
    pub fn mode(&self) -> Result<RepairMode> {
        let sot = self
            .source_of_truth
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let flags = [
            ("bidirectional", self.bidirectional),
            ("fix_nulls", self.fix_nulls),
            ("insert_only", self.insert_only),
            ("upsert_only", self.upsert_only),
            ("source_of_truth", sot.is_some()),
        ];
        let on = |name: &str| flags.iter().any(|(n, v)| *n == name && *v);
        for (a, b) in [
            ("bidirectional", "upsert_only"),
            ("bidirectional", "fix_nulls"),
            ("fix_nulls", "insert_only"),
            ("fix_nulls", "upsert_only"),
            ("insert_only", "upsert_only"),
            ("bidirectional", "source_of_truth"),
            ("fix_nulls", "source_of_truth"),
        ] {
            if on(a) && on(b) {
                return Err(EngineError::Options {
                    field: a,
                    reason: format!("{a} and {b} cannot be used together"),
                });
            }
        }
        if self.bidirectional {
            return Ok(RepairMode::Bidirectional);
        }
        if self.fix_nulls {
            return Ok(RepairMode::FixNulls);
        }
        let Some(sot) = sot else {
            return Err(EngineError::Options {
                field: "source_of_truth",
                reason: "a source of truth is required unless bidirectional or fix_nulls".into(),
            });
        };
        let kind = if self.insert_only {
            SotKind::InsertOnly
        } else if self.upsert_only {
            SotKind::UpsertOnly
        } else {
            SotKind::Full
        };
        Ok(RepairMode::SourceOfTruth {
            node: sot.to_owned(),
            kind,
        })
    }
}

/// The repair a set of options asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairMode {
    /// Targets take the source of truth's rows.
    SourceOfTruth {
        /// The source node.
        node: String,
        /// Which writes are allowed.
        kind: SotKind,
    },
    /// Insert-only, both ways.
    Bidirectional,
    /// Fill NULL columns, both ways.
    FixNulls,
}

/// Which writes a source-of-truth repair makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SotKind {
    /// Insert, update and delete.
    Full,
    /// Insert missing rows only.
    InsertOnly,
    /// Insert and update, never delete.
    UpsertOnly,
}

impl RepairMode {
    /// The privileges a target node needs besides SELECT: INSERT, UPDATE
    /// and DELETE for a full source-of-truth repair, fewer for the others.
    pub fn privileges(&self) -> &'static [&'static str] {
        match self {
            RepairMode::SourceOfTruth { kind, .. } => match kind {
                SotKind::Full => &["INSERT", "UPDATE", "DELETE"],
                SotKind::InsertOnly => &["INSERT"],
                SotKind::UpsertOnly => &["INSERT", "UPDATE"],
            },
            RepairMode::Bidirectional => &["INSERT"],
            RepairMode::FixNulls => &["UPDATE"],
        }
    }

    /// Whether target rows may be updated or deleted (then they are locked
    /// before they are checked).
    fn modifies_existing(&self) -> bool {
        !matches!(
            self,
            RepairMode::Bidirectional
                | RepairMode::SourceOfTruth {
                    kind: SotKind::InsertOnly,
                    ..
                }
        )
    }

    /// The mode's name in reports (`source_of_truth`, `insert_only`,
    /// `upsert_only`, `bidirectional`, `fix_nulls`).
    pub fn name(&self) -> &'static str {
        match self {
            RepairMode::SourceOfTruth { kind, .. } => match kind {
                SotKind::Full => "source_of_truth",
                SotKind::InsertOnly => "insert_only",
                SotKind::UpsertOnly => "upsert_only",
            },
            RepairMode::Bidirectional => "bidirectional",
            RepairMode::FixNulls => "fix_nulls",
        }
    }
}

/// What a repair did to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowAction {
    /// Inserted (it was missing).
    Insert,
    /// Overwritten with the source's version.
    Update,
    /// Deleted (the source lacks it).
    Delete,
    /// NULL columns filled from a peer.
    FillNulls,
}

impl RowAction {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RowAction::Insert => "insert",
            RowAction::Update => "update",
            RowAction::Delete => "delete",
            RowAction::FillNulls => "fill_nulls",
        }
    }
}

/// One row written (or, in a dry run, to be written).
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// What is done.
    pub action: RowAction,
    /// The primary key.
    pub key: RepairKey,
    /// The target's row before (every column), `None` if it had none.
    pub before: Option<RowValues>,
    /// The row after (every column), `None` once deleted.
    pub after: Option<RowValues>,
    /// The node the values come from (`None` for deletes).
    pub source: Option<String>,
    /// For [`RowAction::FillNulls`]: the columns filled.
    pub filled: Vec<String>,
}

/// A row skipped because the target changed since the diff was taken.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleRow {
    /// The primary key.
    pub key: RepairKey,
    /// What no longer matches.
    pub reason: String,
    /// The target's row now, `None` if it has none.
    pub current: Option<RowValues>,
}

/// How a target node came out of the repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Its transaction committed (possibly with nothing to write).
    Repaired,
    /// A dry run: nothing was written.
    DryRun,
    /// Its transaction was rolled back: nothing was written there.
    Failed,
}

impl NodeStatus {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Repaired => "repaired",
            NodeStatus::DryRun => "dry_run",
            NodeStatus::Failed => "failed",
        }
    }
}

/// The outcome on one target node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRepair {
    /// Committed, dry run, or rolled back.
    pub status: NodeStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// Rows written (or planned, in a dry run, or attempted and rolled
    /// back, when failed), in key order per action.
    pub changes: Vec<RowChange>,
    /// Rows skipped as stale.
    pub stale: Vec<StaleRow>,
    /// Rows of the diff that already match their source now.
    pub already_matching: u64,
    /// Rows the mode does not touch (updates under `insert_only`, deletes
    /// under `insert_only` and `upsert_only`).
    pub skipped_by_mode: u64,
}

impl NodeRepair {
    fn new(status: NodeStatus) -> Self {
        NodeRepair {
            status,
            error: None,
            changes: Vec::new(),
            stale: Vec::new(),
            already_matching: 0,
            skipped_by_mode: 0,
        }
    }

    /// How many changes of `action`.
    pub fn count(&self, action: RowAction) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }
}

/// A finished table-repair.
#[derive(Debug, Clone)]
pub struct RepairReport {
    /// `schema`.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// The mode that ran.
    pub mode: RepairMode,
    /// The options as given.
    pub options: TableRepairOptions,
    /// The diff file read.
    pub diff_file: PathBuf,
    /// Outcome per target node.
    pub nodes: BTreeMap<String, NodeRepair>,
    /// The table's columns (for typing values).
    pub columns: Vec<Column>,
    /// The primary key column names.
    pub primary_key: Vec<String>,
    /// When the repair began.
    pub started_at: time::OffsetDateTime,
    /// How long it took.
    pub run_time: Duration,
}

impl RepairReport {
    /// Nodes whose repair committed.
    pub fn repaired_nodes(&self) -> Vec<&str> {
        self.with_status(NodeStatus::Repaired)
    }

    /// Nodes whose repair was rolled back.
    pub fn failed_nodes(&self) -> Vec<&str> {
        self.with_status(NodeStatus::Failed)
    }

    fn with_status(&self, status: NodeStatus) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.status == status)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Total rows written (or planned) over every node that did not fail.
    pub fn total_changes(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.status != NodeStatus::Failed)
            .map(|n| n.changes.len())
            .sum()
    }

    /// `Ok` when no node failed.
    ///
    /// # Errors
    ///
    /// [`EngineError::Repair`] for the first failed node, its reason
    /// followed by which nodes were repaired and which rolled back.
    pub fn check(&self) -> Result<()> {
        let Some((node, failed)) = self
            .nodes
            .iter()
            .find(|(_, n)| n.status == NodeStatus::Failed)
        else {
            return Ok(());
        };
        let list = |nodes: Vec<&str>| {
            if nodes.is_empty() {
                "none".to_owned()
            } else {
                nodes.join(", ")
            }
        };
        Err(EngineError::Repair {
            node: node.clone(),
            reason: format!(
                "{}; rolled back (nothing written) on: {}; repaired: {}",
                failed.error.as_deref().unwrap_or("failed"),
                list(self.failed_nodes()),
                list(self.repaired_nodes()),
            ),
        })
    }

    /// A row as a JSON object in column order.
    fn row_json(&self, row: &RowValues) -> Value {
        Value::Object(crate::report::row_object(&self.columns, row))
    }

    /// The key as a JSON object (`{"id": 7}`).
    fn key_json(&self, key: &RepairKey) -> Map<String, Value> {
        let mut object = Map::new();
        for (name, value) in self.primary_key.iter().zip(key) {
            let kind = self
                .columns
                .iter()
                .find(|c| &c.name == name)
                .map_or(crate::table::JsonKind::Text, Column::json_kind);
            object.insert(name.clone(), typed_value(kind, Some(value)));
        }
        object
    }

    /// The report in upstream's shape (`operation_type`, `mode`,
    /// `time_stamp`, `supplied_args`, `changes` per node, `run_time`),
    /// with ours added per node: `status`, `error`, counts, `stale_rows`,
    /// and, when `rows` is true, every row touched under `row_changes`
    /// with its `before` and `after` values.
    pub fn to_json(&self, rows: bool) -> Value {
        let dry = self.options.dry_run;
        let o = &self.options;
        let mut changes = Map::new();
        for (name, node) in &self.nodes {
            let mut entry = Map::new();
            entry.insert("status".into(), json!(node.status.as_str()));
            if let Some(error) = &node.error {
                entry.insert("error".into(), json!(error));
            }
            entry.insert("inserted".into(), json!(node.count(RowAction::Insert)));
            entry.insert("updated".into(), json!(node.count(RowAction::Update)));
            entry.insert("deleted".into(), json!(node.count(RowAction::Delete)));
            entry.insert(
                "nulls_filled".into(),
                json!(node.count(RowAction::FillNulls)),
            );
            entry.insert("stale".into(), json!(node.stale.len()));
            entry.insert("already_matching".into(), json!(node.already_matching));
            entry.insert("skipped_by_mode".into(), json!(node.skipped_by_mode));
            if rows {
                self.upstream_lists(node, dry, &mut entry);
                let stale: Vec<Value> = node
                    .stale
                    .iter()
                    .map(|s| {
                        let mut object = self.key_json(&s.key);
                        object.insert("reason".into(), json!(s.reason));
                        object.insert(
                            "current".into(),
                            s.current.as_ref().map_or(Value::Null, |r| self.row_json(r)),
                        );
                        Value::Object(object)
                    })
                    .collect();
                entry.insert("stale_rows".into(), Value::Array(stale));
                let touched: Vec<Value> = node
                    .changes
                    .iter()
                    .map(|c| {
                        json!({
                            "action": c.action.as_str(),
                            "key": Value::Object(self.key_json(&c.key)),
                            "source": c.source,
                            "before": c.before.as_ref().map_or(Value::Null, |r| self.row_json(r)),
                            "after": c.after.as_ref().map_or(Value::Null, |r| self.row_json(r)),
                        })
                    })
                    .collect();
                entry.insert("row_changes".into(), Value::Array(touched));
            }
            changes.insert(name.clone(), Value::Object(entry));
        }
        json!({
            "operation_type": if dry { "DRY_RUN" } else { "table-repair" },
            "mode": if dry { "DRY_RUN" } else { "LIVE_RUN" },
            "repair_mode": self.mode.name(),
            "time_stamp": time_stamp(self.started_at),
            "supplied_args": {
                "cluster_name": o.cluster_name,
                "diff_file_path": self.diff_file.display().to_string(),
                "repair_plan_path": "",
                "source_of_truth": o.source_of_truth.clone().unwrap_or_default(),
                "table_name": format!("{}.{}", self.schema, self.table),
                "dbname": o.dbname.clone().unwrap_or_default(),
                "dry_run": o.dry_run,
                "quiet": false,
                "insert_only": o.insert_only,
                "upsert_only": o.upsert_only,
                "fire_triggers": o.fire_triggers,
                "generate_report": o.generate_report,
                "bidirectional": o.bidirectional,
                "fix_nulls": o.fix_nulls,
                "recovery_mode": false,
                "allow_stale": o.allow_stale,
            },
            "nodes_repaired": self.repaired_nodes(),
            "nodes_failed": self.failed_nodes(),
            "changes": changes,
            "run_time": self.run_time.as_secs_f64(),
        })
    }

    /// Upstream's per-node row lists: `deleted_rows`, `upserted_rows`
    /// (or `inserted_rows` for insert-only modes), `updated_rows` for
    /// fix-nulls; in a dry run `would_delete`, `would_upsert` /
    /// `would_insert`, `would_update_rows`.
    fn upstream_lists(&self, node: &NodeRepair, dry: bool, entry: &mut Map<String, Value>) {
        let insert_only = matches!(
            self.mode,
            RepairMode::Bidirectional
                | RepairMode::SourceOfTruth {
                    kind: SotKind::InsertOnly,
                    ..
                }
        );
        let (written, deleted, filled) = match (dry, insert_only) {
            (false, false) => ("upserted_rows", "deleted_rows", "updated_rows"),
            (false, true) => ("inserted_rows", "deleted_rows", "updated_rows"),
            (true, false) => ("would_upsert", "would_delete", "would_update_rows"),
            (true, true) => ("would_insert", "would_delete", "would_update_rows"),
        };
        let mut written_rows = Vec::new();
        let mut deleted_rows = Vec::new();
        let mut filled_rows = Vec::new();
        for change in &node.changes {
            match change.action {
                RowAction::Insert | RowAction::Update => {
                    if let Some(after) = &change.after {
                        written_rows.push(self.row_json(after));
                    }
                }
                RowAction::Delete => {
                    if let Some(before) = &change.before {
                        deleted_rows.push(self.row_json(before));
                    }
                }
                RowAction::FillNulls => {
                    let mut object = self.key_json(&change.key);
                    let mut updates = Map::new();
                    if let Some(after) = &change.after {
                        for name in &change.filled {
                            if let Some(index) = self.columns.iter().position(|c| &c.name == name) {
                                updates.insert(
                                    name.clone(),
                                    typed_value(
                                        self.columns[index].json_kind(),
                                        after[index].as_deref(),
                                    ),
                                );
                            }
                        }
                    }
                    object.insert("updates".into(), Value::Object(updates));
                    filled_rows.push(Value::Object(object));
                }
            }
        }
        if !matches!(self.mode, RepairMode::FixNulls) {
            entry.insert(written.into(), Value::Array(written_rows));
            entry.insert(deleted.into(), Value::Array(deleted_rows));
        } else {
            entry.insert(filled.into(), Value::Array(filled_rows));
        }
    }

    /// Writes the JSON report (with every row when `generate_report` or a
    /// dry run) to `<dir>/reports/<YYYY-MM-DD>/repair_report_<HHMMSS.mmm>.json`
    /// (`dry_run_report_...` for a dry run), as upstream names it, and
    /// returns the path.
    ///
    /// # Errors
    ///
    /// [`EngineError::Write`] when the directory or file cannot be written.
    pub fn write_json(&self, dir: &Path) -> Result<PathBuf> {
        let at = self.started_at;
        let day = format!(
            "{:04}-{:02}-{:02}",
            at.year(),
            u8::from(at.month()),
            at.day()
        );
        let folder = dir.join("reports").join(day);
        std::fs::create_dir_all(&folder).map_err(|source| EngineError::Write {
            path: folder.clone(),
            source,
        })?;
        let prefix = if self.options.dry_run {
            "dry_run_report"
        } else {
            "repair_report"
        };
        let path = folder.join(format!(
            "{prefix}_{:02}{:02}{:02}.{:03}.json",
            at.hour(),
            at.minute(),
            at.second(),
            at.millisecond()
        ));
        let rows = self.options.generate_report || self.options.dry_run;
        let text = serde_json::to_string_pretty(&self.to_json(rows)).unwrap_or_default();
        std::fs::write(&path, text).map_err(|source| EngineError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// A short human summary, one line per node.
    pub fn human_summary(&self) -> String {
        let mut out = format!(
            "{} {}.{} ({}):\n",
            if self.options.dry_run {
                "DRY RUN of table-repair on"
            } else {
                "table-repair of"
            },
            self.schema,
            self.table,
            self.mode.name()
        );
        for (name, node) in &self.nodes {
            out.push_str(&format!(
                "  {name}: {} - inserted {}, updated {}, deleted {}, nulls filled {}, stale {}, already matching {}",
                node.status.as_str(),
                node.count(RowAction::Insert),
                node.count(RowAction::Update),
                node.count(RowAction::Delete),
                node.count(RowAction::FillNulls),
                node.stale.len(),
                node.already_matching,
            ));
            if node.skipped_by_mode > 0 {
                out.push_str(&format!(
                    ", not touched by the mode {}",
                    node.skipped_by_mode
                ));
            }
            if let Some(error) = &node.error {
                out.push_str(&format!("\n    rolled back, nothing written: {error}"));
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "  time taken: {:.3}s\n",
            self.run_time.as_secs_f64()
        ));
        out
    }
}

fn time_stamp(at: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

// === SQL ===

/// The statements of one repair, built from catalog facts only: quoted
/// identifiers, `format_type` types, bound values.
#[derive(Debug, Clone)]
struct RepairSql {
    table: String,
    columns: Vec<Column>,
    key_idx: Vec<usize>,
}

impl RepairSql {
    fn new(table: &TableInfo) -> Self {
        let key_idx = table
            .primary_key
            .iter()
            .filter_map(|name| table.columns.iter().position(|c| &c.name == name))
            .collect();
        RepairSql {
            table: table.qualified(),
            columns: table.columns.clone(),
            key_idx,
        }
    }

    fn keys(&self) -> impl Iterator<Item = &Column> {
        self.key_idx.iter().map(|&i| &self.columns[i])
    }

    fn writable(&self) -> impl Iterator<Item = (usize, &Column)> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.generated)
    }

    /// `unnest($first::text[], ...)` over `count` arrays, aliased
    /// `u(v0, v1, ...)`.
    fn unnest(first: usize, count: usize) -> String {
        let arrays: Vec<String> = (0..count)
            .map(|i| format!("${}::text[]", first + i))
            .collect();
        let names: Vec<String> = (0..count).map(|i| format!("v{i}")).collect();
        format!("unnest({}) AS u({})", arrays.join(", "), names.join(", "))
    }

    /// `(t."a", t."b") IN (SELECT u.v0::<a type>, u.v1::<b type> FROM unnest(...))`
    /// with the key arrays bound from `$1`.
    fn key_in(&self) -> String {
        let left: Vec<String> = self
            .keys()
            .map(|k| format!("t.{}", quote_ident(&k.name)))
            .collect();
        let right: Vec<String> = self
            .keys()
            .enumerate()
            .map(|(i, k)| format!("u.v{i}::{}", k.type_sql))
            .collect();
        format!(
            "({}) IN (SELECT {} FROM {})",
            left.join(", "),
            right.join(", "),
            Self::unnest(1, self.key_idx.len())
        )
    }

    fn all_text(&self, alias: &str) -> String {
        self.columns
            .iter()
            .map(|c| format!("{alias}.{}::text", quote_ident(&c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every column as text, for the rows whose keys are bound.
    fn select_rows(&self) -> String {
        format!(
            "SELECT {} FROM {} t WHERE {}",
            self.all_text("t"),
            self.table,
            self.key_in()
        )
    }

    /// Locks the target rows whose keys are bound.
    fn lock_rows(&self) -> String {
        format!(
            "SELECT count(*) FROM (SELECT 1 FROM {} t WHERE {} FOR UPDATE OF t) s",
            self.table,
            self.key_in()
        )
    }

    /// The target's current rows for a batch of the diff file's rows,
    /// in input order: the key as the target prints it, every column as
    /// text (NULL when the row is gone), and whether the row is as the
    /// file says (`present` false: the file says the target has no row).
    /// Binds: one text array per column of `compared` (the file's values),
    /// then a boolean array `present`.
    fn current_vs_file(&self, compared: &[usize]) -> String {
        let casts: Vec<String> = compared
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let column = &self.columns[c];
                format!(
                    "u.v{i}::{} AS {}",
                    column.type_sql,
                    quote_ident(&column.name)
                )
            })
            .collect();
        let present = compared.len() + 1;
        let arrays: Vec<String> = (0..compared.len())
            .map(|i| format!("${}::text[]", i + 1))
            .collect();
        let names: Vec<String> = (0..compared.len()).map(|i| format!("v{i}")).collect();
        let join: Vec<String> = self
            .keys()
            .map(|k| {
                let name = quote_ident(&k.name);
                format!("t.{name} = d.{name}")
            })
            .collect();
        let key_text: Vec<String> = self
            .keys()
            .map(|k| format!("d.{}::text", quote_ident(&k.name)))
            .collect();
        let first_key = quote_ident(self.keys().next().map_or("", |k| k.name.as_str()));
        let file_row: Vec<String> = compared
            .iter()
            .map(|&c| self.columns[c].comparable_sql("d"))
            .collect();
        let table_row: Vec<String> = compared
            .iter()
            .map(|&c| self.columns[c].comparable_sql("t"))
            .collect();
        format!(
            "SELECT {key_text}, {all}, CASE WHEN d.present THEN t.{first_key} IS NOT NULL \
               AND ROW({file_row})::text IS NOT DISTINCT FROM ROW({table_row})::text \
               ELSE t.{first_key} IS NULL END AS fresh \
             FROM (SELECT u.ord, u.present, {casts} \
                   FROM unnest({arrays}, ${present}::bool[]) WITH ORDINALITY \
                   AS u({names}, present, ord)) d \
             LEFT JOIN {table} t ON {join} ORDER BY d.ord",
            key_text = key_text.join(", "),
            all = self.all_text("t"),
            file_row = file_row.join(", "),
            table_row = table_row.join(", "),
            casts = casts.join(", "),
            arrays = arrays.join(", "),
            names = names.join(", "),
            table = self.table,
            join = join.join(" AND "),
        )
    }

    /// The positions (1-based) of the bound keys in key order.
    fn order_keys(&self) -> String {
        let n = self.key_idx.len();
        let arrays: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
        let names: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
        let order: Vec<String> = self
            .keys()
            .enumerate()
            .map(|(i, k)| format!("u.v{i}::{}", k.type_sql))
            .collect();
        format!(
            "SELECT u.ord FROM unnest({}) WITH ORDINALITY AS u({}, ord) ORDER BY {}",
            arrays.join(", "),
            names.join(", "),
            order.join(", ")
        )
    }

    /// `DELETE` of the rows whose keys are bound.
    fn delete_rows(&self) -> String {
        format!("DELETE FROM {} t WHERE {}", self.table, self.key_in())
    }

    /// A multi-row insert of the writable columns (one text array each,
    /// in column order) of rows the target lacked when checked; a row that
    /// appeared since is left alone (`DO NOTHING`), and the keys returned
    /// tell which were written.
    fn insert_rows(&self) -> String {
        let writable: Vec<(usize, &Column)> = self.writable().collect();
        let names: Vec<String> = writable.iter().map(|(_, c)| quote_ident(&c.name)).collect();
        let casts: Vec<String> = writable
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("u.v{i}::{}", c.type_sql))
            .collect();
        let overriding = if writable.iter().any(|(_, c)| c.identity.is_some()) {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        };
        let keys: Vec<String> = self.keys().map(|k| quote_ident(&k.name)).collect();
        format!(
            "INSERT INTO {} ({}){overriding} SELECT {} FROM {} ON CONFLICT ({}) DO NOTHING RETURNING {}",
            self.table,
            names.join(", "),
            casts.join(", "),
            Self::unnest(1, writable.len()),
            keys.join(", "),
            keys.join(", "),
        )
    }

    /// A multi-row update of the writable non-key columns of rows the
    /// target has (and holds locked), from one text array per writable
    /// column in column order; `None` when there is no such column.
    fn update_rows(&self) -> Option<String> {
        let writable: Vec<(usize, &Column)> = self.writable().collect();
        let mut sets = Vec::new();
        let mut matches = Vec::new();
        for (position, (index, column)) in writable.iter().enumerate() {
            let name = quote_ident(&column.name);
            let value = format!("u.v{position}::{}", column.type_sql);
            if self.key_idx.contains(index) {
                matches.push(format!("t.{name} = {value}"));
            } else {
                sets.push(format!("{name} = {value}"));
            }
        }
        if sets.is_empty() {
            return None;
        }
        Some(format!(
            "UPDATE {} t SET {} FROM {} WHERE {}",
            self.table,
            sets.join(", "),
            Self::unnest(1, writable.len()),
            matches.join(" AND "),
        ))
    }

    /// Fills column `column` where it is NULL; binds the key arrays, then
    /// the values.
    fn fill_column(&self, column: usize) -> String {
        let target = &self.columns[column];
        let name = quote_ident(&target.name);
        let n = self.key_idx.len();
        let matches: Vec<String> = self
            .keys()
            .enumerate()
            .map(|(i, k)| format!("t.{} = u.v{i}::{}", quote_ident(&k.name), k.type_sql))
            .collect();
        format!(
            "UPDATE {} t SET {name} = u.v{n}::{} FROM {} WHERE {} AND t.{name} IS NULL",
            self.table,
            target.type_sql,
            Self::unnest(1, n + 1),
            matches.join(" AND "),
        )
    }

    fn key_of(&self, row: &RowValues) -> RepairKey {
        self.key_idx
            .iter()
            .map(|&i| row[i].clone().unwrap_or_default())
            .collect()
    }
}

// === Planning from the diff file ===

/// A key of the diff file a target may need repaired.
#[derive(Debug, Clone)]
struct Candidate<'f> {
    /// The key as the file writes it.
    raw_key: RepairKey,
    /// The target's row in the file (`None`: the target had no row).
    file_row: Option<&'f Map<String, Value>>,
    /// Nodes the values may come from, in preference order.
    sources: Vec<String>,
}

/// Keys per target node, in key order of the file.
type Plan<'f> = BTreeMap<String, BTreeMap<RepairKey, Candidate<'f>>>;

fn raw_key(row: &Map<String, Value>, primary_key: &[String]) -> RepairKey {
    primary_key
        .iter()
        .map(|k| row.get(k).and_then(value_text).unwrap_or_default())
        .collect()
}

fn add_candidate<'f>(
    plan: &mut Plan<'f>,
    target: &str,
    key: RepairKey,
    file_row: Option<&'f Map<String, Value>>,
    source: &str,
) {
    let entry = plan
        .entry(target.to_owned())
        .or_default()
        .entry(key.clone())
        .or_insert_with(|| Candidate {
            raw_key: key,
            file_row,
            sources: Vec::new(),
        });
    if entry.file_row.is_none() {
        entry.file_row = file_row;
    }
    if !entry.sources.iter().any(|s| s == source) {
        entry.sources.push(source.to_owned());
    }
}

/// Works out, from the file alone, which keys each target may need and
/// where their values may come from.
fn plan<'f>(file: &'f DiffFile, mode: &RepairMode, selected: &[String]) -> Plan<'f> {
    let pk = &file.summary.primary_key;
    let mut plan = Plan::new();
    // Node order of the selection decides which peer wins.
    let rank = |name: &str| {
        selected
            .iter()
            .position(|n| n == name)
            .unwrap_or(usize::MAX)
    };
    for (pair, by_node) in &file.pairs {
        let Some((a, b)) = pair.split_once('/') else {
            continue;
        };
        if rank(a) == usize::MAX || rank(b) == usize::MAX {
            continue;
        }
        let empty = Vec::new();
        let rows = |node: &str| by_node.get(node).unwrap_or(&empty);
        let keyed = |node: &str| -> BTreeMap<RepairKey, &'f Map<String, Value>> {
            by_node
                .get(node)
                .map(|list| list.iter().map(|r| (raw_key(r, pk), r)).collect())
                .unwrap_or_default()
        };
        match mode {
            RepairMode::SourceOfTruth { node: sot, .. } => {
                let target = if a == sot {
                    b
                } else if b == sot {
                    a
                } else {
                    continue;
                };
                let target_rows = keyed(target);
                for row in rows(sot) {
                    let key = raw_key(row, pk);
                    let file_row = target_rows.get(&key).copied();
                    add_candidate(&mut plan, target, key, file_row, sot);
                }
                for (key, row) in target_rows {
                    add_candidate(&mut plan, target, key, Some(row), sot);
                }
            }
            RepairMode::Bidirectional => {
                let (rows_a, rows_b) = (keyed(a), keyed(b));
                for (from, to, from_rows, to_rows) in
                    [(a, b, &rows_a, &rows_b), (b, a, &rows_b, &rows_a)]
                {
                    for key in from_rows.keys() {
                        if !to_rows.contains_key(key) {
                            add_candidate(&mut plan, to, key.clone(), None, from);
                        }
                    }
                }
            }
            RepairMode::FixNulls => {
                let (rows_a, rows_b) = (keyed(a), keyed(b));
                for (from, to, from_rows, to_rows) in
                    [(a, b, &rows_a, &rows_b), (b, a, &rows_b, &rows_a)]
                {
                    for (key, row) in to_rows {
                        if from_rows.contains_key(key) {
                            add_candidate(&mut plan, to, key.clone(), Some(row), from);
                        }
                    }
                }
            }
        }
    }
    for candidates in plan.values_mut() {
        for candidate in candidates.values_mut() {
            candidate.sources.sort_by_key(|s| rank(s));
        }
    }
    plan
}

/// Refuses a diff file that is not about this table as it is now.
fn check_file(file: &DiffFile, table: &TableInfo) -> Result<()> {
    let summary = &file.summary;
    let bad = |reason: String| EngineError::DiffFile {
        path: file.path.clone(),
        reason,
    };
    if summary.schema != table.schema || summary.table != table.name {
        return Err(bad(format!(
            "it is a diff of {}.{}, not of {}",
            summary.schema,
            summary.table,
            table.display_name()
        )));
    }
    if summary.primary_key != table.primary_key {
        return Err(bad(format!(
            "its primary key ({}) is not the table's ({})",
            summary.primary_key.join(", "),
            table.primary_key.join(", ")
        )));
    }
    if !summary.columns.is_empty() {
        let recorded: Vec<(&str, &str)> = summary
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.data_type.as_str()))
            .collect();
        let now: Vec<(&str, &str)> = table
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.type_sql.as_str()))
            .collect();
        if recorded != now {
            let show = |list: &[(&str, &str)]| {
                list.iter()
                    .map(|(n, t)| format!("{n} {t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(bad(format!(
                "its columns ({}) are not the table's ({})",
                show(&recorded),
                show(&now)
            )));
        }
    }
    for (pair, by_node) in &file.pairs {
        for (node, rows) in by_node {
            for row in rows {
                if let Some(extra) = row.keys().find(|k| table.column(k).is_none()) {
                    return Err(bad(format!(
                        "{pair}/{node}: column {extra} is not in {}",
                        table.display_name()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Columns present in every row of the file (always the key), which the
/// staleness check compares.
fn compared_columns(file: &DiffFile, table: &TableInfo) -> Vec<usize> {
    table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, column)| {
            table.primary_key.contains(&column.name)
                || file
                    .pairs
                    .values()
                    .flat_map(|by_node| by_node.values().flatten())
                    .all(|row| row.contains_key(&column.name))
        })
        .map(|(i, _)| i)
        .collect()
}

// === Running ===

/// Runs table-repair of `file` on the nodes of `sessions`.
///
/// The diff file must be of `options.schema`/`options.table` with the
/// table's key and (when recorded) columns. Pairs with a node outside the
/// session are ignored. Preflight (table alike on every node, SELECT for
/// the role) and the privileges the mode needs on every target run before
/// anything is written; then each target is repaired in its own
/// transaction, all at once. A node whose transaction fails is rolled
/// back and reported [`NodeStatus::Failed`]; the others still commit, so
/// this returns `Ok` with the failures in the report (see
/// [`RepairReport::check`]).
///
/// # Errors
///
/// [`EngineError::Options`] for incompatible options or a source of truth
/// outside the selection; [`EngineError::DiffFile`] for a file of another
/// table, key or columns; preflight and privilege errors (session errors
/// naming node, role and privilege); reading the source rows;
/// [`EngineError::Cancelled`].
pub async fn table_repair(
    sessions: &ClusterSession,
    file: &DiffFile,
    options: &TableRepairOptions,
    progress: &Progress,
) -> Result<RepairReport> {
    let started_at = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    let mode = options.mode()?;
    let role = options.role.as_deref();
    let selected: Vec<String> = sessions
        .nodes()
        .iter()
        .map(|n| n.name().to_owned())
        .collect();
    if let RepairMode::SourceOfTruth { node, .. } = &mode {
        if !selected.contains(node) {
            return Err(EngineError::Options {
                field: "source_of_truth",
                reason: format!(
                    "node {node} is not among the selected nodes ({})",
                    selected.join(", ")
                ),
            });
        }
        if !file.nodes().contains(node) && !file.summary.nodes.contains(node) {
            return Err(EngineError::Options {
                field: "source_of_truth",
                reason: format!("node {node} is not a node of the diff file"),
            });
        }
    }
    if file.summary.schema != options.schema || file.summary.table != options.table {
        return Err(EngineError::DiffFile {
            path: file.path.clone(),
            reason: format!(
                "it is a diff of {}.{}, not of {}.{}",
                file.summary.schema, file.summary.table, options.schema, options.table
            ),
        });
    }
    let table = preflight(sessions, &options.schema, &options.table, role).await?;
    check_file(file, &table)?;
    let plan = plan(file, &mode, &selected);
    for target in plan.keys() {
        let node = sessions.node(target).ok_or_else(|| EngineError::Options {
            field: "nodes",
            reason: format!("node {target} is not selected"),
        })?;
        node.check_table_privileges(role, &table.schema, &table.name, mode.privileges())
            .await?;
    }
    progress.check()?;

    // The source rows, read once per source node, as they are now.
    let sql = RepairSql::new(&table);
    let mut wanted: BTreeMap<&str, BTreeSet<&RepairKey>> = BTreeMap::new();
    for candidates in plan.values() {
        for candidate in candidates.values() {
            for source in &candidate.sources {
                wanted
                    .entry(source.as_str())
                    .or_default()
                    .insert(&candidate.raw_key);
            }
        }
    }
    let read_scope = Scope::read_only(role);
    let sources: HashMap<String, HashMap<RepairKey, RowValues>> =
        try_join_all(wanted.iter().map(|(name, keys)| {
            let sql = &sql;
            let scope = &read_scope;
            async move {
                let node = sessions.node(name).ok_or_else(|| EngineError::Options {
                    field: "nodes",
                    reason: format!("node {name} is not selected"),
                })?;
                let keys: Vec<&RepairKey> = keys.iter().copied().collect();
                let rows = read_sources(node, scope, sql, &keys).await?;
                Ok::<_, EngineError>(((*name).to_owned(), rows))
            }
        }))
        .await?
        .into_iter()
        .collect();
    progress.check()?;

    let compared = compared_columns(file, &table);
    let context = TargetContext {
        sql: &sql,
        mode: &mode,
        options,
        sources: &sources,
        compared: &compared,
        progress,
    };
    let outcomes = join_all(plan.iter().map(|(target, candidates)| {
        let context = &context;
        async move {
            let node = sessions.node(target).expect("checked above");
            (target.clone(), context.repair(node, candidates).await)
        }
    }))
    .await;
    let mut nodes = BTreeMap::new();
    for (target, outcome) in outcomes {
        if let Err(EngineError::Cancelled) = outcome.error_kind {
            return Err(EngineError::Cancelled);
        }
        nodes.insert(target, outcome.repair);
    }
    for (target, node) in &nodes {
        match node.status {
            NodeStatus::Failed => tracing::warn!(
                node = %target,
                error = node.error.as_deref().unwrap_or_default(),
                "repair rolled back"
            ),
            status => tracing::info!(
                node = %target,
                status = status.as_str(),
                rows = node.changes.len(),
                stale = node.stale.len(),
                "repair finished"
            ),
        }
    }
    Ok(RepairReport {
        schema: table.schema.clone(),
        table: table.name.clone(),
        mode,
        options: options.clone(),
        diff_file: file.path.clone(),
        nodes,
        columns: table.columns.clone(),
        primary_key: table.primary_key.clone(),
        started_at,
        run_time: started.elapsed(),
    })
}

fn read_row(row: &PgRow, from: usize, count: usize) -> Result<RowValues, sqlx::Error> {
    (from..from + count)
        .map(|i| row.try_get::<Option<String>, _>(i))
        .collect()
}

/// A statement with one text array per column of `columns`, taken from
/// `rows`.
fn bind_rows<'q>(
    statement: &'q str,
    rows: &[&RowValues],
    columns: &[usize],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut query = sqlx::query(statement);
    for &column in columns {
        let values: Vec<Option<String>> = rows.iter().map(|row| row[column].clone()).collect();
        query = query.bind(values);
    }
    query
}

fn key_arrays(keys: &[&RepairKey], width: usize) -> Vec<Vec<String>> {
    (0..width)
        .map(|i| keys.iter().map(|k| k[i].clone()).collect())
        .collect()
}

/// Every column of the rows with `keys` on a source node, keyed by the
/// key as the node prints it.
async fn read_sources(
    node: &NodeSession,
    scope: &Scope,
    sql: &RepairSql,
    keys: &[&RepairKey],
) -> Result<HashMap<RepairKey, RowValues>> {
    let mut out = HashMap::with_capacity(keys.len());
    let statement = sql.select_rows();
    let mut tx = node.begin(scope).await?;
    for batch in keys.chunks(READ_BATCH) {
        let mut query = sqlx::query(&statement);
        for array in key_arrays(batch, sql.key_idx.len()) {
            query = query.bind(array);
        }
        let rows = query
            .fetch_all(tx.conn())
            .await
            .map_err(|e| EngineError::query(node.name(), e))?;
        for row in rows {
            let values = read_row(&row, 0, sql.columns.len())
                .map_err(|e| EngineError::query(node.name(), e))?;
            out.insert(sql.key_of(&values), values);
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// What one target's repair needs.
struct TargetContext<'a> {
    sql: &'a RepairSql,
    mode: &'a RepairMode,
    options: &'a TableRepairOptions,
    sources: &'a HashMap<String, HashMap<RepairKey, RowValues>>,
    compared: &'a [usize],
    progress: &'a Progress,
}

/// A target's outcome, and whether it ended by cancellation.
struct Outcome {
    repair: NodeRepair,
    error_kind: Result<()>,
}

/// One row of the target as it is now, beside the file's version.
struct Current {
    key: RepairKey,
    row: Option<RowValues>,
    fresh: bool,
}

impl TargetContext<'_> {
    async fn repair(
        &self,
        node: &NodeSession,
        candidates: &BTreeMap<RepairKey, Candidate<'_>>,
    ) -> Outcome {
        let dry = self.options.dry_run;
        let role = self.options.role.as_deref();
        let scope = if dry {
            Scope::read_only(role)
        } else if self.options.fire_triggers {
            Scope::read_write(role)
        } else {
            Scope::read_write(role).with_replica_role()
        };
        let mut repair = NodeRepair::new(if dry {
            NodeStatus::DryRun
        } else {
            NodeStatus::Repaired
        });
        let result = async {
            let mut tx = node.begin(&scope).await?;
            let list = self.in_key_order(&mut tx, candidates).await?;
            if !dry && self.mode.modifies_existing() {
                self.lock(&mut tx, &list).await?;
            }
            let current = self.current(&mut tx, &list).await?;
            self.decide(&list, &current, &mut repair);
            if !dry {
                self.write(&mut tx, &repair).await?;
                self.progress.check()?;
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok::<_, EngineError>(())
        }
        .await;
        match result {
            Ok(()) => Outcome {
                repair,
                error_kind: Ok(()),
            },
            Err(error) => {
                repair.status = NodeStatus::Failed;
                repair.error = Some(error.to_string());
                let kind = match error {
                    EngineError::Cancelled => Err(EngineError::Cancelled),
                    _ => Ok(()),
                };
                Outcome {
                    repair,
                    error_kind: kind,
                }
            }
        }
    }

    /// The candidates in the table's key order (as PostgreSQL sorts the
    /// key types), so reports list rows as the diff file does.
    async fn in_key_order<'c, 'f>(
        &self,
        tx: &mut RoleTx,
        candidates: &'c BTreeMap<RepairKey, Candidate<'f>>,
    ) -> Result<Vec<&'c Candidate<'f>>> {
        let list: Vec<&Candidate<'f>> = candidates.values().collect();
        if list.is_empty() {
            return Ok(list);
        }
        let node = tx.node().to_owned();
        let keys: Vec<&RepairKey> = list.iter().map(|c| &c.raw_key).collect();
        let statement = self.sql.order_keys();
        let mut query = sqlx::query_scalar::<_, i64>(&statement);
        for array in key_arrays(&keys, self.sql.key_idx.len()) {
            query = query.bind(array);
        }
        let order = query
            .fetch_all(tx.conn())
            .await
            .map_err(|e| EngineError::query(&node, e))?;
        Ok(order
            .into_iter()
            .filter_map(|ord| usize::try_from(ord - 1).ok())
            .filter_map(|index| list.get(index).copied())
            .collect())
    }

    async fn lock(&self, tx: &mut RoleTx, list: &[&Candidate<'_>]) -> Result<()> {
        let statement = self.sql.lock_rows();
        let node = tx.node().to_owned();
        for batch in list.chunks(READ_BATCH) {
            let keys: Vec<&RepairKey> = batch.iter().map(|c| &c.raw_key).collect();
            let mut query = sqlx::query(&statement);
            for array in key_arrays(&keys, self.sql.key_idx.len()) {
                query = query.bind(array);
            }
            query
                .execute(tx.conn())
                .await
                .map_err(|e| EngineError::query(&node, e))?;
        }
        Ok(())
    }

    /// The target's rows now, one per candidate, in order.
    async fn current(&self, tx: &mut RoleTx, list: &[&Candidate<'_>]) -> Result<Vec<Current>> {
        let statement = self.sql.current_vs_file(self.compared);
        let node = tx.node().to_owned();
        let width = self.sql.columns.len();
        let key_len = self.sql.key_idx.len();
        let mut out = Vec::with_capacity(list.len());
        for batch in list.chunks(READ_BATCH) {
            let mut query = sqlx::query(&statement);
            for &column in self.compared {
                let name = &self.sql.columns[column].name;
                let key_pos = self.sql.key_idx.iter().position(|&k| k == column);
                let values: Vec<Option<String>> = batch
                    .iter()
                    .map(|c| match (key_pos, c.file_row) {
                        (Some(k), _) => Some(c.raw_key[k].clone()),
                        (None, Some(row)) => row.get(name).and_then(value_text),
                        (None, None) => None,
                    })
                    .collect();
                query = query.bind(values);
            }
            let present: Vec<bool> = batch.iter().map(|c| c.file_row.is_some()).collect();
            query = query.bind(present);
            let rows = query
                .fetch_all(tx.conn())
                .await
                .map_err(|e| EngineError::query(&node, e))?;
            for row in rows {
                let read = || -> Result<Current, sqlx::Error> {
                    let key: Vec<Option<String>> = read_row(&row, 0, key_len)?;
                    let values = read_row(&row, key_len, width)?;
                    let exists = self.sql.key_idx.iter().any(|&i| values[i].is_some());
                    Ok(Current {
                        key: key.into_iter().map(Option::unwrap_or_default).collect(),
                        row: exists.then_some(values),
                        fresh: row.try_get::<bool, _>(key_len + width)?,
                    })
                };
                out.push(read().map_err(|e| EngineError::query(&node, e))?);
            }
        }
        Ok(out)
    }

    /// Decides each row's fate from the current target rows and the
    /// current source rows.
    fn decide(&self, list: &[&Candidate<'_>], current: &[Current], repair: &mut NodeRepair) {
        let allow_stale = self.options.allow_stale;
        for (candidate, now) in list.iter().zip(current) {
            let source_row =
                |name: &str| self.sources.get(name).and_then(|rows| rows.get(&now.key));
            let stale = |reason: &str| StaleRow {
                key: now.key.clone(),
                reason: reason.to_owned(),
                current: now.row.clone(),
            };
            match self.mode {
                RepairMode::SourceOfTruth { node: sot, kind } => {
                    let source = source_row(sot);
                    if source == now.row.as_ref() {
                        repair.already_matching += 1;
                        continue;
                    }
                    if !now.fresh && !allow_stale {
                        repair
                            .stale
                            .push(stale("the target row changed since the diff was taken"));
                        continue;
                    }
                    let action = match (source, &now.row, kind) {
                        (Some(_), None, _) => Some(RowAction::Insert),
                        (Some(_), Some(_), SotKind::Full | SotKind::UpsertOnly) => {
                            Some(RowAction::Update)
                        }
                        (None, Some(_), SotKind::Full) => Some(RowAction::Delete),
                        _ => None,
                    };
                    let Some(action) = action else {
                        repair.skipped_by_mode += 1;
                        continue;
                    };
                    repair.changes.push(RowChange {
                        action,
                        key: now.key.clone(),
                        before: now.row.clone(),
                        after: source.cloned(),
                        source: (action != RowAction::Delete).then(|| sot.clone()),
                        filled: Vec::new(),
                    });
                }
                RepairMode::Bidirectional => {
                    let found = candidate
                        .sources
                        .iter()
                        .find_map(|name| source_row(name).map(|row| (name, row)));
                    let Some((name, row)) = found else {
                        repair.stale.push(stale("no peer has the row any more"));
                        continue;
                    };
                    match &now.row {
                        Some(existing) if existing == row => repair.already_matching += 1,
                        Some(_) => repair
                            .stale
                            .push(stale("the target has this row now (insert-only)")),
                        None => repair.changes.push(RowChange {
                            action: RowAction::Insert,
                            key: now.key.clone(),
                            before: None,
                            after: Some(row.clone()),
                            source: Some(name.clone()),
                            filled: Vec::new(),
                        }),
                    }
                }
                RepairMode::FixNulls => {
                    let Some(before) = &now.row else {
                        repair.stale.push(stale("the target row is gone"));
                        continue;
                    };
                    if !now.fresh && !allow_stale {
                        repair
                            .stale
                            .push(stale("the target row changed since the diff was taken"));
                        continue;
                    }
                    let mut after = before.clone();
                    let mut filled = Vec::new();
                    let mut from = Vec::new();
                    for (index, column) in self.sql.writable() {
                        if self.sql.key_idx.contains(&index) || before[index].is_some() {
                            continue;
                        }
                        let value = candidate.sources.iter().find_map(|name| {
                            source_row(name)
                                .and_then(|row| row[index].clone())
                                .map(|v| (name, v))
                        });
                        if let Some((name, value)) = value {
                            after[index] = Some(value);
                            filled.push(column.name.clone());
                            if !from.contains(name) {
                                from.push(name.clone());
                            }
                        }
                    }
                    if filled.is_empty() {
                        repair.already_matching += 1;
                        continue;
                    }
                    repair.changes.push(RowChange {
                        action: RowAction::FillNulls,
                        key: now.key.clone(),
                        before: Some(before.clone()),
                        after: Some(after),
                        source: Some(from.join(",")),
                        filled,
                    });
                }
            }
        }
    }

    /// Writes the decided changes: deletes, updates, inserts, then NULL
    /// fills, each in batches, so a trigger (with `fire_triggers`) sees
    /// exactly the action the report lists.
    async fn write(&self, tx: &mut RoleTx, repair: &NodeRepair) -> Result<()> {
        let node = tx.node().to_owned();
        let query_error = |e| EngineError::query(&node, e);
        let key_len = self.sql.key_idx.len();

        let deletes: Vec<&RepairKey> = repair
            .changes
            .iter()
            .filter(|c| c.action == RowAction::Delete)
            .map(|c| &c.key)
            .collect();
        let statement = self.sql.delete_rows();
        for batch in deletes.chunks(WRITE_BATCH) {
            self.progress.check()?;
            let mut query = sqlx::query(&statement);
            for array in key_arrays(batch, key_len) {
                query = query.bind(array);
            }
            let done = query.execute(tx.conn()).await.map_err(query_error)?;
            if done.rows_affected() != batch.len() as u64 {
                return Err(EngineError::Repair {
                    node: node.clone(),
                    reason: format!(
                        "deleted {} rows where {} were locked for deletion",
                        done.rows_affected(),
                        batch.len()
                    ),
                });
            }
        }

        let writable: Vec<usize> = self.sql.writable().map(|(i, _)| i).collect();
        let rows_of = |action: RowAction| -> Vec<&RowValues> {
            repair
                .changes
                .iter()
                .filter(|c| c.action == action)
                .filter_map(|c| c.after.as_ref())
                .collect()
        };

        // Updates: the rows are locked, so each must be found.
        let updates = rows_of(RowAction::Update);
        if let Some(statement) = self.sql.update_rows() {
            for batch in updates.chunks(WRITE_BATCH) {
                self.progress.check()?;
                let done = bind_rows(&statement, batch, &writable)
                    .execute(tx.conn())
                    .await
                    .map_err(query_error)?;
                if done.rows_affected() != batch.len() as u64 {
                    return Err(EngineError::Repair {
                        node: node.clone(),
                        reason: format!(
                            "updated {} rows where {} were locked for update",
                            done.rows_affected(),
                            batch.len()
                        ),
                    });
                }
            }
        }

        // Inserts: a row that appeared after the check is not overwritten,
        // and the report must not claim it was written.
        let inserts = rows_of(RowAction::Insert);
        let statement = self.sql.insert_rows();
        for batch in inserts.chunks(WRITE_BATCH) {
            self.progress.check()?;
            let written = bind_rows(&statement, batch, &writable)
                .fetch_all(tx.conn())
                .await
                .map_err(query_error)?;
            if written.len() != batch.len() {
                return Err(EngineError::Repair {
                    node: node.clone(),
                    reason: format!(
                        "{} of {} rows to insert appeared on the node during the repair",
                        batch.len() - written.len(),
                        batch.len()
                    ),
                });
            }
        }

        for (column, _) in self.sql.writable() {
            let fills: Vec<(&RepairKey, String)> = repair
                .changes
                .iter()
                .filter(|c| c.action == RowAction::FillNulls)
                .filter(|c| c.filled.contains(&self.sql.columns[column].name))
                .filter_map(|c| {
                    c.after
                        .as_ref()
                        .and_then(|row| row[column].clone())
                        .map(|value| (&c.key, value))
                })
                .collect();
            if fills.is_empty() {
                continue;
            }
            let statement = self.sql.fill_column(column);
            for batch in fills.chunks(WRITE_BATCH) {
                self.progress.check()?;
                let keys: Vec<&RepairKey> = batch.iter().map(|(k, _)| *k).collect();
                let mut query = sqlx::query(&statement);
                for array in key_arrays(&keys, key_len) {
                    query = query.bind(array);
                }
                let values: Vec<String> = batch.iter().map(|(_, v)| v.clone()).collect();
                query = query.bind(values);
                let done = query.execute(tx.conn()).await.map_err(query_error)?;
                if done.rows_affected() != batch.len() as u64 {
                    return Err(EngineError::Repair {
                        node: node.clone(),
                        reason: format!(
                            "filled {} of {} NULLs of column {}; the rows changed during the repair",
                            done.rows_affected(),
                            batch.len(),
                            self.sql.columns[column].name
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> TableRepairOptions {
        TableRepairOptions::new("public", "t")
    }

    #[test]
    fn modes_and_incompatible_pairs() {
        let mut o = options();
        let error = o.mode().unwrap_err();
        assert!(error.to_string().contains("source_of_truth"), "{error}");
        o.source_of_truth = Some("n1".into());
        assert_eq!(
            o.mode().unwrap(),
            RepairMode::SourceOfTruth {
                node: "n1".into(),
                kind: SotKind::Full
            }
        );
        o.upsert_only = true;
        assert!(matches!(
            o.mode().unwrap(),
            RepairMode::SourceOfTruth {
                kind: SotKind::UpsertOnly,
                ..
            }
        ));
        o.insert_only = true;
        let error = o.mode().unwrap_err().to_string();
        assert!(
            error.contains("insert_only") && error.contains("upsert_only"),
            "{error}"
        );
        for (set, a, b) in [
            (
                &(|o: &mut TableRepairOptions| {
                    o.bidirectional = true;
                    o.upsert_only = true;
                }) as &dyn Fn(&mut TableRepairOptions),
                "bidirectional",
                "upsert_only",
            ),
            (
                &|o: &mut TableRepairOptions| {
                    o.bidirectional = true;
                    o.fix_nulls = true;
                },
                "bidirectional",
                "fix_nulls",
            ),
            (
                &|o: &mut TableRepairOptions| {
                    o.fix_nulls = true;
                    o.insert_only = true;
                },
                "fix_nulls",
                "insert_only",
            ),
            (
                &|o: &mut TableRepairOptions| {
                    o.fix_nulls = true;
                    o.source_of_truth = Some("n1".into());
                },
                "fix_nulls",
                "source_of_truth",
            ),
        ] {
            let mut o = options();
            set(&mut o);
            let error = o.mode().unwrap_err().to_string();
            assert!(error.contains(a) && error.contains(b), "{error}");
        }
        let mut o = options();
        o.bidirectional = true;
        o.insert_only = true;
        assert_eq!(o.mode().unwrap(), RepairMode::Bidirectional);
        let mut o = options();
        o.fix_nulls = true;
        assert_eq!(o.mode().unwrap(), RepairMode::FixNulls);
    }

    fn table() -> TableInfo {
        let column = |name: &str, ty: &str, generated: bool, identity: Option<char>| Column {
            name: name.into(),
            type_sql: ty.into(),
            base_type: ty.into(),
            category: 'N',
            generated,
            identity,
            not_null: false,
        };
        TableInfo {
            schema: "public".into(),
            name: "Odd \"T\"".into(),
            columns: vec![
                column("id", "bigint", false, Some('a')),
                column("v", "text", false, None),
                column("g", "integer", true, None),
            ],
            primary_key: vec!["id".into()],
            estimated_rows: 0.0,
            pages: 0,
        }
    }

    #[test]
    fn statements_quote_cast_and_skip_generated_columns() {
        let sql = RepairSql::new(&table());
        let insert = sql.insert_rows();
        assert_eq!(
            insert,
            r#"INSERT INTO "public"."Odd ""T""" ("id", "v") OVERRIDING SYSTEM VALUE SELECT u.v0::bigint, u.v1::text FROM unnest($1::text[], $2::text[]) AS u(v0, v1) ON CONFLICT ("id") DO NOTHING RETURNING "id""#
        );
        assert_eq!(
            sql.update_rows().unwrap(),
            r#"UPDATE "public"."Odd ""T""" t SET "v" = u.v1::text FROM unnest($1::text[], $2::text[]) AS u(v0, v1) WHERE t."id" = u.v0::bigint"#
        );
        assert_eq!(
            sql.delete_rows(),
            r#"DELETE FROM "public"."Odd ""T""" t WHERE (t."id") IN (SELECT u.v0::bigint FROM unnest($1::text[]) AS u(v0))"#
        );
        assert!(sql.fill_column(1).contains(r#"SET "v" = u.v1::text"#));
        assert!(sql.fill_column(1).ends_with(r#"AND t."v" IS NULL"#));
        let current = sql.current_vs_file(&[0, 1, 2]);
        assert!(current.contains("$4::bool[]"), "{current}");
        assert!(current.contains("WITH ORDINALITY"), "{current}");
    }
}
