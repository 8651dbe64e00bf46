//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while loading `ace.yaml`, reading
/// `pg_service.conf` or resolving a cluster.
///
/// Each variant carries the context an operator needs to fix the problem:
/// the file, the key, the node. `origin` fields name where a value came from:
/// a file path, an environment variable (`ACE_SERVER__LISTEN_PORT`), or
/// `command-line flag`.
///
/// The enum is exhaustive on purpose: callers that map errors to statuses
/// should `match` every variant, so a new one cannot be forgotten.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file that was named explicitly (flag or environment variable) or
    /// found on disk could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// A file could not be written (`config init`, `cluster init`).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// `init` refused to replace a file that already exists.
    #[error("{path} already exists (use --force to overwrite it)")]
    AlreadyExists {
        /// The file that was left untouched.
        path: PathBuf,
    },

    /// The YAML itself is malformed (indentation, quoting, not a mapping).
    #[error("{origin}: invalid YAML: {message}")]
    Syntax {
        /// The file at fault.
        origin: String,
        /// The parser's message, with line and column when known.
        message: String,
    },

    /// A key that `ace.yaml` does not define.
    #[error("unknown key `{key}` in {origin} (expected one of: {})", expected.join(", "))]
    UnknownKey {
        /// The full dotted key, e.g. `server.listen_prot`.
        key: String,
        /// Where the key was set.
        origin: String,
        /// The keys allowed at that level.
        expected: Vec<String>,
    },

    /// A value of the wrong type, e.g. a string where a number belongs.
    #[error("`{key}` in {origin} has the wrong type: expected {expected}, found {found}")]
    WrongType {
        /// The full dotted key.
        key: String,
        /// Where the value was set.
        origin: String,
        /// The expected type, in words.
        expected: String,
        /// What was found instead.
        found: String,
    },

    /// A number outside its allowed range.
    #[error("`{key}` in {origin} is {value}, outside the allowed range {allowed}")]
    OutOfRange {
        /// The full dotted key.
        key: String,
        /// Where the value was set.
        origin: String,
        /// The offending value, as text.
        value: String,
        /// The allowed range, e.g. `1..=65535` or `min_diff_block_size..=max_diff_block_size (1..=1000000)`.
        allowed: String,
    },

    /// A required key is absent (e.g. `name` of a `schedule_jobs` entry).
    #[error("missing key `{key}` in {origin}")]
    MissingKey {
        /// The full dotted key.
        key: String,
        /// The file (or other source) holding the enclosing section.
        origin: String,
    },

    /// Any other value the typed config refuses, with the deserializer's
    /// message.
    #[error("`{key}` in {origin}: {message}")]
    Invalid {
        /// The full dotted key.
        key: String,
        /// Where the value was set.
        origin: String,
        /// What is wrong.
        message: String,
    },

    /// A value of the right type that is not one of the accepted values
    /// (an unknown `sslmode`, a job `type` that does not exist).
    #[error("`{key}` in {origin} is `{value}`, expected {expected}")]
    InvalidValue {
        /// The key (dotted for `ace.yaml`, `[section] key` for service files).
        key: String,
        /// Where the value was set (file and line for service files).
        origin: String,
        /// The offending value. Never a password.
        value: String,
        /// What would be accepted.
        expected: String,
    },

    /// A `schedule_config` entry names a job that `schedule_jobs` lacks.
    #[error("schedule_config entry `{job}` in {origin} names no job in schedule_jobs (known: {})", known.join(", "))]
    UnknownJob {
        /// The job name.
        job: String,
        /// Where the entry was set.
        origin: String,
        /// The jobs that do exist.
        known: Vec<String>,
    },

    /// A line of `pg_service.conf` that is neither a comment, a section
    /// header nor `key=value`.
    #[error("{path}:{line}: {message}")]
    ServiceSyntax {
        /// The service file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },

    /// No service file exists in any of the searched places, or a file
    /// named by an environment variable does not exist.
    #[error("no pg_service.conf found (searched: {})", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    ServiceFileNotFound {
        /// Every path tried, in order.
        searched: Vec<PathBuf>,
    },

    /// No cluster was named and `default_cluster` is empty.
    #[error("no cluster named and default_cluster is empty in ace.yaml (clusters in {path}: {})", known.join(", "))]
    NoCluster {
        /// The service file.
        path: PathBuf,
        /// The clusters it defines.
        known: Vec<String>,
    },

    /// The named cluster has no `[cluster.node]` section.
    #[error("unknown cluster `{cluster}` in {path} (known clusters: {})", known.join(", "))]
    UnknownCluster {
        /// The cluster asked for.
        cluster: String,
        /// The service file searched.
        path: PathBuf,
        /// The clusters the file defines (those with at least one node).
        known: Vec<String>,
    },

    /// A node selection names a node the cluster lacks.
    #[error("unknown node `{node}` in cluster `{cluster}` (known nodes: {})", known.join(", "))]
    UnknownNode {
        /// The cluster.
        cluster: String,
        /// The node asked for.
        node: String,
        /// The cluster's nodes, in file order.
        known: Vec<String>,
    },

    /// A node selection that selects nothing (`--nodes ""` or `--nodes ,`).
    #[error("empty node list `{spec}` (give node names separated by commas, or `all`)")]
    EmptyNodeSelection {
        /// The selection as given.
        spec: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;
