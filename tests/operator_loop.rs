//! The operator's loop through the facade, as a program embedding ACE
//! would run it: `ace.yaml` and `pg_service.conf` from disk (ACE's own
//! client certificate from the `cert_auth` section, as the guide sets it
//! up), then find the drift on three nodes as the caller's role, repair it
//! from a source of truth, and prove the repair with a rerun of the diff
//! file and a fresh diff.

use std::path::Path;

use ace::config::{AceConfig, ConfigSource, ServiceFile};
use ace::engine::{
    DiffFile, Progress, TableDiffOptions, TableRepairOptions, table_diff, table_repair, table_rerun,
};
use ace::session::{ClusterSession, SessionSettings};
use ace_testkit::TestCluster;
use sqlx::Connection;

const TABLE: &str = r#""My Schema"."Orders""#;

/// `ace.yaml` with the guide's `cert_auth` section and `pg_service.conf`
/// naming only host, database, user and ports: the certificate files
/// come from `ace.yaml`.
fn write_config(cluster: &TestCluster, dir: &Path) -> (AceConfig, ServiceFile) {
    let tls = cluster.tls_files();
    let yaml = format!(
        "default_cluster: demo\n\
         cert_auth:\n  \
           use_cert_auth: true\n  \
           ace_user_cert_file: {}\n  \
           ace_user_key_file: {}\n  \
           ca_cert_file: {}\n",
        tls.client_cert.display(),
        tls.client_key.display(),
        tls.ca_cert.display(),
    );
    let yaml_path = dir.join("ace.yaml");
    std::fs::write(&yaml_path, yaml).unwrap();
    let mut service = "[demo]\nhost=localhost\ndbname=acedb\nuser=ace_user\n".to_owned();
    for node in cluster.nodes() {
        service.push_str(&format!("\n[demo.{}]\nport={}\n", node.name(), node.port()));
    }
    let service_path = dir.join("pg_service.conf");
    std::fs::write(&service_path, service).unwrap();
    let config = AceConfig::load(&ConfigSource::new().with_path(&yaml_path)).unwrap();
    (config, ServiceFile::load(&service_path).unwrap())
}

/// Every row of the table on node `index`, as text, in key order.
async fn rows(cluster: &TestCluster, index: usize) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect_with(&cluster.node(index).superuser_options())
        .await
        .unwrap();
    sqlx::query_scalar(&format!("SELECT t::text FROM {TABLE} t ORDER BY id"))
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn find_repair_and_prove_on_three_nodes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = TestCluster::start(3).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, service) = write_config(&cluster, dir.path());
    for node in cluster.nodes() {
        node.execute_as_superuser(&format!(
            "SET ROLE ace_user;
             CREATE SCHEMA \"My Schema\";
             GRANT USAGE ON SCHEMA \"My Schema\" TO api_user;
             CREATE TABLE {TABLE} (id int8 PRIMARY KEY, item text, qty numeric(10,2));
             GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO api_user;
             INSERT INTO {TABLE} SELECT g, 'item ' || g, g * 0.25
               FROM generate_series(1, 3000) g;"
        ))
        .await
        .unwrap();
    }
    // Drift: n2 changed a row and lost one; n3 has a row nobody else has
    // (above every other key) and a NULL where the others have ''.
    let drift = [
        (
            1,
            "UPDATE {TABLE} SET qty = 1.01 WHERE id = 17; DELETE FROM {TABLE} WHERE id = 2999",
        ),
        (
            2,
            "INSERT INTO {TABLE} VALUES (9007199254740993, 'late', 1); \
             UPDATE {TABLE} SET item = NULL WHERE id = 1500",
        ),
    ];
    for index in 0..2 {
        cluster
            .node(index)
            .execute_as_superuser(&format!("UPDATE {TABLE} SET item = '' WHERE id = 1500"))
            .await
            .unwrap();
    }
    for (index, sql) in drift {
        cluster
            .node(index)
            .execute_as_superuser(&sql.replace("{TABLE}", TABLE))
            .await
            .unwrap();
    }

    let model = service
        .cluster(&config.default_cluster, &config.cert_auth)
        .unwrap();
    let nodes: Vec<_> = model.nodes.iter().collect();
    let sessions = ClusterSession::connect(&nodes, &SessionSettings::from_config(&config))
        .await
        .unwrap();

    // Find, as api_user.
    let mut options = TableDiffOptions::new("My Schema", "Orders");
    options.role = Some("api_user".into());
    options.block_size = 500;
    let report = table_diff(&sessions, &options, &Progress::new())
        .await
        .unwrap();
    let counts = &report.summary.diff_rows_count;
    assert_eq!(counts["n1/n2"], 2, "{counts:?}");
    assert_eq!(counts["n1/n3"], 2, "{counts:?}");
    assert_eq!(counts["n2/n3"], 4, "{counts:?}");
    let json = report.to_json();
    let n3_only = &json["diffs"]["n1/n3"]["rows"]["n3"];
    assert!(
        n3_only.to_string().contains(r#""id":9007199254740993,"#),
        "the bigint above 2^53 stays exact: {n3_only}"
    );
    let file = DiffFile::read(&report.write_json(dir.path(), "diffs").unwrap()).unwrap();

    // Repair from n1, as api_user.
    let mut repair = TableRepairOptions::new("My Schema", "Orders");
    repair.source_of_truth = Some("n1".into());
    repair.role = Some("api_user".into());
    let repaired = table_repair(&sessions, &file, &repair, &Progress::new())
        .await
        .unwrap();
    repaired.check().unwrap();
    assert_eq!(repaired.repaired_nodes(), vec!["n2", "n3"]);

    // Prove it: the diff file's rows match again, and so does the table.
    let rerun = table_rerun(&sessions, &file, Some("api_user"), &Progress::new())
        .await
        .unwrap();
    assert!(rerun.matches(), "{:?}", rerun.summary.diff_rows_count);
    let fresh = table_diff(&sessions, &options, &Progress::new())
        .await
        .unwrap();
    assert!(fresh.matches(), "{:?}", fresh.summary.diff_rows_count);
    let source = rows(&cluster, 0).await;
    assert_eq!(source.len(), 3000);
    for index in 1..3 {
        assert_eq!(rows(&cluster, index).await, source, "n{}", index + 1);
    }
}
