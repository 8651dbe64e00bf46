//! Diff reports in upstream ACE's shape, written and read.
//!
//! ```text
//! { "diffs":   { "n1/n2": { "rows": { "n1": [row, ...], "n2": [row, ...] } } },
//!   "summary": { "schema", "table", "nodes", "primary_key", "diff_rows_count", ... } }
//! ```
//!
//! A pair key is the two node names in sorted order joined by `/`; only
//! pairs with differences appear. A node's array holds its rows that are
//! missing on the other node and its version of rows that differ; rows are
//! in primary key order. Row objects keep the table's column order.
//!
//! Values are exact: `smallint`/`integer`/`bigint` are JSON integers (the
//! whole bigint range, no float rounding), finite floats are JSON numbers
//! (`NaN` and infinities are strings), booleans are JSON booleans, and every
//! other type is PostgreSQL's own text form as a JSON string (`numeric` as
//! printed, `uuid` canonical, `bytea` as `\x...` hex, timestamps in ISO
//! form in UTC, `json`/`jsonb` as their text, arrays as `{...}` literals).
//! Reading accepts upstream's forms too (numbers for numeric, RFC 3339
//! timestamps), since PostgreSQL parses them back to the same values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{EngineError, Result};
use crate::table::{Column, JsonKind};

/// One row: every column's text, `None` for NULL, in table column order.
pub type RowValues = Vec<Option<String>>;

/// The differing rows of one node pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRows {
    /// Node name to that node's rows.
    pub rows: BTreeMap<String, Vec<RowValues>>,
}

/// A column as recorded in the summary (our addition; upstream readers
/// ignore it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Type as `format_type` prints it.
    pub data_type: String,
}

/// The `summary` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffSummary {
    /// Schema.
    pub schema: String,
    /// Table (without schema).
    pub table: String,
    /// The filter as the caller wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_filter: Option<String>,
    /// The filter as ACE ran it (re-rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_filter: Option<String>,
    /// Nodes compared.
    pub nodes: Vec<String>,
    /// Rows per hashed block.
    #[serde(default)]
    pub block_size: u64,
    /// Largest block compared row by row.
    #[serde(default)]
    pub compare_unit_size: u64,
    /// Concurrency factor.
    #[serde(default)]
    pub concurrency_factor: f64,
    /// Cap on differing rows per node pair (0 = none).
    #[serde(default)]
    pub max_diff_rows: u64,
    /// RFC 3339 start.
    #[serde(default)]
    pub start_time: String,
    /// RFC 3339 end.
    #[serde(default)]
    pub end_time: String,
    /// Duration, Go style (`1.5s`).
    #[serde(default)]
    pub time_taken: String,
    /// Differing primary keys per pair.
    #[serde(default)]
    pub diff_rows_count: BTreeMap<String, u64>,
    /// Whether `max_diff_rows` cut the report short.
    #[serde(default)]
    pub diff_row_limit_reached: bool,
    /// The planner's row estimate (not a count).
    #[serde(default)]
    pub total_rows_checked: i64,
    /// Blocks hashed in the first pass.
    #[serde(default)]
    pub initial_ranges_count: u64,
    /// Blocks whose hashes differed.
    #[serde(default)]
    pub mismatched_ranges_count: u64,
    /// Primary key columns, in order.
    pub primary_key: Vec<String>,
    /// Columns and types (ours; absent in upstream files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnInfo>,
}

/// A finished table-diff.
#[derive(Debug, Clone)]
pub struct DiffReport {
    /// Differing rows per pair (`"n1/n2"`).
    pub diffs: BTreeMap<String, PairRows>,
    /// The summary.
    pub summary: DiffSummary,
    /// The table's columns (for typing values).
    pub columns: Vec<Column>,
}

impl DiffReport {
    /// Whether every pair matched.
    pub fn matches(&self) -> bool {
        self.diffs.is_empty()
    }

    /// Total differing keys over all pairs.
    pub fn total_differences(&self) -> u64 {
        self.summary.diff_rows_count.values().sum()
    }

    /// The report as upstream-shaped JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(JsonReport(self)).unwrap_or(Value::Null)
    }

    /// Writes `<schema>_<table>_diffs-<YYYYMMDDHHMMSS>.json` into `dir`
    /// (upstream's name; dots in names become `_`) and returns its path.
    ///
    /// # Errors
    ///
    /// [`EngineError::Write`] when the file cannot be written.
    pub fn write_json(&self, dir: &Path, kind: &str) -> Result<PathBuf> {
        write_new(dir, &self.file_stem(kind), "json", |file| {
            let mut out = std::io::BufWriter::new(file);
            serde_json::to_writer_pretty(&mut out, &JsonReport(self))?;
            std::io::Write::flush(&mut out)
        })
    }

    /// Writes the HTML rendering beside the JSON and returns its path.
    ///
    /// # Errors
    ///
    /// [`EngineError::Write`] when the file cannot be written.
    pub fn write_html(&self, dir: &Path, kind: &str) -> Result<PathBuf> {
        let html = crate::html::render(self);
        write_new(dir, &self.file_stem(kind), "html", |file| {
            std::io::Write::write_all(file, html.as_bytes())
        })
    }

    fn file_stem(&self, kind: &str) -> String {
        let now = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        format!(
            "{}_{}_{kind}-{stamp}",
            file_name_part(&self.summary.schema),
            file_name_part(&self.summary.table)
        )
    }

    /// A short human summary.
    pub fn human_summary(&self) -> String {
        let mut out = String::new();
        if self.matches() {
            out.push_str(&format!(
                "TABLES MATCH: {} on {}\n",
                ace_session::display_qualified(&self.summary.schema, &self.summary.table),
                self.summary.nodes.join(", ")
            ));
        } else {
            out.push_str(&format!(
                "TABLES DO NOT MATCH: {}\n",
                ace_session::display_qualified(&self.summary.schema, &self.summary.table)
            ));
            for (pair, count) in &self.summary.diff_rows_count {
                let rows = if *count == 1 { "row" } else { "rows" };
                out.push_str(&format!("  {count} differing {rows} between {pair}\n"));
            }
            if self.summary.diff_row_limit_reached {
                out.push_str(&format!(
                    "  (stopped at max_diff_rows = {})\n",
                    self.summary.max_diff_rows
                ));
            }
        }
        out.push_str(&format!("  time taken: {}\n", self.summary.time_taken));
        out
    }
}

/// A schema or table name as part of a file name: upstream turns `.` into
/// `_`; so does every other character that is not a letter, digit, `_` or
/// `-` (path separators, spaces, quotes), so a name such as `../x` cannot
/// place a report outside its directory and no name needs quoting in a
/// shell.
pub fn file_name_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `<stem>.<extension>` in `dir`, never over an existing file: a
/// second report in the same second gets `<stem>-2`, `-3`, ...
fn write_new(
    dir: &Path,
    stem: &str,
    extension: &str,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<PathBuf> {
    let mut write = Some(write);
    for attempt in 1.. {
        let name = if attempt == 1 {
            format!("{stem}.{extension}")
        } else {
            format!("{stem}-{attempt}.{extension}")
        };
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path);
        match file {
            Ok(mut file) => {
                let write = write.take().expect("a file is created once");
                write(&mut file).map_err(|source| EngineError::Write {
                    path: path.clone(),
                    source,
                })?;
                return Ok(path);
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(EngineError::Write { path, source }),
        }
    }
    unreachable!("the attempts never end")
}

/// A row as a JSON object in column order, values typed as described in
/// the module docs.
pub fn row_object(columns: &[Column], row: &RowValues) -> Map<String, Value> {
    let mut object = Map::new();
    for (column, value) in columns.iter().zip(row) {
        object.insert(
            column.name.clone(),
            typed_value(column.json_kind(), value.as_deref()),
        );
    }
    object
}

/// A report serialized straight from its rows, in upstream's shape, with
/// no intermediate JSON tree: a large diff is not held twice in memory.
struct JsonReport<'a>(&'a DiffReport);

/// `{"n1/n2": {"rows": {...}}, ...}`.
struct JsonDiffs<'a>(&'a DiffReport);

/// `{"rows": {"n1": [...], "n2": [...]}}`.
struct JsonPair<'a>(&'a [Column], &'a PairRows);

/// `{"n1": [...], "n2": [...]}`.
struct JsonNodes<'a>(&'a [Column], &'a PairRows);

/// `[row, ...]`.
struct JsonRows<'a>(&'a [Column], &'a [RowValues]);

/// `{"column": value, ...}` in the table's column order.
struct JsonRow<'a>(&'a [Column], &'a RowValues);

impl Serialize for JsonReport<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut top = serializer.serialize_map(Some(2))?;
        top.serialize_entry("diffs", &JsonDiffs(self.0))?;
        top.serialize_entry("summary", &self.0.summary)?;
        top.end()
    }
}

impl Serialize for JsonDiffs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let columns = self.0.columns.as_slice();
        serializer.collect_map(
            self.0
                .diffs
                .iter()
                .map(|(pair, rows)| (pair, JsonPair(columns, rows))),
        )
    }
}

impl Serialize for JsonPair<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut pair = serializer.serialize_map(Some(1))?;
        pair.serialize_entry("rows", &JsonNodes(self.0, self.1))?;
        pair.end()
    }
}

impl Serialize for JsonNodes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.1
                .rows
                .iter()
                .map(|(node, rows)| (node, JsonRows(self.0, rows))),
        )
    }
}

impl Serialize for JsonRows<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.1.iter().map(|row| JsonRow(self.0, row)))
    }
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().zip(self.1).map(|(column, value)| {
            (
                &column.name,
                typed_value(column.json_kind(), value.as_deref()),
            )
        }))
    }
}

/// One value, typed for JSON.
pub fn typed_value(kind: JsonKind, text: Option<&str>) -> Value {
    let Some(text) = text else {
        return Value::Null;
    };
    match kind {
        JsonKind::Integer => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_owned())),
        JsonKind::Float => text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(|_| serde_json::from_str::<serde_json::Number>(text).ok())
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(text.to_owned())),
        JsonKind::Bool => match text {
            "t" | "true" => Value::Bool(true),
            "f" | "false" => Value::Bool(false),
            other => Value::String(other.to_owned()),
        },
        JsonKind::Json | JsonKind::Text => Value::String(text.to_owned()),
    }
}

/// A JSON value from a diff file back to the text PostgreSQL parses.
pub fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// The pair key: both names sorted, joined by `/`.
pub fn pair_key(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}/{b}")
    } else {
        format!("{b}/{a}")
    }
}

/// RFC 3339 in UTC.
pub fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A duration as Go prints it (`1.843207s`, `850.2ms`, `2m3.5s`).
pub fn go_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 1.0 {
        format!("{}ms", trim_float(secs * 1000.0))
    } else if secs < 60.0 {
        format!("{}s", trim_float(secs))
    } else {
        let minutes = (secs / 60.0).floor();
        format!("{}m{}s", minutes as u64, trim_float(secs - minutes * 60.0))
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

/// A diff file as read back: summary and rows as JSON objects.
#[derive(Debug, Clone)]
pub struct DiffFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The summary.
    pub summary: DiffSummary,
    /// Pair to node to rows.
    pub pairs: BTreeMap<String, BTreeMap<String, Vec<Map<String, Value>>>>,
}

/// Upstream's per-row metadata, ignored when comparing and repairing.
pub const METADATA_KEYS: [&str; 3] = ["_spock_metadata_", "commit_ts", "node_origin"];

impl DiffFile {
    /// Reads a diff file written by this tool or by upstream ACE.
    ///
    /// # Errors
    ///
    /// [`EngineError::DiffFile`] naming the file and what is wrong.
    pub fn read(path: &Path) -> Result<Self> {
        let bad = |reason: String| EngineError::DiffFile {
            path: path.to_path_buf(),
            reason,
        };
        // Parsed from the file as it is read, and taken apart by value: a
        // large diff file is held once, as its rows.
        let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(bad("is a directory, not a diff file".into()));
        }
        let value: Value = serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|e| bad(format!("not JSON: {e}")))?;
        let Value::Object(mut top) = value else {
            return Err(bad("not a JSON object".into()));
        };
        let summary = top
            .remove("summary")
            .ok_or_else(|| bad("no \"summary\" object".into()))?;
        let summary: DiffSummary =
            serde_json::from_value(summary).map_err(|e| bad(format!("summary: {e}")))?;
        if summary.primary_key.is_empty() {
            return Err(bad("summary.primary_key is empty".into()));
        }
        let mut pairs = BTreeMap::new();
        if let Some(diffs) = top.remove("diffs") {
            let Value::Object(diffs) = diffs else {
                return Err(bad("\"diffs\" is not an object".into()));
            };
            for (written, entry) in diffs {
                let names: Vec<&str> = written.split('/').collect();
                if names.len() != 2 || names.iter().any(|n| n.is_empty()) || names[0] == names[1] {
                    return Err(bad(format!(
                        "pair key {written:?} is not \"nodeA/nodeB\" of two nodes"
                    )));
                }
                let listed = |name: &&str| summary.nodes.iter().any(|n| n == name);
                if let Some(outside) = names
                    .iter()
                    .find(|name| !summary.nodes.is_empty() && !listed(name))
                {
                    return Err(bad(format!(
                        "pair {written} names node {outside}, which summary.nodes ({}) does not list",
                        summary.nodes.join(", ")
                    )));
                }
                // One spelling for each pair, whichever order it was
                // written in.
                let pair = pair_key(names[0], names[1]);
                if pairs.contains_key(&pair) {
                    return Err(bad(format!("pair {pair} is in \"diffs\" twice")));
                }
                let rows = match entry {
                    Value::Object(mut entry) => entry.remove("rows"),
                    _ => None,
                };
                let Some(Value::Object(rows)) = rows else {
                    return Err(bad(format!("{pair}: no \"rows\" object")));
                };
                let mut by_node = BTreeMap::new();
                for (node, list) in rows {
                    if !names.contains(&node.as_str()) {
                        return Err(bad(format!(
                            "{pair}: rows for node {node} outside the pair"
                        )));
                    }
                    let Value::Array(list) = list else {
                        return Err(bad(format!("{pair}/{node}: rows are not an array")));
                    };
                    let mut objects = Vec::with_capacity(list.len());
                    for row in list {
                        let Value::Object(mut object) = row else {
                            return Err(bad(format!("{pair}/{node}: a row is not an object")));
                        };
                        for key in METADATA_KEYS {
                            object.remove(key);
                        }
                        for key in &summary.primary_key {
                            if object.get(key).is_none_or(Value::is_null) {
                                return Err(bad(format!(
                                    "{pair}/{node}: a row lacks primary key column {key}"
                                )));
                            }
                        }
                        objects.push(object);
                    }
                    by_node.insert(node, objects);
                }
                pairs.insert(pair, by_node);
            }
        }
        Ok(DiffFile {
            path: path.to_path_buf(),
            summary,
            pairs,
        })
    }

    /// Every node named in the file's pairs.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self
            .pairs
            .keys()
            .flat_map(|pair| pair.split('/').map(str::to_owned))
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_exact_form() {
        assert_eq!(
            typed_value(JsonKind::Integer, Some("9007199254740993")).to_string(),
            "9007199254740993"
        );
        assert_eq!(
            typed_value(JsonKind::Float, Some("NaN")),
            Value::String("NaN".into())
        );
        assert_eq!(typed_value(JsonKind::Float, Some("-0")).to_string(), "-0.0");
        assert_eq!(typed_value(JsonKind::Bool, Some("t")), Value::Bool(true));
        assert_eq!(
            typed_value(JsonKind::Text, Some("1.50")),
            Value::String("1.50".into())
        );
        assert_eq!(typed_value(JsonKind::Text, None), Value::Null);
        assert_eq!(
            value_text(&serde_json::json!(9007199254740993_i64)).unwrap(),
            "9007199254740993"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(123_500)), "2m3.5s");
    }

    #[test]
    fn names_cannot_leave_the_report_directory() {
        assert_eq!(file_name_part("../a/b\\c.d"), "___a_b_c_d");
        assert_eq!(file_name_part("Order Items \"é\""), "Order_Items__é_");
    }

    /// A diff file in upstream ACE's shape: numeric as a number, RFC 3339
    /// timestamps, per-row `_spock_metadata_`, keys order as upstream
    /// writes them (`diffs` before `summary`), fields we do not write.
    #[test]
    fn reads_upstream_diff_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("public_orders_diffs-20250101120000.json");
        let upstream = serde_json::json!({
            "diffs": {"n1/n2": {"rows": {
                "n1": [
                    {"order_id": 9007199254740993_i64, "total": 12.5,
                     "placed": "2025-01-01T10:00:00.123456Z",
                     "_spock_metadata_": {"commit_ts": null, "node_origin": "local"}},
                    {"order_id": 4, "total": "3000.50", "placed": null}
                ],
                "n2": [{"order_id": 4, "total": "3000.00", "placed": null}]
            }}},
            "summary": {
                "schema": "public", "table": "orders", "nodes": ["n1", "n2"],
                "block_size": 100000, "compare_unit_size": 10000,
                "concurrency_factor": 0.5, "max_diff_rows": 0,
                "start_time": "2025-01-01T12:00:00-04:00",
                "end_time": "2025-01-01T12:00:02-04:00", "time_taken": "1.8s",
                "diff_rows_count": {"n1/n2": 2}, "diff_row_limit_reached": false,
                "total_rows_checked": 100000, "initial_ranges_count": 2,
                "mismatched_ranges_count": 0, "primary_key": ["order_id"],
                "only_origin_resolved": "n3"
            }
        });
        std::fs::write(&path, serde_json::to_string_pretty(&upstream).unwrap()).unwrap();
        let file = DiffFile::read(&path).unwrap();
        assert_eq!(file.summary.primary_key, vec!["order_id"]);
        assert_eq!(file.nodes(), vec!["n1", "n2"]);
        let rows = &file.pairs["n1/n2"]["n1"];
        assert!(rows[0].get("_spock_metadata_").is_none());
        assert_eq!(
            value_text(&rows[0]["order_id"]).unwrap(),
            "9007199254740993"
        );
        assert_eq!(value_text(&rows[0]["total"]).unwrap(), "12.5");
        assert_eq!(value_text(&rows[1]["total"]).unwrap(), "3000.50");
        assert_eq!(value_text(&rows[1]["placed"]), None);

        // A pair key that is not two names, and a row without its key, are
        // refused naming the file.
        let mut bad = upstream.clone();
        bad["diffs"] = serde_json::json!({"n1/n2/n3": {"rows": {}}});
        std::fs::write(&path, bad.to_string()).unwrap();
        let error = DiffFile::read(&path).unwrap_err().to_string();
        assert!(
            error.contains("n1/n2/n3") && error.contains("public_orders"),
            "{error}"
        );
        // A pair written the other way round is the same pair; a pair of
        // nodes the summary does not list, or written twice, is refused.
        let mut reversed = upstream.clone();
        let entry = reversed["diffs"]["n1/n2"].take();
        reversed["diffs"] = serde_json::json!({ "n2/n1": entry });
        std::fs::write(&path, reversed.to_string()).unwrap();
        let file = DiffFile::read(&path).unwrap();
        assert_eq!(file.pairs.keys().collect::<Vec<_>>(), ["n1/n2"]);
        assert_eq!(file.pairs["n1/n2"]["n2"].len(), 1);
        let mut outside = upstream.clone();
        outside["summary"]["nodes"] = serde_json::json!(["n1", "n3"]);
        std::fs::write(&path, outside.to_string()).unwrap();
        let error = DiffFile::read(&path).unwrap_err().to_string();
        assert!(
            error.contains("n2") && error.contains("summary.nodes"),
            "{error}"
        );
        let twice = format!(
            r#"{{"summary": {}, "diffs": {{"n1/n2": {{"rows": {{}}}}, "n2/n1": {{"rows": {{}}}}}}}}"#,
            upstream["summary"]
        );
        std::fs::write(&path, twice).unwrap();
        let error = DiffFile::read(&path).unwrap_err().to_string();
        assert!(error.contains("twice"), "{error}");
        let error = DiffFile::read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("is a directory"), "{error}");

        let mut keyless = upstream;
        keyless["diffs"]["n1/n2"]["rows"]["n2"][0]
            .as_object_mut()
            .unwrap()
            .remove("order_id");
        std::fs::write(&path, keyless.to_string()).unwrap();
        let error = DiffFile::read(&path).unwrap_err().to_string();
        assert!(error.contains("order_id"), "{error}");
    }

    #[test]
    fn reports_never_overwrite_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &'static [u8]| {
            move |file: &mut std::fs::File| std::io::Write::write_all(file, text)
        };
        let first = write_new(dir.path(), "s_t_diffs-1", "json", write(b"one")).unwrap();
        let second = write_new(dir.path(), "s_t_diffs-1", "json", write(b"two")).unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read(&first).unwrap(), b"one");
        assert_eq!(std::fs::read(&second).unwrap(), b"two");
    }

    #[test]
    fn pair_keys_are_sorted() {
        assert_eq!(pair_key("n2", "n1"), "n1/n2");
    }
}
