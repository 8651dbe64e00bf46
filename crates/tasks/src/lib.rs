//! The ACE task store: durable task records and their lifecycle.
//!
//! Every API call becomes a task whose status the caller polls. Records live
//! in an embedded SQLite database, so a fresh install needs no extra server:
//! `server.taskstore_path`, else `ACE_TASKS_DB`, else `./ace_tasks.db`
//! (see [`resolve_path`]). The file and its schema are created through sqlx
//! migrations on first use; the database runs in WAL mode with a busy
//! timeout, so concurrent writers wait for each other instead of failing.
//!
//! The main types:
//!
//! - [`TaskStore`]: opens the store and performs every operation.
//! - [`Task`]: one record, serialised with the upstream field names;
//!   [`NewTask`] is what a caller supplies to create one.
//! - [`TaskStatus`] and [`TaskType`]: the upstream status and type strings.
//! - [`Viewer`], [`TaskFilter`], [`Page`]: who reads, and what they ask for.
//!   A caller sees only its own tasks unless it is an admin; someone else's
//!   task reads as [`Error::NotFound`], never as "forbidden".
//! - [`Error`]: the one error type, with the path or task id in its fields.
//!
//! The lifecycle is PENDING → RUNNING → COMPLETED, with FAILED and CANCELLED
//! reachable from PENDING and RUNNING; finished tasks never move again, and a
//! refused move is an [`Error::IllegalTransition`]. At start-up a server calls
//! [`TaskStore::recover_interrupted`] so tasks that a stopped server left
//! behind end as FAILED instead of staying RUNNING forever.
//!
//! # Example
//!
//! ```
//! use ace_tasks::{NewTask, TaskStatus, TaskStore, TaskType, Viewer};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ace_tasks::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("ace_tasks.db");
//! let store = TaskStore::open(&path).await?;
//! store.recover_interrupted().await?;
//!
//! let new = NewTask::new(TaskType::TableDiff, "prod", "alice")
//!     .with_table("public", "customers")
//!     .with_parameters(json!({ "block_size": 10000 }));
//! let task = store.create(new).await?;
//!
//! store.start(task.task_id).await?;
//! store.progress(task.task_id, &json!({ "ranges_done": 3 })).await?;
//! store.complete(task.task_id, &json!({ "diff_rows": 0 }), None).await?;
//!
//! let seen = store.get(task.task_id, &Viewer::owner("alice")).await?;
//! assert_eq!(seen.status, TaskStatus::Completed);
//! assert!(store.get(task.task_id, &Viewer::owner("bob")).await.is_err());
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod error;
mod model;
mod store;

pub use error::{Error, Result};
pub use model::{
    NewTask, Page, PruneOutcome, Task, TaskContext, TaskFilter, TaskStatus, TaskType, UnknownValue,
    Viewer,
};
pub use store::{
    BUSY_TIMEOUT, DEFAULT_TASKS_DB, ENV_TASKS_DB, INTERRUPTED_ERROR, TaskStore, resolve_path,
};
pub use uuid::Uuid;
