//! Seeds a task store for `scripts/bench-http.sh`: opens (creating if
//! needed) the store at the path given as the first argument, records one
//! finished table-diff owned by the CN given as the second argument
//! (default `api_user`), and prints its id on stdout.
//!
//! ```text
//! cargo run --release --example bench_task_seed -- /tmp/x/ace_tasks.db api_user
//! ```

use std::process::ExitCode;

use ace_tasks::{NewTask, TaskStore, TaskType};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: bench_task_seed TASKSTORE_PATH [CN]");
        return ExitCode::from(2);
    };
    let cn = args.next().unwrap_or_else(|| String::from("api_user"));
    match seed(&path, &cn).await {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bench_task_seed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn seed(path: &str, cn: &str) -> ace_tasks::Result<ace_tasks::Uuid> {
    let store = TaskStore::open(path).await?;
    let mut new = NewTask::new(TaskType::TableDiff, "bench", cn);
    new.schema = Some(String::from("public"));
    new.table = Some(String::from("orders"));
    new.parameters = serde_json::json!({
        "cluster_name": "bench",
        "table_name": "public.orders",
        "nodes": "n1,n2",
        "block_size": 100000,
        "concurrency_factor": 1,
        "output": "json"
    });
    let task = store.create(new).await?;
    store.start(task.task_id).await?;
    let summary = serde_json::json!({
        "diff_summary": {
            "n1/n2": { "rows_compared": 1_000_000, "missing_on_n1": 0, "missing_on_n2": 3, "different": 7 }
        },
        "diff_pairs": 10
    });
    store.complete(task.task_id, &summary, None).await?;
    store.close().await;
    Ok(task.task_id)
}
