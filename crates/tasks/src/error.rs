//! The one error type of the task store.

use std::path::PathBuf;

use uuid::Uuid;

use crate::TaskStatus;

/// Everything that can go wrong in the task store.
///
/// Each variant carries the context a caller needs to act on it (the store
/// path, the task id, the refused move) in fields rather than in formatted
/// text, so the HTTP layer can map variants to status codes with an
/// exhaustive `match`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store file could not be opened or created: a missing or
    /// unwritable directory, a path that is not a file, or a file that is not
    /// an SQLite database.
    #[error("cannot open the task store at {}", path.display())]
    Open {
        /// The store path as given.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: sqlx::Error,
    },

    /// The store opened but its schema could not be created or upgraded.
    #[error("cannot create or upgrade the schema of the task store at {}", path.display())]
    Migrate {
        /// The store path as given.
        path: PathBuf,
        /// What the migrator said.
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// A query against an open store failed (disk full, store deleted or
    /// corrupted underneath the server, lock wait longer than the busy
    /// timeout).
    #[error("task store query failed while trying to {operation} (store {})", path.display())]
    Database {
        /// The store path.
        path: PathBuf,
        /// What the store was doing, e.g. "start a task".
        operation: &'static str,
        /// What SQLite said.
        #[source]
        source: sqlx::Error,
    },

    /// No task with this id exists, or it exists but belongs to another
    /// caller. The two are deliberately not told apart so that a caller
    /// cannot probe for other callers' task ids.
    #[error("task {id} not found")]
    NotFound {
        /// The id that was asked for.
        id: Uuid,
    },

    /// The task is in a state from which the requested move is not allowed,
    /// e.g. starting a task that has already finished.
    #[error("task {id} cannot move from {from} to {to}")]
    IllegalTransition {
        /// The task.
        id: Uuid,
        /// Its status when the move was attempted.
        from: TaskStatus,
        /// The status the move would have led to.
        to: TaskStatus,
    },

    /// Progress was reported for a task that is not RUNNING.
    #[error("task {id} is {status}, so it cannot report progress")]
    NotRunning {
        /// The task.
        id: Uuid,
        /// Its status at the time.
        status: TaskStatus,
    },

    /// A stored row could not be read back (an unknown status or type, an
    /// invalid id or context). Only a store written by something other than
    /// this crate can produce it.
    #[error("task {id} has an unreadable record in the task store: {reason}")]
    CorruptRecord {
        /// The stored id text.
        id: String,
        /// What was wrong with it.
        reason: String,
    },

    /// A report file of a finished task could not be removed while pruning.
    #[error("cannot remove report file {} of task {id}", path.display())]
    RemoveReport {
        /// The task the report belongs to.
        id: Uuid,
        /// The report file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
