//! The engine's one error type.

use std::path::PathBuf;

use ace_session::SessionError;

/// Everything that can stop an engine operation. Each variant names what is
/// at fault (node, table, option, file, filter part).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A node connection, role switch or statement failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// An option is out of range or inconsistent.
    #[error("invalid {field}: {reason}")]
    Options {
        /// The option (upstream field name).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The table does not exist on a node.
    #[error("node {node}: table {table} does not exist")]
    TableMissing {
        /// Node name.
        node: String,
        /// `schema.table`.
        table: String,
    },
    /// The name is a view, sequence or other relation, not a table.
    #[error("node {node}: {table} is a {kind}, not a table")]
    NotATable {
        /// Node name.
        node: String,
        /// `schema.table`.
        table: String,
        /// What it is instead (`view`, `sequence`, ...).
        kind: &'static str,
    },
    /// The table has no primary key.
    #[error("table {table} has no primary key on node {node}; table-diff needs one to match rows")]
    NoPrimaryKey {
        /// Node name.
        node: String,
        /// `schema.table`.
        table: String,
    },
    /// Columns, types or primary key differ between nodes.
    #[error("table {table} differs in structure between nodes: {}", differences.join("; "))]
    SchemaMismatch {
        /// `schema.table`.
        table: String,
        /// One line per difference.
        differences: Vec<String>,
    },
    /// The table filter was refused.
    #[error("table_filter refused at `{part}`: {reason}")]
    Filter {
        /// The part refused.
        part: String,
        /// Why.
        reason: String,
    },
    /// A diff file could not be read or does not fit the request.
    #[error("diff file {path}: {reason}")]
    DiffFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A report could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A table-repair failed on a target node; that node's transaction
    /// was rolled back, so nothing was written there.
    #[error("node {node}: repair failed: {reason}")]
    Repair {
        /// The target node.
        node: String,
        /// What failed, and which nodes were repaired and which not.
        reason: String,
    },
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl EngineError {
    /// A statement failure on `node`.
    pub(crate) fn query(node: &str, source: sqlx::Error) -> Self {
        EngineError::Session(SessionError::Query {
            node: node.to_owned(),
            source,
        })
    }
}

/// Result with [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
