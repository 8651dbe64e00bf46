//! The testkit against real PostgreSQL servers: the guide's certificate
//! authentication, role switching, refusals, password mode and clean-up.

use std::time::Instant;

use ace_testkit::cluster::{ACE_USER, ServiceAuth};
use ace_testkit::{TestCa, TestCluster};
use sqlx::postgres::PgSslMode;
use sqlx::{Connection, PgConnection};

async fn current_user(conn: &mut PgConnection) -> String {
    let (user,): (String,) = sqlx::query_as("SELECT current_user::text")
        .fetch_one(conn)
        .await
        .expect("current_user");
    user
}

#[tokio::test]
async fn certificate_login_and_set_role() {
    let started = Instant::now();
    let cluster = TestCluster::start(3).await.expect("cluster starts");
    eprintln!("3-node cluster started in {:?}", started.elapsed());

    for node in cluster.nodes() {
        let mut conn = PgConnection::connect_with(&node.cert_options())
            .await
            .expect("ace_user connects with its certificate");
        assert_eq!(current_user(&mut conn).await, ACE_USER);
        let (ssl,): (bool,) =
            sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(ssl, "connection to {} is not TLS", node.name());
        // ace_user may set the replication role without being superuser
        // (privileged set-up, before the role switch).
        sqlx::query("SET session_replication_role = replica")
            .execute(&mut conn)
            .await
            .expect("GRANT SET ON PARAMETER session_replication_role");
        sqlx::query("SET ROLE api_user")
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(current_user(&mut conn).await, "api_user");
        // The caller's role has no such privilege.
        assert!(
            sqlx::query("SET session_replication_role = origin")
                .execute(&mut conn)
                .await
                .is_err()
        );
        conn.close().await.unwrap();
    }
}

#[tokio::test]
async fn refuses_missing_foreign_and_revoked_certificates() {
    let cluster = TestCluster::start(1).await.expect("cluster starts");
    let node = cluster.node(0);
    let ca_cert = &cluster.tls_files().ca_cert;

    // No client certificate at all.
    let no_cert = sqlx::postgres::PgConnectOptions::new()
        .host("localhost")
        .port(node.port())
        .database(ace_testkit::cluster::DATABASE)
        .username(ACE_USER)
        .ssl_mode(PgSslMode::VerifyFull)
        .ssl_root_cert(ca_cert);
    assert!(PgConnection::connect_with(&no_cert).await.is_err());

    // A certificate for the right CN, signed by another CA.
    let other_ca = TestCa::new("Other CA").unwrap();
    let foreign = other_ca.client_cert(ACE_USER).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = foreign.write_to(dir.path(), "foreign").unwrap();
    let options = node.cert_options_as(&cert, &key, ACE_USER);
    assert!(PgConnection::connect_with(&options).await.is_err());

    // A second certificate of ace_user from the right CA: works until revoked.
    let (second, cert, key) = cluster.issue_client(ACE_USER).unwrap();
    let options = node.cert_options_as(&cert, &key, ACE_USER);
    PgConnection::connect_with(&options)
        .await
        .expect("a valid certificate connects")
        .close()
        .await
        .unwrap();
    cluster.revoke(&second).await.unwrap();
    assert!(PgConnection::connect_with(&options).await.is_err());
    // The service certificate itself is still accepted.
    PgConnection::connect_with(&node.cert_options())
        .await
        .expect("the unrevoked certificate still connects")
        .close()
        .await
        .unwrap();
}

#[tokio::test]
async fn password_mode_without_tls() {
    let cluster = TestCluster::start(2).await.expect("cluster starts");
    for node in cluster.nodes() {
        let mut conn = PgConnection::connect_with(&node.password_options())
            .await
            .expect("password login over plain TCP");
        assert_eq!(current_user(&mut conn).await, ACE_USER);
        let wrong = node.password_options().password("wrong");
        assert!(PgConnection::connect_with(&wrong).await.is_err());
    }
}

#[tokio::test]
async fn wrong_host_name_is_refused_by_verify_full() {
    let cluster = TestCluster::builder()
        .server_sans(&["db.example.test"])
        .start()
        .await
        .expect("cluster starts");
    let node = cluster.node(0);
    assert!(
        PgConnection::connect_with(&node.cert_options())
            .await
            .is_err()
    );
    // The server itself is fine: without verification it is reached.
    let options = node.cert_options().ssl_mode(PgSslMode::Require);
    PgConnection::connect_with(&options)
        .await
        .expect("sslmode=require does not check the certificate")
        .close()
        .await
        .unwrap();
}

#[tokio::test]
async fn dropping_stops_servers_and_removes_directories() {
    let cluster = TestCluster::start(2).await.expect("cluster starts");
    let dir = cluster.dir().to_path_buf();
    let mut pids = Vec::new();
    for node in cluster.nodes() {
        let mut conn = PgConnection::connect_with(&node.superuser_options())
            .await
            .unwrap();
        let (pid,): (i32,) =
            sqlx::query_as("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        conn.close().await.unwrap();
        pids.push(pid);
    }
    drop(cluster);
    assert!(!dir.exists(), "{} still exists", dir.display());
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "server process {pid} outlived its cluster"
        );
    }
}

#[tokio::test]
async fn stopped_node_refuses_connections() {
    let mut cluster = TestCluster::start(2).await.expect("cluster starts");
    cluster.node_mut(1).stop();
    assert!(!cluster.node(1).is_running());
    assert!(
        PgConnection::connect_with(&cluster.node(1).cert_options())
            .await
            .is_err()
    );
    assert!(cluster.node(0).is_running());
}

#[tokio::test]
async fn service_file_names_every_node() {
    let cluster = TestCluster::start(2).await.expect("cluster starts");
    let path = cluster.dir().join("pg_service.conf");
    cluster
        .write_service_file(&path, "demo", ServiceAuth::Certificate)
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[demo]\n"));
    assert!(text.contains("sslmode=verify-full"));
    for node in cluster.nodes() {
        assert!(text.contains(&format!("[demo.{}]\nport={}\n", node.name(), node.port())));
    }
    cluster
        .write_service_file(&path, "demo", ServiceAuth::Password)
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("sslmode=disable"));
}
