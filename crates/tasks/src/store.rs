//! The SQLite-backed store and the lifecycle operations.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    Error, NewTask, Page, PruneOutcome, Result, Task, TaskContext, TaskFilter, TaskStatus,
    TaskType, Viewer,
};

/// The environment variable naming the store when the configuration does
/// not.
pub const ENV_TASKS_DB: &str = "ACE_TASKS_DB";

/// The store path when neither the configuration nor [`ENV_TASKS_DB`] names
/// one.
pub const DEFAULT_TASKS_DB: &str = "./ace_tasks.db";

/// How long a writer waits for another writer's lock before giving up.
/// Writes are single short statements, so reaching this means something
/// outside ACE holds the database.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The error recorded on tasks that [`TaskStore::recover_interrupted`] fails.
pub const INTERRUPTED_ERROR: &str = "the server stopped before the task finished";

/// Connections per store. SQLite takes one writer at a time; the rest wait
/// on the busy timeout, and readers proceed in parallel thanks to WAL.
const MAX_CONNECTIONS: u32 = 8;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The columns of a task row, in the order [`task_from_row`] reads them.
const COLUMNS: &str = "task_id, task_type, status, cluster, schema_name, table_name, repset, \
     submitted_by, role, created_at, started_at, finished_at, time_taken_us, report_path, \
     task_context";

/// The resolved store path: `configured` (`server.taskstore_path`) if
/// given, else [`ENV_TASKS_DB`] if set and not empty, else
/// [`DEFAULT_TASKS_DB`].
pub fn resolve_path(configured: Option<&Path>) -> PathBuf {
    if let Some(path) = configured {
        return path.to_path_buf();
    }
    match std::env::var_os(ENV_TASKS_DB) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_TASKS_DB),
    }
}

/// A handle on the task store. Cheap to clone; clones share one connection
/// pool. Every method is safe to call from many tokio tasks at once, and
/// several stores (in one process or several) may open the same file.
#[derive(Debug, Clone)]
pub struct TaskStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl TaskStore {
    /// Opens the store at `path`, creating the file and its schema if they
    /// do not exist yet, and upgrading the schema if it is older.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] if the file cannot be opened or created (missing or
    /// unwritable directory, not an SQLite database), [`Error::Migrate`] if
    /// the schema cannot be created or upgraded. Both name the path.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::connect(path.as_ref(), true).await
    }

    /// Opens an existing store; unlike [`open`](Self::open) it never creates
    /// a file, so a mistyped path is an error rather than a new empty store.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), and [`Error::Open`] if the file does not
    /// exist.
    pub async fn open_existing(path: impl AsRef<Path>) -> Result<Self> {
        Self::connect(path.as_ref(), false).await
    }

    /// Opens the store at [`resolve_path`]`(configured)`, creating it if
    /// needed.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub async fn open_default(configured: Option<&Path>) -> Result<Self> {
        Self::open(resolve_path(configured)).await
    }

    async fn connect(path: &Path, create: bool) -> Result<Self> {
        let open_error = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };

        // WAL lets readers proceed while a writer commits; NORMAL sync is
        // durable across process crashes in WAL mode, which is the failure
        // this store has to survive.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(open_error)?;

        // A file that is not a database can pass the connection step when
        // the pragmas are answered from the header alone; reading the schema
        // catches it.
        sqlx::query("SELECT count(*) FROM sqlite_schema")
            .fetch_one(&pool)
            .await
            .map_err(open_error)?;

        MIGRATOR.run(&pool).await.map_err(|source| Error::Migrate {
            path: path.to_path_buf(),
            source,
        })?;

        tracing::info!(path = %path.display(), "task store opened");
        Ok(Self {
            pool,
            path: path.to_path_buf(),
        })
    }

    /// The path the store was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection, checkpointing the WAL. Dropping the store
    /// without calling this is safe: committed tasks survive either way.
    pub async fn close(self) {
        self.pool.close().await;
    }

    // === Lifecycle ===

    /// Records a new task as PENDING and returns it.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the insert fails.
    pub async fn create(&self, new: NewTask) -> Result<Task> {
        let now_utc = OffsetDateTime::now_utc();
        let now = to_micros(now_utc);
        let task = Task {
            task_id: Uuid::new_v4(),
            task_type: new.task_type,
            status: TaskStatus::Pending,
            cluster: new.cluster,
            schema: new.schema,
            table: new.table,
            repset: new.repset,
            submitted_by: new.submitted_by,
            role: new.role,
            created_at: from_micros(now).unwrap_or(now_utc),
            started_at: None,
            finished_at: None,
            time_taken: None,
            report_path: None,
            task_context: TaskContext {
                parameters: new.parameters,
                ..TaskContext::default()
            },
        };
        let context =
            serde_json::to_string(&task.task_context).expect("a JSON value always serialises");

        sqlx::query(
            "INSERT INTO ace_tasks (task_id, task_type, status, cluster, schema_name, \
             table_name, repset, submitted_by, role, created_at, task_context) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(task.task_id.to_string())
        .bind(task.task_type.as_str())
        .bind(task.status.as_str())
        .bind(&task.cluster)
        .bind(&task.schema)
        .bind(&task.table)
        .bind(&task.repset)
        .bind(&task.submitted_by)
        .bind(&task.role)
        .bind(now)
        .bind(context)
        .execute(&self.pool)
        .await
        .map_err(self.db("record a new task"))?;

        tracing::debug!(task.id = %task.task_id, task.r#type = %task.task_type, owner = %task.submitted_by, "task recorded");
        Ok(task)
    }

    /// Moves a PENDING task to RUNNING and stamps its start time.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::IllegalTransition`] if the task is not
    /// PENDING, [`Error::Database`].
    pub async fn start(&self, id: Uuid) -> Result<Task> {
        self.transition(id, TaskStatus::Running, "started_at = ?2", |q| {
            q.bind(now_micros())
        })
        .await
    }

    /// Replaces the progress report of a RUNNING task.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::NotRunning`] if the task is not RUNNING,
    /// [`Error::Database`].
    pub async fn progress(&self, id: Uuid, progress: &Value) -> Result<Task> {
        let sql = format!(
            "UPDATE ace_tasks SET task_context = json_set(task_context, '$.progress', json(?2)) \
             WHERE task_id = ?1 AND status = 'RUNNING' RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .bind(progress.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db("record task progress"))?;
        match row {
            Some(row) => task_from_row(&row),
            None => match self.status_of(id).await? {
                None => Err(Error::NotFound { id }),
                Some(status) => Err(Error::NotRunning { id, status }),
            },
        }
    }

    /// Moves a RUNNING task to COMPLETED with its result summary and, if it
    /// wrote one, its report file.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::IllegalTransition`] if the task is not
    /// RUNNING, [`Error::Database`].
    pub async fn complete(
        &self,
        id: Uuid,
        summary: &Value,
        report_path: Option<&Path>,
    ) -> Result<Task> {
        let report = report_path.map(|p| p.to_string_lossy().into_owned());
        self.transition(
            id,
            TaskStatus::Completed,
            "finished_at = max(?2, coalesce(started_at, ?2)), time_taken_us = max(?2 - started_at, 0), report_path = ?3, \
             task_context = json_set(task_context, '$.summary', json(?4))",
            |q| {
                q.bind(now_micros())
                    .bind(report.clone())
                    .bind(summary.to_string())
            },
        )
        .await
    }

    /// Moves a PENDING or RUNNING task to FAILED with `error` as the reason.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::IllegalTransition`] if the task has
    /// already finished, [`Error::Database`].
    pub async fn fail(&self, id: Uuid, error: &str) -> Result<Task> {
        self.transition(
            id,
            TaskStatus::Failed,
            "finished_at = max(?2, coalesce(started_at, ?2)), time_taken_us = max(?2 - started_at, 0), \
             task_context = json_set(task_context, '$.error', ?3)",
            |q| q.bind(now_micros()).bind(error.to_owned()),
        )
        .await
    }

    /// Moves a PENDING or RUNNING task to CANCELLED. The worker running it
    /// learns of it through its own cancellation signal; the store only
    /// records the outcome and refuses later moves.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::IllegalTransition`] if the task has
    /// already finished, [`Error::Database`].
    pub async fn cancel(&self, id: Uuid) -> Result<Task> {
        self.transition(
            id,
            TaskStatus::Cancelled,
            "finished_at = max(?2, coalesce(started_at, ?2)), time_taken_us = max(?2 - started_at, 0)",
            |q| q.bind(now_micros()),
        )
        .await
    }

    /// Moves task `id` to `to` if its status allows it, applying `set`
    /// (which uses `?2` onwards; `?1` is the id) in the same statement, so
    /// the check and the move are atomic.
    async fn transition<F>(&self, id: Uuid, to: TaskStatus, set: &str, bind: F) -> Result<Task>
    where
        F: for<'q> Fn(SqliteQuery<'q>) -> SqliteQuery<'q>,
    {
        // The status list comes from our own constants, never from input.
        let from = to
            .allowed_from()
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE ace_tasks SET status = '{to}', {set} \
             WHERE task_id = ?1 AND status IN ({from}) RETURNING {COLUMNS}"
        );

        // If the update matched nothing, tell why. Another writer may have
        // moved the task in between, even into a status we may move from;
        // then try again rather than report a misleading refusal.
        loop {
            let query = sqlx::query(&sql).bind(id.to_string());
            let row = bind(query)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.db("change a task's status"))?;
            if let Some(row) = row {
                tracing::debug!(task.id = %id, status = %to, "task status changed");
                return task_from_row(&row);
            }
            match self.status_of(id).await? {
                None => return Err(Error::NotFound { id }),
                Some(from) if !to.allowed_from().contains(&from) => {
                    return Err(Error::IllegalTransition { id, from, to });
                }
                Some(_) => continue,
            }
        }
    }

    async fn status_of(&self, id: Uuid) -> Result<Option<TaskStatus>> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM ace_tasks WHERE task_id = ?")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(self.db("read a task's status"))?;
        status
            .map(|s| {
                s.parse()
                    .map_err(|e: crate::UnknownValue| Error::CorruptRecord {
                        id: id.to_string(),
                        reason: e.to_string(),
                    })
            })
            .transpose()
    }

    // === Reads ===

    /// The task `id`, if `viewer` may see it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such task or it belongs to someone
    /// else and `viewer` is not an admin; [`Error::Database`];
    /// [`Error::CorruptRecord`].
    pub async fn get(&self, id: Uuid, viewer: &Viewer) -> Result<Task> {
        let sql = format!("SELECT {COLUMNS} FROM ace_tasks WHERE task_id = ?");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db("read a task"))?;
        let task = row.as_ref().map(task_from_row).transpose()?;
        match task {
            Some(task) if viewer.can_see(&task) => Ok(task),
            _ => Err(Error::NotFound { id }),
        }
    }

    /// The tasks matching `filter`, newest first, within `page`.
    ///
    /// # Errors
    ///
    /// [`Error::Database`]; [`Error::CorruptRecord`].
    pub async fn list(&self, filter: &TaskFilter, page: Page) -> Result<Vec<Task>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM ace_tasks \
             WHERE (?1 IS NULL OR submitted_by = ?1) \
               AND (?2 IS NULL OR status = ?2) \
               AND (?3 IS NULL OR task_type = ?3) \
               AND (?4 IS NULL OR created_at >= ?4) \
             ORDER BY created_at DESC, task_id DESC \
             LIMIT ?5 OFFSET ?6"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.owner.as_deref())
            .bind(filter.status.map(TaskStatus::as_str))
            .bind(filter.task_type.map(TaskType::as_str))
            .bind(filter.since.map(to_micros))
            .bind(i64::from(page.limit))
            .bind(i64::from(page.offset))
            .fetch_all(&self.pool)
            .await
            .map_err(self.db("list tasks"))?;
        rows.iter().map(task_from_row).collect()
    }

    // === Housekeeping ===

    /// Fails every task left PENDING or RUNNING, with
    /// [`INTERRUPTED_ERROR`] as the reason, and returns their ids.
    ///
    /// Call it once at server start-up, before any worker runs: a task that
    /// is PENDING or RUNNING then can only belong to a server that stopped.
    /// Calling it while another server uses the same store would fail that
    /// server's live tasks.
    ///
    /// # Errors
    ///
    /// [`Error::Database`]; [`Error::CorruptRecord`].
    pub async fn recover_interrupted(&self) -> Result<Vec<Uuid>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE ace_tasks SET status = 'FAILED', \
             finished_at = max(?1, coalesce(started_at, ?1)), \
             time_taken_us = max(?1 - started_at, 0), \
             task_context = json_set(task_context, '$.error', ?2) \
             WHERE status IN ('PENDING', 'RUNNING') RETURNING task_id",
        )
        .bind(now_micros())
        .bind(INTERRUPTED_ERROR)
        .fetch_all(&self.pool)
        .await
        .map_err(self.db("fail interrupted tasks"))?;
        let ids = ids
            .iter()
            .map(|id| parse_id(id))
            .collect::<Result<Vec<_>>>()?;
        if !ids.is_empty() {
            tracing::warn!(
                count = ids.len(),
                "tasks interrupted by a server stop marked FAILED"
            );
        }
        Ok(ids)
    }

    /// Removes the tasks that finished more than `older_than` ago, with their
    /// report files. Unfinished tasks are never removed.
    ///
    /// # Errors
    ///
    /// As [`prune_finished_before`](Self::prune_finished_before).
    pub async fn prune(&self, older_than: Duration) -> Result<PruneOutcome> {
        let cutoff = OffsetDateTime::now_utc()
            .checked_sub(time::Duration::try_from(older_than).unwrap_or(time::Duration::MAX))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        self.prune_finished_before(cutoff).await
    }

    /// Removes the tasks that finished before `cutoff`, with their report
    /// files. A report that is already gone is not an error; one that cannot
    /// be removed keeps its task (so a later prune retries) and is listed in
    /// [`PruneOutcome::failures`].
    ///
    /// # Errors
    ///
    /// [`Error::Database`]; [`Error::CorruptRecord`].
    pub async fn prune_finished_before(&self, cutoff: OffsetDateTime) -> Result<PruneOutcome> {
        let rows = sqlx::query(
            "SELECT task_id, report_path FROM ace_tasks \
             WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND finished_at < ? \
             ORDER BY finished_at",
        )
        .bind(to_micros(cutoff))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db("find tasks to prune"))?;

        let mut outcome = PruneOutcome::default();
        for row in &rows {
            let id = parse_id(&row.get::<String, _>(0))?;
            if let Some(report) = row.get::<Option<String>, _>(1).map(PathBuf::from) {
                match tokio::fs::remove_file(&report).await {
                    Ok(()) => outcome.removed_reports.push(report),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => {
                        tracing::warn!(task.id = %id, path = %report.display(), error = %source, "cannot remove report file; keeping task");
                        outcome.failures.push(Error::RemoveReport {
                            id,
                            path: report,
                            source,
                        });
                        continue;
                    }
                }
            }
            let deleted = sqlx::query("DELETE FROM ace_tasks WHERE task_id = ?")
                .bind(id.to_string())
                .execute(&self.pool)
                .await
                .map_err(self.db("delete a pruned task"))?;
            if deleted.rows_affected() == 1 {
                outcome.removed_tasks.push(id);
            }
        }
        tracing::info!(
            tasks = outcome.removed_tasks.len(),
            reports = outcome.removed_reports.len(),
            failures = outcome.failures.len(),
            "task store pruned"
        );
        Ok(outcome)
    }

    /// Maps a query error to [`Error::Database`] naming this store.
    fn db(&self, operation: &'static str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
        move |source| Error::Database {
            path: self.path.clone(),
            operation,
            source,
        }
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

// === Row and time conversions ===

fn task_from_row(row: &SqliteRow) -> Result<Task> {
    let raw_id: String = get(row, "(unreadable id)", 0)?;
    let corrupt = |reason: String| Error::CorruptRecord {
        id: raw_id.clone(),
        reason,
    };

    let task_id = parse_id(&raw_id)?;
    let task_type = get::<String>(row, &raw_id, 1)?
        .parse()
        .map_err(|e: crate::UnknownValue| corrupt(e.to_string()))?;
    let status = get::<String>(row, &raw_id, 2)?
        .parse()
        .map_err(|e: crate::UnknownValue| corrupt(e.to_string()))?;
    let time = |index| -> Result<Option<OffsetDateTime>> {
        get::<Option<i64>>(row, &raw_id, index)?
            .map(|us| from_micros(us).ok_or_else(|| corrupt(format!("time {us} out of range"))))
            .transpose()
    };
    let created_at = time(9)?.ok_or_else(|| corrupt("no creation time".into()))?;
    let time_taken = get::<Option<i64>>(row, &raw_id, 12)?
        .map(|us| u64::try_from(us).map(Duration::from_micros))
        .transpose()
        .map_err(|_| corrupt("negative time taken".into()))?;
    let context: String = get(row, &raw_id, 14)?;
    let task_context =
        serde_json::from_str(&context).map_err(|e| corrupt(format!("task_context: {e}")))?;

    Ok(Task {
        task_id,
        task_type,
        status,
        cluster: get(row, &raw_id, 3)?,
        schema: get(row, &raw_id, 4)?,
        table: get(row, &raw_id, 5)?,
        repset: get(row, &raw_id, 6)?,
        submitted_by: get(row, &raw_id, 7)?,
        role: get(row, &raw_id, 8)?,
        created_at,
        started_at: time(10)?,
        finished_at: time(11)?,
        time_taken,
        report_path: get::<Option<String>>(row, &raw_id, 13)?.map(PathBuf::from),
        task_context,
    })
}

/// Column `index` of `row`, or [`Error::CorruptRecord`] for task `id`.
fn get<'r, T>(row: &'r SqliteRow, id: &str, index: usize) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(index).map_err(|e| Error::CorruptRecord {
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

fn parse_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|e| Error::CorruptRecord {
        id: raw.to_owned(),
        reason: format!("task id: {e}"),
    })
}

/// Now, truncated to the microsecond the store keeps, so a returned record
/// equals the same record read back.
/// The clock, in microseconds. A finishing move reads it before its
/// statement runs, so a concurrent `start` may record a later start time;
/// the finishing statements therefore never let `finished_at` precede
/// `started_at` (`max(...)`), and `time_taken` is never negative.
fn now_micros() -> i64 {
    to_micros(OffsetDateTime::now_utc())
}

fn to_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

fn from_micros(us: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).ok()
}
