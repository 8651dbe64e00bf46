//! table-repair through the API as `api_user`: the writes are made as
//! api_user, the result converges, and a role without UPDATE is refused
//! with 403 before anything is recorded or written.

mod common;

use ace_config::ServiceFile;
use ace_testkit::TestCluster;
use ace_testkit::cluster::ServiceAuth;
use common::{ApiPki, Client, Running, client, wait_finished};
use http::StatusCode;
use serde_json::json;
use sqlx::Connection;

async fn api_for(cluster: &TestCluster, pki: &ApiPki) -> Running {
    let path = cluster.dir().join("pg_service.conf");
    cluster
        .write_service_file(&path, "test", ServiceAuth::Certificate)
        .unwrap();
    let mut config = pki.config();
    config.default_cluster = "test".into();
    Running::start(config, ServiceFile::load(&path).unwrap()).await
}

async fn on(cluster: &TestCluster, index: usize, sql: &str) {
    cluster
        .node(index)
        .execute_as_superuser(&format!("SET ROLE ace_user; {sql}"))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Every row of `table` on node `index` as text, in key order.
async fn rows(cluster: &TestCluster, index: usize, table: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect_with(&cluster.node(index).superuser_options())
        .await
        .unwrap();
    sqlx::query_scalar(&format!("SELECT t::text FROM {table} t ORDER BY 1"))
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// Runs a table-diff as the client and returns the diff file's name in the
/// data directory.
async fn diff(api: &mut Client, server: &Running, table: &str) -> String {
    let answer = api
        .post_json("/api/v1/table-diff", &json!({ "table": table }))
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let id = answer.body["task_id"].as_str().unwrap().to_owned();
    let task = wait_finished(api, &id).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    let path = server
        .store
        .get(id.parse().unwrap(), &ace_tasks::Viewer::owner("api_user"))
        .await
        .unwrap()
        .report_path
        .unwrap();
    std::path::Path::new(&path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn repair_as_api_user_converges_and_needs_update() {
    let cluster = TestCluster::start(2).await.unwrap();
    let pki = ApiPki::new();
    let server = api_for(&cluster, &pki).await;
    for index in 0..2 {
        on(
            &cluster,
            index,
            "CREATE TABLE public.items (id int PRIMARY KEY, v text, amount numeric(10,2));
             INSERT INTO public.items SELECT g, 'v' || g, g * 1.5 FROM generate_series(1, 300) g;
             CREATE TABLE public.audit (id int PRIMARY KEY, who text);",
        )
        .await;
    }
    // n2: two rows missing, one changed, one extra; a trigger records who
    // writes there.
    on(
        &cluster,
        1,
        "DELETE FROM public.items WHERE id IN (10, 20);
         UPDATE public.items SET v = 'changed' WHERE id = 30;
         INSERT INTO public.items VALUES (900, 'extra', 0);
         CREATE FUNCTION public.record() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO public.audit VALUES (NEW.id, current_user); RETURN NEW; END $$;
         CREATE TRIGGER record BEFORE INSERT OR UPDATE ON public.items
           FOR EACH ROW EXECUTE FUNCTION public.record();",
    )
    .await;

    let api_user = pki.ca.client_cert("api_user").unwrap();
    let mut api = client(server.addr, &pki.ca, &api_user).await;
    let diff_file = diff(&mut api, &server, "public.items").await;

    // Refusals, before anything is recorded: incompatible options, a path
    // outside the data directory, the wrong table, an unknown field.
    for (body, words) in [
        (
            json!({"table": "public.items", "diff_file": diff_file, "source_of_truth": "n1",
                   "insert_only": true, "upsert_only": true}),
            vec!["insert_only", "upsert_only"],
        ),
        (
            json!({"table": "public.items", "diff_file": "../tasks.db", "source_of_truth": "n1"}),
            vec!["diff_file"],
        ),
        (
            json!({"table": "public.audit", "diff_file": diff_file, "source_of_truth": "n1"}),
            vec!["public.items"],
        ),
        (
            json!({"table": "public.items", "diff_file": diff_file, "source_of_truth": "n1",
                   "dryrun": true}),
            vec!["dryrun"],
        ),
    ] {
        let answer = api.post_json("/api/v1/table-repair", &body).await.unwrap();
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        let message = answer.body["error"].as_str().unwrap();
        for word in words {
            assert!(message.contains(word), "{message}");
        }
    }

    let n1 = rows(&cluster, 0, "public.items").await;
    let answer = api
        .post_json(
            "/api/v1/table-repair",
            &json!({"table": "public.items", "diff_file": diff_file, "source_of_truth": "n1",
                    "fire_triggers": true, "generate_report": true}),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let id = answer.body["task_id"].as_str().unwrap().to_owned();
    let task = wait_finished(&mut api, &id).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert_eq!(task["task_type"], "TABLE_REPAIR");
    let n2 = &task["task_context"]["repair_report"]["changes"]["n2"];
    assert_eq!(n2["status"], "repaired", "{task}");
    assert_eq!(
        (&n2["inserted"], &n2["updated"], &n2["deleted"]),
        (&json!(2), &json!(1), &json!(1)),
        "{task}"
    );
    assert_eq!(task["task_context"]["dry_run"], false);
    assert_eq!(rows(&cluster, 1, "public.items").await, n1);
    // The writes were made as api_user.
    assert_eq!(
        rows(&cluster, 1, "public.audit").await,
        ["(10,api_user)", "(20,api_user)", "(30,api_user)"]
    );
    // The report file lists each row touched with before and after.
    let report = api
        .get(&format!("/api/v1/tasks/{id}/report"))
        .await
        .unwrap();
    assert_eq!(report.status, StatusCode::OK);
    let touched = report.body["changes"]["n2"]["row_changes"]
        .as_array()
        .unwrap();
    assert_eq!(touched.len(), 4);
    let update = touched.iter().find(|c| c["key"]["id"] == 30).unwrap();
    assert_eq!(update["before"]["v"], "changed");
    assert_eq!(update["after"]["v"], "v30");

    // A rerun of the diff file finds every difference resolved.
    let answer = api
        .post_json("/api/v1/table-rerun", &json!({"diff_file": diff_file}))
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let rerun = wait_finished(&mut api, answer.body["task_id"].as_str().unwrap()).await;
    assert_eq!(rerun["status"], "COMPLETED", "{rerun}");
    assert_eq!(
        rerun["task_context"]["diff_summary"]["diff_rows_count"],
        json!({})
    );

    // Without UPDATE on n2, a full repair is 403 and nothing is recorded
    // or written.
    on(
        &cluster,
        1,
        "UPDATE public.items SET v = 'again' WHERE id = 40;
         REVOKE UPDATE ON public.items FROM api_user;",
    )
    .await;
    let diff_file = diff(&mut api, &server, "public.items").await;
    let tasks_before = api.get("/api/v1/tasks").await.unwrap().body["tasks"]
        .as_array()
        .unwrap()
        .len();
    let n2_before = rows(&cluster, 1, "public.items").await;
    let answer = api
        .post_json(
            "/api/v1/table-repair",
            &json!({"table": "public.items", "diff_file": diff_file, "source_of_truth": "n1"}),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let message = answer.body["error"].as_str().unwrap();
    assert!(
        message.contains("api_user") && message.contains("UPDATE") && message.contains("n2"),
        "{message}"
    );
    let tasks_after = api.get("/api/v1/tasks").await.unwrap().body["tasks"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(tasks_after, tasks_before);
    assert_eq!(rows(&cluster, 1, "public.items").await, n2_before);
    server.shutdown().await.unwrap();
}
