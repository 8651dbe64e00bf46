//! schema-diff and repset-diff through the API as `api_user`: a keyless
//! table makes the task FAILED naming it, with the drift still found; a
//! skip file inside the data directory leaves it out and the task
//! completes with its report; a publication is diffed as a repset.

mod common;

use ace_config::ServiceFile;
use ace_testkit::TestCluster;
use ace_testkit::cluster::ServiceAuth;
use common::{ApiPki, Running, client, wait_finished};
use http::StatusCode;
use serde_json::json;

async fn on(cluster: &TestCluster, index: usize, sql: &str) {
    cluster
        .node(index)
        .execute_as_superuser(&format!("SET ROLE ace_user; {sql}"))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn schema_diff_as_api_user_fails_on_a_keyless_table_and_completes_without_it() {
    let cluster = TestCluster::start(2).await.unwrap();
    let pki = ApiPki::new();
    let path = cluster.dir().join("pg_service.conf");
    cluster
        .write_service_file(&path, "test", ServiceAuth::Certificate)
        .unwrap();
    let mut config = pki.config();
    config.default_cluster = "test".into();
    let data_dir = config.server.data_dir.clone();
    let server = Running::start(config, ServiceFile::load(&path).unwrap()).await;
    for index in 0..2 {
        on(
            &cluster,
            index,
            r#"CREATE SCHEMA "My-Schema";
               CREATE TABLE "My-Schema"."Orders" (id int PRIMARY KEY, v text);
               INSERT INTO "My-Schema"."Orders" SELECT g, 'v' || g FROM generate_series(1, 80) g;
               CREATE TABLE "My-Schema"."NoKey" (v text);
               CREATE PUBLICATION "Orders-Pub" FOR TABLE "My-Schema"."Orders";
               GRANT USAGE ON SCHEMA "My-Schema" TO api_user;
               GRANT SELECT ON ALL TABLES IN SCHEMA "My-Schema" TO api_user;"#,
        )
        .await;
    }
    on(
        &cluster,
        1,
        r#"DELETE FROM "My-Schema"."Orders" WHERE id = 40;"#,
    )
    .await;
    let api_user = pki.ca.client_cert("api_user").unwrap();
    let mut api = client(server.addr, &pki.ca, &api_user).await;

    // Refused before anything is recorded.
    for (body, word) in [
        (
            json!({"schema": "\"My-Schema\"", "skip_file": "../tasks.db"}),
            "skip_file",
        ),
        (
            json!({"schema": "\"My-Schema\"", "skip_tabels": "x"}),
            "skip_tabels",
        ),
        (json!({"schema": " "}), "schema"),
        (json!({"repset": "r", "ddl_only": true}), "ddl_only"),
    ] {
        let route = if body.get("repset").is_some() {
            "/api/v1/repset-diff"
        } else {
            "/api/v1/schema-diff"
        };
        let answer = api.post_json(route, &body).await.unwrap();
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert!(
            answer.body["error"].as_str().unwrap().contains(word),
            "{}",
            answer.body
        );
    }

    // The keyless table cannot be compared: FAILED, naming it; the drift
    // in Orders is found all the same.
    let answer = api
        .post_json("/api/v1/schema-diff", &json!({"schema": "\"My-Schema\""}))
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let id = answer.body["task_id"].as_str().unwrap().to_owned();
    let task = wait_finished(&mut api, &id).await;
    assert_eq!(task["status"], "FAILED", "{task}");
    assert_eq!(task["task_type"], "SCHEMA_DIFF");
    assert_eq!(task["schema"], "My-Schema");
    let error = task["task_context"]["error"].as_str().unwrap();
    assert!(error.contains("My-Schema.NoKey"), "{error}");
    assert!(error.contains("no primary key"), "{error}");
    let files: Vec<String> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("My-Schema_Orders_diffs-")),
        "{files:?}"
    );

    // Skipped through a file in the data directory: COMPLETED, with the
    // report in the task and behind GET report.
    std::fs::write(data_dir.join("skip.txt"), "\"NoKey\"\n").unwrap();
    let answer = api
        .post_json(
            "/api/v1/schema-diff",
            &json!({"schema": "\"My-Schema\"", "skip_file": "skip.txt", "block_size": 10}),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let id = answer.body["task_id"].as_str().unwrap().to_owned();
    let task = wait_finished(&mut api, &id).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    let context = &task["task_context"];
    assert_eq!(
        context["tables"]["differing"][0]["table"],
        "My-Schema.Orders"
    );
    assert_eq!(
        context["tables"]["differing"][0]["diff_rows_count"]["n1/n2"],
        1
    );
    assert_eq!(context["tables"]["skipped"][0]["reason"], "skip_file");
    assert_eq!(context["summary"]["result"], "differences");
    let report = api
        .get(&format!("/api/v1/tasks/{id}/report"))
        .await
        .unwrap();
    assert_eq!(report.status, StatusCode::OK);
    assert_eq!(report.body["schema"], "My-Schema");

    // The publication as a replication set.
    let answer = api
        .post_json(
            "/api/v1/repset-diff",
            &json!({"repset": "\"Orders-Pub\"", "output": "html"}),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let id = answer.body["task_id"].as_str().unwrap().to_owned();
    let task = wait_finished(&mut api, &id).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert_eq!(task["task_type"], "REPSET_DIFF");
    assert_eq!(task["repset"], "Orders-Pub");
    assert_eq!(
        task["task_context"]["tables"]["differing"][0]["table"],
        "My-Schema.Orders"
    );
}
