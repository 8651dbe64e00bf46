//! Task records and the values that describe them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// Declares a string-valued enum with `as_str`, `Display`, `FromStr`, `ALL`
/// and serde that uses exactly those strings.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and serialised spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            /// Parses the stored spelling; case-insensitive, and `-` is
            /// accepted for `_` so that command-line input like
            /// `table-diff` works.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let wanted = s.trim().replace('-', "_");
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(&wanted))
                    .ok_or_else(|| UnknownValue {
                        kind: stringify!($name),
                        value: s.to_owned(),
                    })
            }
        }
    };
}

/// A string that names no [`TaskType`] or [`TaskStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    /// Which enum was being parsed.
    pub kind: &'static str,
    /// The text that did not match.
    pub value: String,
}

string_enum! {
    /// What a task does; one per API endpoint. Serialised with the upstream
    /// spelling (`TABLE_DIFF`, `MTREE_BUILD`, ...).
    pub enum TaskType {
        /// Compare a table across nodes.
        TableDiff => "TABLE_DIFF",
        /// Repair a table from a diff report.
        TableRepair => "TABLE_REPAIR",
        /// Re-check the rows of an earlier diff report.
        TableRerun => "TABLE_RERUN",
        /// Compare every table of a schema, or its DDL.
        SchemaDiff => "SCHEMA_DIFF",
        /// Compare every table of a replication set.
        RepsetDiff => "REPSET_DIFF",
        /// Compare Spock metadata across nodes.
        SpockDiff => "SPOCK_DIFF",
        /// Create Merkle-tree metadata for a cluster.
        MtreeInit => "MTREE_INIT",
        /// Build the Merkle tree of a table.
        MtreeBuild => "MTREE_BUILD",
        /// Bring the Merkle tree of a table up to date.
        MtreeUpdate => "MTREE_UPDATE",
        /// Compare a table through its Merkle trees.
        MtreeDiff => "MTREE_DIFF",
        /// Remove Merkle-tree metadata from a cluster.
        MtreeTeardown => "MTREE_TEARDOWN",
        /// Remove the Merkle tree of one table.
        MtreeTeardownTable => "MTREE_TEARDOWN_TABLE",
        /// Follow changes to keep Merkle trees current.
        MtreeListen => "MTREE_LISTEN",
    }
}

string_enum! {
    /// Where a task is in its lifecycle.
    ///
    /// ```text
    /// PENDING ──start──> RUNNING ──complete──> COMPLETED
    ///    │                  ├──────fail──────> FAILED
    ///    │                  └─────cancel─────> CANCELLED
    ///    └──fail / cancel──> FAILED / CANCELLED
    /// ```
    ///
    /// COMPLETED, FAILED and CANCELLED are final: nothing moves a task out of
    /// them.
    pub enum TaskStatus {
        /// Recorded, not yet picked up by a worker.
        Pending => "PENDING",
        /// A worker is on it.
        Running => "RUNNING",
        /// Finished with a result.
        Completed => "COMPLETED",
        /// Finished with an error.
        Failed => "FAILED",
        /// Stopped on request before it finished.
        Cancelled => "CANCELLED",
    }
}

impl TaskStatus {
    /// Whether the status is final (COMPLETED, FAILED or CANCELLED).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The statuses from which a task may move to `self`.
    pub(crate) fn allowed_from(self) -> &'static [TaskStatus] {
        match self {
            Self::Pending => &[],
            Self::Running => &[Self::Pending],
            Self::Completed => &[Self::Running],
            Self::Failed | Self::Cancelled => &[Self::Pending, Self::Running],
        }
    }
}

/// The JSON context of a task: what it was asked to do, how far it got, and
/// how it ended. Stored as one JSON object; absent parts are omitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskContext {
    /// The request parameters, as the submitter gave them.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub parameters: Value,
    /// The latest progress report while RUNNING; kept afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Value>,
    /// The result summary of a COMPLETED task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Value>,
    /// Why a task FAILED or was CANCELLED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A task record as stored. Serialises with the upstream field names
/// (`task_id`, `task_type`, `status`, `time_taken` in seconds,
/// `task_context`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique id, chosen by the store on creation.
    pub task_id: Uuid,
    /// What the task does.
    pub task_type: TaskType,
    /// Where it is in its lifecycle.
    pub status: TaskStatus,
    /// The cluster it works on.
    pub cluster: String,
    /// The schema it works on, if any.
    pub schema: Option<String>,
    /// The table it works on, if any.
    pub table: Option<String>,
    /// The replication set it works on, if any.
    pub repset: Option<String>,
    /// The client-certificate CN of the caller who submitted it; the owner.
    pub submitted_by: String,
    /// The PostgreSQL role its user-scoped work runs as.
    pub role: String,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it moved to RUNNING.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When it reached a final status.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// From start to finish; absent for a task that never started.
    #[serde(with = "seconds")]
    pub time_taken: Option<Duration>,
    /// The report file it wrote, if any.
    pub report_path: Option<PathBuf>,
    /// Parameters, progress, summary and error.
    pub task_context: TaskContext,
}

/// What a caller supplies to record a new task; the store adds the id,
/// status and times.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// What the task does.
    pub task_type: TaskType,
    /// The cluster it works on.
    pub cluster: String,
    /// The schema it works on, if any.
    pub schema: Option<String>,
    /// The table it works on, if any.
    pub table: Option<String>,
    /// The replication set it works on, if any.
    pub repset: Option<String>,
    /// The caller's client-certificate CN; the task's owner.
    pub submitted_by: String,
    /// The PostgreSQL role the work runs as.
    pub role: String,
    /// The request parameters, stored as `task_context.parameters`.
    pub parameters: Value,
}

impl NewTask {
    /// A task of `task_type` on `cluster` submitted by `cn`, which is also
    /// the role it runs as; target and parameters empty.
    pub fn new(task_type: TaskType, cluster: impl Into<String>, cn: impl Into<String>) -> Self {
        let cn = cn.into();
        Self {
            task_type,
            cluster: cluster.into(),
            schema: None,
            table: None,
            repset: None,
            role: cn.clone(),
            submitted_by: cn,
            parameters: Value::Null,
        }
    }

    /// Sets the schema and table.
    pub fn with_table(mut self, schema: impl Into<String>, table: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self.table = Some(table.into());
        self
    }

    /// Sets the request parameters.
    pub fn with_parameters(mut self, parameters: Value) -> Self {
        self.parameters = parameters;
        self
    }
}

/// Who is reading: the caller's CN, and whether that CN is an admin CN.
/// Non-admins see only the tasks they submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The caller's client-certificate CN.
    pub cn: String,
    /// Whether the caller may see every task.
    pub is_admin: bool,
}

impl Viewer {
    /// A caller who sees only its own tasks.
    pub fn owner(cn: impl Into<String>) -> Self {
        Self {
            cn: cn.into(),
            is_admin: false,
        }
    }

    /// A caller who sees every task.
    pub fn admin(cn: impl Into<String>) -> Self {
        Self {
            cn: cn.into(),
            is_admin: true,
        }
    }

    /// Whether this caller may see `task`.
    pub fn can_see(&self, task: &Task) -> bool {
        self.is_admin || task.submitted_by == self.cn
    }
}

/// Which tasks [`TaskStore::list`](crate::TaskStore::list) returns; every
/// field that is set must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// Only tasks submitted by this CN.
    pub owner: Option<String>,
    /// Only tasks in this status.
    pub status: Option<TaskStatus>,
    /// Only tasks of this type.
    pub task_type: Option<TaskType>,
    /// Only tasks created at or after this time.
    pub since: Option<OffsetDateTime>,
}

impl TaskFilter {
    /// The filter that shows `viewer` what it may see: everything for an
    /// admin, its own tasks otherwise.
    pub fn visible_to(viewer: &Viewer) -> Self {
        Self {
            owner: (!viewer.is_admin).then(|| viewer.cn.clone()),
            ..Self::default()
        }
    }
}

/// A window into a listing, newest tasks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// At most this many tasks.
    pub limit: u32,
    /// Skip this many first.
    pub offset: u32,
}

impl Page {
    /// The default page size.
    pub const DEFAULT_LIMIT: u32 = 100;

    /// The first `limit` tasks.
    pub fn first(limit: u32) -> Self {
        Self { limit, offset: 0 }
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::first(Self::DEFAULT_LIMIT)
    }
}

/// What [`TaskStore::prune`](crate::TaskStore::prune) did.
#[derive(Debug, Default)]
pub struct PruneOutcome {
    /// Tasks whose records were deleted.
    pub removed_tasks: Vec<Uuid>,
    /// Report files deleted along with them.
    pub removed_reports: Vec<PathBuf>,
    /// Report files that could not be deleted; their tasks are kept so a
    /// later prune tries again. Each is an [`Error::RemoveReport`](crate::Error::RemoveReport).
    pub failures: Vec<crate::Error>,
}

/// `time_taken` as fractional seconds, as upstream reports it.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|secs| Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_strings() {
        for t in TaskType::ALL {
            assert_eq!(t.as_str().parse::<TaskType>().unwrap(), *t);
            let json = serde_json::to_string(t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().unwrap(), *s);
        }
        assert_eq!(
            "table-diff".parse::<TaskType>().unwrap(),
            TaskType::TableDiff
        );
        assert_eq!(
            "running".parse::<TaskStatus>().unwrap(),
            TaskStatus::Running
        );
        let err = "QUEUED".parse::<TaskStatus>().unwrap_err();
        assert_eq!(err.to_string(), "unknown TaskStatus \"QUEUED\"");
    }

    #[test]
    fn only_listed_moves_are_allowed() {
        use TaskStatus::*;
        assert_eq!(Running.allowed_from(), &[Pending]);
        assert_eq!(Completed.allowed_from(), &[Running]);
        assert_eq!(Failed.allowed_from(), &[Pending, Running]);
        assert_eq!(Cancelled.allowed_from(), &[Pending, Running]);
        assert!(Pending.allowed_from().is_empty());
        for s in TaskStatus::ALL {
            if s.is_finished() {
                assert!(
                    TaskStatus::ALL
                        .iter()
                        .all(|to| !to.allowed_from().contains(s))
                );
            }
        }
    }

    #[test]
    fn task_serialises_with_upstream_field_names() {
        let task = Task {
            task_id: Uuid::nil(),
            task_type: TaskType::TableDiff,
            status: TaskStatus::Completed,
            cluster: "c".into(),
            schema: Some("public".into()),
            table: Some("t".into()),
            repset: None,
            submitted_by: "alice".into(),
            role: "alice".into(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            started_at: Some(OffsetDateTime::UNIX_EPOCH),
            finished_at: Some(OffsetDateTime::UNIX_EPOCH + Duration::from_millis(132_500)),
            time_taken: Some(Duration::from_millis(132_500)),
            report_path: None,
            task_context: TaskContext::default(),
        };
        let v = serde_json::to_value(&task).unwrap();
        assert_eq!(v["task_id"], "00000000-0000-0000-0000-000000000000");
        assert_eq!(v["task_type"], "TABLE_DIFF");
        assert_eq!(v["status"], "COMPLETED");
        assert_eq!(v["time_taken"], 132.5);
        assert_eq!(v["finished_at"], "1970-01-01T00:02:12.5Z");
        assert_eq!(v["task_context"], serde_json::json!({}));
        let back: Task = serde_json::from_value(v).unwrap();
        assert_eq!(back, task);
    }
}
