//! The session layer against testkit nodes: both authentication modes,
//! libpq's sslmode rules, role-scoped work and its failures.

use std::time::{Duration, Instant};

use ace_config::{CertAuthConfig, Cluster, ServiceFile, SslMode};
use ace_session::{ClusterSession, NodeSession, Scope, SessionError, SessionSettings, TlsFailure};
use ace_testkit::TestCluster;
use ace_testkit::cluster::ServiceAuth;

fn cluster_model(cluster: &TestCluster, auth: ServiceAuth) -> Cluster {
    let path = cluster.dir().join(format!("pg_service-{auth:?}.conf"));
    cluster.write_service_file(&path, "test", auth).unwrap();
    ServiceFile::load(&path)
        .unwrap()
        .cluster("test", &CertAuthConfig::default())
        .unwrap()
}

fn settings() -> SessionSettings {
    SessionSettings {
        connect_timeout: Duration::from_secs(3),
        ..SessionSettings::default()
    }
}

async fn scalar(work: &mut ace_session::RoleTx, sql: &str) -> String {
    sqlx::query_scalar::<_, String>(sql)
        .fetch_one(work.conn())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn certificate_and_password_modes_connect() {
    let cluster = TestCluster::start(2).await.unwrap();
    for (auth, tls) in [
        (ServiceAuth::Certificate, "t"),
        (ServiceAuth::Password, "f"),
    ] {
        let model = cluster_model(&cluster, auth);
        let nodes: Vec<_> = model.nodes.iter().collect();
        let sessions = ClusterSession::connect(&nodes, &settings()).await.unwrap();
        for session in sessions.nodes() {
            let mut work = session.begin(&Scope::read_only(None)).await.unwrap();
            assert_eq!(
                scalar(&mut work, "SELECT current_user::text").await,
                "ace_user"
            );
            let ssl = scalar(
                &mut work,
                "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            )
            .await;
            assert_eq!(ssl.chars().next().unwrap().to_string(), tls, "{auth:?}");
            // The pinned settings that make equal data print equally.
            assert_eq!(scalar(&mut work, "SHOW TimeZone").await, "UTC");
            assert_eq!(scalar(&mut work, "SHOW DateStyle").await, "ISO, YMD");
            assert_eq!(scalar(&mut work, "SHOW IntervalStyle").await, "postgres");
            assert_eq!(scalar(&mut work, "SHOW extra_float_digits").await, "3");
            assert_eq!(scalar(&mut work, "SHOW bytea_output").await, "hex");
            work.commit().await.unwrap();
        }
    }
}

#[tokio::test]
async fn verify_modes_follow_libpq() {
    let cluster = TestCluster::builder()
        .server_sans(&["db.example.test"])
        .start()
        .await
        .unwrap();
    let model = cluster_model(&cluster, ServiceAuth::Certificate);
    let node = &model.nodes[0];

    // verify-full: the certificate names another host.
    let error = NodeSession::connect(node, &settings()).await.unwrap_err();
    assert!(
        matches!(
            &error,
            SessionError::Tls { node, failure: TlsFailure::HostNameMismatch { .. } } if node == "n1"
        ),
        "{error}"
    );

    // verify-ca: the chain is checked, the name is not.
    let mut verify_ca = node.clone();
    verify_ca.settings.sslmode = SslMode::VerifyCa;
    NodeSession::connect(&verify_ca, &settings())
        .await
        .expect("verify-ca accepts a trusted certificate for another name");

    // A root certificate that did not sign the server: not trusted, also in
    // require mode (libpq treats require + sslrootcert as verify-ca).
    let other = ace_testkit::TestCa::new("Other CA").unwrap();
    let other_root = cluster.dir().join("other-ca.crt");
    std::fs::write(&other_root, other.cert_pem()).unwrap();
    for mode in [SslMode::VerifyCa, SslMode::Require] {
        let mut untrusted = verify_ca.clone();
        untrusted.settings.sslmode = mode;
        untrusted.settings.sslrootcert = Some(other_root.clone());
        let error = NodeSession::connect(&untrusted, &settings())
            .await
            .unwrap_err();
        assert!(
            matches!(
                &error,
                SessionError::Tls {
                    failure: TlsFailure::ServerCertNotTrusted,
                    ..
                }
            ),
            "{mode}: {error}"
        );
    }

    // require without a root certificate: encrypted, not verified.
    let mut require = verify_ca.clone();
    require.settings.sslmode = SslMode::Require;
    require.settings.sslrootcert = None;
    NodeSession::connect(&require, &settings())
        .await
        .expect("require without sslrootcert does not verify");

    // ACE's client certificate from another CA is refused by the server.
    let foreign = other.client_cert("ace_user").unwrap();
    let (cert, key) = foreign.write_to(cluster.dir(), "foreign").unwrap();
    let mut foreign_client = verify_ca.clone();
    foreign_client.settings.sslcert = Some(cert);
    foreign_client.settings.sslkey = Some(key);
    let error = NodeSession::connect(&foreign_client, &settings())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            SessionError::Tls {
                failure: TlsFailure::ClientCertRefused { .. },
                ..
            } | SessionError::AuthRefused { .. }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn pooled_connections_never_keep_a_callers_role() {
    let cluster = TestCluster::start(1).await.unwrap();
    let model = cluster_model(&cluster, ServiceAuth::Certificate);
    let session = std::sync::Arc::new(
        NodeSession::connect(
            &model.nodes[0],
            &SessionSettings {
                max_connections: 3,
                ..settings()
            },
        )
        .await
        .unwrap(),
    );

    let mut work = session
        .begin(&Scope::read_write(Some("api_user")).with_replica_role())
        .await
        .unwrap();
    assert_eq!(
        scalar(&mut work, "SELECT current_user::text").await,
        "api_user"
    );
    assert_eq!(
        scalar(&mut work, "SHOW session_replication_role").await,
        "replica"
    );
    work.commit().await.unwrap();

    let mut handles = Vec::new();
    for i in 0..40 {
        let session = session.clone();
        handles.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let role = if i % 4 == 0 { "api_user" } else { "admin_user" };
                let mut work = session
                    .begin(&Scope::read_write(Some(role)).with_replica_role())
                    .await
                    .unwrap();
                assert_eq!(scalar(&mut work, "SELECT current_user::text").await, role);
                // Some units commit, some roll back, some are just dropped.
                match i % 3 {
                    0 => work.commit().await.unwrap(),
                    1 => work.rollback().await.unwrap(),
                    _ => drop(work),
                }
            } else {
                let mut work = session.begin(&Scope::read_only(None)).await.unwrap();
                assert_eq!(
                    scalar(&mut work, "SELECT current_user::text").await,
                    "ace_user"
                );
                assert_eq!(
                    scalar(&mut work, "SELECT session_user::text").await,
                    "ace_user"
                );
                assert_eq!(
                    scalar(&mut work, "SHOW session_replication_role").await,
                    "origin"
                );
                assert_eq!(scalar(&mut work, "SHOW TimeZone").await, "UTC");
                work.commit().await.unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
}

#[tokio::test]
async fn read_only_scope_refuses_writes() {
    let cluster = TestCluster::start(1).await.unwrap();
    let model = cluster_model(&cluster, ServiceAuth::Certificate);
    let session = NodeSession::connect(&model.nodes[0], &settings())
        .await
        .unwrap();
    let mut work = session
        .begin(&Scope::read_only(Some("api_user")))
        .await
        .unwrap();
    let error = sqlx::query("CREATE TEMP TABLE t (x int)")
        .execute(work.conn())
        .await
        .unwrap_err();
    assert_eq!(ace_session::sql_state(&error), Some("25006"), "{error}");
}

#[tokio::test]
async fn hostile_role_names_are_just_names() {
    let cluster = TestCluster::start(1).await.unwrap();
    let model = cluster_model(&cluster, ServiceAuth::Certificate);
    let session = NodeSession::connect(&model.nodes[0], &settings())
        .await
        .unwrap();
    for cn in [
        r#"api_user"; DROP ROLE admin_user; --"#,
        "x' OR '1'='1",
        "api_user\"",
    ] {
        let error = session.check_role(cn).await.unwrap_err();
        assert!(
            matches!(&error, SessionError::RoleMissing { role, .. } if role == cn),
            "{error}"
        );
        let error = session
            .begin(&Scope::read_only(Some(cn)))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, SessionError::RoleMissing { role, .. } if role == cn),
            "{error}"
        );
        assert!(error.to_string().contains("does not exist"), "{error}");
    }
    let mut work = session.begin(&Scope::read_only(None)).await.unwrap();
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_roles WHERE rolname IN ('api_user', 'admin_user', 'ace_user')",
    )
    .fetch_one(work.conn())
    .await
    .unwrap();
    assert_eq!(count, 3, "every role is still there");
}

#[tokio::test]
async fn preflight_names_missing_grants_and_privileges() {
    let cluster = TestCluster::start(2).await.unwrap();
    for node in cluster.nodes() {
        node.execute_as_superuser(
            "CREATE ROLE report_user NOLOGIN;
             CREATE TABLE public.accounts (id int PRIMARY KEY, v text);
             ALTER TABLE public.accounts OWNER TO ace_user;
             GRANT SELECT, INSERT, UPDATE, DELETE ON public.accounts TO api_user;
             REVOKE UPDATE ON public.accounts FROM api_user;",
        )
        .await
        .unwrap();
    }
    let model = cluster_model(&cluster, ServiceAuth::Certificate);
    let nodes: Vec<_> = model.nodes.iter().collect();
    let sessions = ClusterSession::connect(&nodes, &settings()).await.unwrap();

    let error = sessions.check_role("report_user").await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, SessionError::NotMember { .. }), "{text}");
    assert!(
        text.contains(r#"GRANT "report_user" TO "ace_user""#),
        "{text}"
    );
    let error = sessions.nodes()[0]
        .begin(&Scope::read_only(Some("report_user")))
        .await
        .unwrap_err();
    assert!(matches!(error, SessionError::NotMember { .. }), "{error}");

    sessions.check_role("api_user").await.unwrap();
    sessions
        .check_table_privileges(
            Some("api_user"),
            "public",
            "accounts",
            &["SELECT", "INSERT"],
        )
        .await
        .unwrap();
    let error = sessions
        .check_table_privileges(
            Some("api_user"),
            "public",
            "accounts",
            &["SELECT", "UPDATE"],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SessionError::PrivilegeMissing { privilege, .. } if privilege == "UPDATE"),
        "{error}"
    );
    let error = sessions
        .check_table_privileges(Some("api_user"), "public", "missing", &["SELECT"])
        .await
        .unwrap_err();
    assert!(
        matches!(error, SessionError::TableMissing { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn stopped_node_is_unreachable_within_the_timeout() {
    let mut cluster = TestCluster::start(2).await.unwrap();
    let model = cluster_model(&cluster, ServiceAuth::Certificate);
    cluster.node_mut(1).stop();
    let nodes: Vec<_> = model.nodes.iter().collect();
    let started = Instant::now();
    let error = ClusterSession::connect(&nodes, &settings())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(&error, SessionError::Unreachable { node, .. } if node == "n2"),
        "{error}"
    );

    // A node that stops after connecting fails the next unit of work.
    let mut cluster = TestCluster::start(1).await.unwrap();
    let model = cluster_model(&cluster, ServiceAuth::Certificate);
    let session = NodeSession::connect(&model.nodes[0], &settings())
        .await
        .unwrap();
    cluster.node_mut(0).stop();
    let started = Instant::now();
    let result = match session.begin(&Scope::read_only(None)).await {
        Ok(mut work) => sqlx::query("SELECT 1")
            .execute(work.conn())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
}
