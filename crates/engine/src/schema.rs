//! schema-diff and repset-diff: many tables at once.
//!
//! **schema-diff** reads, on every node and as the caller's role in one
//! read-only transaction, the catalog entries of a schema's objects:
//! tables and their columns (type, default, nullability, identity and
//! generation), constraints (primary key, unique, foreign key, check,
//! exclusion), indexes, views and materialized views, foreign tables,
//! functions and procedures (identity signature and full definition),
//! sequences and triggers. Definitions are PostgreSQL's own renderings
//! (`format_type`, `pg_get_expr`, `pg_get_constraintdef`,
//! `pg_get_indexdef`, `pg_get_viewdef`, `pg_get_functiondef`,
//! `pg_get_triggerdef`) with the schema's own qualifier removed, so equal
//! objects print equally. Objects that belong to an extension are left out.
//! Each object present on some nodes only is reported with the nodes that
//! have and lack it; each present everywhere with different definitions is
//! reported with every node's definition. A table's columns, constraints,
//! indexes and triggers are compared only between the nodes that have the
//! table, so a missing table is one difference, not one per column.
//!
//! Unless `ddl_only`, every table (`relkind` `r` or `p`) present on all
//! nodes is then table-diffed ([`crate::table_diff`]) with the same tuning.
//! Views, materialized views and foreign tables are listed as skipped.
//!
//! **repset-diff** takes the tables of a replication set: with the Spock
//! extension installed on a node, Spock's set of that name
//! (`spock.replication_set`, `spock.replication_set_table`); otherwise the
//! publication of that name (`pg_publication`, `pg_publication_tables`).
//! Nodes that lack the set, and tables that are members on some nodes only,
//! are reported; every member table is then table-diffed.
//!
//! In both, tables named in the skip list are left out entirely (neither
//! their definitions nor their rows are compared) and listed as skipped. A
//! table that cannot be compared (no primary key, columns that disagree, no
//! privilege, a failed statement) is listed with the reason and the run
//! goes on; [`SetDiffReport::failed`] is then true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ace_session::{ClusterSession, RoleTx, Scope, SessionError};
use futures::future::try_join_all;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;

use crate::diff::{Progress, TableDiffOptions, table_diff};
use crate::error::{EngineError, Result};
use crate::report::{DiffReport, go_duration, rfc3339};

/// What schema-diff and repset-diff compare, and how each table is
/// diffed. Field names follow upstream ACE.
#[derive(Debug, Clone)]
pub struct SetDiffOptions {
    /// Rows per hashed bucket (see [`TableDiffOptions::block_size`]).
    pub block_size: u64,
    /// Parallel scans per node, as a multiple of the CPU count (0 < f <= 4).
    pub concurrency_factor: f64,
    /// Largest bucket compared row by row.
    pub compare_unit_size: u64,
    /// Most differing rows reported per node pair and table (0 = no limit).
    pub max_diff_rows: u64,
    /// Compare definitions only (schema-diff); no rows are read.
    pub ddl_only: bool,
    /// Tables left out.
    pub skip: SkipList,
    /// The role the work runs as (an API caller's CN); `None` is ACE's user.
    pub role: Option<String>,
}

impl Default for SetDiffOptions {
    fn default() -> Self {
        let table = TableDiffOptions::new("", "");
        SetDiffOptions {
            block_size: table.block_size,
            concurrency_factor: table.concurrency_factor,
            compare_unit_size: table.compare_unit_size,
            max_diff_rows: table.max_diff_rows,
            ddl_only: false,
            skip: SkipList::default(),
            role: None,
        }
    }
}

impl SetDiffOptions {
    fn validate(&self) -> Result<()> {
        let bad = |field, reason: &str| {
            Err(EngineError::Options {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.block_size == 0 {
            return bad("block_size", "must be at least 1");
        }
        if !(self.concurrency_factor > 0.0 && self.concurrency_factor <= 4.0) {
            return bad("concurrency_factor", "must lie in (0, 4]");
        }
        if self.compare_unit_size == 0 {
            return bad("compare_unit_size", "must be at least 1");
        }
        Ok(())
    }

    fn table_options(&self, schema: &str, table: &str) -> TableDiffOptions {
        let mut options = TableDiffOptions::new(schema, table);
        options.block_size = self.block_size;
        options.concurrency_factor = self.concurrency_factor;
        options.compare_unit_size = self.compare_unit_size;
        options.max_diff_rows = self.max_diff_rows;
        options.role = self.role.clone();
        options
    }
}

/// A schema or table name as PostgreSQL reads an identifier: unquoted
/// names fold to lower case, `"Quoted"` names keep theirs.
///
/// # Errors
///
/// [`EngineError::Options`] naming `field` for anything but one name.
pub fn parse_identifier(text: &str, field: &'static str) -> Result<String> {
    let mut names = parse_name_list(text, field)?;
    match (names.pop(), names.is_empty()) {
        (Some(mut parts), true) if parts.len() == 1 => Ok(parts.remove(0)),
        _ => Err(EngineError::Options {
            field,
            reason: format!("{text:?} is not one name"),
        }),
    }
}

/// A comma list of dotted names, each as a list of its parts.
fn parse_name_list(text: &str, field: &'static str) -> Result<Vec<Vec<String>>> {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;
    let bad = |reason: String| EngineError::Options { field, reason };
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| bad(format!("{text:?}: {e}")))?;
    let names = parser
        .parse_comma_separated(|p| p.parse_object_name(false))
        .map_err(|e| bad(format!("{text:?}: {e}")))?;
    if parser.peek_token().token != sqlparser::tokenizer::Token::EOF {
        return Err(bad(format!("{text:?} is not a list of names")));
    }
    names
        .iter()
        .map(|name| {
            name.0
                .iter()
                .map(|part| {
                    let ident = part
                        .as_ident()
                        .ok_or_else(|| bad(format!("{text:?} is not a list of names")))?;
                    Ok(match ident.quote_style {
                        Some('"') => ident.value.clone(),
                        _ => ident.value.to_lowercase(),
                    })
                })
                .collect()
        })
        .collect()
}

/// One entry of a skip list: `table` (in any schema compared) or
/// `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipEntry {
    /// The schema, when the entry named one.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
    /// Where the entry came from: `skip_tables` or `skip_file`.
    pub source: &'static str,
}

/// Tables to leave out, from upstream's `skip_tables` (a comma list) and
/// `skip_file` (one table per line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipList {
    entries: Vec<SkipEntry>,
}

impl SkipList {
    /// Adds the tables of a comma list such as `t1, "My Schema"."T2"`
    /// (names read as identifiers; a blank list adds nothing).
    ///
    /// # Errors
    ///
    /// [`EngineError::Options`] (`skip_tables`) for an entry that is not
    /// `table` or `schema.table`.
    pub fn add_list(&mut self, text: &str) -> Result<()> {
        self.add(text, "skip_tables")
    }

    /// Adds the tables of a skip file's text: one `table` or
    /// `schema.table` per line; blank lines and lines starting with `#`
    /// are ignored.
    ///
    /// # Errors
    ///
    /// [`EngineError::Options`] (`skip_file`) naming the line.
    pub fn add_file_text(&mut self, text: &str) -> Result<()> {
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.add(line, "skip_file").map_err(|error| match error {
                EngineError::Options { field, reason } => EngineError::Options {
                    field,
                    reason: format!("line {}: {reason}", index + 1),
                },
                other => other,
            })?;
        }
        Ok(())
    }

    fn add(&mut self, text: &str, source: &'static str) -> Result<()> {
        if text.trim().is_empty() {
            return Ok(());
        }
        for mut parts in parse_name_list(text, source)? {
            let entry = match parts.len() {
                1 => SkipEntry {
                    schema: None,
                    table: parts.remove(0),
                    source,
                },
                2 => SkipEntry {
                    table: parts.remove(1),
                    schema: Some(parts.remove(0)),
                    source,
                },
                _ => {
                    return Err(EngineError::Options {
                        field: source,
                        reason: format!("{:?} is not table or schema.table", parts.join(".")),
                    });
                }
            };
            self.entries.push(entry);
        }
        Ok(())
    }

    /// The entries, in the order added.
    pub fn entries(&self) -> &[SkipEntry] {
        &self.entries
    }

    /// The entry that leaves out `schema.table`, if any.
    pub fn matching(&self, schema: &str, table: &str) -> Option<&SkipEntry> {
        self.entries.iter().find(|entry| {
            entry.table == table && entry.schema.as_deref().is_none_or(|s| s == schema)
        })
    }
}

/// How an object differs between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Difference {
    /// Present on some nodes only.
    Missing {
        /// Nodes that have it.
        present_on: Vec<String>,
        /// Nodes that lack it.
        missing_on: Vec<String>,
    },
    /// Present everywhere, defined differently.
    Differs {
        /// Every node's definition.
        definitions: BTreeMap<String, String>,
    },
}

/// One object that is not alike on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectDifference {
    /// `table`, `column`, `primary_key`, `unique`, `foreign_key`, `check`,
    /// `exclusion`, `index`, `view`, `materialized_view`, `foreign_table`,
    /// `function`, `sequence`, `trigger`, or (repset-diff)
    /// `replication_set_table`.
    pub object_type: &'static str,
    /// The name within the schema: `t`, `t.column`, `t.constraint`,
    /// `index`, `f(integer, text)`, `t.trigger`; for set members,
    /// `schema.table`.
    pub name: String,
    /// How it differs.
    #[serde(flatten)]
    pub difference: Difference,
}

/// A table compared row by row that differs.
#[derive(Debug, Clone)]
pub struct DifferingTable {
    /// `schema.table`.
    pub table: String,
    /// The table-diff report.
    pub report: DiffReport,
    /// The diff file's name, once [`SetDiffReport::write`] wrote it.
    pub diff_file: Option<String>,
}

/// A table present on some nodes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingTable {
    /// `schema.table`.
    pub table: String,
    /// Nodes that have it.
    pub present_on: Vec<String>,
    /// Nodes that lack it.
    pub missing_on: Vec<String>,
}

/// A table not compared, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableReason {
    /// `schema.table`.
    pub table: String,
    /// Why (`skip_tables`, `skip_file`, `view`, or the error).
    pub reason: String,
}

/// Whether the run compared a schema or a replication set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// schema-diff.
    Schema,
    /// repset-diff.
    Repset,
}

/// The outcome of schema-diff or repset-diff.
#[derive(Debug, Clone)]
pub struct SetDiffReport {
    /// Which operation.
    pub kind: SetKind,
    /// The schema or replication set.
    pub name: String,
    /// Nodes compared.
    pub nodes: Vec<String>,
    /// Whether only definitions were compared.
    pub ddl_only: bool,
    /// Nodes that lack the schema or set.
    pub missing_on: Vec<String>,
    /// repset-diff: per node, where the set came from (`spock` or
    /// `publication`).
    pub set_source: BTreeMap<String, String>,
    /// Objects (schema-diff) or set members (repset-diff) not alike on
    /// every node.
    pub object_differences: Vec<ObjectDifference>,
    /// Tables whose rows match on every node.
    pub identical: Vec<String>,
    /// Tables whose rows differ.
    pub differing: Vec<DifferingTable>,
    /// Tables present on some nodes only.
    pub missing: Vec<MissingTable>,
    /// Tables left out on purpose (skip list, views, foreign tables).
    pub skipped: Vec<TableReason>,
    /// Tables that could not be compared.
    pub failed: Vec<TableReason>,
    /// The tuning used.
    pub options: SetDiffOptions,
    /// RFC 3339 start.
    pub start_time: String,
    /// RFC 3339 end.
    pub end_time: String,
    /// Duration, Go style.
    pub time_taken: String,
}

impl SetDiffReport {
    /// Whether some table could not be compared (the run is a failure).
    pub fn failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Whether everything compared is alike: no object, membership,
    /// missing-table or row difference, and nothing failed.
    pub fn matches(&self) -> bool {
        self.missing_on.is_empty()
            && self.object_differences.is_empty()
            && self.differing.is_empty()
            && self.missing.is_empty()
            && !self.failed()
    }

    /// `identical`, `differences` or `failed`.
    pub fn result(&self) -> &'static str {
        if self.failed() {
            "failed"
        } else if self.matches() {
            "identical"
        } else {
            "differences"
        }
    }

    fn label(&self) -> (&'static str, &'static str) {
        match self.kind {
            SetKind::Schema => ("schema", "schema-diff"),
            SetKind::Repset => ("repset", "repset-diff"),
        }
    }

    /// The counts and tuning, as stored in a task's summary.
    pub fn summary_json(&self) -> Value {
        json!({
            "nodes": self.nodes,
            "block_size": self.options.block_size,
            "concurrency_factor": self.options.concurrency_factor,
            "compare_unit_size": self.options.compare_unit_size,
            "max_diff_rows": self.options.max_diff_rows,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "time_taken": self.time_taken,
            "object_differences_count": self.object_differences.len(),
            "tables_identical": self.identical.len(),
            "tables_differing": self.differing.len(),
            "tables_missing": self.missing.len(),
            "tables_skipped": self.skipped.len(),
            "tables_failed": self.failed.len(),
            "result": self.result(),
        })
    }

    /// The whole report as JSON:
    ///
    /// ```text
    /// { "schema" | "repset": name, "nodes", "ddl_only" (schema-diff),
    ///   "schema_missing_on" | "repset_missing_on", "repset_source",
    ///   "ddl_differences" | "membership_differences": [ {object_type,
    ///     name, status: missing, present_on, missing_on} | {..., status:
    ///     differs, definitions: {node: text}} ],
    ///   "tables": { "identical": [t], "differing": [{table,
    ///     diff_rows_count, diff_row_limit_reached, diff_file}],
    ///     "missing": [{table, present_on, missing_on}],
    ///     "skipped": [{table, reason}], "failed": [{table, reason}] },
    ///   "summary": { counts, tuning, times, "result" } }
    /// ```
    pub fn to_json(&self) -> Value {
        let (noun, _) = self.label();
        let differing: Vec<Value> = self
            .differing
            .iter()
            .map(|t| {
                let mut entry = json!({
                    "table": t.table,
                    "diff_rows_count": t.report.summary.diff_rows_count,
                    "diff_row_limit_reached": t.report.summary.diff_row_limit_reached,
                });
                if let Some(file) = &t.diff_file {
                    entry["diff_file"] = json!(file);
                }
                entry
            })
            .collect();
        let mut top = serde_json::Map::new();
        top.insert(noun.into(), json!(self.name));
        top.insert("nodes".into(), json!(self.nodes));
        let differences = json!(self.object_differences);
        match self.kind {
            SetKind::Schema => {
                top.insert("ddl_only".into(), json!(self.ddl_only));
                top.insert("schema_missing_on".into(), json!(self.missing_on));
                top.insert("ddl_differences".into(), differences);
            }
            SetKind::Repset => {
                top.insert("repset_missing_on".into(), json!(self.missing_on));
                top.insert("repset_source".into(), json!(self.set_source));
                top.insert("membership_differences".into(), differences);
            }
        }
        top.insert(
            "tables".into(),
            json!({
                "identical": self.identical,
                "differing": differing,
                "missing": self.missing,
                "skipped": self.skipped,
                "failed": self.failed,
            }),
        );
        top.insert("summary".into(), self.summary_json());
        Value::Object(top)
    }

    /// Writes each differing table's diff file (upstream's
    /// `<schema>_<table>_diffs-<ts>.json`, with an HTML rendering beside it
    /// when `html`), then this report as
    /// `<name>_schema-diff-<ts>.json` or `<name>_repset-diff-<ts>.json`
    /// (and `.html`), and returns the report's path. The diff files' names
    /// are recorded in the report.
    ///
    /// # Errors
    ///
    /// [`EngineError::Write`] when a file cannot be written.
    pub fn write(&mut self, dir: &Path, html: bool) -> Result<PathBuf> {
        for table in &mut self.differing {
            let path = table.report.write_json(dir, "diffs")?;
            if html {
                table.report.write_html(dir, "diffs")?;
            }
            table.diff_file = path.file_name().map(|n| n.to_string_lossy().into_owned());
        }
        let (_, operation) = self.label();
        let stem = format!(
            "{}_{operation}-{}",
            crate::report::file_name_part(&self.name),
            stamp()
        );
        let path = dir.join(format!("{stem}.json"));
        let text = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
        std::fs::write(&path, text).map_err(|source| EngineError::Write {
            path: path.clone(),
            source,
        })?;
        if html {
            let html_path = dir.join(format!("{stem}.html"));
            std::fs::write(&html_path, self.to_html()).map_err(|source| EngineError::Write {
                path: html_path.clone(),
                source,
            })?;
        }
        Ok(path)
    }

    /// A short human summary, one line per finding.
    pub fn human_summary(&self) -> String {
        let (noun, operation) = self.label();
        let mut out = format!(
            "{operation} {noun} {} on {}: {}\n",
            self.name,
            self.nodes.join(", "),
            self.result().to_uppercase()
        );
        if !self.missing_on.is_empty() {
            out.push_str(&format!(
                "  {noun} missing on {}\n",
                self.missing_on.join(", ")
            ));
        }
        for difference in &self.object_differences {
            match &difference.difference {
                Difference::Missing { missing_on, .. } => out.push_str(&format!(
                    "  {} {}: missing on {}\n",
                    difference.object_type,
                    difference.name,
                    missing_on.join(", ")
                )),
                Difference::Differs { .. } => out.push_str(&format!(
                    "  {} {}: differs\n",
                    difference.object_type, difference.name
                )),
            }
        }
        for table in &self.identical {
            out.push_str(&format!("  table {table}: identical\n"));
        }
        for table in &self.differing {
            let counts: Vec<String> = table
                .report
                .summary
                .diff_rows_count
                .iter()
                .map(|(pair, n)| format!("{n} rows between {pair}"))
                .collect();
            out.push_str(&format!(
                "  table {}: differs ({})\n",
                table.table,
                counts.join(", ")
            ));
        }
        for table in &self.missing {
            out.push_str(&format!(
                "  table {}: only on {}, missing on {}\n",
                table.table,
                table.present_on.join(", "),
                table.missing_on.join(", ")
            ));
        }
        for table in &self.skipped {
            out.push_str(&format!(
                "  table {}: skipped ({})\n",
                table.table, table.reason
            ));
        }
        for table in &self.failed {
            out.push_str(&format!(
                "  table {}: NOT COMPARED: {}\n",
                table.table, table.reason
            ));
        }
        out.push_str(&format!("  time taken: {}\n", self.time_taken));
        out
    }

    /// The report as one escaped HTML page.
    pub fn to_html(&self) -> String {
        let e = crate::html::escape;
        let (noun, operation) = self.label();
        let mut html = String::from("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">");
        html.push_str(&format!("<title>ACE {operation} {}</title>", e(&self.name)));
        html.push_str(
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}\
             td,th{border:1px solid #999;padding:2px 6px;vertical-align:top}\
             th{background:#eee}pre{margin:0}</style></head><body>",
        );
        html.push_str(&format!(
            "<h1>{operation} {noun} {}</h1><p>nodes: {} &middot; result: {} &middot; {} &middot; {}</p>",
            e(&self.name),
            e(&self.nodes.join(", ")),
            e(self.result()),
            e(&self.start_time),
            e(&self.time_taken)
        ));
        if !self.missing_on.is_empty() {
            html.push_str(&format!(
                "<p>{noun} missing on {}</p>",
                e(&self.missing_on.join(", "))
            ));
        }
        html.push_str("<h2>Definitions</h2>");
        if self.object_differences.is_empty() {
            html.push_str("<p>No differences.</p>");
        } else {
            html.push_str("<table><tr><th>type</th><th>name</th><th>difference</th></tr>");
            for difference in &self.object_differences {
                let detail = match &difference.difference {
                    Difference::Missing {
                        present_on,
                        missing_on,
                    } => format!(
                        "on {}, missing on {}",
                        e(&present_on.join(", ")),
                        e(&missing_on.join(", "))
                    ),
                    Difference::Differs { definitions } => definitions
                        .iter()
                        .map(|(node, text)| format!("<b>{}</b><pre>{}</pre>", e(node), e(text)))
                        .collect(),
                };
                html.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{detail}</td></tr>",
                    e(difference.object_type),
                    e(&difference.name)
                ));
            }
            html.push_str("</table>");
        }
        html.push_str("<h2>Tables</h2><table><tr><th>table</th><th>result</th></tr>");
        let mut row = |table: &str, result: String| {
            html.push_str(&format!("<tr><td>{}</td><td>{result}</td></tr>", e(table)));
        };
        for table in &self.identical {
            row(table, "identical".into());
        }
        for table in &self.differing {
            let counts: Vec<String> = table
                .report
                .summary
                .diff_rows_count
                .iter()
                .map(|(pair, n)| format!("{n} rows between {pair}"))
                .collect();
            let file = table
                .diff_file
                .as_deref()
                .map(|f| format!(" ({})", e(f)))
                .unwrap_or_default();
            row(
                &table.table,
                format!("differs: {}{file}", e(&counts.join(", "))),
            );
        }
        for table in &self.missing {
            row(
                &table.table,
                format!(
                    "on {}, missing on {}",
                    e(&table.present_on.join(", ")),
                    e(&table.missing_on.join(", "))
                ),
            );
        }
        for table in &self.skipped {
            row(&table.table, format!("skipped: {}", e(&table.reason)));
        }
        for table in &self.failed {
            row(&table.table, format!("not compared: {}", e(&table.reason)));
        }
        html.push_str("</table></body></html>\n");
        html
    }
}

fn stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

// === catalog reading ===

/// The kinds of objects compared, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ObjectKind {
    Table,
    Column,
    PrimaryKey,
    Unique,
    ForeignKey,
    Check,
    Exclusion,
    Index,
    View,
    MaterializedView,
    ForeignTable,
    Function,
    Sequence,
    Trigger,
}

impl ObjectKind {
    fn name(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::Column => "column",
            ObjectKind::PrimaryKey => "primary_key",
            ObjectKind::Unique => "unique",
            ObjectKind::ForeignKey => "foreign_key",
            ObjectKind::Check => "check",
            ObjectKind::Exclusion => "exclusion",
            ObjectKind::Index => "index",
            ObjectKind::View => "view",
            ObjectKind::MaterializedView => "materialized_view",
            ObjectKind::ForeignTable => "foreign_table",
            ObjectKind::Function => "function",
            ObjectKind::Sequence => "sequence",
            ObjectKind::Trigger => "trigger",
        }
    }

    fn is_relation(self) -> bool {
        matches!(
            self,
            ObjectKind::Table
                | ObjectKind::View
                | ObjectKind::MaterializedView
                | ObjectKind::ForeignTable
        )
    }

    fn of_relkind(relkind: &str) -> Option<Self> {
        match relkind {
            "r" | "p" => Some(ObjectKind::Table),
            "v" => Some(ObjectKind::View),
            "m" => Some(ObjectKind::MaterializedView),
            "f" => Some(ObjectKind::ForeignTable),
            _ => None,
        }
    }

    fn of_contype(contype: &str) -> Option<Self> {
        match contype {
            "p" => Some(ObjectKind::PrimaryKey),
            "u" => Some(ObjectKind::Unique),
            "f" => Some(ObjectKind::ForeignKey),
            "c" => Some(ObjectKind::Check),
            "x" => Some(ObjectKind::Exclusion),
            _ => None,
        }
    }
}

/// One object as a node has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ObjectDef {
    /// The relation it belongs to (columns, constraints, indexes,
    /// triggers).
    parent: Option<String>,
    definition: String,
}

/// A schema's objects on one node; empty when the schema is missing.
#[derive(Debug, Default)]
struct SchemaObjects {
    exists: bool,
    objects: BTreeMap<(ObjectKind, String), ObjectDef>,
}

/// Runs `sql` (binding the schema name as `$1`) and returns its rows of
/// (relation, name, kind code, definition).
async fn catalog_rows(
    tx: &mut RoleTx,
    sql: &str,
    schema: &str,
) -> Result<Vec<(Option<String>, String, String, String)>> {
    let node = tx.node().to_owned();
    let query = |e| EngineError::query(&node, e);
    let rows = sqlx::query(sql)
        .bind(schema)
        .fetch_all(tx.conn())
        .await
        .map_err(query)?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("parent").map_err(query)?,
                row.try_get("name").map_err(query)?,
                row.try_get("kind").map_err(query)?,
                row.try_get::<Option<String>, _>("definition")
                    .map_err(query)?
                    .unwrap_or_default(),
            ))
        })
        .collect()
}

/// Relations of the schema not owned by an extension.
const NOT_EXTENSION: &str = "NOT EXISTS (SELECT 1 FROM pg_depend d
     WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')";

async fn load_schema(tx: &mut RoleTx, schema: &str) -> Result<SchemaObjects> {
    let node = tx.node().to_owned();
    let query = |e| EngineError::query(&node, e);
    // PostgreSQL's own rendering of the schema qualifier (quoted only when
    // needed), removed from definitions so they compare on their content.
    let qualifier: Option<String> = sqlx::query_scalar(
        "SELECT quote_ident(nspname) || '.' FROM pg_namespace WHERE nspname = $1",
    )
    .bind(schema)
    .fetch_optional(tx.conn())
    .await
    .map_err(query)?;
    let Some(qualifier) = qualifier else {
        return Ok(SchemaObjects::default());
    };
    let unqualify = |text: String| text.replace(&qualifier, "");

    let relations = format!(
        "SELECT NULL::text AS parent, c.relname::text AS name, c.relkind::text AS kind,
                CASE c.relkind WHEN 'p' THEN 'partitioned table'
                               WHEN 'r' THEN 'table'
                               WHEN 'f' THEN 'foreign table'
                               ELSE pg_get_viewdef(c.oid, true) END AS definition
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {NOT_EXTENSION}"
    );
    let columns = format!(
        "SELECT c.relname::text AS parent, c.relname || '.' || a.attname AS name, 'col' AS kind,
                format_type(a.atttypid, a.atttypmod)
                || CASE WHEN a.attgenerated = 's'
                        THEN ' GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
                        WHEN ad.adbin IS NOT NULL
                        THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid)
                        ELSE '' END
                || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                      WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY'
                                      ELSE '' END
                || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                || CASE WHEN a.attcollation <> t.typcollation
                        THEN ' COLLATE ' || (SELECT quote_ident(collname) FROM pg_collation
                                             WHERE oid = a.attcollation)
                        ELSE '' END AS definition
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         JOIN pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'f') AND {NOT_EXTENSION}"
    );
    let constraints = format!(
        "SELECT c.relname::text AS parent, c.relname || '.' || k.conname AS name,
                k.contype::text AS kind, pg_get_constraintdef(k.oid, true) AS definition
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND k.contype IN ('p', 'u', 'f', 'c', 'x') AND {NOT_EXTENSION}"
    );
    // Indexes that back a constraint are compared as the constraint.
    let indexes = format!(
        "SELECT c.relname::text AS parent, i.relname::text AS name, 'idx' AS kind,
                pg_get_indexdef(i.oid) AS definition
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_class c ON c.oid = x.indrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND {NOT_EXTENSION}
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.oid
                           AND k.conrelid = c.oid)"
    );
    let functions = "SELECT NULL::text AS parent,
                p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS name,
                'fn' AS kind,
                CASE WHEN p.prokind = 'a' THEN 'aggregate ' || pg_get_function_result(p.oid)
                     ELSE pg_get_functiondef(p.oid) END AS definition
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = $1
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                           AND d.objid = p.oid AND d.deptype = 'e')";
    // Identity sequences belong to their column; the last value moves with
    // use, so only the definition is compared.
    let sequences = format!(
        "SELECT NULL::text AS parent, c.relname::text AS name, 'seq' AS kind,
                format_type(s.seqtypid, NULL) || ' START ' || s.seqstart
                || ' INCREMENT ' || s.seqincrement || ' MINVALUE ' || s.seqmin
                || ' MAXVALUE ' || s.seqmax || ' CACHE ' || s.seqcache
                || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END AS definition
         FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND {NOT_EXTENSION}
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                           AND d.objid = c.oid AND d.deptype = 'i')"
    );
    let triggers = format!(
        "SELECT c.relname::text AS parent, c.relname || '.' || g.tgname AS name, 'trg' AS kind,
                pg_get_triggerdef(g.oid, true) AS definition
         FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND NOT g.tgisinternal AND {NOT_EXTENSION}"
    );

    let mut objects = BTreeMap::new();
    for sql in [
        relations.as_str(),
        &columns,
        &constraints,
        &indexes,
        functions,
        &sequences,
        &triggers,
    ] {
        for (parent, name, code, definition) in catalog_rows(tx, sql, schema).await? {
            let kind = match code.as_str() {
                "col" => ObjectKind::Column,
                "idx" => ObjectKind::Index,
                "fn" => ObjectKind::Function,
                "seq" => ObjectKind::Sequence,
                "trg" => ObjectKind::Trigger,
                other if parent.is_none() => match ObjectKind::of_relkind(other) {
                    Some(kind) => kind,
                    None => continue,
                },
                other => match ObjectKind::of_contype(other) {
                    Some(kind) => kind,
                    None => continue,
                },
            };
            objects.insert(
                (kind, name),
                ObjectDef {
                    parent,
                    definition: unqualify(definition),
                },
            );
        }
    }
    Ok(SchemaObjects {
        exists: true,
        objects,
    })
}

/// Compares the objects of every node: the nodes considered for an object
/// are those that have its parent relation (all nodes for top-level
/// objects).
fn compare_objects(per_node: &[(String, SchemaObjects)]) -> Vec<ObjectDifference> {
    let keys: BTreeSet<&(ObjectKind, String)> = per_node
        .iter()
        .flat_map(|(_, objects)| objects.objects.keys())
        .collect();
    let mut differences = Vec::new();
    for key in keys {
        let parent = per_node
            .iter()
            .find_map(|(_, objects)| objects.objects.get(key))
            .and_then(|def| def.parent.clone());
        let considered: Vec<&(String, SchemaObjects)> = per_node
            .iter()
            .filter(|(_, objects)| match &parent {
                None => true,
                Some(parent) => objects
                    .objects
                    .keys()
                    .any(|(kind, name)| kind.is_relation() && name == parent),
            })
            .collect();
        let mut present_on = Vec::new();
        let mut missing_on = Vec::new();
        let mut definitions = BTreeMap::new();
        for (node, objects) in &considered {
            match objects.objects.get(key) {
                Some(def) => {
                    present_on.push(node.clone());
                    definitions.insert(node.clone(), def.definition.clone());
                }
                None => missing_on.push(node.clone()),
            }
        }
        let difference = if !missing_on.is_empty() {
            Difference::Missing {
                present_on,
                missing_on,
            }
        } else if definitions.values().collect::<BTreeSet<_>>().len() > 1 {
            Difference::Differs { definitions }
        } else {
            continue;
        };
        differences.push(ObjectDifference {
            object_type: key.0.name(),
            name: key.1.clone(),
            difference,
        });
    }
    differences
}

// === the operations ===

/// Runs schema-diff of `schema` (as stored: see [`parse_identifier`]) on
/// every node of `sessions`.
///
/// # Errors
///
/// Bad options, [`EngineError::Options`] (`schema`) when no node has the
/// schema, the caller's role failing its checks, a catalog read failing,
/// or [`EngineError::Cancelled`]. A table that cannot be compared is not an
/// error: it is listed in [`SetDiffReport::failed`].
pub async fn schema_diff(
    sessions: &ClusterSession,
    schema: &str,
    options: &SetDiffOptions,
    progress: &Progress,
) -> Result<SetDiffReport> {
    let started_at = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    let mut report = start(sessions, SetKind::Schema, schema, options).await?;
    let scope = Scope::read_only(options.role.as_deref());
    let mut per_node = try_join_all(sessions.nodes().iter().map(|node| {
        let scope = scope.clone();
        async move {
            let mut tx = node.begin(&scope).await?;
            let objects = load_schema(&mut tx, schema).await?;
            tx.commit().await?;
            Ok::<_, EngineError>((node.name().to_owned(), objects))
        }
    }))
    .await?;
    progress.check()?;
    report.missing_on = per_node
        .iter()
        .filter(|(_, objects)| !objects.exists)
        .map(|(node, _)| node.clone())
        .collect();
    if report.missing_on.len() == per_node.len() {
        return Err(EngineError::Options {
            field: "schema",
            reason: format!("schema {schema:?} exists on no node"),
        });
    }
    // Only nodes that have the schema take part in the comparison.
    per_node.retain(|(_, objects)| objects.exists);

    // Leave skipped relations out entirely, with their sub-objects.
    let mut relations: BTreeMap<String, (ObjectKind, Vec<String>)> = BTreeMap::new();
    for (node, objects) in &per_node {
        for (kind, name) in objects.objects.keys() {
            if kind.is_relation() {
                relations
                    .entry(name.clone())
                    .or_insert_with(|| (*kind, Vec::new()))
                    .1
                    .push(node.clone());
            }
        }
    }
    let skipped: BTreeSet<String> = relations
        .keys()
        .filter(|name| options.skip.matching(schema, name).is_some())
        .cloned()
        .collect();
    for (_, objects) in &mut per_node {
        objects.objects.retain(|(_, name), def| {
            !skipped.contains(def.parent.as_deref().unwrap_or(name.as_str()))
        });
    }
    report.object_differences = compare_objects(&per_node);

    let all_nodes = &report.nodes;
    let mut tables = Vec::new();
    for (name, (kind, present)) in &relations {
        let display = format!("{schema}.{name}");
        if let Some(entry) = options.skip.matching(schema, name) {
            report.skipped.push(TableReason {
                table: display,
                reason: entry.source.to_owned(),
            });
            continue;
        }
        if *kind != ObjectKind::Table {
            report.skipped.push(TableReason {
                table: display,
                reason: kind.name().replace('_', " "),
            });
            continue;
        }
        if present.len() < all_nodes.len() {
            report.missing.push(MissingTable {
                table: display,
                present_on: present.clone(),
                missing_on: all_nodes
                    .iter()
                    .filter(|node| !present.contains(node))
                    .cloned()
                    .collect(),
            });
            continue;
        }
        tables.push((schema.to_owned(), name.clone()));
    }
    if !options.ddl_only {
        diff_tables(sessions, &tables, options, progress, &mut report).await?;
    }
    finish(&mut report, started_at, started);
    Ok(report)
}

/// Runs repset-diff of the replication set `repset` (Spock's set where the
/// extension is installed, else the publication of that name) on every
/// node of `sessions`.
///
/// # Errors
///
/// Bad options, [`EngineError::Options`] (`repset`) when no node has the
/// set, the caller's role failing its checks, a catalog read failing, or
/// [`EngineError::Cancelled`]. A table that cannot be compared is listed in
/// [`SetDiffReport::failed`].
pub async fn repset_diff(
    sessions: &ClusterSession,
    repset: &str,
    options: &SetDiffOptions,
    progress: &Progress,
) -> Result<SetDiffReport> {
    let started_at = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    let mut report = start(sessions, SetKind::Repset, repset, options).await?;
    let scope = Scope::read_only(options.role.as_deref());
    let per_node = try_join_all(sessions.nodes().iter().map(|node| {
        let scope = scope.clone();
        async move {
            let mut tx = node.begin(&scope).await?;
            let members = load_set(&mut tx, repset).await?;
            tx.commit().await?;
            Ok::<_, EngineError>((node.name().to_owned(), members))
        }
    }))
    .await?;
    progress.check()?;
    for (node, set) in &per_node {
        report
            .set_source
            .insert(node.clone(), set.source.to_owned());
        if set.tables.is_none() {
            report.missing_on.push(node.clone());
        }
    }
    if report.missing_on.len() == per_node.len() {
        return Err(EngineError::Options {
            field: "repset",
            reason: format!(
                "replication set {repset:?} exists on no node (as a Spock replication set or a publication)"
            ),
        });
    }

    // Members on the nodes that have the set; a table that is a member on
    // some of them only is a membership difference (and still compared).
    let having: Vec<(&String, &BTreeSet<(String, String)>)> = per_node
        .iter()
        .filter_map(|(node, set)| set.tables.as_ref().map(|tables| (node, tables)))
        .collect();
    let members: BTreeSet<(String, String)> = having
        .iter()
        .flat_map(|(_, tables)| tables.iter().cloned())
        .collect();
    let mut tables = Vec::new();
    for (schema, table) in &members {
        let display = format!("{schema}.{table}");
        let in_set: Vec<String> = having
            .iter()
            .filter(|(_, tables)| tables.contains(&(schema.clone(), table.clone())))
            .map(|(node, _)| (*node).clone())
            .collect();
        if in_set.len() < having.len() {
            report.object_differences.push(ObjectDifference {
                object_type: "replication_set_table",
                name: display.clone(),
                difference: Difference::Missing {
                    missing_on: having
                        .iter()
                        .map(|(node, _)| (*node).clone())
                        .filter(|node| !in_set.contains(node))
                        .collect(),
                    present_on: in_set,
                },
            });
        }
        if let Some(entry) = options.skip.matching(schema, table) {
            report.skipped.push(TableReason {
                table: display,
                reason: entry.source.to_owned(),
            });
            continue;
        }
        tables.push((schema.clone(), table.clone()));
    }

    // Which member tables exist on which nodes.
    let (schemas, names): (Vec<String>, Vec<String>) = tables.iter().cloned().unzip();
    let existing = try_join_all(sessions.nodes().iter().map(|node| {
        let scope = scope.clone();
        let (schemas, names) = (&schemas, &names);
        async move {
            let mut tx = node.begin(&scope).await?;
            let found: Vec<(String, String)> = sqlx::query_as(
                "SELECT n.nspname::text, c.relname::text
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN unnest($1::text[], $2::text[]) AS m(s, t)
                   ON n.nspname = m.s AND c.relname = m.t
                 WHERE c.relkind IN ('r', 'p')",
            )
            .bind(schemas)
            .bind(names)
            .fetch_all(tx.conn())
            .await
            .map_err(|e| EngineError::query(node.name(), e))?;
            tx.commit().await?;
            Ok::<_, EngineError>((
                node.name().to_owned(),
                found.into_iter().collect::<BTreeSet<_>>(),
            ))
        }
    }))
    .await?;
    let mut present_everywhere = Vec::new();
    for table in tables {
        let present: Vec<String> = existing
            .iter()
            .filter(|(_, found)| found.contains(&table))
            .map(|(node, _)| node.clone())
            .collect();
        if present.len() < existing.len() {
            report.missing.push(MissingTable {
                table: format!("{}.{}", table.0, table.1),
                missing_on: existing
                    .iter()
                    .map(|(node, _)| node.clone())
                    .filter(|node| !present.contains(node))
                    .collect(),
                present_on: present,
            });
        } else {
            present_everywhere.push(table);
        }
    }
    diff_tables(
        sessions,
        &present_everywhere,
        options,
        progress,
        &mut report,
    )
    .await?;
    finish(&mut report, started_at, started);
    Ok(report)
}

/// A replication set on one node: where it came from, and its member
/// tables when it exists there.
struct NodeSet {
    source: &'static str,
    tables: Option<BTreeSet<(String, String)>>,
}

async fn load_set(tx: &mut RoleTx, name: &str) -> Result<NodeSet> {
    let node = tx.node().to_owned();
    let query = |e| EngineError::query(&node, e);
    let spock: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'spock')")
            .fetch_one(tx.conn())
            .await
            .map_err(query)?;
    let (source, exists_sql, tables_sql) = if spock {
        (
            "spock",
            "SELECT EXISTS (SELECT 1 FROM spock.replication_set WHERE set_name = $1)",
            "SELECT n.nspname::text, c.relname::text
             FROM spock.replication_set s
             JOIN spock.replication_set_table t ON t.set_id = s.set_id
             JOIN pg_class c ON c.oid = t.set_reloid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE s.set_name = $1",
        )
    } else {
        (
            "publication",
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables
             WHERE pubname = $1",
        )
    };
    let exists: bool = sqlx::query_scalar(exists_sql)
        .bind(name)
        .fetch_one(tx.conn())
        .await
        .map_err(query)?;
    if !exists {
        return Ok(NodeSet {
            source,
            tables: None,
        });
    }
    let rows: Vec<(String, String)> = sqlx::query_as(tables_sql)
        .bind(name)
        .fetch_all(tx.conn())
        .await
        .map_err(query)?;
    Ok(NodeSet {
        source,
        tables: Some(rows.into_iter().collect()),
    })
}

/// Checks the options and the role, and starts an empty report.
async fn start(
    sessions: &ClusterSession,
    kind: SetKind,
    name: &str,
    options: &SetDiffOptions,
) -> Result<SetDiffReport> {
    options.validate()?;
    let nodes: Vec<String> = sessions
        .nodes()
        .iter()
        .map(|n| n.name().to_owned())
        .collect();
    if nodes.len() < 2 {
        return Err(EngineError::Options {
            field: "nodes",
            reason: format!("comparing needs 2 or more nodes, got {}", nodes.len()),
        });
    }
    if let Some(role) = options.role.as_deref() {
        sessions.check_role(role).await?;
    }
    Ok(SetDiffReport {
        kind,
        name: name.to_owned(),
        nodes,
        ddl_only: options.ddl_only,
        missing_on: Vec::new(),
        set_source: BTreeMap::new(),
        object_differences: Vec::new(),
        identical: Vec::new(),
        differing: Vec::new(),
        missing: Vec::new(),
        skipped: Vec::new(),
        failed: Vec::new(),
        options: options.clone(),
        start_time: String::new(),
        end_time: String::new(),
        time_taken: String::new(),
    })
}

fn finish(report: &mut SetDiffReport, started_at: time::OffsetDateTime, started: Instant) {
    report.start_time = rfc3339(started_at);
    report.end_time = rfc3339(time::OffsetDateTime::now_utc());
    report.time_taken = go_duration(started.elapsed());
}

/// Table-diffs each table in turn. A table that cannot be compared is
/// recorded with the reason and the run goes on; only cancellation and a
/// role ACE cannot assume stop it.
async fn diff_tables(
    sessions: &ClusterSession,
    tables: &[(String, String)],
    options: &SetDiffOptions,
    progress: &Progress,
    report: &mut SetDiffReport,
) -> Result<()> {
    for (schema, table) in tables {
        progress.check()?;
        let qualified = format!("{schema}.{table}");
        let table_options = options.table_options(schema, table);
        match table_diff(sessions, &table_options, progress).await {
            Ok(diff) if diff.matches() => report.identical.push(qualified),
            Ok(diff) => report.differing.push(DifferingTable {
                table: qualified,
                report: diff,
                diff_file: None,
            }),
            Err(EngineError::Cancelled) => return Err(EngineError::Cancelled),
            Err(EngineError::Session(
                error @ (SessionError::RoleMissing { .. } | SessionError::NotMember { .. }),
            )) => return Err(error.into()),
            Err(error) => {
                tracing::debug!(table = %qualified, %error, "table not compared");
                report.failed.push(TableReason {
                    table: qualified,
                    reason: error.to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_lists_take_both_forms_and_fold_like_postgres() {
        let mut skip = SkipList::default();
        skip.add_list(r#"t1, Public.T2 ,"My-Schema"."Big Table""#)
            .unwrap();
        skip.add_file_text("# comment\n\n  other.t3  \nT4\n")
            .unwrap();
        assert!(skip.matching("public", "t1").is_some());
        assert!(skip.matching("anything", "t1").is_some());
        assert!(skip.matching("public", "t2").is_some());
        assert!(skip.matching("other", "t2").is_none());
        assert!(skip.matching("My-Schema", "Big Table").is_some());
        assert!(skip.matching("my-schema", "Big Table").is_none());
        assert_eq!(skip.matching("other", "t3").unwrap().source, "skip_file");
        assert_eq!(skip.matching("x", "t4").unwrap().source, "skip_file");
        assert!(skip.matching("public", "t3").is_none());
        let error = SkipList::default().add_list("a.b.c").unwrap_err();
        assert!(error.to_string().contains("skip_tables"), "{error}");
        let error = SkipList::default()
            .add_file_text("ok\nbad; drop\n")
            .unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    #[test]
    fn identifiers_fold_unless_quoted() {
        assert_eq!(
            parse_identifier(r#""My-Schema""#, "schema").unwrap(),
            "My-Schema"
        );
        assert_eq!(parse_identifier("Sales", "schema").unwrap(), "sales");
        assert!(parse_identifier("a.b", "schema").is_err());
        assert!(parse_identifier("a, b", "schema").is_err());
    }

    fn objects(entries: &[(ObjectKind, &str, Option<&str>, &str)]) -> SchemaObjects {
        SchemaObjects {
            exists: true,
            objects: entries
                .iter()
                .map(|(kind, name, parent, def)| {
                    (
                        (*kind, (*name).to_owned()),
                        ObjectDef {
                            parent: parent.map(str::to_owned),
                            definition: (*def).to_owned(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn sub_objects_of_a_missing_table_are_not_reported_again() {
        use ObjectKind::*;
        let n1 = objects(&[
            (Table, "a", None, "table"),
            (Column, "a.id", Some("a"), "integer"),
            (Table, "b", None, "table"),
            (Column, "b.id", Some("b"), "integer"),
        ]);
        let n2 = objects(&[
            (Table, "a", None, "table"),
            (Column, "a.id", Some("a"), "bigint"),
        ]);
        let differences = compare_objects(&[("n1".into(), n1), ("n2".into(), n2)]);
        assert_eq!(
            differences,
            vec![
                ObjectDifference {
                    object_type: "table",
                    name: "b".into(),
                    difference: Difference::Missing {
                        present_on: vec!["n1".into()],
                        missing_on: vec!["n2".into()],
                    },
                },
                ObjectDifference {
                    object_type: "column",
                    name: "a.id".into(),
                    difference: Difference::Differs {
                        definitions: [
                            ("n1".to_owned(), "integer".to_owned()),
                            ("n2".to_owned(), "bigint".to_owned()),
                        ]
                        .into(),
                    },
                },
            ]
        );
    }
}
