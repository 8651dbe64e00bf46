//! Request bodies of the task endpoints, with upstream field names, and
//! their validation.
//!
//! Unlike upstream (whose Go decoder ignores unknown fields), an unknown
//! field is refused: a misspelt option must not silently fall back to its
//! default.

use std::path::{Path, PathBuf};

use ace_config::{AceConfig, NodeSelection};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// `POST /api/v1/table-diff`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDiffRequest {
    /// Cluster; `default_cluster` when absent.
    #[serde(default)]
    pub cluster: Option<String>,
    /// `schema.table` (a bare name means `public`). Required.
    pub table: String,
    /// Database, overriding the service file's `dbname`.
    #[serde(default)]
    pub dbname: Option<String>,
    /// Node names; absent or empty means every node.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Rows per block; `table_diff.diff_block_size` when absent.
    #[serde(default)]
    pub block_size: Option<u64>,
    /// Parallelism as a multiple of the CPU count, in (0, 4].
    #[serde(default)]
    pub concurrency_factor: Option<f64>,
    /// Largest block compared row by row.
    #[serde(default)]
    pub compare_unit_size: Option<u64>,
    /// Stop after this many differing rows (0 = no limit).
    #[serde(default)]
    pub max_diff_rows: Option<u64>,
    /// A filter over the table's columns.
    #[serde(default)]
    pub table_filter: Option<String>,
    /// Allow a block size outside the configured limits.
    #[serde(default)]
    pub override_block_size: bool,
    /// Accepted for upstream compatibility; the API never draws progress
    /// bars, so it changes nothing.
    #[serde(default)]
    pub quiet: bool,
}

/// `POST /api/v1/table-rerun`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRerunRequest {
    /// Cluster; `default_cluster` when absent.
    #[serde(default)]
    pub cluster: Option<String>,
    /// A diff file inside `server.data_dir` (relative paths are relative
    /// to it). Required.
    pub diff_file: String,
    /// Database, overriding the service file's `dbname`.
    #[serde(default)]
    pub dbname: Option<String>,
    /// Node names; absent or empty means every node.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Accepted for upstream compatibility; changes nothing.
    #[serde(default)]
    pub quiet: bool,
}

/// `POST /api/v1/table-repair`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRepairRequest {
    /// Cluster; `default_cluster` when absent.
    #[serde(default)]
    pub cluster: Option<String>,
    /// `schema.table`, the table of the diff file. Required.
    pub table: String,
    /// A diff file inside `server.data_dir` (relative paths are relative
    /// to it). Required.
    pub diff_file: String,
    /// Database, overriding the service file's `dbname`.
    #[serde(default)]
    pub dbname: Option<String>,
    /// Node names; absent or empty means every node.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// The node whose rows win; required unless `bidirectional` or
    /// `fix_nulls`.
    #[serde(default)]
    pub source_of_truth: Option<String>,
    /// Report the plan; write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Only insert missing rows.
    #[serde(default)]
    pub insert_only: bool,
    /// Insert and update; never delete.
    #[serde(default)]
    pub upsert_only: bool,
    /// Insert-only both ways, without a source of truth.
    #[serde(default)]
    pub bidirectional: bool,
    /// Fill NULL columns from a peer, both ways, without a source of truth.
    #[serde(default)]
    pub fix_nulls: bool,
    /// Let triggers fire on the targets.
    #[serde(default)]
    pub fire_triggers: bool,
    /// Put every row touched (before and after) in the report.
    #[serde(default)]
    pub generate_report: bool,
    /// Also write rows changed on the target since the diff (ours).
    #[serde(default)]
    pub allow_stale: bool,
    /// Upstream's rule-based plan: not supported, refused when set.
    #[serde(default)]
    pub repair_plan: Option<String>,
    /// Upstream's origin preservation: not supported, refused when true.
    #[serde(default)]
    pub preserve_origin: bool,
    /// Accepted for upstream compatibility; changes nothing.
    #[serde(default)]
    pub quiet: bool,
}

impl TableRepairRequest {
    /// The engine's options for this request, run as `role`, after
    /// checking the options make one repair mode.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidField`] for `table`, `repair_plan` or
    /// `preserve_origin`; [`Error::Engine`] (400) naming both options of an
    /// incompatible pair, or a missing source of truth.
    pub(crate) fn options(&self, role: &str) -> Result<ace_engine::TableRepairOptions> {
        if self.table.trim().is_empty() {
            return Err(Error::InvalidField {
                field: "table",
                reason: "table is required".into(),
            });
        }
        if self
            .repair_plan
            .as_deref()
            .is_some_and(|p| !p.trim().is_empty())
        {
            return Err(Error::InvalidField {
                field: "repair_plan",
                reason: "repair plans are not supported by this server".into(),
            });
        }
        if self.preserve_origin {
            return Err(Error::InvalidField {
                field: "preserve_origin",
                reason: "preserving replication origins is not supported by this server".into(),
            });
        }
        let (schema, table) = ace_engine::parse_qualified_name(self.table.trim())?;
        let mut options = ace_engine::TableRepairOptions::new(&schema, &table);
        options.source_of_truth = self.source_of_truth.clone();
        options.dry_run = self.dry_run;
        options.insert_only = self.insert_only;
        options.upsert_only = self.upsert_only;
        options.bidirectional = self.bidirectional;
        options.fix_nulls = self.fix_nulls;
        options.fire_triggers = self.fire_triggers;
        options.generate_report = self.generate_report;
        options.allow_stale = self.allow_stale;
        options.dbname = self.dbname.clone();
        options.role = Some(role.to_owned());
        options.mode()?;
        Ok(options)
    }
}

/// Decodes a JSON body, naming the field at fault in the error.
///
/// # Errors
///
/// [`Error::InvalidJson`] with the field path and the decoder's message.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let mut decoder = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut decoder).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // serde_path_to_error prints "?" when the error has no field path.
        let message = if path == "." || path == "?" || path.is_empty() {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        Error::InvalidJson { message }
    })?;
    decoder.end().map_err(|error| Error::InvalidJson {
        message: error.to_string(),
    })?;
    Ok(value)
}

/// The node selection a request's `nodes` names: trimmed, de-duplicated;
/// empty means all.
///
/// # Errors
///
/// [`Error::InvalidField`] (`nodes`) for a blank name.
pub(crate) fn node_selection(nodes: &[String]) -> Result<NodeSelection> {
    if nodes.is_empty() {
        return Ok(NodeSelection::All);
    }
    let mut names: Vec<String> = Vec::new();
    for name in nodes {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::InvalidField {
                field: "nodes",
                reason: "node names must not be empty".into(),
            });
        }
        if name == "all" && nodes.len() == 1 {
            return Ok(NodeSelection::All);
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    Ok(NodeSelection::Named(names))
}

/// A table-diff request with every default filled in and every value
/// checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValidDiff {
    pub schema: String,
    pub table: String,
    pub block_size: u64,
    pub concurrency_factor: f64,
    pub compare_unit_size: u64,
    pub max_diff_rows: u64,
    pub table_filter: Option<String>,
}

impl TableDiffRequest {
    /// Fills the defaults from `config.table_diff` and checks every value.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidField`] naming the field; [`Error::Config`] for a
    /// block size outside the configured limits.
    pub(crate) fn validate(&self, config: &AceConfig) -> Result<ValidDiff> {
        let td = &config.table_diff;
        if self.table.trim().is_empty() {
            return Err(Error::InvalidField {
                field: "table",
                reason: "table is required".into(),
            });
        }
        let (schema, table) = ace_engine::parse_qualified_name(self.table.trim())?;
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
        Ok(ValidDiff {
            schema,
            table,
            block_size,
            concurrency_factor,
            compare_unit_size,
            max_diff_rows: self.max_diff_rows.unwrap_or(td.max_diff_rows),
            table_filter: self
                .table_filter
                .as_deref()
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned),
        })
    }
}

/// Resolves a path a caller named inside `data_dir` (already
/// canonical): relative paths are taken from `data_dir`, symbolic links
/// and `..` are resolved, and the result must exist and lie inside
/// `data_dir`.
///
/// # Errors
///
/// [`Error::PathRefused`] naming the field. The message never shows where
/// the path resolved to.
pub(crate) fn confine(field: &'static str, requested: &str, data_dir: &Path) -> Result<PathBuf> {
    if requested.trim().is_empty() {
        return Err(Error::PathRefused {
            field,
            reason: format!("{field} is required"),
        });
    }
    let joined = data_dir.join(requested);
    let outside = || Error::PathRefused {
        field,
        reason: format!("{requested:?} is not a file inside the server's data directory"),
    };
    // A plain relative name that does not resolve is simply missing; say
    // so (this tells nothing about what lies outside data_dir).
    let plain = Path::new(requested)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    let resolved = joined.canonicalize().map_err(|_| {
        if plain {
            Error::PathRefused {
                field,
                reason: format!("no file {requested:?} in the server's data directory"),
            }
        } else {
            outside()
        }
    })?;
    if !resolved.starts_with(data_dir) || !resolved.is_file() {
        return Err(outside());
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let error = decode::<TableDiffRequest>(br#"{"table":"t","blok_size":1}"#).unwrap_err();
        assert!(error.to_string().contains("blok_size"), "{error}");
        let error = decode::<TableDiffRequest>(br#"{"table":"t","block_size":"x"}"#).unwrap_err();
        assert!(error.to_string().contains("block_size"), "{error}");
        let error = decode::<TableDiffRequest>(br#"{"nodes":[]}"#).unwrap_err();
        assert!(error.to_string().contains("`table`"), "{error}");
    }

    #[test]
    fn defaults_come_from_the_config() {
        let config = AceConfig::default();
        let request: TableDiffRequest = decode(br#"{"table":"Public.T1"}"#).unwrap();
        let valid = request.validate(&config).unwrap();
        assert_eq!(
            (valid.schema.as_str(), valid.table.as_str()),
            ("public", "t1")
        );
        assert_eq!(valid.block_size, config.table_diff.diff_block_size);
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let config = AceConfig::default();
        for (body, field) in [
            (r#"{"table":"t","block_size":0}"#, "block_size"),
            (r#"{"table":"t","block_size":100000000}"#, "block_size"),
            (
                r#"{"table":"t","concurrency_factor":0}"#,
                "concurrency_factor",
            ),
            (
                r#"{"table":"t","concurrency_factor":4.5}"#,
                "concurrency_factor",
            ),
            (
                r#"{"table":"t","compare_unit_size":0}"#,
                "compare_unit_size",
            ),
            (r#"{"table":"a.b.c"}"#, "table"),
            (r#"{"table":" "}"#, "table"),
        ] {
            let request: TableDiffRequest = decode(body.as_bytes()).unwrap();
            let error = request.validate(&config).unwrap_err();
            assert_eq!(error.status(), http::StatusCode::BAD_REQUEST, "{body}");
            assert!(error.to_string().contains(field), "{body}: {error}");
        }
        let request: TableDiffRequest =
            decode(br#"{"table":"t","block_size":100000000,"override_block_size":true}"#).unwrap();
        assert_eq!(request.validate(&config).unwrap().block_size, 100_000_000);
    }

    #[test]
    fn paths_stay_inside_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("d.json"), "{}").unwrap();
        std::fs::write(dir.path().join("secret.json"), "{}").unwrap();
        let data = data.canonicalize().unwrap();
        assert!(confine("diff_file", "d.json", &data).is_ok());
        for bad in [
            "../secret.json",
            "../../etc/passwd",
            "/etc/passwd",
            "missing.json",
            ".",
        ] {
            let error = confine("diff_file", bad, &data).unwrap_err();
            assert_eq!(error.status(), http::StatusCode::BAD_REQUEST, "{bad}");
            assert!(error.to_string().starts_with("diff_file"), "{error}");
        }
        let outside = dir.path().join("secret.json");
        assert!(confine("diff_file", outside.to_str().unwrap(), &data).is_err());
        // A missing plain name is called missing; a path that leaves the
        // directory is refused the same way whether or not it exists.
        let missing = confine("diff_file", "missing.json", &data).unwrap_err();
        assert!(missing.to_string().contains("no file"), "{missing}");
        for gone in ["../secret.json", "../nothing.json"] {
            let error = confine("diff_file", gone, &data).unwrap_err().to_string();
            assert!(error.contains("not a file inside"), "{error}");
        }
    }

    #[test]
    fn repair_options_are_checked() {
        let request: TableRepairRequest =
            decode(br#"{"table":"public.t","diff_file":"d.json","source_of_truth":"n1"}"#).unwrap();
        let options = request.options("api_user").unwrap();
        assert_eq!(options.role.as_deref(), Some("api_user"));
        assert_eq!(options.table, "t");
        for (body, words) in [
            (
                r#"{"table":"t","diff_file":"d","insert_only":true,"upsert_only":true,"source_of_truth":"n1"}"#,
                &["insert_only", "upsert_only"][..],
            ),
            (
                r#"{"table":"t","diff_file":"d","bidirectional":true,"fix_nulls":true}"#,
                &["bidirectional", "fix_nulls"][..],
            ),
            (r#"{"table":"t","diff_file":"d"}"#, &["source_of_truth"][..]),
            (
                r#"{"table":"t","diff_file":"d","fix_nulls":true,"repair_plan":"p.yaml"}"#,
                &["repair_plan"][..],
            ),
        ] {
            let request: TableRepairRequest = decode(body.as_bytes()).unwrap();
            let error = request.options("api_user").unwrap_err();
            assert_eq!(error.status(), http::StatusCode::BAD_REQUEST, "{body}");
            for word in words {
                assert!(error.to_string().contains(word), "{body}: {error}");
            }
        }
        let error = decode::<TableRepairRequest>(br#"{"table":"t","diff_file":"d","dryrun":true}"#)
            .unwrap_err();
        assert!(error.to_string().contains("dryrun"), "{error}");
    }

    #[test]
    fn nodes_are_trimmed_and_deduplicated() {
        assert_eq!(node_selection(&[]).unwrap(), NodeSelection::All);
        assert_eq!(
            node_selection(&[" n1".into(), "n2".into(), "n1".into()]).unwrap(),
            NodeSelection::Named(vec!["n1".into(), "n2".into()])
        );
        assert!(node_selection(&["".into()]).is_err());
    }
}
