//! The transport and the request checks, with no PostgreSQL behind: who
//! gets through the TLS handshake, how bad requests are answered, task
//! ownership, the policy reload and the OpenAPI document.

mod common;

use std::time::Duration;

use ace_tasks::{NewTask, TaskType};
use bytes::Bytes;
use common::{ApiPki, Client, Proto, Running, client, unreachable_service};
use http::{Method, StatusCode};
use serde_json::json;

/// A valid client is served over HTTP/1.1 and HTTP/2; no certificate,
/// another CA's certificate, an expired one, a revoked one and a CN outside
/// the allowlist never get an answer.
#[tokio::test]
async fn only_valid_allowed_certificates_get_through() {
    let pki = ApiPki::new();
    let revoked = pki.ca.client_cert("api_user").unwrap();
    pki.ca.revoke(&revoked);
    pki.write_crl();
    let mut config = pki.config();
    config.server.allowed_common_names = vec!["api_user".into(), "admin_user".into()];
    let server = Running::start(config, unreachable_service()).await;

    let good = pki.ca.client_cert("api_user").unwrap();
    for proto in [Proto::Http1, Proto::Http2] {
        let mut client = Client::connect(server.addr, pki.ca.cert_der(), Some(&good), proto)
            .await
            .unwrap();
        let answer = client.get("/api/v1/tasks").await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{proto:?}");
        assert_eq!(answer.body, json!({ "tasks": [] }));
    }

    let other_ca = ace_testkit::TestCa::new("Some other CA").unwrap();
    let refused = [
        ("no certificate", None),
        (
            "another CA",
            Some(other_ca.client_cert("api_user").unwrap()),
        ),
        (
            "expired",
            Some(pki.ca.expired_client_cert("api_user").unwrap()),
        ),
        ("revoked", Some(revoked.clone())),
        (
            "CN outside the allowlist",
            Some(pki.ca.client_cert("mallory").unwrap()),
        ),
    ];
    for (case, identity) in refused {
        // Under TLS 1.3 the client finishes its side of the handshake
        // before the server's alert arrives, so the refusal may surface at
        // the first request: either way, no answer comes back.
        let outcome = match Client::connect(
            server.addr,
            pki.ca.cert_der(),
            identity.as_ref(),
            Proto::Http1,
        )
        .await
        {
            Ok(mut client) => client.get("/api/v1/tasks").await.map(|a| a.status),
            Err(error) => Err(error),
        };
        assert!(outcome.is_err(), "{case}: got {outcome:?}");
    }

    // The server is still serving.
    let mut client = client(server.addr, &pki.ca, &good).await;
    assert_eq!(
        client.get("/api/v1/tasks").await.unwrap().status,
        StatusCode::OK
    );
    server.shutdown().await.unwrap();
}

/// A bad request: what it is, method, path, content type, body, the
/// status expected and a word the error message must hold.
type Case = (
    &'static str,
    Method,
    &'static str,
    Option<&'static str>,
    Bytes,
    StatusCode,
    &'static str,
);

/// Each kind of bad request gets its status and a JSON error, and the
/// same connection goes on being served.
#[tokio::test]
async fn bad_requests_are_refused_and_the_server_keeps_serving() {
    let pki = ApiPki::new();
    let server = Running::start(pki.config(), unreachable_service()).await;
    let me = pki.ca.client_cert("api_user").unwrap();
    let mut client = client(server.addr, &pki.ca, &me).await;
    let json = Some("application/json");

    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Method::POST,
            "/api/v1/table-diff",
            json,
            Bytes::from_static(b"{\"table\": "),
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        ),
        (
            "unknown field",
            Method::POST,
            "/api/v1/table-diff",
            json,
            Bytes::from(json!({"table": "public.t", "blocksize": 10}).to_string()),
            StatusCode::BAD_REQUEST,
            "blocksize",
        ),
        (
            "missing table",
            Method::POST,
            "/api/v1/table-diff",
            json,
            Bytes::from(json!({"nodes": ["n1", "n2"]}).to_string()),
            StatusCode::BAD_REQUEST,
            "`table`",
        ),
        (
            "wrong type",
            Method::POST,
            "/api/v1/table-diff",
            json,
            Bytes::from(json!({"table": "t", "block_size": "big"}).to_string()),
            StatusCode::BAD_REQUEST,
            "block_size",
        ),
        (
            "block size out of range",
            Method::POST,
            "/api/v1/table-diff",
            json,
            Bytes::from(json!({"table": "t", "block_size": 0}).to_string()),
            StatusCode::BAD_REQUEST,
            "block_size",
        ),
        (
            "concurrency factor out of range",
            Method::POST,
            "/api/v1/table-diff",
            json,
            Bytes::from(json!({"table": "t", "concurrency_factor": 5}).to_string()),
            StatusCode::BAD_REQUEST,
            "concurrency_factor",
        ),
        (
            "unknown node",
            Method::POST,
            "/api/v1/table-diff",
            json,
            Bytes::from(
                json!({"cluster": "test", "table": "t", "nodes": ["n1", "n9"]}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "n9",
        ),
        (
            "unknown cluster",
            Method::POST,
            "/api/v1/table-diff",
            json,
            Bytes::from(json!({"cluster": "nope", "table": "t"}).to_string()),
            StatusCode::BAD_REQUEST,
            "nope",
        ),
        (
            "wrong content type",
            Method::POST,
            "/api/v1/table-diff",
            Some("text/plain"),
            Bytes::from(json!({"table": "t"}).to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            "no content type",
            Method::POST,
            "/api/v1/table-rerun",
            None,
            Bytes::from(json!({"diff_file": "x.json"}).to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            "2 MiB body",
            Method::POST,
            "/api/v1/table-diff",
            json,
            Bytes::from(vec![b' '; 2 * 1024 * 1024]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "1048576",
        ),
        (
            "diff_file outside the data directory",
            Method::POST,
            "/api/v1/table-rerun",
            json,
            Bytes::from(json!({"diff_file": "../../etc/passwd"}).to_string()),
            StatusCode::BAD_REQUEST,
            "diff_file",
        ),
        (
            "absolute diff_file",
            Method::POST,
            "/api/v1/table-rerun",
            json,
            Bytes::from(json!({"diff_file": "/etc/passwd"}).to_string()),
            StatusCode::BAD_REQUEST,
            "diff_file",
        ),
        (
            "unknown route",
            Method::GET,
            "/api/v1/no-such-thing",
            None,
            Bytes::new(),
            StatusCode::NOT_FOUND,
            "no route",
        ),
        (
            "task id that is not a UUID",
            Method::GET,
            "/api/v1/tasks/123",
            None,
            Bytes::new(),
            StatusCode::BAD_REQUEST,
            "task_id",
        ),
        (
            "task that does not exist",
            Method::GET,
            "/api/v1/tasks/00000000-0000-4000-8000-000000000000",
            None,
            Bytes::new(),
            StatusCode::NOT_FOUND,
            "not found",
        ),
    ];
    for (case, method, path, content_type, body, status, needle) in cases {
        let answer = client
            .send(method, path, content_type, body)
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(answer.status, status, "{case}: {}", answer.body);
        let message = answer.body["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{case}: {message:?}");
    }

    // A 405 says which methods the route takes.
    let answer = client.get("/api/v1/table-diff").await.unwrap();
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.headers[http::header::ALLOW], "POST");
    let answer = client
        .send(
            Method::PUT,
            "/api/v1/tasks/00000000-0000-4000-8000-000000000000",
            None,
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.headers[http::header::ALLOW], "GET, DELETE");

    // Nothing was recorded, and the server still answers (on a new
    // connection too, in case the 413 closed the old one).
    let mut client = common::client(server.addr, &pki.ca, &me).await;
    let answer = client.get("/api/v1/tasks").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["tasks"], json!([]));
    server.shutdown().await.unwrap();
}

/// Another caller's task is 404 for reading, downloading and cancelling;
/// an admin CN sees it; the owner cancels it once (then 409).
#[tokio::test]
async fn tasks_belong_to_their_caller() {
    let pki = ApiPki::new();
    let server = Running::start(pki.config(), unreachable_service()).await;
    let task = server
        .store
        .create(NewTask::new(TaskType::TableDiff, "test", "api_user").with_table("public", "t"))
        .await
        .unwrap();
    let path = format!("/api/v1/tasks/{}", task.task_id);

    let owner = pki.ca.client_cert("api_user").unwrap();
    let stranger = pki.ca.client_cert("other_user").unwrap();
    let admin = pki.ca.client_cert("admin_user").unwrap();
    let mut owner = client(server.addr, &pki.ca, &owner).await;
    let mut stranger = client(server.addr, &pki.ca, &stranger).await;
    let mut admin = client(server.addr, &pki.ca, &admin).await;

    let answer = owner.get(&path).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["task_id"], json!(task.task_id));
    assert_eq!(answer.body["task_type"], "TABLE_DIFF");
    assert_eq!(answer.body["status"], "PENDING");
    assert_eq!(answer.body["cluster"], "test");
    assert_eq!(answer.body["table"], "t");

    for (method, suffix) in [
        (Method::GET, ""),
        (Method::GET, "/report"),
        (Method::DELETE, ""),
    ] {
        let answer = stranger
            .send(
                method.clone(),
                &format!("{path}{suffix}"),
                None,
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {suffix}");
    }
    let listed = stranger.get("/api/v1/tasks").await.unwrap();
    assert_eq!(listed.body["tasks"], json!([]));

    assert_eq!(admin.get(&path).await.unwrap().status, StatusCode::OK);
    let listed = admin.get("/api/v1/tasks").await.unwrap();
    assert_eq!(listed.body["tasks"].as_array().unwrap().len(), 1);

    let answer = owner.get(&format!("{path}/report")).await.unwrap();
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "no report yet");
    let answer = owner
        .send(Method::DELETE, &path, None, Bytes::new())
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["status"], "CANCELLED");
    let answer = owner
        .send(Method::DELETE, &path, None, Bytes::new())
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    let listed = owner.get("/api/v1/tasks?status=CANCELLED").await.unwrap();
    assert_eq!(listed.body["tasks"].as_array().unwrap().len(), 1);
    let listed = owner.get("/api/v1/tasks?status=bogus").await.unwrap();
    assert_eq!(listed.status, StatusCode::BAD_REQUEST);

    // A finished task's answer is remembered for a moment; the memory
    // keeps the owner check: the owner's read fills it, a stranger still
    // gets 404, an admin still sees it.
    let answer = owner.get(&path).await.unwrap();
    assert_eq!(answer.body["status"], "CANCELLED");
    assert_eq!(
        stranger.get(&path).await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    let answer = admin.get(&path).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["status"], "CANCELLED");
    server.shutdown().await.unwrap();
}

/// A reload with a CRL that revokes a client refuses it on the next
/// connection, without a restart; a reload that fails keeps the policy.
#[tokio::test]
async fn reload_with_a_new_crl_revokes_without_restart() {
    let pki = ApiPki::new();
    let config = pki.config();
    let server = Running::start(config.clone(), unreachable_service()).await;
    let alice = pki.ca.client_cert("api_user").unwrap();
    let bob = pki.ca.client_cert("admin_user").unwrap();
    let mut open = client(server.addr, &pki.ca, &alice).await;
    assert_eq!(
        open.get("/api/v1/tasks").await.unwrap().status,
        StatusCode::OK
    );

    // A reload that cannot load keeps the current policy.
    let mut broken = config.clone();
    broken.server.client_crl_file = Some(pki.dir.path().join("missing.crl"));
    assert!(ace_http::reload_policy(&server.policy, &broken).is_err());
    let mut again = client(server.addr, &pki.ca, &alice).await;
    assert_eq!(
        again.get("/api/v1/tasks").await.unwrap().status,
        StatusCode::OK
    );

    pki.ca.revoke(&alice);
    pki.write_crl();
    let generation = server.policy.generation();
    ace_http::reload_policy(&server.policy, &config).unwrap();
    assert_eq!(server.policy.generation(), generation + 1);

    let refused =
        match Client::connect(server.addr, pki.ca.cert_der(), Some(&alice), Proto::Http1).await {
            Ok(mut client) => client.get("/api/v1/tasks").await.map(|a| a.status),
            Err(error) => Err(error),
        };
    assert!(refused.is_err(), "revoked client got {refused:?}");
    let mut other = client(server.addr, &pki.ca, &bob).await;
    assert_eq!(
        other.get("/api/v1/tasks").await.unwrap().status,
        StatusCode::OK
    );
    // The connection opened before the reload keeps its policy.
    assert_eq!(
        open.get("/api/v1/tasks").await.unwrap().status,
        StatusCode::OK
    );
    server.shutdown().await.unwrap();
}

/// Every route of the router is in the served OpenAPI document, with its
/// methods, and the document lists no route the router lacks.
#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let pki = ApiPki::new();
    let server = Running::start(pki.config(), unreachable_service()).await;
    let me = pki.ca.client_cert("api_user").unwrap();
    let mut client = client(server.addr, &pki.ca, &me).await;
    let answer = client.get("/api/v1/openapi.json").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let document = answer.body;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(document["servers"][0]["url"], ace_http::BASE_PATH);
    let paths = document["paths"].as_object().unwrap();
    for (path, methods) in ace_http::ROUTES {
        let entry = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} missing from openapi.json"));
        for method in *methods {
            assert!(
                entry.get(method.to_lowercase()).is_some(),
                "{method} {path} missing from openapi.json"
            );
        }
        assert_eq!(
            entry.as_object().unwrap().len(),
            methods.len(),
            "{path}: openapi.json lists other methods"
        );
    }
    assert_eq!(paths.len(), ace_http::ROUTES.len());
    server.shutdown().await.unwrap();
}

/// Shutdown stops accepting and returns; a connection that is idle longer
/// than the idle timeout is closed by the server.
#[tokio::test]
async fn idle_connections_close_and_shutdown_returns() {
    let pki = ApiPki::new();
    let limits = ace_http::Limits {
        idle_timeout: Duration::from_millis(200),
        ..ace_http::Limits::default()
    };
    let server = Running::start_with(pki.config(), unreachable_service(), limits).await;
    let me = pki.ca.client_cert("api_user").unwrap();
    let mut client = client(server.addr, &pki.ca, &me).await;
    assert_eq!(
        client.get("/api/v1/tasks").await.unwrap().status,
        StatusCode::OK
    );
    // Each probe comes after more than the idle timeout of silence, so the
    // server closes the connection and a probe fails.
    let mut closed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        if client.get("/api/v1/tasks").await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "the idle connection was never closed");
    let addr = server.addr;
    server.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}
