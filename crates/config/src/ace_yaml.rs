//! The typed `ace.yaml`: one struct per section, upstream keys and defaults.
//!
//! Every struct denies unknown keys, so a typo is an error naming the key
//! rather than a silently ignored setting. Every field has a default, so a
//! file may set only what it changes. Path keys that upstream leaves as `""`
//! when unset are `Option<PathBuf>` here: `""` and an absent key both mean
//! `None`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::error::{ConfigError, Result};

/// The whole `ace.yaml`.
///
/// Field names are the YAML keys. Build one with [`AceConfig::load`] (files,
/// environment and flags, validated) or start from [`AceConfig::default`]
/// in tests and call [`AceConfig::validate`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AceConfig {
    /// Cluster used when a command names none. Upstream default: `""`.
    pub default_cluster: String,
    /// Connection settings ACE applies to every node session.
    pub postgres: PostgresConfig,
    /// Tuning of `table-diff`.
    pub table_diff: TableDiffConfig,
    /// Merkle-tree (`mtree`) settings.
    pub mtree: MtreeConfig,
    /// The HTTPS API server.
    pub server: ServerConfig,
    /// Jobs the scheduler may run.
    pub schedule_jobs: Vec<ScheduleJob>,
    /// When each scheduled job runs.
    pub schedule_config: Vec<ScheduleEntry>,
    /// Automatic repair loop.
    pub auto_repair_config: AutoRepairConfig,
    /// How ACE authenticates to PostgreSQL with a client certificate.
    pub cert_auth: CertAuthConfig,
    /// Verbose diagnostics. Upstream default: `false`.
    pub debug_mode: bool,
}

/// The `postgres` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// `statement_timeout` in milliseconds; `0` disables it. Default `0`.
    pub statement_timeout: u64,
    /// Connect timeout in seconds; `0` waits forever. Default `10`.
    pub connection_timeout: u64,
    /// `application_name` reported to PostgreSQL. Default `"ACE"`.
    pub application_name: String,
    /// TCP keepalive idle time in seconds. Default `30`.
    pub tcp_keepalives_idle: u32,
    /// TCP keepalive probe interval in seconds. Default `10`.
    pub tcp_keepalives_interval: u32,
    /// Keepalive probes lost before the connection is dropped. Default `5`.
    pub tcp_keepalives_count: u32,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            statement_timeout: 0,
            connection_timeout: 10,
            application_name: "ACE".to_owned(),
            tcp_keepalives_idle: 30,
            tcp_keepalives_interval: 10,
            tcp_keepalives_count: 5,
        }
    }
}

/// The `table_diff` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableDiffConfig {
    /// Parallelism as a ratio of CPU cores; greater than 0, at most 4.
    /// Default `1`.
    pub concurrency_factor: f64,
    /// Stop collecting differences after this many rows. Default `1000000`.
    pub max_diff_rows: u64,
    /// Smallest block size a run may ask for. Default `1`.
    pub min_diff_block_size: u64,
    /// Largest block size a run may ask for. Default `1000000`.
    pub max_diff_block_size: u64,
    /// Rows per block; within `min_diff_block_size..=max_diff_block_size`.
    /// Default `1000`.
    pub diff_block_size: u64,
    /// Upstream's older CPU ratio key, accepted and kept for compatibility.
    /// Default: unset.
    pub max_cpu_ratio: Option<f64>,
    /// Blocks per batch; within `1..=max_diff_batch_size`. Default `1`.
    pub diff_batch_size: u64,
    /// Largest batch a run may ask for. Default `1000`.
    pub max_diff_batch_size: u64,
    /// Rows below which a differing range is compared row by row.
    /// Default `10000`.
    pub compare_unit_size: u64,
    /// Connections per node; `0` derives it from `concurrency_factor`.
    /// Default `0`.
    pub max_connections: u32,
}

impl Default for TableDiffConfig {
    fn default() -> Self {
        Self {
            concurrency_factor: 1.0,
            max_diff_rows: 1_000_000,
            min_diff_block_size: 1,
            max_diff_block_size: 1_000_000,
            diff_block_size: 1000,
            max_cpu_ratio: None,
            diff_batch_size: 1,
            max_diff_batch_size: 1000,
            compare_unit_size: 10_000,
            max_connections: 0,
        }
    }
}

impl TableDiffConfig {
    /// Checks a block size asked for by one run (`--block-size`) against
    /// `min_diff_block_size..=max_diff_block_size`. With `override_limits`
    /// (upstream's `--override-block-size`) any size above zero passes.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] with `origin` set to `origin` when the size
    /// is outside the limits (or zero).
    pub fn check_block_size(
        &self,
        block_size: u64,
        override_limits: bool,
        origin: &str,
    ) -> Result<()> {
        let (low, high) = if override_limits {
            (1, u64::MAX)
        } else {
            (self.min_diff_block_size, self.max_diff_block_size)
        };
        if (low..=high).contains(&block_size) && block_size > 0 {
            return Ok(());
        }
        Err(ConfigError::OutOfRange {
            key: "block_size".to_owned(),
            origin: origin.to_owned(),
            value: block_size.to_string(),
            allowed: if override_limits {
                "1.. (limits overridden)".to_owned()
            } else {
                format!("{low}..={high} (table_diff.min_diff_block_size..=max_diff_block_size)")
            },
        })
    }
}

/// The `mtree` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MtreeConfig {
    /// Change-data-capture settings.
    pub cdc: MtreeCdcConfig,
    /// Schema holding the Merkle-tree objects. Default `"pgedge_ace"`.
    pub schema: String,
    /// Merkle-tree diff block sizes.
    pub diff: MtreeDiffConfig,
}

impl Default for MtreeConfig {
    fn default() -> Self {
        Self {
            cdc: MtreeCdcConfig::default(),
            schema: "pgedge_ace".to_owned(),
            diff: MtreeDiffConfig::default(),
        }
    }
}

/// The `mtree.cdc` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MtreeCdcConfig {
    /// Logical replication slot. Default `"ace_mtree_slot"`.
    pub slot_name: String,
    /// Publication. Default `"ace_mtree_pub"`.
    pub publication_name: String,
    /// Seconds a CDC drain may run. Default `300`.
    pub cdc_processing_timeout: u64,
    /// Seconds between metadata flushes. Default `10`.
    pub cdc_metadata_flush_seconds: u64,
    /// Changes per flush. Default `10000`.
    pub cdc_flush_batch_size: u64,
    /// Fraction of a table's rows of UPDATEs past which a drain rehashes the
    /// whole tree; `-1` disables. Default `0.01`.
    pub adaptive_drain_fraction: f64,
    /// Lower bound for the rule above. Default `1000`.
    pub adaptive_drain_min_changes: u64,
}

impl Default for MtreeCdcConfig {
    fn default() -> Self {
        Self {
            slot_name: "ace_mtree_slot".to_owned(),
            publication_name: "ace_mtree_pub".to_owned(),
            cdc_processing_timeout: 300,
            cdc_metadata_flush_seconds: 10,
            cdc_flush_batch_size: 10_000,
            adaptive_drain_fraction: 0.01,
            adaptive_drain_min_changes: 1000,
        }
    }
}

/// The `mtree.diff` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MtreeDiffConfig {
    /// Smallest leaf block. Default `1000`.
    pub min_block_size: u64,
    /// Leaf block size; within `min_block_size..=max_block_size`.
    /// Default `100000`.
    pub block_size: u64,
    /// Largest leaf block. Default `1000000`.
    pub max_block_size: u64,
    /// Differing rows collected per node pair; `0` is unbounded.
    /// Default `1000000`.
    pub max_diff_rows: u64,
}

impl Default for MtreeDiffConfig {
    fn default() -> Self {
        Self {
            min_block_size: 1000,
            block_size: 100_000,
            max_block_size: 1_000_000,
            max_diff_rows: 1_000_000,
        }
    }
}

/// The `server` section: the HTTPS API.
///
/// `client_ca_file`, `admin_common_names`, `data_dir` and
/// `max_concurrent_tasks` are additions of ACE in Rust; upstream files
/// without them load unchanged.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind. Default `"0.0.0.0"`.
    pub listen_address: String,
    /// Port to bind; `0` asks the OS for a free port. Default `5000`.
    pub listen_port: u16,
    /// The server's certificate chain (PEM).
    #[serde(deserialize_with = "empty_path_as_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// The server's private key (PEM).
    #[serde(deserialize_with = "empty_path_as_none")]
    pub tls_key_file: Option<PathBuf>,
    /// CRL of revoked client certificates (PEM or DER).
    #[serde(deserialize_with = "empty_path_as_none")]
    pub client_crl_file: Option<PathBuf>,
    /// When non-empty, only these client CNs may call the API.
    pub allowed_common_names: Vec<String>,
    /// Task store database; see [`AceConfig::taskstore_path`].
    #[serde(deserialize_with = "empty_path_as_none")]
    pub taskstore_path: Option<PathBuf>,
    /// Ours: CA bundle that signs API client certificates. Unset means
    /// `cert_auth.ca_cert_file`, as upstream; see
    /// [`AceConfig::client_ca_file`].
    #[serde(deserialize_with = "empty_path_as_none")]
    pub client_ca_file: Option<PathBuf>,
    /// Ours: CNs that may see every task, not only their own. Default empty.
    pub admin_common_names: Vec<String>,
    /// Ours: where reports are written and the only directory under which
    /// API callers may name files. Default `"."` (the working directory, where
    /// upstream writes its reports).
    pub data_dir: PathBuf,
    /// Ours: tasks run at once by the server; more wait as PENDING.
    /// At least 1. Default `4`.
    pub max_concurrent_tasks: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen_address: "0.0.0.0".to_owned(),
            listen_port: 5000,
            tls_cert_file: None,
            tls_key_file: None,
            client_crl_file: None,
            allowed_common_names: Vec::new(),
            taskstore_path: None,
            client_ca_file: None,
            admin_common_names: Vec::new(),
            data_dir: PathBuf::from("."),
            max_concurrent_tasks: 4,
        }
    }
}

/// What a scheduled job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobType {
    /// `table-diff` on `table_name`.
    TableDiff,
    /// `schema-diff` on `schema_name`.
    SchemaDiff,
    /// `repset-diff` on `repset_name`.
    RepsetDiff,
}

/// One entry of `schedule_jobs`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleJob {
    /// Unique job name, referenced from `schedule_config`.
    pub name: String,
    /// The operation. Upstream default: `table-diff`.
    #[serde(rename = "type", default = "default_job_type")]
    pub job_type: JobType,
    /// Cluster; unset falls back to `default_cluster`.
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// Table for `table-diff`.
    #[serde(default)]
    pub table_name: Option<String>,
    /// Schema for `schema-diff`.
    #[serde(default)]
    pub schema_name: Option<String>,
    /// Replication set for `repset-diff`.
    #[serde(default)]
    pub repset_name: Option<String>,
    /// Flags mirrored from the command line (`dbname`, `nodes`, `output`...),
    /// kept as given.
    #[serde(default)]
    pub args: serde_json::Map<String, serde_json::Value>,
}

fn default_job_type() -> JobType {
    JobType::TableDiff
}

/// One entry of `schedule_config`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    /// The `schedule_jobs` name this entry schedules.
    pub job_name: String,
    /// Cron expression, e.g. `"0 2 * * *"`.
    #[serde(default)]
    pub crontab_schedule: Option<String>,
    /// Interval in Go duration syntax, e.g. `"24h"`.
    #[serde(default)]
    pub run_frequency: Option<String>,
    /// Whether the entry is active. Default `false`, as upstream.
    #[serde(default)]
    pub enabled: bool,
}

/// The `auto_repair_config` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoRepairConfig {
    /// Whether the loop runs. Default `false`.
    pub enabled: bool,
    /// Cluster to repair. Default `""`.
    pub cluster_name: String,
    /// Database to repair. Default `""`.
    pub dbname: String,
    /// How often to look for exceptions (Go duration). Default `"10m"`.
    pub poll_frequency: String,
    /// How often to repair (Go duration). Default `"15m"`.
    pub repair_frequency: String,
}

impl Default for AutoRepairConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cluster_name: String::new(),
            dbname: String::new(),
            poll_frequency: "10m".to_owned(),
            repair_frequency: "15m".to_owned(),
        }
    }
}

/// The `cert_auth` section: ACE's own client certificate for PostgreSQL.
///
/// When `use_cert_auth` is true, cluster nodes without their own `sslcert`
/// and `sslkey` use these files and default to `sslmode=verify-full`; see
/// [`crate::ServiceFile::cluster`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CertAuthConfig {
    /// Connect to nodes with ACE's client certificate. Default `false`.
    pub use_cert_auth: bool,
    /// ACE's client certificate (PEM).
    #[serde(deserialize_with = "empty_path_as_none")]
    pub ace_user_cert_file: Option<PathBuf>,
    /// ACE's client private key (PEM).
    #[serde(deserialize_with = "empty_path_as_none")]
    pub ace_user_key_file: Option<PathBuf>,
    /// CA that signed the PostgreSQL server certificates; also the API
    /// client CA unless `server.client_ca_file` is set.
    #[serde(deserialize_with = "empty_path_as_none")]
    pub ca_cert_file: Option<PathBuf>,
}

/// Upstream writes `""` for an unset path; treat it like an absent key.
fn empty_path_as_none<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PathBuf>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value.filter(|s| !s.trim().is_empty()).map(PathBuf::from))
}

impl AceConfig {
    /// The CA bundle that verifies API client certificates:
    /// `server.client_ca_file`, else `cert_auth.ca_cert_file` (upstream uses
    /// one CA for both).
    pub fn client_ca_file(&self) -> Option<&Path> {
        self.server
            .client_ca_file
            .as_deref()
            .or(self.cert_auth.ca_cert_file.as_deref())
    }

    /// The task store path: `server.taskstore_path`, else the `ACE_TASKS_DB`
    /// environment variable (read at call time), else `./ace_tasks.db`.
    pub fn taskstore_path(&self) -> PathBuf {
        if let Some(path) = &self.server.taskstore_path {
            return path.clone();
        }
        match std::env::var_os("ACE_TASKS_DB") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => PathBuf::from("ace_tasks.db"),
        }
    }

    /// Checks the ranges and cross-key rules that types alone cannot express:
    /// `concurrency_factor` in `(0, 4]`, block and batch sizes within their
    /// configured min/max, `max_concurrent_tasks >= 1`, and every
    /// `schedule_config` entry naming a job.
    ///
    /// [`AceConfig::load`] calls this and fills in where the bad value came
    /// from; called directly, errors carry `origin` `"configuration"`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] or [`ConfigError::UnknownJob`] for the first
    /// rule broken.
    pub fn validate(&self) -> Result<()> {
        match self.first_violation() {
            None => Ok(()),
            Some(violation) => Err(violation.into_error("configuration".to_owned())),
        }
    }

    pub(crate) fn first_violation(&self) -> Option<Violation> {
        let td = &self.table_diff;
        let cf = td.concurrency_factor;
        if !(cf > 0.0 && cf <= 4.0) {
            return Some(Violation::range(
                "table_diff.concurrency_factor",
                cf,
                "0 < x <= 4",
            ));
        }
        if td.min_diff_block_size == 0 {
            return Some(Violation::range(
                "table_diff.min_diff_block_size",
                td.min_diff_block_size,
                "1..",
            ));
        }
        if td.max_diff_block_size < td.min_diff_block_size {
            return Some(Violation::range(
                "table_diff.max_diff_block_size",
                td.max_diff_block_size,
                &format!(
                    "{}.. (at least table_diff.min_diff_block_size)",
                    td.min_diff_block_size
                ),
            ));
        }
        if !(td.min_diff_block_size..=td.max_diff_block_size).contains(&td.diff_block_size) {
            return Some(Violation::range(
                "table_diff.diff_block_size",
                td.diff_block_size,
                &format!(
                    "{}..={} (table_diff.min_diff_block_size..=max_diff_block_size)",
                    td.min_diff_block_size, td.max_diff_block_size
                ),
            ));
        }
        if td.max_diff_batch_size == 0 {
            return Some(Violation::range("table_diff.max_diff_batch_size", 0, "1.."));
        }
        if !(1..=td.max_diff_batch_size).contains(&td.diff_batch_size) {
            return Some(Violation::range(
                "table_diff.diff_batch_size",
                td.diff_batch_size,
                &format!(
                    "1..={} (1..=table_diff.max_diff_batch_size)",
                    td.max_diff_batch_size
                ),
            ));
        }
        if td.compare_unit_size == 0 {
            return Some(Violation::range("table_diff.compare_unit_size", 0, "1.."));
        }
        if let Some(ratio) = td.max_cpu_ratio
            && !(ratio > 0.0 && ratio <= 4.0)
        {
            return Some(Violation::range(
                "table_diff.max_cpu_ratio",
                ratio,
                "0 < x <= 4",
            ));
        }
        let md = &self.mtree.diff;
        if md.min_block_size == 0 {
            return Some(Violation::range("mtree.diff.min_block_size", 0, "1.."));
        }
        if md.max_block_size < md.min_block_size {
            return Some(Violation::range(
                "mtree.diff.max_block_size",
                md.max_block_size,
                &format!(
                    "{}.. (at least mtree.diff.min_block_size)",
                    md.min_block_size
                ),
            ));
        }
        if !(md.min_block_size..=md.max_block_size).contains(&md.block_size) {
            return Some(Violation::range(
                "mtree.diff.block_size",
                md.block_size,
                &format!(
                    "{}..={} (mtree.diff.min_block_size..=max_block_size)",
                    md.min_block_size, md.max_block_size
                ),
            ));
        }
        let fraction = self.mtree.cdc.adaptive_drain_fraction;
        if fraction != -1.0 && !(0.0..=1.0).contains(&fraction) {
            return Some(Violation::range(
                "mtree.cdc.adaptive_drain_fraction",
                fraction,
                "0..=1, or -1 to disable",
            ));
        }
        if self.server.max_concurrent_tasks == 0 {
            return Some(Violation::range("server.max_concurrent_tasks", 0, "1.."));
        }
        for (index, entry) in self.schedule_config.iter().enumerate() {
            if !self
                .schedule_jobs
                .iter()
                .any(|job| job.name == entry.job_name)
            {
                return Some(Violation::UnknownJob {
                    key: format!("schedule_config.{index}.job_name"),
                    job: entry.job_name.clone(),
                    known: self
                        .schedule_jobs
                        .iter()
                        .map(|job| job.name.clone())
                        .collect(),
                });
            }
        }
        None
    }
}

/// A broken rule found by [`AceConfig::first_violation`], before the loader
/// knows which provider set the key.
#[derive(Debug)]
pub(crate) enum Violation {
    Range {
        key: String,
        value: String,
        allowed: String,
    },
    UnknownJob {
        key: String,
        job: String,
        known: Vec<String>,
    },
}

impl Violation {
    fn range(key: &str, value: impl ToString, allowed: &str) -> Self {
        Violation::Range {
            key: key.to_owned(),
            value: value.to_string(),
            allowed: allowed.to_owned(),
        }
    }

    /// The dotted key whose provider should be named as the origin.
    pub(crate) fn key(&self) -> &str {
        match self {
            Violation::Range { key, .. } | Violation::UnknownJob { key, .. } => key,
        }
    }

    pub(crate) fn into_error(self, origin: String) -> ConfigError {
        match self {
            Violation::Range {
                key,
                value,
                allowed,
            } => ConfigError::OutOfRange {
                key,
                origin,
                value,
                allowed,
            },
            Violation::UnknownJob { job, known, .. } => {
                ConfigError::UnknownJob { job, origin, known }
            }
        }
    }
}
