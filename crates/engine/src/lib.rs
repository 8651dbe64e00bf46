//! The consistency operations of ACE.
//!
//! table-diff ([`table_diff`]) finds the rows that differ between nodes;
//! table-rerun ([`table_rerun`]) re-checks exactly the rows of a diff file;
//! table-repair ([`table_repair`]) makes the nodes of a diff file agree,
//! from a source of truth or both ways, writing as the caller's role;
//! schema-diff ([`schema_diff`]) compares a schema's object definitions and
//! table-diffs its tables; repset-diff ([`repset_diff`]) table-diffs the
//! tables of a replication set (Spock's, or a publication).
//! All are written against role-scoped sessions from `ace-session`: every
//! statement runs in a transaction (read-only, except a repair's writes) as
//! the caller's role (or ACE's own user from the CLI), and nothing here
//! opens a connection or switches a role by itself. User input never
//! becomes SQL text: identifiers come
//! from the catalog and are quoted, values are bound, and a `table_filter`
//! is parsed and re-rendered by [`filter`].
//!
//! ```no_run
//! # async fn demo(sessions: &ace_session::ClusterSession) -> Result<(), ace_engine::EngineError> {
//! use ace_engine::{Progress, TableDiffOptions, table_diff};
//!
//! let options = TableDiffOptions::new("public", "accounts");
//! let report = table_diff(sessions, &options, &Progress::new()).await?;
//! println!("{}", report.human_summary());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod diff;
mod error;
pub mod filter;
mod html;
mod repair;
pub mod report;
mod rerun;
mod schema;
mod sql;
pub mod table;

pub use diff::{Progress, TableDiffOptions, preflight, table_diff};
pub use error::{EngineError, Result};
pub use repair::{
    NodeRepair, NodeStatus, RepairKey, RepairMode, RepairReport, RowAction, RowChange, SotKind,
    StaleRow, TableRepairOptions, WRITE_BATCH, table_repair,
};
pub use report::{DiffFile, DiffReport, DiffSummary};
pub use rerun::table_rerun;
pub use schema::{
    Difference, DifferingTable, MissingTable, ObjectDifference, SetDiffOptions, SetDiffReport,
    SetKind, SkipEntry, SkipList, TableReason, parse_identifier, repset_diff, schema_diff,
};
pub use table::parse_qualified_name;
