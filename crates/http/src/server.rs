//! The server's shared state: configuration, policy, task store, node
//! sessions and the bounded pool that runs tasks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ace_config::{AceConfig, Cluster, Node, ServiceFile};
use ace_engine::{
    DiffFile, DiffReport, EngineError, Progress, RepairReport, TableDiffOptions, TableRepairOptions,
};
use ace_pki::PolicyHandle;
use ace_session::{ClusterSession, SessionSettings};
use ace_tasks::{INTERRUPTED_ERROR, TaskStore, Uuid};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::settings::Limits;

/// Everything [`serve`](crate::serve) needs besides the listener: the
/// loaded `ace.yaml`, the service file clusters are read from, the client
/// policy, the task store and the transport limits.
///
/// Nothing is connected when it is built; node sessions are opened on the
/// first request that needs them and then shared by every task on the same
/// nodes (each unit of work switches role inside its own transaction, so
/// sharing a pool never shares a role).
#[derive(Debug)]
pub struct Server {
    config: AceConfig,
    service: ServiceFile,
    policy: Arc<PolicyHandle>,
    store: TaskStore,
    limits: Limits,
}

impl Server {
    /// A server for `config`, reading clusters from `service`, accepting
    /// callers with `policy` and recording tasks in `store`, with the
    /// default [`Limits`].
    pub fn new(
        config: AceConfig,
        service: ServiceFile,
        policy: Arc<PolicyHandle>,
        store: TaskStore,
    ) -> Self {
        Server {
            config,
            service,
            policy,
            store,
            limits: Limits::default(),
        }
    }

    /// Replaces the transport limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The policy handle (to reload it while the server runs).
    pub fn policy(&self) -> &Arc<PolicyHandle> {
        &self.policy
    }

    /// The task store.
    pub fn store(&self) -> &TaskStore {
        &self.store
    }

    /// Creates `server.data_dir` if needed and freezes the state.
    pub(crate) fn into_shared(self) -> Result<Arc<Shared>> {
        let data_dir = &self.config.server.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
            context: "cannot create server.data_dir",
            path: data_dir.clone(),
            source,
        })?;
        let data_dir = data_dir.canonicalize().map_err(|source| Error::Io {
            context: "cannot resolve server.data_dir",
            path: data_dir.clone(),
            source,
        })?;
        let mut session_settings = SessionSettings::from_config(&self.config);
        // Every running task may hold a connection per node at once.
        session_settings.max_connections = session_settings
            .max_connections
            .max(self.config.server.max_concurrent_tasks.saturating_mul(2));
        let permits = usize::try_from(self.config.server.max_concurrent_tasks.max(1)).unwrap_or(1);
        Ok(Arc::new(Shared {
            data_dir,
            session_settings,
            sessions: Mutex::new(HashMap::new()),
            runner: Runner {
                permits: Arc::new(Semaphore::new(permits)),
                tracker: TaskTracker::new(),
                live: Mutex::new(HashMap::new()),
                stopping: AtomicBool::new(false),
            },
            finished: FinishedTasks::default(),
            config: self.config,
            service: self.service,
            policy: self.policy,
            store: self.store,
            limits: self.limits,
        }))
    }
}

/// Which sessions a task needs: the cluster, the nodes in order, and the
/// database when the request overrides it.
type SessionKey = (String, Vec<String>, Option<String>);

/// The frozen state every connection and task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: AceConfig,
    pub service: ServiceFile,
    pub policy: Arc<PolicyHandle>,
    pub store: TaskStore,
    pub limits: Limits,
    /// `server.data_dir`, canonical.
    pub data_dir: PathBuf,
    session_settings: SessionSettings,
    sessions: Mutex<HashMap<SessionKey, Arc<OnceCell<Arc<ClusterSession>>>>>,
    pub runner: Runner,
    /// Finished tasks as last read, for polling clients.
    pub finished: FinishedTasks,
}

/// A short-lived memory of finished tasks' answers, so a client polling a
/// finished task does not make every request a round trip to the task
/// store. A finished task no longer changes; the entry is trusted for
/// [`FinishedTasks::TTL`] only, so a task pruned by another process stops
/// being served within that time. The owner is kept beside the answer and
/// checked on every hit exactly as the store would.
#[derive(Debug, Default)]
pub(crate) struct FinishedTasks {
    entries: Mutex<HashMap<Uuid, FinishedTask>>,
}

#[derive(Debug, Clone)]
struct FinishedTask {
    read_at: std::time::Instant,
    owner: String,
    answer: Arc<Value>,
}

impl FinishedTasks {
    /// How long an answer is served without reading the store again.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(2);
    /// Entries kept at most; the memory is cleared when it is full.
    const CAPACITY: usize = 10_000;

    /// The answer for `id`, if fresh and visible to `viewer`.
    pub fn get(&self, id: Uuid, viewer: &ace_tasks::Viewer) -> Option<Arc<Value>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(&id)?;
        let visible = viewer.is_admin || entry.owner == viewer.cn;
        (visible && entry.read_at.elapsed() < Self::TTL).then(|| entry.answer.clone())
    }

    /// Remembers the answer of a finished task owned by `owner`.
    pub fn put(&self, id: Uuid, owner: &str, answer: Arc<Value>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= Self::CAPACITY {
            entries.clear();
        }
        entries.insert(
            id,
            FinishedTask {
                read_at: std::time::Instant::now(),
                owner: owner.to_owned(),
                answer,
            },
        );
    }
}

impl Shared {
    /// The sessions of `nodes` of `cluster`, connected on first use and
    /// shared afterwards. A failed connection is not remembered, so the
    /// next request tries again.
    pub async fn sessions(
        &self,
        cluster: &Cluster,
        nodes: &[&Node],
        dbname: Option<&str>,
    ) -> Result<Arc<ClusterSession>> {
        let key: SessionKey = (
            cluster.name.clone(),
            nodes.iter().map(|n| n.name.clone()).collect(),
            dbname.map(str::to_owned),
        );
        let cell = Arc::clone(
            self.sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_default(),
        );
        let sessions = cell
            .get_or_try_init(|| async {
                let nodes: Vec<Node> = nodes
                    .iter()
                    .map(|node| {
                        let mut node = (*node).clone();
                        if let Some(dbname) = dbname {
                            node.settings.dbname = Some(dbname.to_owned());
                        }
                        node
                    })
                    .collect();
                let refs: Vec<&Node> = nodes.iter().collect();
                info!(cluster = %cluster.name, nodes = refs.len(), "connecting to cluster nodes");
                ClusterSession::connect(&refs, &self.session_settings)
                    .await
                    .map(Arc::new)
            })
            .await?;
        Ok(Arc::clone(sessions))
    }

    /// Closes every node pool.
    async fn close_sessions(&self) {
        let cells: Vec<_> = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, cell)| cell)
            .collect();
        for cell in cells {
            if let Some(sessions) = cell.get() {
                sessions.close().await;
            }
        }
    }
}

/// The work of one task.
pub(crate) enum Job {
    /// table-diff as the caller's role.
    Diff {
        sessions: Arc<ClusterSession>,
        options: Box<TableDiffOptions>,
    },
    /// table-rerun of a diff file as the caller's role.
    Rerun {
        sessions: Arc<ClusterSession>,
        file: Box<DiffFile>,
        role: String,
    },
    /// table-repair of a diff file as the caller's role (in the options).
    Repair {
        sessions: Arc<ClusterSession>,
        file: Box<DiffFile>,
        options: Box<TableRepairOptions>,
    },
    /// schema-diff or repset-diff as the caller's role (in the options).
    Set {
        sessions: Arc<ClusterSession>,
        target: crate::sets::SetTarget,
        options: Box<ace_engine::SetDiffOptions>,
        html: bool,
    },
}

/// The bounded pool that runs tasks: at most `server.max_concurrent_tasks`
/// at once; the rest wait (PENDING) for a permit.
#[derive(Debug)]
pub(crate) struct Runner {
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    /// Tasks submitted and not finished, with their cancellation handle.
    live: Mutex<HashMap<Uuid, Arc<Progress>>>,
    stopping: AtomicBool,
}

impl Runner {
    /// Whether the server has begun to stop.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Asks a live task to stop; returns whether it was live here.
    pub fn cancel(&self, id: Uuid) -> bool {
        match self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            Some(progress) => {
                progress.cancel();
                true
            }
            None => false,
        }
    }

    /// The progress of a live task: (done, total).
    pub fn progress(&self, id: Uuid) -> Option<(u64, u64)> {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .map(|progress| progress.get())
    }
}

/// Queues `job` as task `id` (already recorded PENDING).
///
/// # Errors
///
/// [`Error::ShuttingDown`] when the server has begun to stop.
pub(crate) fn submit(shared: &Arc<Shared>, id: Uuid, job: Job) -> Result<()> {
    let runner = &shared.runner;
    if runner.is_stopping() {
        return Err(Error::ShuttingDown);
    }
    let progress = Progress::new();
    runner
        .live
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, Arc::clone(&progress));
    let shared_for_task = Arc::clone(shared);
    runner.tracker.spawn(async move {
        run(&shared_for_task, id, job, &progress).await;
        shared_for_task
            .runner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    });
    Ok(())
}

/// Runs one task to its end and records the outcome.
async fn run(shared: &Shared, id: Uuid, job: Job, progress: &Arc<Progress>) {
    let store = &shared.store;
    let Ok(_permit) = Arc::clone(&shared.runner.permits).acquire_owned().await else {
        return;
    };
    // Cancelled or interrupted while it waited: the store already says so.
    if let Err(error) = store.start(id).await {
        debug!(task.id = %id, %error, "task not started");
        return;
    }
    debug!(task.id = %id, "task started");
    let outcome = match job {
        Job::Diff { sessions, options } => ace_engine::table_diff(&sessions, &options, progress)
            .await
            .and_then(|report| write_report(&shared.data_dir, report, "diffs")),
        Job::Rerun {
            sessions,
            file,
            role,
        } => ace_engine::table_rerun(&sessions, &file, Some(&role), progress)
            .await
            .and_then(|report| write_report(&shared.data_dir, report, "rerun-diffs")),
        Job::Repair {
            sessions,
            file,
            options,
        } => ace_engine::table_repair(&sessions, &file, &options, progress)
            .await
            .and_then(|report| repair_outcome(&shared.data_dir, &report)),
        // Records its own outcome: a run with tables not compared is
        // FAILED with its report written.
        Job::Set {
            sessions,
            target,
            options,
            html,
        } => {
            crate::sets::run_set(shared, id, &sessions, &target, &options, html, progress).await;
            return;
        }
    };
    let recorded = match outcome {
        Ok((summary, path)) => {
            info!(task.id = %id, report = %path.display(), "task completed");
            store.complete(id, &summary, Some(&path)).await
        }
        Err(EngineError::Cancelled) => {
            info!(task.id = %id, "task cancelled");
            store.cancel(id).await
        }
        Err(error) => {
            info!(task.id = %id, %error, "task failed");
            store.fail(id, &error.to_string()).await
        }
    };
    if let Err(error) = recorded {
        // Cancelled or interrupted meanwhile: the first final status stands.
        debug!(task.id = %id, %error, "task outcome not recorded");
    }
}

/// Writes the JSON report and returns the upstream `task_context` of a
/// finished diff (`diff_summary`, `diff_pairs`, plus ours: `diff_file`, the
/// report's name inside `server.data_dir`, which table-rerun and
/// table-repair take) and the file.
fn write_report(
    dir: &Path,
    report: DiffReport,
    kind: &str,
) -> ace_engine::Result<(Value, PathBuf)> {
    let path = report.write_json(dir, kind)?;
    let summary = serde_json::to_value(&report.summary).unwrap_or(Value::Null);
    Ok((
        json!({
            "diff_summary": summary,
            "diff_pairs": report.diffs.len(),
            "diff_file": path.file_name().and_then(|n| n.to_str()),
        }),
        path,
    ))
}

/// Writes the repair report (every row touched when `generate_report` or a
/// dry run) under `dir/reports/<date>/` and returns the `task_context` of a
/// finished repair: `dry_run` and `repair_report` (upstream's shape, with
/// per-node status and counts; rows are in the report file). A node that
/// was rolled back fails the task, naming which nodes were repaired.
fn repair_outcome(dir: &Path, report: &RepairReport) -> ace_engine::Result<(Value, PathBuf)> {
    let path = report.write_json(dir)?;
    report.check()?;
    Ok((
        json!({ "dry_run": report.options.dry_run, "repair_report": report.to_json(false) }),
        path,
    ))
}

/// Stops the pool: no new tasks, running ones get `grace` to finish, then
/// every task still live is cancelled and recorded FAILED as interrupted.
pub(crate) async fn shutdown(shared: &Shared) {
    let runner = &shared.runner;
    runner.stopping.store(true, Ordering::Release);
    runner.tracker.close();
    let grace = shared.limits.shutdown_grace;
    if tokio::time::timeout(grace, runner.tracker.wait())
        .await
        .is_err()
    {
        let live: Vec<(Uuid, Arc<Progress>)> = runner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, progress)| (*id, Arc::clone(progress)))
            .collect();
        warn!(
            tasks = live.len(),
            grace_seconds = grace.as_secs(),
            "tasks still running after the grace period; recording them as interrupted"
        );
        for (id, progress) in live {
            progress.cancel();
            if let Err(error) = shared.store.fail(id, INTERRUPTED_ERROR).await {
                debug!(task.id = %id, %error, "interrupted task already finished");
            }
        }
        // Cancelled work stops at its next step; do not wait on it long.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), runner.tracker.wait()).await;
    }
    shared.close_sessions().await;
}
