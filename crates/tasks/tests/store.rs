//! The task store against real SQLite files in temporary directories.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use ace_tasks::{
    Error, INTERRUPTED_ERROR, NewTask, Page, TaskFilter, TaskStatus, TaskStore, TaskType, Uuid,
    Viewer,
};
use serde_json::json;

fn diff_by(cn: &str) -> NewTask {
    NewTask::new(TaskType::TableDiff, "prod", cn).with_table("public", "customers")
}

async fn open_in(dir: &Path) -> TaskStore {
    TaskStore::open(dir.join("ace_tasks.db"))
        .await
        .expect("store opens")
}

/// What a lifecycle ends in, chosen by task number.
fn planned_end(i: usize) -> TaskStatus {
    match i % 4 {
        0 | 1 => TaskStatus::Completed,
        2 => TaskStatus::Failed,
        _ => TaskStatus::Cancelled,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_lifecycles_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Two independent handles on one file, as two server processes would
    // have: their writers contend on SQLite's lock, not on one pool.
    let stores = [open_in(dir.path()).await, open_in(dir.path()).await];

    let mut handles = Vec::new();
    for i in 0..200 {
        let store = stores[i % 2].clone();
        handles.push(tokio::spawn(async move {
            let owner = format!("user{}", i % 5);
            let new = diff_by(&owner).with_parameters(json!({ "n": i }));
            let id = store.create(new).await?.task_id;
            store.start(id).await?;
            for step in 0..3 {
                store.progress(id, &json!({ "step": step })).await?;
                tokio::task::yield_now().await;
            }
            let report = format!("/reports/{id}.json");
            let last = match planned_end(i) {
                TaskStatus::Completed => {
                    store
                        .complete(id, &json!({ "n": i }), Some(Path::new(&report)))
                        .await?
                }
                TaskStatus::Failed => store.fail(id, &format!("failure {i}")).await?,
                _ => store.cancel(id).await?,
            };
            Ok::<_, Error>((i, id, last))
        }));
    }

    let mut expected = HashMap::new();
    for handle in handles {
        let (i, id, last) = handle.await.unwrap().expect("lifecycle succeeds");
        assert_eq!(last.status, planned_end(i));
        expected.insert(id, i);
    }
    assert_eq!(expected.len(), 200, "every task has its own id");

    // Read everything back through a fresh handle.
    for store in stores {
        store.close().await;
    }
    let store = open_in(dir.path()).await;
    let all = store
        .list(&TaskFilter::default(), Page::first(1000))
        .await
        .unwrap();
    assert_eq!(all.len(), 200);
    for task in &all {
        let i = expected[&task.task_id];
        assert_eq!(task.status, planned_end(i), "task {i}");
        assert_eq!(task.submitted_by, format!("user{}", i % 5));
        assert_eq!(task.task_context.parameters, json!({ "n": i }));
        assert_eq!(task.task_context.progress, Some(json!({ "step": 2 })));
        assert!(task.started_at.is_some() && task.finished_at.is_some());
        assert!(task.time_taken.is_some());
        match task.status {
            TaskStatus::Completed => {
                assert_eq!(task.task_context.summary, Some(json!({ "n": i })));
                let report = format!("/reports/{}.json", task.task_id);
                assert_eq!(task.report_path.as_deref(), Some(Path::new(&report)));
            }
            TaskStatus::Failed => {
                assert_eq!(
                    task.task_context.error.as_deref(),
                    Some(&*format!("failure {i}"))
                );
            }
            _ => assert_eq!(task.task_context.error, None),
        }
    }
    let completed = TaskFilter {
        status: Some(TaskStatus::Completed),
        ..TaskFilter::default()
    };
    assert_eq!(
        store
            .list(&completed, Page::first(1000))
            .await
            .unwrap()
            .len(),
        100
    );
}

/// Leaves a store with a mix of statuses and returns
/// (pending, running, completed) ids.
async fn store_with_unfinished_tasks(store: &TaskStore) -> (Uuid, Uuid, Uuid) {
    let pending = store.create(diff_by("alice")).await.unwrap().task_id;
    let running = store.create(diff_by("alice")).await.unwrap().task_id;
    store.start(running).await.unwrap();
    store
        .progress(running, &json!({ "ranges": 7 }))
        .await
        .unwrap();
    let completed = store.create(diff_by("alice")).await.unwrap().task_id;
    store.start(completed).await.unwrap();
    store
        .complete(completed, &json!({ "diff_rows": 0 }), None)
        .await
        .unwrap();
    (pending, running, completed)
}

async fn assert_recovered(dir: &Path, ids: (Uuid, Uuid, Uuid)) {
    let (pending, running, completed) = ids;
    let store = open_in(dir).await;
    let mut recovered = store.recover_interrupted().await.unwrap();
    recovered.sort();
    let mut wanted = vec![pending, running];
    wanted.sort();
    assert_eq!(recovered, wanted);

    let admin = Viewer::admin("ops");
    for id in [pending, running] {
        let task = store.get(id, &admin).await.unwrap();
        assert_eq!(task.status, TaskStatus::Failed);
        assert_eq!(task.task_context.error.as_deref(), Some(INTERRUPTED_ERROR));
        assert!(task.finished_at.is_some());
    }
    let running = store.get(running, &admin).await.unwrap();
    assert_eq!(running.task_context.progress, Some(json!({ "ranges": 7 })));
    assert!(
        running.time_taken.is_some(),
        "a started task has a duration"
    );
    assert_eq!(store.get(pending, &admin).await.unwrap().time_taken, None);
    let completed = store.get(completed, &admin).await.unwrap();
    assert_eq!(completed.status, TaskStatus::Completed);
    assert_eq!(completed.task_context.error, None);

    // A second recovery finds nothing left to fail.
    assert!(store.recover_interrupted().await.unwrap().is_empty());
}

#[tokio::test]
async fn reopened_after_drop_without_close_recovers_interrupted_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let ids = store_with_unfinished_tasks(&store).await;
    drop(store);
    assert_recovered(dir.path(), ids).await;
}

#[tokio::test]
async fn reopened_while_the_old_handle_still_holds_the_file_recovers() {
    // A process killed mid-work never closes its connections or
    // checkpoints the WAL; leaking the handle leaves exactly that state.
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let ids = store_with_unfinished_tasks(&store).await;
    assert!(
        dir.path().join("ace_tasks.db-wal").exists(),
        "store runs in WAL mode"
    );
    std::mem::forget(store);
    assert_recovered(dir.path(), ids).await;
}

#[tokio::test]
async fn callers_see_only_their_own_tasks_unless_admin() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let alice = store.create(diff_by("alice")).await.unwrap().task_id;
    let bob = store.create(diff_by("bob")).await.unwrap().task_id;

    assert_eq!(
        store
            .get(alice, &Viewer::owner("alice"))
            .await
            .unwrap()
            .task_id,
        alice
    );
    match store.get(alice, &Viewer::owner("bob")).await {
        Err(Error::NotFound { id }) => assert_eq!(id, alice),
        other => panic!("bob must not see alice's task: {other:?}"),
    }
    // Someone else's task and a task that does not exist look the same.
    let missing = Uuid::new_v4();
    let not_found = store.get(missing, &Viewer::owner("bob")).await.unwrap_err();
    assert_eq!(not_found.to_string(), format!("task {missing} not found"));
    assert_eq!(
        store
            .get(alice, &Viewer::admin("ops"))
            .await
            .unwrap()
            .task_id,
        alice
    );

    let page = Page::default();
    let bobs = store
        .list(&TaskFilter::visible_to(&Viewer::owner("bob")), page)
        .await
        .unwrap();
    assert_eq!(
        bobs.iter().map(|t| t.task_id).collect::<Vec<_>>(),
        vec![bob]
    );
    let all = store
        .list(&TaskFilter::visible_to(&Viewer::admin("ops")), page)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn illegal_transitions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let id = store.create(diff_by("alice")).await.unwrap().task_id;

    let refused = |result: ace_tasks::Result<_>, from, to| match result {
        Err(Error::IllegalTransition {
            id: got,
            from: f,
            to: t,
        }) => {
            assert_eq!((got, f, t), (id, from, to));
        }
        other => panic!("expected {from} -> {to} to be refused, got {other:?}"),
    };
    use TaskStatus::*;

    refused(
        store.complete(id, &json!({}), None).await,
        Pending,
        Completed,
    );
    match store.progress(id, &json!({})).await {
        Err(Error::NotRunning {
            status: Pending, ..
        }) => {}
        other => panic!("progress on a pending task: {other:?}"),
    }
    store.start(id).await.unwrap();
    refused(store.start(id).await, Running, Running);
    store.complete(id, &json!({}), None).await.unwrap();

    refused(store.start(id).await, Completed, Running);
    refused(
        store.complete(id, &json!({}), None).await,
        Completed,
        Completed,
    );
    refused(store.fail(id, "late").await, Completed, Failed);
    refused(store.cancel(id).await, Completed, Cancelled);
    match store.progress(id, &json!({})).await {
        Err(Error::NotRunning {
            status: Completed, ..
        }) => {}
        other => panic!("progress on a completed task: {other:?}"),
    }
    let err = store.start(id).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("task {id} cannot move from COMPLETED to RUNNING")
    );

    // A refused move leaves the record as it was.
    let task = store.get(id, &Viewer::owner("alice")).await.unwrap();
    assert_eq!(task.status, Completed);
    assert_eq!(task.task_context.error, None);

    let cancelled = store.create(diff_by("alice")).await.unwrap().task_id;
    store.cancel(cancelled).await.unwrap();
    assert!(matches!(
        store.start(cancelled).await,
        Err(Error::IllegalTransition { .. })
    ));

    let missing = Uuid::new_v4();
    assert!(matches!(store.start(missing).await, Err(Error::NotFound { id }) if id == missing));
    assert!(matches!(
        store.progress(missing, &json!({})).await,
        Err(Error::NotFound { id }) if id == missing
    ));
}

#[tokio::test]
async fn list_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let kind = if i % 2 == 0 {
            TaskType::TableDiff
        } else {
            TaskType::MtreeBuild
        };
        let new = NewTask::new(kind, "prod", "alice");
        ids.push(store.create(new).await.unwrap().task_id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    store.start(ids[4]).await.unwrap();
    let since = store
        .get(ids[3], &Viewer::admin("ops"))
        .await
        .unwrap()
        .created_at;

    let newest_first: Vec<_> = ids.iter().rev().copied().collect();
    let all = store
        .list(&TaskFilter::default(), Page::default())
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|t| t.task_id).collect::<Vec<_>>(),
        newest_first
    );

    let second_page = store
        .list(
            &TaskFilter::default(),
            Page {
                limit: 2,
                offset: 2,
            },
        )
        .await;
    let second_page: Vec<_> = second_page.unwrap().iter().map(|t| t.task_id).collect();
    assert_eq!(second_page, newest_first[2..4]);

    let mtree = TaskFilter {
        task_type: Some(TaskType::MtreeBuild),
        ..TaskFilter::default()
    };
    let mtree: Vec<_> = store.list(&mtree, Page::default()).await.unwrap();
    assert_eq!(
        mtree.iter().map(|t| t.task_id).collect::<Vec<_>>(),
        vec![ids[3], ids[1]]
    );

    let running = TaskFilter {
        status: Some(TaskStatus::Running),
        ..TaskFilter::default()
    };
    let running: Vec<_> = store.list(&running, Page::default()).await.unwrap();
    assert_eq!(
        running.iter().map(|t| t.task_id).collect::<Vec<_>>(),
        vec![ids[4]]
    );

    let recent = TaskFilter {
        since: Some(since),
        ..TaskFilter::default()
    };
    let recent: Vec<_> = store.list(&recent, Page::default()).await.unwrap();
    assert_eq!(
        recent.iter().map(|t| t.task_id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );

    let nobody = TaskFilter {
        owner: Some("mallory".into()),
        ..TaskFilter::default()
    };
    assert!(
        store
            .list(&nobody, Page::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn prune_removes_old_finished_tasks_and_their_reports() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let report = |name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, b"{}").unwrap();
        path
    };

    // Old: a completed task with a report, a failed one, a completed one
    // whose report is already gone, one still running.
    let old_report = report("old.json");
    let old_done = store.create(diff_by("alice")).await.unwrap().task_id;
    store.start(old_done).await.unwrap();
    store
        .complete(old_done, &json!({}), Some(&old_report))
        .await
        .unwrap();
    let old_failed = store.create(diff_by("alice")).await.unwrap().task_id;
    store.fail(old_failed, "boom").await.unwrap();
    let gone = dir.path().join("gone.json");
    let old_gone = store.create(diff_by("alice")).await.unwrap().task_id;
    store.start(old_gone).await.unwrap();
    store
        .complete(old_gone, &json!({}), Some(&gone))
        .await
        .unwrap();
    let still_running = store.create(diff_by("alice")).await.unwrap().task_id;
    store.start(still_running).await.unwrap();

    tokio::time::sleep(Duration::from_millis(5)).await;
    let cutoff = time::OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(5)).await;

    let new_report = report("new.json");
    let new_done = store.create(diff_by("alice")).await.unwrap().task_id;
    store.start(new_done).await.unwrap();
    store
        .complete(new_done, &json!({}), Some(&new_report))
        .await
        .unwrap();

    let outcome = store.prune_finished_before(cutoff).await.unwrap();
    let mut removed = outcome.removed_tasks.clone();
    removed.sort();
    let mut wanted = vec![old_done, old_failed, old_gone];
    wanted.sort();
    assert_eq!(removed, wanted);
    assert_eq!(outcome.removed_reports, vec![old_report.clone()]);
    assert!(outcome.failures.is_empty());
    assert!(!old_report.exists());
    assert!(new_report.exists());

    let left: Vec<_> = store
        .list(&TaskFilter::default(), Page::default())
        .await
        .unwrap();
    let mut left: Vec<_> = left.iter().map(|t| t.task_id).collect();
    left.sort();
    let mut wanted = vec![still_running, new_done];
    wanted.sort();
    assert_eq!(left, wanted);

    // `prune(older_than)` counts back from now: a day keeps everything,
    // zero removes every finished task.
    assert!(
        store
            .prune(Duration::from_secs(86_400))
            .await
            .unwrap()
            .removed_tasks
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(2)).await;
    let outcome = store.prune(Duration::ZERO).await.unwrap();
    assert_eq!(outcome.removed_tasks, vec![new_done]);
    assert!(!new_report.exists());
}

#[tokio::test]
async fn a_report_that_cannot_be_removed_keeps_its_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    // A non-empty directory where the report should be: remove_file fails
    // with something other than "not found", even for root.
    let stuck = dir.path().join("stuck");
    std::fs::create_dir(&stuck).unwrap();
    std::fs::write(stuck.join("inner"), b"x").unwrap();
    let id = store.create(diff_by("alice")).await.unwrap().task_id;
    store.start(id).await.unwrap();
    store.complete(id, &json!({}), Some(&stuck)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;

    let outcome = store.prune(Duration::ZERO).await.unwrap();
    assert!(outcome.removed_tasks.is_empty());
    match outcome.failures.as_slice() {
        [Error::RemoveReport { id: got, path, .. }] => {
            assert_eq!((*got, path.as_path()), (id, stuck.as_path()));
        }
        other => panic!("expected one report failure, got {other:?}"),
    }
    assert!(store.get(id, &Viewer::owner("alice")).await.is_ok());
}

#[tokio::test]
async fn a_corrupt_store_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();

    let err = TaskStore::open(&path).await.unwrap_err();
    assert!(
        matches!(&err, Error::Open { path: p, .. } if *p == path),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[tokio::test]
async fn an_unwritable_store_path_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where a directory should be: no permission bits
    // involved, so this fails even for root.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let path = blocker.join("ace_tasks.db");

    let err = TaskStore::open(&path).await.unwrap_err();
    assert!(
        matches!(&err, Error::Open { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // A directory is not a store either.
    let err = TaskStore::open(dir.path()).await.unwrap_err();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn open_existing_never_creates_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let err = TaskStore::open_existing(&path).await.unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(!path.exists());

    TaskStore::open(&path).await.unwrap().close().await;
    TaskStore::open_existing(&path).await.unwrap().close().await;
}

#[tokio::test]
async fn records_round_trip_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let mut new = NewTask::new(TaskType::RepsetDiff, "prod", "alice");
    new.repset = Some("default".into());
    new.role = "ace_reader".into();
    let created = store.create(new).await.unwrap();
    assert_eq!(created.status, TaskStatus::Pending);
    assert_eq!(
        store
            .get(created.task_id, &Viewer::owner("alice"))
            .await
            .unwrap(),
        created
    );

    let started = store.start(created.task_id).await.unwrap();
    let done = store
        .complete(created.task_id, &json!({ "tables": 4 }), None)
        .await
        .unwrap();
    assert_eq!(done.started_at, started.started_at);
    let taken = done.finished_at.unwrap() - done.started_at.unwrap();
    assert_eq!(
        time::Duration::try_from(done.time_taken.unwrap()).unwrap(),
        taken
    );
    assert_eq!(done.role, "ace_reader");
    assert_eq!(done.repset.as_deref(), Some("default"));
    assert_eq!(
        store
            .get(created.task_id, &Viewer::owner("alice"))
            .await
            .unwrap(),
        done
    );

    let v = serde_json::to_value(&done).unwrap();
    assert_eq!(v["task_type"], "REPSET_DIFF");
    assert_eq!(v["task_context"]["summary"], json!({ "tables": 4 }));
}

/// A finishing move reads the clock before a concurrent `start` records a
/// later start time (the server's shutdown did exactly that): the record
/// must still read back, with a zero time taken and no finish before the
/// start. The race is made certain by moving the start into the future.
#[tokio::test]
async fn a_finish_racing_a_start_never_takes_negative_time() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path()).await;
    let viewer = Viewer::owner("api_user");
    let mut ids = Vec::new();
    for _ in 0..4 {
        let task = store.create(diff_by("api_user")).await.unwrap();
        store.start(task.task_id).await.unwrap();
        ids.push(task.task_id);
    }
    let url = format!("sqlite://{}", dir.path().join("ace_tasks.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE ace_tasks SET started_at = started_at + 60000000")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    store.complete(ids[0], &json!({}), None).await.unwrap();
    store.fail(ids[1], "boom").await.unwrap();
    store.cancel(ids[2]).await.unwrap();
    store.recover_interrupted().await.unwrap();
    for id in ids {
        let task = store.get(id, &viewer).await.expect("record reads back");
        assert!(task.status.is_finished());
        assert_eq!(task.time_taken, Some(Duration::ZERO), "{id}");
        assert!(task.finished_at >= task.started_at, "{id}");
    }
}
