//! The guide's flow on real PostgreSQL nodes: callers authenticate with
//! client certificates, their CN is the role, and the work runs as it.

mod common;

use ace_config::ServiceFile;
use ace_testkit::TestCluster;
use ace_testkit::cluster::ServiceAuth;
use common::{ApiPki, Running, client, wait_finished};
use http::StatusCode;
use serde_json::{Value, json};

/// Starts the API in front of `cluster` (service file cluster `test`, the
/// default cluster).
async fn api_for(cluster: &TestCluster, pki: &ApiPki, max_tasks: u32) -> Running {
    let path = cluster.dir().join("pg_service.conf");
    cluster
        .write_service_file(&path, "test", ServiceAuth::Certificate)
        .unwrap();
    let mut config = pki.config();
    config.default_cluster = "test".into();
    config.server.max_concurrent_tasks = max_tasks;
    Running::start(config, ServiceFile::load(&path).unwrap()).await
}

/// Runs `sql` as `ace_user` (so api_user gets the default privileges) on
/// every node.
async fn on_all(cluster: &TestCluster, sql: &str) {
    for node in cluster.nodes() {
        node.execute_as_superuser(&format!("SET ROLE ace_user; {sql}"))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// api_user posts a table-diff on a table with drift, polls it to
/// COMPLETED, and the summary and report show exactly the drift; the node
/// log shows the reads ran as api_user; a rerun of the report inside the
/// data directory finds the same rows; curl does the same as the guide.
#[tokio::test]
async fn guide_flow_end_to_end() {
    let cluster = TestCluster::start(2).await.unwrap();
    let pki = ApiPki::new();
    let server = api_for(&cluster, &pki, 2).await;

    on_all(
        &cluster,
        "CREATE TABLE public.customers (id int PRIMARY KEY, name text, balance numeric);
         INSERT INTO public.customers SELECT g, 'c' || g, g * 1.5 FROM generate_series(1, 500) g;",
    )
    .await;
    // Drift on n2: one row changed, one missing, one extra.
    cluster
        .node(1)
        .execute_as_superuser(
            "SET ROLE ace_user;
             UPDATE public.customers SET name = 'changed' WHERE id = 7;
             DELETE FROM public.customers WHERE id = 42;
             INSERT INTO public.customers VALUES (9001, 'extra', 0);",
        )
        .await
        .unwrap();
    // Log every statement, so the log shows which role ran what.
    for node in cluster.nodes() {
        node.execute_as_superuser("ALTER SYSTEM SET log_statement = 'all'")
            .await
            .unwrap();
        node.execute_as_superuser("SELECT pg_reload_conf()")
            .await
            .unwrap();
    }

    let api_user = pki.ca.client_cert("api_user").unwrap();
    let mut api = client(server.addr, &pki.ca, &api_user).await;
    let answer = api
        .post_json(
            "/api/v1/table-diff",
            &json!({"table": "public.customers", "block_size": 50, "compare_unit_size": 20}),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    assert_eq!(answer.body["status"], "QUEUED");
    let id = answer.body["task_id"].as_str().unwrap().to_owned();

    let task = wait_finished(&mut api, &id).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert_eq!(task["task_type"], "TABLE_DIFF");
    assert_eq!(task["cluster"], "test");
    assert_eq!(task["schema"], "public");
    assert_eq!(task["table"], "customers");
    assert_eq!(task["submitted_by"], "api_user");
    assert!(task["started_at"].is_string() && task["finished_at"].is_string());
    assert!(task["time_taken"].as_f64().unwrap() >= 0.0);
    let summary = &task["task_context"]["diff_summary"];
    assert_eq!(summary["diff_rows_count"], json!({"n1/n2": 3}), "{task}");
    assert_eq!(summary["nodes"], json!(["n1", "n2"]));
    assert_eq!(summary["primary_key"], json!(["id"]));
    assert_eq!(task["task_context"]["diff_pairs"], 1);

    // The report: n1 holds ids 7 and 42, n2 holds 7 and 9001.
    let report = api
        .get(&format!("/api/v1/tasks/{id}/report"))
        .await
        .unwrap();
    assert_eq!(report.status, StatusCode::OK);
    let ids = |node: &str| -> Vec<i64> {
        report.body["diffs"]["n1/n2"]["rows"][node]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids("n1"), vec![7, 42]);
    assert_eq!(ids("n2"), vec![7, 9001]);

    // The reads ran as api_user, inside ACE's role-scoped transactions.
    for node in cluster.nodes() {
        let log = node.log();
        assert!(
            log.contains(r#"SET LOCAL ROLE "api_user""#),
            "node {} log lacks the role switch",
            node.name()
        );
    }

    // table-rerun of that report, named relative to the data directory.
    let diff_file = std::path::Path::new(
        &server
            .store
            .get(id.parse().unwrap(), &ace_tasks::Viewer::owner("api_user"))
            .await
            .unwrap()
            .report_path
            .unwrap(),
    )
    .file_name()
    .unwrap()
    .to_string_lossy()
    .into_owned();
    let answer = api
        .post_json("/api/v1/table-rerun", &json!({"diff_file": diff_file}))
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let rerun_id = answer.body["task_id"].as_str().unwrap().to_owned();
    let rerun = wait_finished(&mut api, &rerun_id).await;
    assert_eq!(rerun["status"], "COMPLETED", "{rerun}");
    assert_eq!(rerun["task_type"], "TABLE_RERUN");
    assert_eq!(
        rerun["task_context"]["diff_summary"]["diff_rows_count"],
        json!({"n1/n2": 3}),
        "{rerun}"
    );

    // curl, with the files a caller would hold, as in the guide.
    let (cert, key) = pki.write_client(&api_user, "curl-api_user");
    let base = format!("https://localhost:{}/api/v1", server.addr.port());
    let tls_args = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "--silent",
            "--show-error",
            "--fail-with-body",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--cacert",
            pki.ca_file.to_str().unwrap(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let posted = common::run(
        "curl",
        &tls_args(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"cluster": "test", "table": "public.customers", "nodes": ["n1", "n2"]}"#,
            &format!("{base}/table-diff"),
        ]),
        pki.dir.path(),
    )
    .await;
    let posted: Value = serde_json::from_str(&posted).unwrap();
    assert_eq!(posted["status"], "QUEUED");
    let curl_id = posted["task_id"].as_str().unwrap().to_owned();
    let done = wait_finished(&mut api, &curl_id).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let shown = common::run(
        "curl",
        &tls_args(&[&format!("{base}/tasks/{curl_id}")]),
        pki.dir.path(),
    )
    .await;
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        shown["task_context"]["diff_summary"]["diff_rows_count"],
        json!({"n1/n2": 3})
    );

    server.shutdown().await.unwrap();
}

/// A CN whose role does not exist, and one ACE is not a member of, are
/// 403 with the reason, and nothing is recorded; a role without SELECT on
/// the table is 403 too. Nothing of it stops the server.
#[tokio::test]
async fn roles_ace_cannot_assume_are_403() {
    let cluster = TestCluster::start(2).await.unwrap();
    let pki = ApiPki::new();
    let server = api_for(&cluster, &pki, 2).await;
    on_all(
        &cluster,
        "CREATE TABLE public.items (id int PRIMARY KEY, v text);
         INSERT INTO public.items VALUES (1, 'a');
         CREATE TABLE public.secret (id int PRIMARY KEY);
         REVOKE ALL ON public.secret FROM api_user;",
    )
    .await;
    for node in cluster.nodes() {
        node.execute_as_superuser("CREATE ROLE lonely_user NOLOGIN")
            .await
            .unwrap();
    }
    let body = json!({"table": "public.items"});

    let ghost = pki.ca.client_cert("ghost_user").unwrap();
    let mut ghost = client(server.addr, &pki.ca, &ghost).await;
    let answer = ghost.post_json("/api/v1/table-diff", &body).await.unwrap();
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains("role \"ghost_user\" does not exist"),
        "{}",
        answer.body
    );

    let lonely = pki.ca.client_cert("lonely_user").unwrap();
    let mut lonely = client(server.addr, &pki.ca, &lonely).await;
    let answer = lonely.post_json("/api/v1/table-diff", &body).await.unwrap();
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let message = answer.body["error"].as_str().unwrap();
    assert!(message.contains("GRANT"), "{message}");

    let api_user = pki.ca.client_cert("api_user").unwrap();
    let mut api = client(server.addr, &pki.ca, &api_user).await;
    let answer = api
        .post_json("/api/v1/table-diff", &json!({"table": "public.secret"}))
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let answer = api
        .post_json("/api/v1/table-diff", &json!({"table": "public.nope"}))
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let answer = api
        .post_json(
            "/api/v1/table-diff",
            &json!({"table": "public.items", "table_filter": "v = 'a'; DROP TABLE items"}),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);

    // None of the refused calls recorded a task.
    let admin = pki.ca.client_cert("admin_user").unwrap();
    let mut admin = client(server.addr, &pki.ca, &admin).await;
    let listed = admin.get("/api/v1/tasks").await.unwrap();
    assert_eq!(listed.body["tasks"], json!([]));

    // The server still runs the caller that may.
    let answer = api.post_json("/api/v1/table-diff", &body).await.unwrap();
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let done = wait_finished(&mut api, answer.body["task_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(
        done["task_context"]["diff_summary"]["diff_rows_count"],
        json!({})
    );
    server.shutdown().await.unwrap();
}

/// 100 submissions at once over HTTP/2 and HTTP/1.1 are all recorded and
/// all finish, through a pool of 4.
#[tokio::test]
async fn hundred_concurrent_submissions_all_finish() {
    let cluster = TestCluster::start(2).await.unwrap();
    let pki = ApiPki::new();
    let server = api_for(&cluster, &pki, 4).await;
    on_all(
        &cluster,
        "CREATE TABLE public.small (id int PRIMARY KEY, v text);
         INSERT INTO public.small SELECT g, 'v' || g FROM generate_series(1, 50) g;",
    )
    .await;
    let api_user = pki.ca.client_cert("api_user").unwrap();

    let mut submissions = tokio::task::JoinSet::new();
    for index in 0..100 {
        let addr = server.addr;
        let ca = pki.ca.cert_der();
        let identity = api_user.clone();
        submissions.spawn(async move {
            let proto = if index % 2 == 0 {
                common::Proto::Http2
            } else {
                common::Proto::Http1
            };
            let mut client = common::Client::connect(addr, ca, Some(&identity), proto)
                .await
                .unwrap();
            let answer = client
                .post_json("/api/v1/table-diff", &json!({"table": "public.small"}))
                .await
                .unwrap();
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
            answer.body["task_id"].as_str().unwrap().to_owned()
        });
    }
    let mut ids = Vec::new();
    while let Some(id) = submissions.join_next().await {
        ids.push(id.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100);

    let mut api = client(server.addr, &pki.ca, &api_user).await;
    let listed = api.get("/api/v1/tasks?limit=1000").await.unwrap();
    assert_eq!(listed.body["tasks"].as_array().unwrap().len(), 100);
    for id in &ids {
        let task = wait_finished(&mut api, id).await;
        assert_eq!(task["status"], "COMPLETED", "{task}");
    }
    server.shutdown().await.unwrap();
}

/// Shutdown with work queued: `serve` returns, and no task is left PENDING
/// or RUNNING; those the grace period did not cover are FAILED as
/// interrupted.
#[tokio::test]
async fn shutdown_records_unfinished_tasks_as_interrupted() {
    let cluster = TestCluster::start(2).await.unwrap();
    let pki = ApiPki::new();
    let path = cluster.dir().join("pg_service.conf");
    cluster
        .write_service_file(&path, "test", ServiceAuth::Certificate)
        .unwrap();
    let mut config = pki.config();
    config.default_cluster = "test".into();
    config.server.max_concurrent_tasks = 1;
    let limits = ace_http::Limits {
        shutdown_grace: std::time::Duration::ZERO,
        ..ace_http::Limits::default()
    };
    let server = Running::start_with(config, ServiceFile::load(&path).unwrap(), limits).await;
    on_all(
        &cluster,
        "CREATE TABLE public.queued (id int PRIMARY KEY, v text);
         INSERT INTO public.queued SELECT g, 'v' || g FROM generate_series(1, 2000) g;",
    )
    .await;
    let api_user = pki.ca.client_cert("api_user").unwrap();
    let mut api = client(server.addr, &pki.ca, &api_user).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        let answer = api
            .post_json("/api/v1/table-diff", &json!({"table": "public.queued"}))
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        ids.push(answer.body["task_id"].as_str().unwrap().parse().unwrap());
    }
    let store = server.store.clone();
    server.shutdown().await.unwrap();

    let viewer = ace_tasks::Viewer::owner("api_user");
    let mut interrupted = 0;
    for id in ids {
        let task = store.get(id, &viewer).await.unwrap();
        assert!(task.status.is_finished(), "{id} left {}", task.status);
        if task.status == ace_tasks::TaskStatus::Failed {
            assert_eq!(
                task.task_context.error.as_deref(),
                Some(ace_tasks::INTERRUPTED_ERROR)
            );
            interrupted += 1;
        }
    }
    eprintln!("{interrupted} of 8 tasks recorded as interrupted");
}
